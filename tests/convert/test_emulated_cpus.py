"""INT8 on the CPUs this machine is not: x86-64 without VNNI and Arm64 (Raspberry Pi 4 and 5),
under Debian's qemu-user-static (scripts/emucpu.py), whichever CPU CI lands on.

- the probe measures what each CPU computes (full-range INT8 saturates only on x86 without VNNI);
- the shipped cpu-scheme artifact computes the same numbers on every CPU as natively here;
- the tensorrt-scheme artifact is visibly wrong on emulated x86 AVX2 and right on Arm;
- the daemon, run on emulated x86 AVX2 with that artifact, refuses to trust it and falls back.

Skipped with a reason where qemu-user-static or debootstrap (or Debian's mirror, for the Arm root)
is missing; EDGEFER_REQUIRE_EMULATION=1 (set by scripts/test.sh) turns the skip into a failure.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
import emucpu  # noqa: E402

from edgefer.convert.chain import Request, convert  # noqa: E402
from edgefer.edge.classifier import Classifier, default_model_path  # noqa: E402
from edgefer.edge.precision import embedded_int8_path  # noqa: E402

N_FACES = 64
ARM = ["cortex-a72", "cortex-a76"]

SNIPPET = """
import json, sys
import numpy as np
from edgefer.convert import probe
from edgefer.convert.schemes import cpu_kind
from edgefer.edge.classifier import Classifier
out = {"cpu_kind": cpu_kind(), **probe.exactness().to_dict(), "probs": {}}
pixels = np.load(sys.argv[1])
for path in sys.argv[2:]:
    p, _, _ = Classifier.open(path, threads=1).classify(pixels)
    out["probs"][path] = p.tolist()
print(json.dumps(out))
"""


def unavailable(why: str) -> None:
    if os.environ.get("EDGEFER_REQUIRE_EMULATION") == "1":
        pytest.fail(f"emulation required (EDGEFER_REQUIRE_EMULATION=1) but unavailable: {why}")
    pytest.skip(f"CPU emulation unavailable: {why} (EDGEFER_REQUIRE_EMULATION=1 makes this a failure)")


@pytest.fixture(scope="session")
def x86_prefix() -> list[str]:
    try:
        return emucpu.x86()
    except emucpu.EmulationUnavailable as exc:
        unavailable(str(exc))


@pytest.fixture(scope="session")
def arm_setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    try:
        root = emucpu.arm_root(log=lambda m: None)
    except emucpu.EmulationUnavailable as exc:
        unavailable(str(exc))
    return root, emucpu.project_site(tmp_path_factory.mktemp("arm_site"))


@pytest.fixture(scope="session")
def faces(fer_npz: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from edgefer.data import load_faces

    path = tmp_path_factory.mktemp("emu") / "faces.npy"
    np.save(path, load_faces(fer_npz).split("PublicTest").pixels[:N_FACES])
    return path


@pytest.fixture(scope="session")
def trt_scheme(calib_set: Path, conv_dir: Path) -> Path:
    out = conv_dir / "emu.trt-scheme.onnx"
    if not out.exists():
        convert(Request(model=default_model_path(), target="onnx-int8", out=out, calib=calib_set, int8_for="tensorrt"))
    return out


def run(prefix: list[str], faces: Path, models: list[Path], env: dict | None = None, timeout: float = 600) -> dict:
    r = subprocess.run([*prefix, "-c", SNIPPET, str(faces), *map(str, models)], capture_output=True, text=True,
                       timeout=timeout, env=env, cwd="/")
    assert r.returncode == 0, r.stderr[-2000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


def native(faces: Path, path: Path | None) -> np.ndarray:
    return Classifier.open(path, threads=1).classify(np.load(faces))[0]


def agreement(a: np.ndarray, b: np.ndarray) -> float:
    return float((a.argmax(1) == b.argmax(1)).mean())


@pytest.fixture(scope="session")
def x86_out(x86_prefix: list[str], faces: Path, trt_scheme: Path) -> dict:
    """What the probe and both INT8 artifacts compute under qemu's Haswell (AVX2, no VNNI)."""
    return run(x86_prefix, faces, [embedded_int8_path(), trt_scheme])


def test_emulated_x86_without_vnni(x86_out: dict, faces: Path, trt_scheme: Path) -> None:
    cpu = embedded_int8_path()
    out = x86_out
    assert out["cpu_kind"] == "x86-avx2"
    assert out["cpu_scheme"] and not out["full_range"], out  # the saturation, measured by the probe
    p_cpu, p_trt = (np.array(out["probs"][str(m)]) for m in (cpu, trt_scheme))
    assert np.abs(p_cpu - native(faces, cpu)).max() < 1e-5  # the same numbers as here
    fp32 = native(faces, None)
    assert agreement(p_cpu, fp32) >= 0.95
    assert agreement(p_trt, fp32) < 0.9  # full-range INT8 is wrong there (77% on all of PublicTest)


def test_avx2_at_native_speed_computes_what_qemu_haswell_computes(x86_out: dict, faces: Path, trt_scheme: Path) -> None:
    """scripts/cpuid_mask.c (emucpu's `avx2`, used to time the AVX2-only kernels) makes this CPU's
    libraries choose what an AVX2-only CPU runs: the same probe verdicts and the same numbers as
    qemu's Haswell, bit for bit, including the tensorrt scheme's saturated (wrong) ones."""
    if "cpuid_fault" not in Path("/proc/cpuinfo").read_text():  # e.g. a real AVX2-only CPU: nothing to mask
        pytest.skip("this CPU or kernel has no CPUID faulting (cpuid_fault): no CPUID masking here")
    try:
        env = emucpu.avx2_env()
    except emucpu.EmulationUnavailable as exc:
        unavailable(str(exc))
    out = run([sys.executable], faces, [embedded_int8_path(), trt_scheme], env=env)
    assert out["cpu_kind"] == "x86-avx2"
    assert out["cpu_scheme"] and not out["full_range"], out
    for m in (embedded_int8_path(), trt_scheme):
        assert np.abs(np.array(out["probs"][str(m)]) - np.array(x86_out["probs"][str(m)])).max() < 1e-6, m


@pytest.mark.parametrize("cpu", ARM)
def test_emulated_arm(cpu: str, arm_setup: tuple[Path, Path], faces: Path, trt_scheme: Path) -> None:
    root, site = arm_setup
    model = embedded_int8_path()
    out = run(emucpu.arm(root, cpu), faces, [model, trt_scheme], env=emucpu.arm_env(root, site))
    assert out["cpu_kind"] == ("arm64" if cpu == "cortex-a72" else "arm64-dotprod")
    assert out["cpu_scheme"] and out["full_range"], out  # Arm accumulates in 32 bits: both exact
    p_cpu, p_trt = (np.array(out["probs"][str(m)]) for m in (model, trt_scheme))
    assert np.abs(p_cpu - native(faces, model)).max() < 1e-5
    fp32 = native(faces, None)
    assert agreement(p_trt, fp32) >= 0.95


def test_daemon_on_emulated_x86_without_vnni_falls_back(x86_prefix: list[str], trt_scheme: Path, photos_dir: Path,
                                                       yunet_path: Path, tmp_path: Path) -> None:
    import shutil

    folder = tmp_path / "photos"
    folder.mkdir()
    for f in sorted((photos_dir / "happy").glob("*.jpg"))[:2]:
        shutil.copy(f, folder / f.name)
    r = subprocess.run([*x86_prefix, "-m", "edgefer", "run", "--source", str(folder), "--model", str(trt_scheme),
                        "--detector", str(yunet_path), "--max-frames", "2", "--jsonl", "-"],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    lines = [json.loads(ln) for ln in r.stdout.splitlines() if ln.startswith("{")]
    assert len(lines) == 2 and all(ln["faces"] for ln in lines)
    failed = [ln for ln in r.stderr.splitlines() if "shadow check failed" in ln]
    assert len(failed) == 1 and "not computed exactly" in failed[0] and "x86-avx2" in failed[0], r.stderr[-2000:]
