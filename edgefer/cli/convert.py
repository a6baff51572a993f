"""`edgefer convert`: FP16 / INT8 ONNX and TensorRT engines, with a drift report."""

from __future__ import annotations

import json
from pathlib import Path

import click

TARGETS = ("onnx-fp16", "onnx-int8", "trt-fp16", "trt-int8")


@click.command("convert")
@click.option("--model", type=click.Path(path_type=Path), help="FP32 ONNX (edgefer classifier or YuNet); default: embedded.")
@click.option("--to", "target", required=True, help=f"Target: {', '.join(TARGETS)}.")
@click.option("--calib", type=click.Path(path_type=Path),
              help="Calibration set (INT8; 'edgefer calibration build'); a folder of photos for the detector.")
@click.option("--eval", "eval_data", type=click.Path(path_type=Path),
              help="Held-out data for the drift report: npz/CSV (classifier) or photos folder (detector).")
@click.option("--split", default="PublicTest", show_default=True, help="npz/CSV rows used by --eval.")
@click.option("--max-drop", type=float, help="Fail (exit 3, artifact kept as *.FAILED.*) when accuracy drops more "
              "than this many points (detector: images with a face found).")
@click.option("--method", type=click.Choice(["minmax", "entropy", "percentile"]), default=None,
              help="INT8 calibration method (default: the scheme's, percentile).")
@click.option("--for", "int8_for", type=click.Choice(["cpu", "tensorrt"]), default=None,
              help="INT8 scheme. cpu (default of onnx-int8): exact on every CPU (x86 with or without VNNI, Arm), "
              "not for TensorRT. tensorrt (default and only choice of trt-int8): symmetric Q/DQ for TensorRT; on "
              "ONNX Runtime it is exact only on x86 with VNNI and on Arm.")
@click.option("--keep-float", default="", help="Comma-separated node names kept in float, or 'auto' "
              "(keep the intensity head in float when drift passes the thresholds; needs --eval).")
@click.option("--detector", "kind", flag_value="detector", help="Treat the model as the YuNet detector (default: auto).")
@click.option("--face-detector", type=click.Path(path_type=Path),
              help="YuNet ONNX that finds faces when --eval is a photo folder (default: cache/download).")
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Output file (.onnx or .engine).")
@click.option("--force", is_flag=True, help="Overwrite --out if it exists.")
@click.option("--threads", type=int, default=0, help="ONNX Runtime threads for the drift evaluation.")
@click.option("--workspace-mb", type=int, default=1024, show_default=True, help="TensorRT builder workspace limit.")
@click.option("--timing-cache", type=click.Path(path_type=Path), help="TensorRT timing cache file (read and updated).")
@click.option("--trt-fp16-flag", is_flag=True, help="TensorRT 10: FP32 ONNX + FP16 builder flag instead of strongly typed FP16 ONNX.")
@click.option("--legacy-calibrator", is_flag=True, help="LEGACY FALLBACK for TensorRT < 10.1: implicit INT8 calibration.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON summary.")
def convert(model: Path | None, target: str, calib: Path | None, eval_data: Path | None, split: str,
            max_drop: float | None, method: str | None, int8_for: str | None, keep_float: str, kind: str | None, face_detector: Path | None, out: Path, force: bool,
            threads: int, workspace_mb: int, timing_cache: Path | None, trt_fp16_flag: bool,
            legacy_calibrator: bool, as_json: bool) -> None:
    """Convert the FP32 model for a device: FP16 or INT8 (explicit Q/DQ) ONNX, or a TensorRT engine
    built from them. The contract travels with the artifact; --eval writes a drift report beside it
    (`OUT.drift.json`, `.md`, `.png`).

    \b
    Example:
      edgefer calibration build --from ../shared/data/fer2013/fer2013_trainval.npz --out calib.npz
      edgefer convert --to onnx-int8 --calib calib.npz \\
          --eval ../shared/data/fer2013/fer2013_trainval.npz --max-drop 0.5 --out model.int8.onnx
    """
    from edgefer.convert.chain import Request
    from edgefer.convert.chain import convert as run_chain
    from edgefer.edge.classifier import default_model_path

    keep: list[str] | str = "auto" if keep_float == "auto" else [n for n in keep_float.split(",") if n]
    req = Request(model=model or default_model_path(), target=target, out=out, calib=calib, eval_data=eval_data,
                  split=split or None, max_drop=max_drop, method=method, int8_for=int8_for, keep_float=keep, force=force,
                  kind=kind or "auto", threads=threads, workspace_mb=workspace_mb, timing_cache=timing_cache,
                  trt_fp16_flag=trt_fp16_flag, legacy_calibrator=legacy_calibrator,
                  face_detector=face_detector)
    from edgefer.paths import writing

    with writing(out):  # a read-only or full file system at --out: one line, temporary files removed
        summary = run_chain(req)
    if as_json:
        click.echo(json.dumps(summary, default=str))
        return
    int8 = summary.get("int8")
    scheme = f", INT8 for {int8['name']}: exact on {', '.join(int8['exact_on'])}" if int8 else ""
    click.echo(f"wrote {summary['out']} ({summary['target']}, {summary['kind']}{scheme}) in {summary['seconds']} s")
    if int8 and int8["inexact_on"]:
        click.echo(f"note: on ONNX Runtime this artifact is not exact on {', '.join(int8['inexact_on'])} "
                   "(16-bit sums saturate); for those CPUs convert with --for cpu")
    d = summary["drift"]
    if d and d["kind"] == "classifier":
        line = (f"drift on {d['n']} faces: accuracy {100 * d['accuracy_reference']:.2f}% -> "
                f"{100 * d['accuracy_converted']:.2f}% ({-d['accuracy_drop_points']:+.2f} pts), "
                f"top-1 agreement {100 * d['top1_agreement']:.2f}%")
        if "intensity_rmse_increase" in d:
            line += f", intensity RMSE {d['intensity_rmse_increase']:+.4f}"
        click.echo(line)
    elif d:
        click.echo(f"drift on {d['images']} images: faces found {100 * d['faces_found_reference']:.2f}% -> "
                   f"{100 * d['faces_found_converted']:.2f}%, recall vs FP32 {100 * d['recall_vs_reference']:.2f}%, "
                   f"mean IoU {d['mean_iou']:.3f}")
