"""`edgefer doctor`: every check runs here without optional packages, each gap with a hint."""

from __future__ import annotations

import json

from edgefer.doctor import cpu_int8_support, run_checks


def test_cpu_int8_support() -> None:
    assert cpu_int8_support("fpu sse avx512f avx512_vnni", "x86_64").startswith("yes")
    assert cpu_int8_support("fpu sse avx2", "x86_64").startswith("no")
    assert cpu_int8_support("fp asimd evtstrm crc32 asimddp", "aarch64").startswith("yes")  # Pi 5 (Cortex-A76)
    assert "Raspberry Pi 4" in cpu_int8_support("fp asimd evtstrm crc32 cpuid", "aarch64")  # Cortex-A72


def test_every_missing_piece_has_a_hint() -> None:
    checks = run_checks()
    names = {c.name for c in checks}
    assert {"onnxruntime", "tensorrt", "cuda / gpu", "cameras", "opencv gstreamer", "picamera2"} <= names
    assert all(c.hint for c in checks if not c.ok)
    assert next(c for c in checks if c.name == "onnxruntime").ok


def test_cli(edgefer_cli) -> None:
    r = edgefer_cli("doctor", "--json")
    assert r.returncode == 0, r.stderr
    assert {c["name"] for c in json.loads(r.stdout)["checks"]} >= {"tensorrt", "cameras"}
    r = edgefer_cli("doctor")
    assert r.returncode == 0 and "onnxruntime" in r.stdout
