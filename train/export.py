"""Export a training checkpoint to the contract ONNX: input `input` N x 1 x S x S, outputs `logits`
and `intensity`, dynamic batch, contract metadata inside the file."""

from __future__ import annotations

import io
import os
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch

from edgefer import __version__
from edgefer.contract import InputSpec
from edgefer.errors import UserError
from edgefer.modelinfo import ModelInfo, write_onnx_info

from .model import EmotionNet
from .recipe import load_checkpoint

OPSET = 17


def git_commit(cwd: Path | None = None) -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=cwd, capture_output=True, text=True,
                              timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def to_onnx(model: EmotionNet, spec: InputSpec) -> onnx.ModelProto:
    model = model.eval().to(memory_format=torch.contiguous_format)
    dummy = torch.zeros(2, 1, spec.size, spec.size)
    buf = io.BytesIO()
    torch.onnx.export(model, (dummy,), buf, input_names=[spec.name], output_names=["logits", "intensity"],
                      dynamic_axes={spec.name: {0: "N"}, "logits": {0: "N"}, "intensity": {0: "N"}},
                      opset_version=OPSET, do_constant_folding=True, dynamo=False)
    proto = onnx.load_from_string(buf.getvalue())
    onnx.checker.check_model(proto, full_check=True)
    return proto


def export(checkpoint: Path, out: Path, template: list[list[float]], version: str,
           validation: dict[str, Any] | None = None, training_data: str = "", extra: dict[str, Any] | None = None,
           force: bool = False) -> ModelInfo:
    """Write `out` atomically; returns the contract written into it."""
    if out.exists() and not force:
        raise UserError(f"{out}: already exists (use --force to replace it)")
    model, ck = load_checkpoint(checkpoint)
    spec = InputSpec.from_dict(ck["input_spec"])
    frac = float(ck["config"].get("realigned_frac", 0.0))
    if training_data and frac > 0:
        training_data += (f"; last stage fine-tuned with {frac:.0%} of the faces framed by the deployment"
                          " detector and aligner")
    proto = to_onnx(model, spec)
    info = ModelInfo(input=spec, template=template, version=version, precision="fp32",
                     training_data=training_data, validation=validation or {},
                     extra={"edgefer": __version__, "epochs": ck["epoch"], "config": ck["config"],
                            "commit": git_commit(Path(__file__).parent), **(extra or {})})
    write_onnx_info(proto, info)
    proto.producer_name, proto.producer_version = "edgefer", __version__
    proto.doc_string = "edgefer facial emotion model: logits (softmax) + per-emotion intensity (sigmoid)"
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_bytes(proto.SerializeToString())
    os.replace(tmp, out)
    return info


def check_parity(model: EmotionNet, onnx_path: Path, spec: InputSpec, n: int = 16) -> float:
    """Largest absolute difference between PyTorch and ONNX Runtime outputs on random input."""
    import onnxruntime as ort

    x = np.random.default_rng(0).standard_normal((n, 1, spec.size, spec.size)).astype(np.float32)
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    lo, it = sess.run(["logits", "intensity"], {spec.name: x})
    with torch.no_grad():
        tlo, tit = model.eval()(torch.from_numpy(x))
    return float(max(np.abs(lo - tlo.numpy()).max(), np.abs(it - tit.numpy()).max()))
