"""`edgefer doctor`: what this machine can run, and what to install for the rest."""

from __future__ import annotations

import json
from pathlib import Path

import click


@click.command("doctor")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option("--detector", type=click.Path(path_type=Path),
              help="YuNet ONNX file to time the detector's auto input width on (default: the cached one).")
def doctor(as_json: bool, detector: Path | None) -> int:
    """ONNX Runtime providers, INT8 support of the CPU, TensorRT and CUDA versions, GPU compute
    capability, the face detector's input width (auto, measured), cameras, OpenCV GStreamer support,
    picamera2; each missing piece with its install hint. Exits 1 only when a required piece (ONNX Runtime) is missing.

    \b
    Example:
      edgefer doctor
      edgefer doctor --json
    """
    from edgefer.doctor import run_checks

    checks = run_checks(detector)
    if as_json:
        click.echo(json.dumps({"checks": [c.to_dict() for c in checks]}))
    else:
        width = max(len(c.name) for c in checks)
        for c in checks:
            click.echo(f"{'ok ' if c.ok else '-- '} {c.name:<{width}}  {c.value}")
            if not c.ok and c.hint:
                click.echo(f"    {'':<{width}}  hint: {c.hint}")
    return 1 if any(c.required and not c.ok for c in checks) else 0
