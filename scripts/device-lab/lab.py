#!/usr/bin/env python3
"""The device lab: edgefer's service under a real systemd, with a real V4L2 camera, in a VM.

    sudo python3 scripts/device-lab/lab.py [--cache DIR] [--boot-timeout S] [--rebuild]

Builds (and caches) a Debian 12 x86-64 image with `debootstrap`, installs the project inside
from wheels built here (never from the network inside the VM), boots it with
`qemu-system-x86_64 -accel tcg` (no KVM needed) and runs `guest/scenarios.sh` under the VM's
systemd 252, with the kernel's `vivid` driver as the camera. Each scenario prints one `LAB {json}`
line on the serial console; this script collects them into one table.

Caching: the base root file system is keyed by its recipe (suite, packages); the bootable image by
the base, the wheels and the guest files. A changed recipe or wheel builds a new image; a build
happens in a `.partial` folder renamed only when complete, so an interrupted build never leaves
a half-built image in the cache (and a `.partial` left by a crash is removed first).

Needs root, debootstrap, qemu-system-x86, e2fsprogs and network access to a Debian mirror and
to the package index while building; each missing piece is one line saying how to get it.
Not part of the installed package. The Arm scenarios are `benchmarks/emulated_cpus.py`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import select
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
SHARED = Path(os.environ.get("EDGEFER_SHARED", ROOT.parent / "shared"))
DETECTOR = SHARED / "models" / "face_detection_yunet_2026may.onnx"
SUITE = "bookworm"
MIRROR = os.environ.get("EDGEFER_LAB_MIRROR", "http://deb.debian.org/debian")
PACKAGES = ["systemd", "systemd-sysv", "udev", "linux-image-amd64", "python3", "python3-venv", "v4l-utils", "kmod",
            "mosquitto", "mosquitto-clients", "iproute2", "procps"]
RUNTIME_DEPS = ["numpy", "onnx", "onnxruntime", "opencv-python-headless", "click", "pydantic", "paho-mqtt",
                "prometheus-client", "tqdm"]
TOOLS = {"debootstrap": "apt-get install debootstrap", "qemu-system-x86_64": "apt-get install qemu-system-x86",
         "mkfs.ext4": "apt-get install e2fsprogs", "chroot": "apt-get install coreutils"}


class LabError(Exception):
    """Something the user can fix; printed as one line."""


def log(msg: str) -> None:
    print(f"lab: {msg}", file=sys.stderr, flush=True)


def run(cmd: list[str], what: str, **kw) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw)
    except subprocess.CalledProcessError as exc:
        tail = (exc.stderr or exc.stdout or "").strip().splitlines()[-1:] or ["no output"]
        raise LabError(f"{what} failed (exit {exc.returncode}): {tail[0]}") from None
    except subprocess.TimeoutExpired:
        raise LabError(f"{what} timed out after {kw.get('timeout')} s") from None


def check_prerequisites() -> None:
    if os.geteuid() != 0:
        raise LabError("the lab needs root (debootstrap, chroot, mkfs): run it with sudo")
    for tool, how in TOOLS.items():
        if shutil.which(tool) is None:
            raise LabError(f"{tool} not found: {how}")
    if not DETECTOR.is_file():
        raise LabError(f"the YuNet detector is missing at {DETECTOR} (set EDGEFER_SHARED)")


def digest(*parts: object) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(p if isinstance(p, bytes) else json.dumps(p, sort_keys=True, default=str).encode())
    return h.hexdigest()[:16]


def fresh(dest: Path) -> Path:
    """`dest.partial`, emptied: where a cache entry is built before it is renamed into place."""
    partial = dest.with_name(dest.name + ".partial")
    if partial.exists():
        log(f"removing an unfinished build {partial}")
        shutil.rmtree(partial)
    partial.mkdir(parents=True)
    return partial


# -- the base root file system ---------------------------------------------------------------------
def build_base(cache: Path) -> tuple[Path, float]:
    dest = cache / f"base-{digest(SUITE, PACKAGES, MIRROR)}"
    if (dest / "rootfs" / "etc" / "debian_version").is_file():
        return dest / "rootfs", 0.0
    partial = fresh(dest)
    log(f"debootstrap {SUITE} with {len(PACKAGES)} packages (about 3 minutes)")
    t0 = time.monotonic()
    run(["debootstrap", "--variant=minbase", f"--include={','.join(PACKAGES)}", SUITE, str(partial / "rootfs"), MIRROR],
        "debootstrap", timeout=1800)
    partial.rename(dest)
    return dest / "rootfs", time.monotonic() - t0


# -- the project: wheels built here --------------------------------------------------------------
def build_wheels(cache: Path) -> Path:
    """The project's wheel and its runtime dependencies for Debian 12's Python 3.11 (x86-64)."""
    out = cache / "wheels"
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("edgefer-*.whl"):
        old.unlink()
    run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out), str(ROOT)], "building the edgefer wheel",
        timeout=600)
    run([sys.executable, "-m", "pip", "download", "-q", "-d", str(out), "--only-binary=:all:", "--python-version", "3.11",
         "--platform", "manylinux_2_28_x86_64", "--platform", "manylinux_2_17_x86_64", "--platform", "manylinux2014_x86_64",
         *RUNTIME_DEPS], "downloading the runtime wheels", timeout=1800)
    return out


def content_digest(path: Path) -> str:
    """sha256 of a file; of a wheel, of its members' names and bytes (a rebuilt wheel of the same
    sources differs only in zip timestamps and must not rebuild the image)."""
    if path.suffix != ".whl":
        return hashlib.sha256(path.read_bytes()).hexdigest()
    with zipfile.ZipFile(path) as z:
        return digest([(i.filename, hashlib.sha256(z.read(i)).hexdigest()) for i in sorted(z.infolist(), key=lambda i: i.filename)])


def build_image(cache: Path, base: Path, wheels: Path) -> tuple[Path, float]:
    files = sorted(wheels.glob("*.whl")) + sorted((HERE / "guest").iterdir()) + [DETECTOR]
    key = digest(base.parent.name, [(f.name, content_digest(f)) for f in files])
    dest = cache / f"image-{key}"
    if (dest / "disk.img").is_file() and (dest / "complete").is_file():
        return dest, 0.0
    if dest.exists():
        shutil.rmtree(dest)
    partial = fresh(dest)
    t0 = time.monotonic()
    root = partial / "rootfs"
    log("copying the base root file system")
    run(["cp", "-a", str(base), str(root)], "copying the base")
    (root / "tmp" / "wheels").mkdir(parents=True, exist_ok=True)
    for w in wheels.glob("*.whl"):
        shutil.copy2(w, root / "tmp" / "wheels" / w.name)
    log("installing edgefer into /opt/edgefer inside the image (from the wheels, offline)")
    chroot = ["chroot", str(root), "/usr/bin/env", "-i", "PATH=/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root"]
    run([*chroot, "python3", "-m", "venv", "/opt/edgefer"], "creating the venv in the image")
    run([*chroot, "/opt/edgefer/bin/pip", "install", "-q", "--no-index", "--find-links", "/tmp/wheels", "edgefer"],
        "installing edgefer in the image", timeout=900)
    shutil.rmtree(root / "tmp" / "wheels")
    lab = root / "opt" / "lab"
    lab.mkdir(parents=True, exist_ok=True)
    shutil.copy2(DETECTOR, lab / "yunet.onnx")
    shutil.copy2(HERE / "guest" / "scenarios.sh", lab / "scenarios.sh")
    shutil.copy2(HERE / "guest" / "edgefer-lab.service", root / "etc" / "systemd" / "system" / "edgefer-lab.service")
    wants = root / "etc" / "systemd" / "system" / "multi-user.target.wants"
    wants.mkdir(parents=True, exist_ok=True)
    (wants / "edgefer-lab.service").unlink(missing_ok=True)
    (wants / "edgefer-lab.service").symlink_to("/etc/systemd/system/edgefer-lab.service")
    for getty in ("serial-getty@ttyS0.service", "getty-static.service"):  # the console carries our results
        (root / "etc" / "systemd" / "system" / getty).unlink(missing_ok=True)
        (root / "etc" / "systemd" / "system" / getty).symlink_to("/dev/null")
    (root / "etc" / "fstab").write_text("/dev/vda / ext4 rw,errors=remount-ro 0 1\n")
    (root / "etc" / "hostname").write_text("edgefer-lab\n")
    (root / "etc" / "hosts").write_text("127.0.0.1 localhost\n127.0.1.1 edgefer-lab\n::1 localhost\n")
    boot = root / "boot"
    kernel = sorted(boot.glob("vmlinuz-*"))[-1]
    initrd = sorted(boot.glob("initrd.img-*"))[-1]
    shutil.copy2(kernel, partial / "vmlinuz")
    shutil.copy2(initrd, partial / "initrd.img")
    log("making the disk image (mkfs.ext4 -d)")
    run(["mkfs.ext4", "-q", "-F", "-L", "edgefer-lab", "-d", str(root), str(partial / "disk.img"), "3G"], "mkfs.ext4",
        timeout=600)
    shutil.rmtree(root)
    (partial / "complete").write_text(key + "\n")
    partial.rename(dest)
    for stale in cache.glob("image-*"):  # one image per cache: older recipes are not kept
        if stale != dest:
            shutil.rmtree(stale)
    return dest, time.monotonic() - t0


# -- boot and collect ---------------------------------------------------------------------------------
def boot(image: Path, timeout_s: float, console_log: Path, first_result_s: float = 300.0) -> tuple[list[dict], dict[str, float]]:
    cmd = ["qemu-system-x86_64", "-accel", "tcg", "-cpu", "max", "-smp", "2", "-m", "2048", "-nographic", "-no-reboot",
           "-nic", "none", "-snapshot", "-kernel", str(image / "vmlinuz"), "-initrd", str(image / "initrd.img"),
           "-append", "root=/dev/vda rw console=ttyS0 systemd.show_status=1",
           "-drive", f"file={image / 'disk.img'},if=virtio,format=raw"]
    log(f"booting the VM (TCG; limit {timeout_s:.0f} s)")
    t0 = time.monotonic()
    results: list[dict] = []
    times: dict[str, float] = {}
    with open(console_log, "w") as con:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        try:
            assert proc.stdout is not None
            fd = proc.stdout.fileno()
            buf = ""
            while True:
                if time.monotonic() - t0 > timeout_s:
                    raise LabError(f"the VM did not finish within {timeout_s:.0f} s (console: {console_log})")
                if not results and time.monotonic() - t0 > first_result_s:
                    raise LabError(f"the VM did not reach the scenarios within {first_result_s:.0f} s: a corrupt "
                                   f"cached image or a kernel that does not boot (console: {console_log}); try --rebuild")
                ready, _, _ = select.select([fd], [], [], 0.5)
                if not ready:
                    continue
                chunk = os.read(fd, 65536).decode("utf-8", "replace")
                if not chunk:  # qemu exited (the guest powered off)
                    break
                con.write(chunk)
                con.flush()
                buf += chunk
                *lines, buf = buf.split("\n")
                for line in lines:
                    m = re.search(r"LAB (\{.*\})", line)
                    if m and not any(r["scenario"] == json.loads(m.group(1))["scenario"] for r in results):
                        doc = json.loads(m.group(1))
                        results.append(doc)
                        times.setdefault("first result", time.monotonic() - t0)
                        log(f"{'PASS' if doc['ok'] else 'FAIL'} {doc['scenario']}: {doc['figure']}")
                    if "LAB-DONE" in line:
                        times["scenarios done"] = time.monotonic() - t0
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait(10)
    times["VM total"] = time.monotonic() - t0
    return results, times


def table(results: list[dict], figures: dict[str, float]) -> str:
    rows = ["| scenario | result | figure |", "|---|---|---|"]
    rows += [f"| {r['scenario']} | {'pass' if r['ok'] else 'FAIL'} | {r['figure']} |" for r in results]
    rows += [f"| {k} | | {v:.1f} s |" for k, v in figures.items()]
    return "\n".join(rows)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cache", type=Path, default=Path(os.environ.get("EDGEFER_LAB_CACHE", "~/.cache/edgefer-lab")))
    ap.add_argument("--boot-timeout", type=float, default=900.0, help="Longest wall time of the VM, seconds.")
    ap.add_argument("--rebuild", action="store_true", help="Drop the cached images first.")
    args = ap.parse_args()
    t0 = time.monotonic()
    try:
        check_prerequisites()
        cache = args.cache.expanduser()
        if args.rebuild and cache.exists():
            shutil.rmtree(cache)
        cache.mkdir(parents=True, exist_ok=True)
        base, base_s = build_base(cache)
        wheels = build_wheels(cache)
        image, image_s = build_image(cache, base, wheels)
        results, times = boot(image, args.boot_timeout, cache / "console.log")
    except LabError as exc:
        print(f"lab: error: {exc}", file=sys.stderr)
        return 1
    figures = {"base build (debootstrap)": base_s, "image build": image_s, **times, "lab wall time": time.monotonic() - t0}
    print(table(results, figures))
    done = "scenarios done" in times
    if not done:
        print("lab: the scenarios did not finish (see the console log)", file=sys.stderr)
    return 0 if done and results and all(r["ok"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
