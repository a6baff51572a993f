"""Export a training checkpoint to the contract ONNX: input `input` N x 1 x S x S, outputs `logits`
and `intensity`, dynamic batch, contract metadata inside the file."""

from __future__ import annotations

import io
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from torch import nn

from edgefer import __version__
from edgefer.contract import InputSpec
from edgefer.errors import UserError
from edgefer.modelinfo import ModelInfo, write_onnx_info

from .checkpoint import load_checkpoint
from .model import EmotionNet

OPSET = 17


def git_commit(cwd: Path | None = None) -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=cwd, capture_output=True, text=True,
                              timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


class FlipAveraged(nn.Module):
    """Test-time flip inside the graph: the network runs on each face and its mirror image in one batch
    of 2N, and the two class distributions and intensities are averaged. Twice the cost of one pass;
    `logits` out are the log of the averaged probabilities, so a softmax of them gives that average."""

    def __init__(self, net: EmotionNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits, inten = self.net(torch.cat([x, x.flip(3)]))
        k = logits.shape[1]
        p = torch.softmax(logits, 1).reshape(2, -1, k).mean(0)
        return torch.log(p.clamp_min(1e-12)), inten.reshape(2, -1, k).mean(0)


def onnx_macs_per_face(proto: onnx.ModelProto) -> int:
    """Multiply-accumulates of the Conv and Gemm/MatMul nodes for one input face, from the graph's
    shapes inferred at batch 1 (a flip-averaged model runs its convolutions on two images per face)."""
    from onnx import shape_inference

    m = onnx.ModelProto()
    m.CopyFrom(proto)
    dim = m.graph.input[0].type.tensor_type.shape.dim[0]
    dim.Clear()
    dim.dim_value = 1
    m = shape_inference.infer_shapes(m, strict_mode=True)
    shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
              for v in list(m.graph.value_info) + list(m.graph.output) + list(m.graph.input)}
    inits = {t.name: list(t.dims) for t in m.graph.initializer}
    macs = 0
    for n in m.graph.node:
        if n.op_type == "Conv":
            w = inits[n.input[1]]  # cout, cin/groups, kh, kw
            macs += int(np.prod(shapes[n.output[0]])) * int(np.prod(w[1:]))
        elif n.op_type in ("Gemm", "MatMul"):
            out = shapes[n.output[0]]
            macs += int(np.prod(out)) * (int(np.prod(inits[n.input[1]])) // out[-1])
    return macs


def to_onnx(model: nn.Module, spec: InputSpec) -> onnx.ModelProto:
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
           force: bool = False, flip: bool = False) -> ModelInfo:
    """Write `out` atomically; returns the contract written into it. `flip`: average each face with
    its mirror image inside the graph (`FlipAveraged`)."""
    if out.exists() and not force:
        raise UserError(f"{out}: already exists (use --force to replace it)")
    model, ck = load_checkpoint(checkpoint)
    spec = InputSpec.from_dict(ck["input_spec"])
    frac = float(ck["config"].get("realigned_frac", 0.0))
    if training_data and frac > 0:
        training_data += (f"; last stage fine-tuned with {frac:.0%} of the faces framed by the deployment"
                          " detector and aligner")
    proto = to_onnx(FlipAveraged(model) if flip else model, spec)
    info = ModelInfo(input=spec, template=template, version=version, precision="fp32",
                     training_data=training_data, validation=validation or {},
                     extra={"edgefer": __version__, "epochs": ck["epoch"], "config": ck["config"],
                            "commit": git_commit(Path(__file__).parent), "test_time_flip": flip,
                            "macs_per_face": onnx_macs_per_face(proto), **(extra or {})})
    write_onnx_info(proto, info)
    proto.producer_name, proto.producer_version = "edgefer", __version__
    proto.doc_string = "edgefer facial emotion model: logits (softmax) + per-emotion intensity (sigmoid)"
    from edgefer.paths import write_bytes_atomic

    write_bytes_atomic(out, proto.SerializeToString())
    return info


def check_parity(model: nn.Module, onnx_path: Path, spec: InputSpec, n: int = 16) -> float:
    """Largest absolute difference between PyTorch and ONNX Runtime outputs on random input."""
    import onnxruntime as ort

    x = np.random.default_rng(0).standard_normal((n, 1, spec.size, spec.size)).astype(np.float32)
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    lo, it = sess.run(["logits", "intensity"], {spec.name: x})
    with torch.no_grad():
        tlo, tit = model.eval()(torch.from_numpy(x))
    return float(max(np.abs(lo - tlo.numpy()).max(), np.abs(it - tit.numpy()).max()))


def fold_heads(src: Path, out: Path, alpha: float, version: str, force: bool = False) -> ModelInfo:
    """Issue 24, round 9: a copy of the edgefer ONNX model `src` whose classification head is
    `W_cls + alpha * W_int`, `b_cls + alpha * b_int`: the class logits plus `alpha` times the intensity
    head's logits (the log-odds of each emotion's FER+ vote share). Nothing else changes, so the
    intensities are bit-identical. The source's validation figures no longer hold and are dropped."""
    from onnx import numpy_helper

    from edgefer.modelinfo import load_onnx, read_onnx_info
    from edgefer.paths import write_bytes_atomic

    if out.exists() and not force:
        raise UserError(f"{out}: already exists (use --force to replace it)")
    proto = load_onnx(src)
    info = read_onnx_info(proto, str(src))
    inits = {t.name: t for t in proto.graph.initializer}
    try:
        for part in ("weight", "bias"):
            cls, it = inits[f"cls_head.{part}"], inits[f"int_head.{part}"]
            folded = numpy_helper.to_array(cls) + np.float32(alpha) * numpy_helper.to_array(it)
            cls.CopyFrom(numpy_helper.from_array(folded.astype(np.float32), cls.name))
    except KeyError:
        raise UserError(f"{src}: no cls_head / int_head initialisers (not an exported edgefer network)") from None
    from edgefer.convert.engine_cache import sha256_file

    info.extra = {**info.extra, "fold_heads": {"alpha": alpha, "source_sha256": sha256_file(src),
                                               "source_version": info.version}}
    info.version, info.validation = version, {}
    write_onnx_info(proto, info)
    onnx.checker.check_model(proto, full_check=True)
    write_bytes_atomic(out, proto.SerializeToString())
    return info
