"""`edgefer doctor`: every check runs here without optional packages, each gap with a hint."""

from __future__ import annotations

import json

from edgefer.convert.schemes import cpu_kind
from edgefer.doctor import int8_verdict, run_checks


def test_cpu_kind() -> None:
    assert cpu_kind("fpu sse avx512f avx512_vnni", "x86_64") == "x86-vnni"
    assert cpu_kind("fpu sse avx2 avx_vnni", "x86_64") == "x86-vnni"  # Alder Lake and later
    assert cpu_kind("fpu sse avx2", "x86_64") == "x86-avx2"  # Zen 3, Haswell..Skylake
    assert cpu_kind("fp asimd evtstrm crc32 asimddp", "aarch64") == "arm64-dotprod"  # Pi 5 (Cortex-A76)
    assert cpu_kind("fp asimd evtstrm crc32 cpuid", "aarch64") == "arm64"  # Pi 4 (Cortex-A72)


def test_int8_verdict_says_what_was_measured() -> None:
    facts = {"cpu_kind": "x86-avx2", "full_range": False, "cpu_scheme": True, "full_range_error": 0.99,
             "cpu_scheme_error": 0.0, "fp32_ms": 1.6, "int8_ms": 1.0, "ratio": 1.6}
    ok, value, hint = int8_verdict(facts, "int8")
    assert ok and "NOT exact" in value and "1.60x" in value and "--for cpu" in hint
    ok, value, hint = int8_verdict({**facts, "full_range": True, "cpu_kind": "x86-vnni"}, "int8")
    assert ok and "full-range INT8 (tensorrt scheme) exact" in value and not hint
    ok, value, _ = int8_verdict({**facts, "cpu_scheme": False}, "fp32")
    assert not ok and "wrongly" in value
    # ONNX Runtime 1.20 ran INT8 at 0.46x FP32 here: a failed check must say what to do.
    ok, value, hint = int8_verdict({**facts, "full_range": True, "ratio": 0.46}, "fp32")
    assert not ok and "0.46x" in value and "precision auto runs FP32" in hint


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


def test_detector_width_is_measured_on_the_model_given(yunet_path, tmp_path) -> None:
    from edgefer.doctor import check_detector

    c = check_detector(yunet_path)
    assert c.ok and "input_width auto -> " in c.value and "320: " in c.value
    missing = check_detector(tmp_path / "nope.onnx")
    assert not missing.ok and "not found" in missing.value and "--detector PATH" in missing.hint
