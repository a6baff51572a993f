"""`edgefer eval`: accuracy and intensity error of any model artifact on labelled faces."""

from __future__ import annotations

import json
from pathlib import Path

import click

from edgefer.errors import UserError


def load_eval_data(data: Path, split: str | None, model_path: Path | None, detector: Path | None, threads: int,
                   classifier=None):
    """npz / CSV rows (optionally one split), or a class folder of photos through the full pipeline."""
    from edgefer.data import load_faces

    if data.is_dir():
        from edgefer.edge.photos import load_photo_folder
        from edgefer.edge.pipeline import build_pipeline

        if split:
            raise UserError("--split applies to npz/CSV data, not to photo folders")
        pipeline = build_pipeline(model=model_path, detector=detector, threads=threads, classifier=classifier)
        return load_photo_folder(data, pipeline)
    return load_faces(data).split(split)


@click.command("eval")
@click.argument("data", type=click.Path(path_type=Path))
@click.option("--model", type=click.Path(path_type=Path), help="Model artifact (.onnx or .engine); default: the embedded model.")
@click.option("--split", help="Only rows whose `usage` is this (npz/CSV), e.g. PublicTest.")
@click.option("--json", "as_json", is_flag=True, help="Print exactly one JSON object.")
@click.option("--plot", type=click.Path(path_type=Path), help="Write the confusion matrix as a PNG.")
@click.option("--detector", type=click.Path(path_type=Path), help="YuNet ONNX for photo folders (default: cache/download).")
@click.option("--backend", default="auto", show_default=True, help="onnxruntime, tensorrt, or auto (by file type).")
@click.option("--threads", type=int, default=0, help="Inference threads (0: runtime default).")
def eval_cmd(data: Path, model: Path | None, split: str | None, as_json: bool, plot: Path | None,
             detector: Path | None, backend: str, threads: int) -> None:
    """Evaluate a model on labelled faces: an npz in the shared format, a FER-2013 CSV, or a folder
    with one subfolder per class name (photos go through detect -> align -> classify; images without
    a face count as errors).

    \b
    Example:
      edgefer eval ../shared/data/fer2013/fer2013_trainval.npz --split PublicTest
      edgefer eval ../shared/data/photos --json
    """
    from edgefer.edge.classifier import Classifier
    from edgefer.evaluate import evaluate, format_report, json_safe, plot_confusion

    if not data.exists():
        raise UserError(f"{data}: no such file or directory")
    if plot:
        from edgefer.paths import check_output

        check_output(plot)  # before the evaluation
    options = {"threads": threads} if threads and backend in ("auto", "onnxruntime") and (model is None or model.suffix == ".onnx") else {}
    classifier = Classifier.open(model, backend=backend, **options)
    faces = load_eval_data(data, split, model, detector, threads, classifier=classifier)
    if len(faces) == 0 and not faces.no_face:
        raise UserError(f"{data}: no labelled faces to evaluate")
    metrics = evaluate(classifier, faces)
    from edgefer.edge.shadow import check_faces

    shadow = check_faces(classifier, faces.pixels)
    if shadow is not None:
        metrics["shadow"] = shadow
        if shadow["state"] != "passed":
            click.echo(f"edgefer: warning: shadow check {shadow['state']} against the FP32 model: "
                       f"{shadow.get('reason', '')}", err=True)
    metrics["model"] = str(model or "embedded default")
    metrics["model_version"] = classifier.info.version
    metrics["precision"] = classifier.info.precision
    metrics["data"] = str(data) + (f" [{split}]" if split else "")
    if plot:
        plot_confusion(metrics, plot)
    if as_json:
        click.echo(json.dumps(json_safe(metrics)))
    else:
        click.echo(format_report(metrics, title=f"{metrics['data']}  |  model {metrics['model']} "
                                 f"({classifier.info.version}, {classifier.info.precision})"))
