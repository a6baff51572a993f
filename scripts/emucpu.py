"""Emulated CPUs from Debian's qemu-user-static: x86-64 without VNNI, and Arm64 boards.

    python scripts/emucpu.py x86 [--cpu Haswell-noTSX] -- -m edgefer doctor
    python scripts/emucpu.py avx2 -- benchmarks/int8_speed.py
    python scripts/emucpu.py arm [--cpu cortex-a72] -- -m edgefer doctor

- x86: this machine's own Python (and the edgefer installed in it) under `qemu-x86_64-static -cpu
  Haswell-noTSX`: AVX2 without AVX-512 or VNNI, the case of Intel before Ice Lake and AMD Zen 2/3.
  ONNX Runtime picks its kernels from CPUID, which the emulator answers, so it runs its AVX2 code.
- avx2: this machine's own Python at native speed with AVX-512, VNNI and AMX hidden from CPUID
  (`scripts/cpuid_mask.c`, LD_PRELOADed: the kernel's CPUID faulting, where the CPU has
  `cpuid_fault`). ONNX Runtime, OpenCV and NumPy then run the AVX2 kernels an AVX2-only CPU runs,
  at this CPU's clock and caches: the one emulation here whose speed means something (the kernels'
  instruction mix, not Zen 3's timings). Needs a C compiler (`apt-get install gcc`).
- arm: an arm64 Debian 12 root (Raspberry Pi OS bookworm is Debian 12 arm64) made without root
  emulation: `debootstrap --foreign` downloads and unpacks Python, `dpkg-deb -x` unpacks the rest,
  and the project's dependencies come as aarch64 wheels pinned to the versions installed here (so
  both sides run the same ONNX Runtime). It is cached by that recipe under `$EDGEFER_EMU_CACHE`
  (default `~/.cache/edgefer-emu`), built in a temporary folder and renamed, so a broken build
  leaves nothing behind. Python runs as `qemu-aarch64-static -cpu CPU -L ROOT ROOT/usr/bin/python3`
  (no chroot, no binfmt); the CPU model sets the hardware capabilities ONNX Runtime reads
  (`cortex-a72`: Raspberry Pi 4, no dot product; `cortex-a76`: Raspberry Pi 5, dot product;
  `neoverse-n1`: Armv8.2 with dot product, the nearest QEMU 7.2 has to Jetson Orin's Cortex-A78AE).
  The project itself is installed per call from a wheel of this checkout (`project_site`).

Speeds under qemu mean nothing; what is computed is what the real CPU computes.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SUITE = "bookworm"
MIRROR = "http://deb.debian.org/debian"
#: the project's runtime dependencies (pyproject.toml), installed at the versions this Python has
DEPENDENCIES = ("numpy", "onnx", "onnxruntime", "opencv-python-headless", "click", "pydantic", "paho-mqtt",
                "prometheus-client", "tqdm")
X86_NO_VNNI = "Haswell-noTSX"
ARM_CPUS = {"cortex-a72": "Raspberry Pi 4 (no dot product)", "cortex-a76": "Raspberry Pi 5 (dot product)",
            "neoverse-n1": "Armv8.2 with dot product (as Jetson Orin's Cortex-A78AE)"}


class EmulationUnavailable(RuntimeError):
    """A tool or package this needs is missing; the message says which and how to get it."""


def need(tool: str, package: str) -> str:
    path = shutil.which(tool)
    if path is None:
        raise EmulationUnavailable(f"{tool} not found: apt-get install {package}")
    return path


def _guest_env() -> list[str]:
    """qemu options that keep the `avx2` mask (when this process runs under it) out of the guest:
    qemu's CPU model decides what the guest sees, and CPUID faulting does not exist there."""
    return ["-U", "LD_PRELOAD"] if "cpuid_mask" in os.environ.get("LD_PRELOAD", "") else []


def x86(cpu: str = X86_NO_VNNI) -> list[str]:
    """Command prefix: this Python on an emulated x86-64 CPU (default: AVX2, no VNNI)."""
    return [need("qemu-x86_64-static", "qemu-user-static"), *_guest_env(), "-cpu", cpu, sys.executable]


def avx2_env() -> dict[str, str]:
    """Environment for this machine's Python as an AVX2-only CPU at native speed (`avx2` above):
    `scripts/cpuid_mask.c` built once into the cache (keyed by its source) and LD_PRELOADed."""
    src = ROOT / "scripts" / "cpuid_mask.c"
    if "cpuid_fault" not in Path("/proc/cpuinfo").read_text():
        raise EmulationUnavailable("this CPU or kernel has no CPUID faulting (cpuid_fault): use the x86 kind (qemu)")
    lib = cache_dir() / f"cpuid_mask-{hashlib.sha256(src.read_bytes()).hexdigest()[:12]}.so"
    if not lib.is_file():
        lib.parent.mkdir(parents=True, exist_ok=True)
        tmp = lib.with_suffix(f".{os.getpid()}.tmp")
        r = subprocess.run([need("cc", "gcc"), "-O2", "-shared", "-fPIC", "-o", str(tmp), str(src)], capture_output=True, text=True)
        if r.returncode != 0:
            tmp.unlink(missing_ok=True)
            last = (r.stderr.strip().splitlines() or ["no output"])[-1]
            raise EmulationUnavailable(f"cc could not build {src.name}: {last}")
        tmp.rename(lib)
    preload = " ".join(p for p in (os.environ.get("LD_PRELOAD", ""), str(lib)) if p)
    return {**os.environ, "LD_PRELOAD": preload}


def pinned() -> list[str]:
    """The dependencies as `name==version` of this Python's installs."""
    out = []
    for name in DEPENDENCIES:
        try:
            out.append(f"{name}=={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            raise EmulationUnavailable(f"{name} is not installed here (pip install .)") from None
    return out


def cache_dir() -> Path:
    return Path(os.environ.get("EDGEFER_EMU_CACHE", Path.home() / ".cache" / "edgefer-emu"))


def recipe() -> dict:
    return {"suite": SUITE, "arch": "arm64", "debs": ["python3", "libgomp1"], "python": "3.11", "wheels": pinned()}


def arm_root(cache: Path | None = None, log=print) -> Path:
    """The cached arm64 root with Python and the dependencies (built when missing or stale)."""
    spec = recipe()
    digest = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]
    cache = cache or cache_dir()
    root = cache / f"arm64-{SUITE}-{digest}"
    if (root / ".complete").is_file():
        return root
    debootstrap = need("debootstrap", "debootstrap")
    need("dpkg-deb", "dpkg")
    need("qemu-aarch64-static", "qemu-user-static")
    cache.mkdir(parents=True, exist_ok=True)
    build = Path(tempfile.mkdtemp(prefix=".build-", dir=cache))
    try:
        log(f"building {root.name}: debootstrap --foreign arm64 {SUITE} ...")
        r = subprocess.run([debootstrap, "--foreign", "--arch=arm64", "--variant=minbase",
                            f"--include={','.join(spec['debs'])}", SUITE, str(build / "root"), MIRROR],
                           capture_output=True, text=True, timeout=900)
        if r.returncode != 0:
            tail = (r.stdout + r.stderr).strip().splitlines()[-1:] or ["?"]
            raise EmulationUnavailable(f"debootstrap failed ({tail[0]}); is {MIRROR} reachable?")
        for deb in sorted((build / "root" / "var/cache/apt/archives").glob("*.deb")):
            subprocess.run(["dpkg-deb", "-x", str(deb), str(build / "root")], check=True, timeout=120)
        wheels = build / "wheels"
        log(f"downloading aarch64 wheels: {' '.join(spec['wheels'])}")
        plat = [a for p in ("manylinux_2_28_aarch64", "manylinux_2_27_aarch64", "manylinux_2_26_aarch64",
                            "manylinux_2_17_aarch64", "manylinux2014_aarch64") for a in ("--platform", p)]
        r = subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--only-binary=:all:", "--python-version",
                            spec["python"], "--implementation", "cp", *plat, "-d", str(wheels), *spec["wheels"]],
                           capture_output=True, text=True, timeout=900)
        if r.returncode != 0:
            raise EmulationUnavailable(f"pip download of aarch64 wheels failed: {r.stderr.strip().splitlines()[-1:]}")
        site = build / "root" / "opt" / "site"
        for whl in sorted(wheels.glob("*.whl")):
            with zipfile.ZipFile(whl) as z:
                z.extractall(site)
        shutil.rmtree(build / "root" / "var/cache/apt/archives", ignore_errors=True)
        # qemu -L looks here first: empty CPU lists make ONNX Runtime's cpuinfo library give up on the
        # host's (x86) /sys and read the emulated CPU's hardware capabilities (getauxval) instead
        cpu = build / "root" / "sys/devices/system/cpu"
        cpu.mkdir(parents=True, exist_ok=True)
        for name in ("possible", "present"):
            (cpu / name).write_text("")
        (build / "root" / ".complete").write_text(json.dumps(spec, indent=1))
        if root.exists():
            shutil.rmtree(root)
        (build / "root").rename(root)
    finally:
        shutil.rmtree(build, ignore_errors=True)
    return root


def project_site(dest: Path) -> Path:
    """This checkout as an installed package (a pure-Python wheel, unpacked) under `dest`."""
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        r = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", tmp, str(ROOT)],
                           capture_output=True, text=True, timeout=600)
        if r.returncode != 0:
            raise RuntimeError(f"building the edgefer wheel failed: {r.stderr.strip()[-400:]}")
        for whl in Path(tmp).glob("edgefer-*.whl"):
            with zipfile.ZipFile(whl) as z:
                z.extractall(dest)
    return dest


def arm(root: Path, cpu: str = "cortex-a72") -> list[str]:
    """Command prefix: the arm64 root's Python on an emulated `cpu`."""
    # -P: not the working directory first (a checkout's edgefer/ folder is not the installed package)
    return [need("qemu-aarch64-static", "qemu-user-static"), *_guest_env(), "-cpu", cpu, "-L", str(root),
            str(root / "usr/bin/python3"), "-P"]


def arm_env(root: Path, project: Path | None = None) -> dict[str, str]:
    """Environment for `arm`: the root's wheels (and the project) on the path, nothing from here."""
    paths = [str(project)] if project else []
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    return {**env, "PYTHONPATH": os.pathsep.join([*paths, str(root / "opt/site")]), "PYTHONNOUSERSITE": "1"}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("kind", choices=["x86", "avx2", "arm"])
    ap.add_argument("--cpu")
    argv = sys.argv[1:]
    cut = argv.index("--") if "--" in argv else len(argv)
    a, args = ap.parse_args(argv[:cut]), argv[cut + 1:]  # after --: arguments to Python
    try:
        if a.kind == "x86":
            return subprocess.call([*x86(a.cpu or X86_NO_VNNI), *args])
        if a.kind == "avx2":
            return subprocess.call([sys.executable, *args], env=avx2_env())
        root = arm_root(log=lambda m: print(m, file=sys.stderr))
        with tempfile.TemporaryDirectory() as tmp:
            site = project_site(Path(tmp) / "site")
            return subprocess.call([*arm(root, a.cpu or "cortex-a72"), *args], env=arm_env(root, site))
    except EmulationUnavailable as exc:
        print(f"emucpu: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
