"""Any `edgefer train` recipe on a lent GPU, within the device tool's limits: pack here, train there, resume.

The device tool runs one command of at most 10 minutes on a machine with no package index and no
network, carries at most 64 MiB of ignored files (`carry`), and brings back at most 8 files of 16 MiB
from $OUT. So a recipe that needs more than one call trains in several, each resuming the last
checkpoint (the recipe checkpoints every epoch, atomically, and resumes bit for bit where it stopped):

    # here: the data (xz-compressed to fit a call), the detector, and any file the recipe reads
    python scripts/train_on_gpu.py pack --data ../shared/data/fer2013/fer2013_trainval.npz \\
        --file edgefer/models/edgefer-fer-v1.onnx
    # there (device tool, carry [".gpu"]): NAME, then the recipe's own options; files packed with --file
    # are named .gpu/files/<name>; --data, --out, --detector, --device and --resume are added
    bash scripts/train_on_gpu.sh large --widths 64,128,256,512 --depths 2,2,2,2 --epochs 60 \\
        --ema 0.999 --realigned-frac 0.5 --threads 8
    # the same command again continues it (on a warm machine from its own folder; on a fresh one from the
    # checkpoint brought back, after `python scripts/train_on_gpu.py pack ... --resume large=DIR/last.pt`)

What comes back in $OUT: `last.pt` (or `last.pt.part-*` when it is over 15 MiB: `pack --resume` and
`join` put the parts together), `weights-fp16.pt` (the delivered weights only, what `edgefer export` and
`--init` / `--teacher` take), `logs.tar` (history.json, curves.png, config.json, train.log) and
`status.json` (epochs done of the planned, seconds, whether the budget cut the call short).
"""

from __future__ import annotations

import argparse
import json
import lzma
import shutil
import sys
from pathlib import Path

PART = 15 * 1024 * 1024  # under the device tool's 16 MiB per file
CARRY = 64 * 1024 * 1024


def pack(data: Path, detector: Path, files: list[Path], resume: list[str], dest: Path) -> int:
    """Write `dest` (.gpu/): fer.npz.xz, the detector, files/, resume/<name>/last.pt; check the total fits a call."""
    for p in [data, detector, *files]:
        if not p.is_file():
            raise SystemExit(f"train_on_gpu: {p}: no such file")
    dest.mkdir(parents=True, exist_ok=True)
    xz = dest / "fer.npz.xz"
    stamp = dest / "fer.npz.source"
    if not xz.exists() or not stamp.exists() or stamp.read_text() != f"{data.resolve()} {data.stat().st_size}":
        tmp = xz.with_suffix(".tmp")
        with open(data, "rb") as src, lzma.open(tmp, "wb", preset=9 | lzma.PRESET_EXTREME) as out:
            shutil.copyfileobj(src, out, 1 << 20)
        tmp.replace(xz)
        stamp.write_text(f"{data.resolve()} {data.stat().st_size}")
    shutil.copy(detector, dest / "detector.onnx")
    (dest / "files").mkdir(exist_ok=True)
    for f in files:
        shutil.copy(f, dest / "files" / f.name)
    for item in resume:
        name, _, ck = item.partition("=")
        if not name or not ck:
            raise SystemExit(f"train_on_gpu: --resume {item!r}: NAME=PATH of a last.pt (or its first part)")
        target = dest / "resume" / name
        target.mkdir(parents=True, exist_ok=True)
        join(Path(ck), target / "last.pt")
    total = sum(p.stat().st_size for p in dest.rglob("*") if p.is_file())
    print(f"{dest}: {total / 2**20:.1f} MiB to carry" + ("" if total <= CARRY else " (over the 64 MiB a call carries)"))
    return 0 if total <= CARRY else 1


def join(first: Path, out: Path) -> None:
    """A checkpoint from itself or from its parts (`last.pt.part-aa`, ...), into `out`."""
    parts = sorted(first.parent.glob(first.name.split(".part-")[0] + ".part-*")) if ".part-" in first.name or not first.exists() else []
    if not parts and not first.is_file():
        raise SystemExit(f"train_on_gpu: {first}: no such checkpoint (nor parts of it)")
    tmp = out.with_suffix(".tmp")
    with open(tmp, "wb") as w:
        for p in parts or [first]:
            w.write(p.read_bytes())
    tmp.replace(out)


def keep(run: Path, out: Path, planned: int, seconds: float, cut: bool) -> int:
    """Copy a run's results into the device tool's $OUT (at most 8 files of at most 16 MiB)."""
    import io
    import tarfile

    import torch

    out.mkdir(parents=True, exist_ok=True)
    last = run / "last.pt"
    if not last.exists():
        print(f"train_on_gpu: {last}: no checkpoint yet (no epoch finished)", file=sys.stderr)
        return 1
    blob = last.read_bytes()
    if len(blob) <= PART:
        (out / "last.pt").write_bytes(blob)
    else:
        for i in range(0, len(blob), PART):
            k = i // PART
            (out / f"last.pt.part-{chr(97 + k // 26)}{chr(97 + k % 26)}").write_bytes(blob[i:i + PART])
    from edgefer.train.checkpoint import save_fp16_weights

    ck = torch.load(io.BytesIO(blob), map_location="cpu", weights_only=False)
    save_fp16_weights(ck, out / "weights-fp16.pt")
    with tarfile.open(out / "logs.tar", "w") as tar:
        for name in ("history.json", "curves.png", "config.json", "train.log"):
            if (run / name).exists():
                tar.add(run / name, arcname=name)
    status = {"epochs_done": ck["epoch"], "epochs_planned": planned, "step": ck["step"],
              "seconds": round(seconds, 1), "cut_by_budget": cut, "last_val": ck["history"][-1] if ck["history"] else None}
    (out / "status.json").write_text(json.dumps(status, indent=1))
    print(json.dumps(status))
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("pack", help="here: fill .gpu/ with what a call carries")
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--detector", type=Path, default=Path("../shared/models/face_detection_yunet_2026may.onnx"))
    p.add_argument("--file", type=Path, action="append", default=[], help="a file the recipe reads (--init, --teacher)")
    p.add_argument("--resume", action="append", default=[], help="NAME=PATH: a checkpoint brought back, to continue")
    p.add_argument("--dest", type=Path, default=Path(".gpu"))
    j = sub.add_parser("join", help="here: a checkpoint brought back in parts, as one file")
    j.add_argument("first", type=Path)
    j.add_argument("out", type=Path)
    k = sub.add_parser("keep", help="there: a run's results into $OUT")
    k.add_argument("run", type=Path)
    k.add_argument("out", type=Path)
    k.add_argument("--planned", type=int, default=0)
    k.add_argument("--seconds", type=float, default=0.0)
    k.add_argument("--cut", action="store_true")
    a = ap.parse_args(argv)
    if a.cmd == "pack":
        return pack(a.data, a.detector, a.file, a.resume, a.dest)
    if a.cmd == "join":
        join(a.first, a.out)
        return 0
    return keep(a.run, a.out, a.planned, a.seconds, a.cut)


if __name__ == "__main__":
    sys.exit(main())
