"""`edgefer calibration build`: a calibration set for INT8 conversion."""

from __future__ import annotations

import json
from pathlib import Path

import click


@click.group("calibration")
def calibration() -> None:
    """Calibration sets for `edgefer convert --to *-int8`.

    \b
    Example:
      edgefer calibration build --from ../shared/data/fer2013/fer2013_trainval.npz --out calib.npz
      edgefer calibration build --from photos/ --from clip.mp4 --out site-calib.npz --per-class 50
    """


@calibration.command("build")
@click.option("--from", "sources", multiple=True, required=True, type=click.Path(path_type=Path),
              help="npz (shared format), FER-2013 CSV, photo folder or video; repeatable.")
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Output .npz file.")
@click.option("--model", type=click.Path(path_type=Path), help="Model the set is for (its crop size and spec); default: embedded.")
@click.option("--per-class", type=click.IntRange(min=1), default=100, show_default=True, help="At most this many faces per class.")
@click.option("--limit", type=click.IntRange(min=1), help="At most this many faces in all (class mix kept).")
@click.option("--split", default="Training", show_default=True,
              help="npz/CSV rows of this usage only (calibrate on training rows, evaluate on held-out ones).")
@click.option("--detector", type=click.Path(path_type=Path), help="YuNet ONNX for photos/videos (default: cache/download).")
@click.option("--seed", type=int, default=0, show_default=True, help="Selection seed (the set is deterministic).")
@click.option("--force", is_flag=True, help="Overwrite --out if it exists.")
def build(sources: tuple[Path, ...], out: Path, model: Path | None, per_class: int, limit: int | None,
          split: str, detector: Path | None, seed: int, force: bool) -> None:
    """Build a calibration set: stratified by class, deterministic, one npz with a manifest
    (sources, counts per class, preprocessing spec, sha256).

    \b
    Example:
      edgefer calibration build --from ../shared/data/fer2013/fer2013_trainval.npz --out calib.npz
    """
    from edgefer.calibration.build import build_calibration_set
    from edgefer.edge.classifier import default_model_path
    from edgefer.errors import UserError
    from edgefer.modelinfo import read_onnx_info
    from edgefer.paths import check_output

    if out.exists() and not force:
        raise UserError(f"{out}: exists; pass --force to overwrite")
    check_output(out)  # before the faces are found and cropped
    model_path = model or default_model_path()
    info = read_onnx_info(model_path)
    cset = build_calibration_set(list(sources), out, info.input, per_class=per_class, limit=limit,
                                 split=split or None, seed=seed, model=model,
                                 detector=detector)
    m = cset.manifest
    click.echo(json.dumps({"out": str(out), "n": m["n"], "counts": m["counts"], "sha256": m["sha256"]}))
