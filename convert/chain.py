"""`edgefer convert` as a chain of small steps, each logging what it did.

    check request -> load source -> [calibrate + quantise -> Q/DQ check | FP16] -> write contract
      -> drift report -> [TensorRT build + sidecar] -> publish (rename) or set aside as FAILED

Every file is written under a temporary name and renamed at the end, so a failed or interrupted
conversion leaves nothing half-written. A model is either an edgefer classifier (contract in its
metadata) or a YuNet detector (recognised by its twelve outputs; no contract, own drift).
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgefer.errors import UserError

from . import drift as drift_mod
from .engine_cache import EngineKey, make_sidecar, sha256_file, sidecar_path, write_sidecar

log = logging.getLogger(__name__)

TARGETS = ("onnx-fp16", "onnx-int8", "trt-fp16", "trt-int8")
ONNX_PRECISION = {"onnx-fp16": "fp16", "onnx-int8": "int8", "trt-fp16": "fp16", "trt-int8": "int8"}


@dataclass
class Request:
    """What the user asked for (the `edgefer convert` options)."""

    model: Path
    target: str
    out: Path
    calib: Path | None = None
    eval_data: Path | None = None
    split: str | None = "PublicTest"
    max_drop: float | None = None
    method: str | None = None  # None: the INT8 scheme's own
    int8_for: str | None = None  # INT8 scheme: "cpu" or "tensorrt" (None: by target, see check_request)
    keep_float: list[str] | str = field(default_factory=list)  # node names, or "auto"
    force: bool = False
    kind: str = "auto"  # "classifier", "detector" or "auto" (by metadata / outputs)
    threads: int = 0
    workspace_mb: int = 1024
    timing_cache: Path | None = None
    trt_fp16_flag: bool = False
    legacy_calibrator: bool = False
    detector_width: int = 320
    face_detector: Path | None = None  # YuNet for --eval photo folders (classifier)


@dataclass
class Context:
    """State passed along the chain; `steps` is the log of what each step did."""

    req: Request
    model: Any = None  # source ModelProto
    info: Any = None  # ModelInfo (classifier) or None (detector)
    kind: str = ""
    onnx_tmp: Path | None = None  # converted ONNX under its temporary name
    details: dict[str, Any] = field(default_factory=dict)
    drift: dict[str, Any] | None = None
    calib_inputs: Any = None
    steps: list[dict[str, Any]] = field(default_factory=list)
    temps: list[Path] = field(default_factory=list)
    info_out: Any = None  # the converted artifact's ModelInfo (classifier)
    engine_sidecar: dict[str, Any] | None = None

    def record(self, step: str, **what: Any) -> None:
        self.steps.append({"step": step, **what})
        log.info("%s: %s", step, json.dumps(what, default=str))


def failed_name(out: Path) -> Path:
    """`model.int8.onnx` -> `model.int8.FAILED.onnx`: where an artifact that failed --max-drop goes."""
    return out.with_name(f"{out.stem}.FAILED{out.suffix}")


def temp_name(out: Path, suffix: str | None = None) -> Path:
    return out.with_name(f".{out.stem}.{os.getpid()}.tmp{suffix or out.suffix}")


# --------------------------------------------------------------------------------------------- steps


def check_request(ctx: Context) -> None:
    """Refuse what cannot work before doing any work: target, output path, TensorRT presence."""
    r = ctx.req
    if r.target not in TARGETS:
        raise UserError(f"unknown target {r.target!r} (choose from: {', '.join(TARGETS)})")
    want = (".engine", ".plan") if r.target.startswith("trt-") else (".onnx",)
    if r.out.suffix.lower() not in want:
        raise UserError(f"{r.out}: output for {r.target} must end in {' or '.join(want)}")
    if r.out.exists() and not r.force:
        raise UserError(f"{r.out}: exists; pass --force to overwrite")
    if not r.out.parent.is_dir():
        raise UserError(f"{r.out.parent}: output folder does not exist")
    if r.target.endswith("int8"):
        from .schemes import scheme

        r.int8_for = scheme(r.int8_for or ("tensorrt" if r.target.startswith("trt-") else "cpu")).name
        if r.target.startswith("trt-") and r.int8_for != "tensorrt":
            raise UserError(f"--for {r.int8_for} makes uint8 activations, which TensorRT does not take; "
                            "trt-int8 needs --for tensorrt (its default)")
    elif r.int8_for is not None:
        raise UserError(f"--for applies to INT8 targets only, not {r.target}")
    if r.target.endswith("int8") and r.calib is None and not r.legacy_calibrator:
        raise UserError(f"{r.target} needs a calibration set: --calib SET (build one with 'edgefer calibration build')")
    if r.max_drop is not None and r.eval_data is None:
        raise UserError("--max-drop needs --eval DATA to measure the drop")
    if r.keep_float == "auto" and r.eval_data is None:
        raise UserError("--keep-float auto needs --eval DATA (it keeps layers in float where drift says so)")
    if r.target.startswith("trt-"):
        from .trt_build import import_tensorrt

        import_tensorrt()
    ctx.record("check_request", target=r.target, out=str(r.out))


def load_source(ctx: Context) -> None:
    """Load the FP32 ONNX safely and decide classifier (contract) or detector (YuNet outputs)."""
    from edgefer.errors import ConfigError
    from edgefer.modelinfo import METADATA_KEY, load_onnx, read_onnx_info

    r = ctx.req
    model = load_onnx(r.model)
    outputs = {o.name for o in model.graph.output}
    has_contract = any(p.key == METADATA_KEY for p in model.metadata_props)
    from edgefer.edge.detector import YUNET_OUTPUTS

    kind = r.kind
    if kind == "auto":
        kind = "classifier" if has_contract else ("detector" if set(YUNET_OUTPUTS) <= outputs else "")
    if kind == "classifier":
        ctx.info = read_onnx_info(model, str(r.model))
        if ctx.info.precision != "fp32":
            raise UserError(f"{r.model}: already converted (precision {ctx.info.precision}); convert the FP32 model")
    elif kind == "detector":
        if not set(YUNET_OUTPUTS) <= outputs:
            raise ConfigError(f"{r.model}: not a YuNet detector (outputs {sorted(outputs)})")
    else:
        raise ConfigError(f"{r.model}: not an edgefer model (no 'edgefer' contract metadata) and not a YuNet detector")
    if isinstance(r.keep_float, list):
        names = {n.name for n in model.graph.node}
        unknown = [n for n in r.keep_float if n not in names]
        if unknown:
            raise UserError(f"--keep-float: no node named {', '.join(map(repr, unknown))} in {r.model} "
                            f"(e.g. {', '.join(sorted(names)[:3])})")
    ctx.model, ctx.kind = model, kind
    ctx.details["source_sha256"] = sha256_file(r.model)
    ctx.record("load_source", model=str(r.model), kind=kind, nodes=len(model.graph.node))


def load_calibration(ctx: Context) -> None:
    """Calibration input: a calibration set for the classifier (checked against its spec), a folder
    of photos for the detector (each image as the detector's input blob)."""
    r = ctx.req
    if ctx.kind == "classifier":
        from edgefer.calibration.dataset import load

        cset = load(r.calib)
        cset.check_for(ctx.info.input, str(r.model))
        ctx.calib_inputs = cset.inputs(ctx.info.input)
        ctx.details["calibration"] = {"set": str(r.calib), "sha256": cset.sha256, "n": len(cset),
                                      "counts": cset.manifest.get("counts")}
    else:
        ctx.calib_inputs = detector_blobs(Path(r.calib), r.detector_width)
        ctx.details["calibration"] = {"images": str(r.calib), "n": len(ctx.calib_inputs)}
    ctx.record("load_calibration", **ctx.details["calibration"])


def detector_blobs(folder: Path, width: int, limit: int = 200) -> list:
    """YuNet input blobs (1 x 3 x H x W) of up to `limit` images under `folder`, spread evenly."""
    import cv2
    import numpy as np

    from edgefer.edge.detector import input_geometry

    if not folder.is_dir():
        raise UserError(f"{folder}: detector calibration needs a folder of images")
    paths = drift_mod.iter_images(folder)
    if not paths:
        raise UserError(f"{folder}: no images to calibrate the detector with")
    paths = [paths[i] for i in np.linspace(0, len(paths) - 1, min(limit, len(paths))).astype(int)]
    blobs = []
    for p in paths:
        img = cv2.imread(str(p), cv2.IMREAD_COLOR)
        if img is None:
            continue
        _, rw, rh, pw, ph = input_geometry(img.shape[1], img.shape[0], width)
        x = np.zeros((1, 3, ph, pw), np.float32)
        x[0, :, :rh, :rw] = cv2.resize(img, (rw, rh)).transpose(2, 0, 1)
        blobs.append(x)
    return blobs


class _BlobReader:
    """CalibrationDataReader over a list of differently sized single-image blobs."""

    def __init__(self, name: str, blobs: list) -> None:
        self.name, self.blobs, self.i = name, blobs, 0

    def get_next(self):
        if self.i >= len(self.blobs):
            return None
        self.i += 1
        return {self.name: self.blobs[self.i - 1]}


def quantise(ctx: Context, keep_float: list[str]) -> None:
    """Static Q/DQ INT8 into the temporary ONNX."""
    from edgefer.calibration.reader import ArrayDataReader

    from .quantize import quantize_int8

    r = ctx.req
    name = ctx.model.graph.input[0].name
    reader = ArrayDataReader(name, ctx.calib_inputs) if ctx.kind == "classifier" else _BlobReader(name, ctx.calib_inputs)
    src = temp_name(r.out, ".src.onnx")
    ctx.temps.append(src)
    import onnx

    model = ctx.model
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    if opset < 13:  # per-channel Q/DQ (axis attribute) needs opset 13; YuNet ships with opset 11
        from onnx import version_converter

        model = version_converter.convert_version(model, 13)
        ctx.record("upgrade_opset", source=opset, to=13)
    onnx.save(model, str(src))  # the checked model, not the user's path again
    from .schemes import scheme

    sch = scheme(r.int8_for or "cpu")
    if sch.float_heads:  # the classifier's two heads; YuNet's twelve output branches (box precision)
        from edgefer.edge.detector import YUNET_OUTPUTS

        from .quantize import head_nodes

        outputs = ("logits", "intensity") if ctx.kind == "classifier" else YUNET_OUTPUTS
        keep_float = list(dict.fromkeys([*keep_float, *(n for o in outputs for n in head_nodes(model, o))]))
    t0 = time.monotonic()
    method = r.method or (sch.detector_method if ctx.kind == "detector" else sch.method)
    done = quantize_int8(src, ctx.onnx_tmp, reader, scheme=sch.name, method=method, keep_float=keep_float)
    ctx.details["conversion"] = done
    ctx.details["int8"] = sch.describe(done["calibration_method"])
    ctx.record("quantise", seconds=round(time.monotonic() - t0, 2), **done)


def check_qdq_step(ctx: Context) -> None:
    """Check the quantised graph keeps its scheme's promise (run after every INT8 quantisation):
    ``tensorrt``: what TensorRT's explicit quantisation accepts; ``cpu``: every int8 weight within
    the range that no CPU kernel can saturate."""
    import onnx

    from .qdq_check import check_qdq
    from .schemes import scheme, weight_range_problems

    model = onnx.load(str(ctx.onnx_tmp))
    sch = scheme(ctx.req.int8_for or "cpu")
    if sch.name == "tensorrt":
        rep = check_qdq(model)
        ctx.record("check_qdq", ok=rep.ok, summary=rep.summary())
        if not rep.ok:
            raise UserError(f"quantised model fails the TensorRT Q/DQ check: {rep.summary()}")
        ctx.details["qdq_check"] = rep.summary()
        return
    problems = weight_range_problems(model, sch.weight_max)
    ctx.record("check_weight_range", ok=not problems, weight_max=sch.weight_max)
    if problems:  # a bug in the quantiser or its options, not a user error
        raise RuntimeError(f"cpu scheme promises |q| <= {sch.weight_max}: {'; '.join(problems[:3])}")
    ctx.details["qdq_check"] = f"every int8 weight within |q| <= {sch.weight_max} (exact on every CPU kernel)"


def fp16(ctx: Context, keep_float: list[str]) -> None:
    import onnx

    from .fp16 import to_fp16

    model, done = to_fp16(ctx.model, keep_float)
    onnx.save(model, str(ctx.onnx_tmp))
    ctx.details["conversion"] = done
    ctx.record("fp16", **done)


def write_contract(ctx: Context) -> None:
    """Carry the contract into the converted ONNX: precision updated, conversion details in `extra`."""
    import copy

    import onnx

    from edgefer.modelinfo import write_onnx_info

    model = onnx.load(str(ctx.onnx_tmp))
    prec = ONNX_PRECISION[ctx.req.target]
    if ctx.kind == "classifier":
        info = copy.deepcopy(ctx.info)
        info.precision = prec
        info.extra = dict(info.extra)
        info.extra["conversion"] = {**ctx.details, "target": ctx.req.target, "from": Path(ctx.req.model).name,
                                    "steps": [s["step"] for s in ctx.steps]}
        write_onnx_info(model, info)
        ctx.info_out = info
    else:
        entry = model.metadata_props.add()
        entry.key, entry.value = "edgefer.conversion", json.dumps({**ctx.details, "precision": prec}, default=str)
    onnx.save(model, str(ctx.onnx_tmp))
    ctx.record("write_contract", precision=prec)


def measure_drift(ctx: Context, artifact: Path) -> None:
    """Drift of `artifact` (converted ONNX or engine, under its temporary name) against the source."""
    r = ctx.req
    if ctx.kind == "classifier":
        from edgefer.data import load_faces

        faces = load_faces(r.eval_data).split(r.split) if not Path(r.eval_data).is_dir() else _photo_faces(ctx)
        if len(faces) == 0:
            raise UserError(f"{r.eval_data}: no faces to evaluate")
        d = drift_mod.classifier_drift(r.model, artifact, faces, threads=r.threads)
        d["data"] = str(r.eval_data) + (f" [{r.split}]" if r.split and not Path(r.eval_data).is_dir() else "")
    else:
        d = drift_mod.detector_drift(r.model, artifact, Path(r.eval_data), input_width=r.detector_width)
    d["converted"] = str(r.out)
    ctx.drift = d
    ctx.record("drift", **{k: v for k, v in d.items() if not isinstance(v, dict)})


def _photo_faces(ctx: Context):
    from edgefer.edge.photos import load_photo_folder
    from edgefer.edge.pipeline import build_pipeline

    pipe = build_pipeline(model=ctx.req.model, detector=ctx.req.face_detector)
    try:
        return load_photo_folder(ctx.req.eval_data, pipe)
    finally:
        pipe.close()


def needs_float_head(d: dict[str, Any]) -> bool:
    """`--keep-float auto`: the intensity head goes back to float when the drift passes a threshold."""
    th = drift_mod.THRESHOLDS
    return (d.get("intensity_rmse_increase", 0.0) > th["intensity_rmse_increase"]
            or d["top1_agreement"] < th["top1_agreement"] or d["accuracy_drop_points"] > th["accuracy_drop_points"])


def build_trt(ctx: Context) -> Path:
    """Compile the converted ONNX into an engine (temporary name) and write its sidecar."""
    from .trt_build import build_engine, runtime_identity
    from .trt_versions import build_plan

    r = ctx.req
    version, cc = runtime_identity()
    plan = build_plan(version, r.target, fp16_flag=r.trt_fp16_flag, legacy_calibrator=r.legacy_calibrator)
    onnx_for_trt = r.model if plan.onnx_precision == "fp32" else ctx.onnx_tmp
    engine_tmp = temp_name(r.out)
    ctx.temps.append(engine_tmp)
    shapes = None
    if ctx.kind == "detector":
        from edgefer.edge.detector import round_up

        w = r.detector_width  # blobs are w wide and aspect-dependent high (padded to 32)
        shapes = {ctx.model.graph.input[0].name: ((1, 3, 32, w), (1, 3, round_up(w * 3 // 4), w), (1, 3, 2 * w, w))}
    build = build_engine(Path(onnx_for_trt), engine_tmp, plan, r.workspace_mb, r.timing_cache, shapes,
                         calibration=ctx.calib_inputs if plan.legacy_calibrator else None,
                         calibration_cache=r.out.with_suffix(".calib.cache") if plan.legacy_calibrator else None)
    key = EngineKey(sha256_file(onnx_for_trt), version, cc, ONNX_PRECISION[r.target])
    info = ctx.info_out
    if info is not None:
        import copy

        info = copy.deepcopy(info)
        info.extra["conversion"]["engine"] = build
    ctx.engine_sidecar = make_sidecar(info, key, sha256_file(engine_tmp), build)
    ctx.record("build_trt", trt=version, compute_capability=cc, **build)
    return engine_tmp


# --------------------------------------------------------------------------------------------- chain


def convert(req: Request) -> dict[str, Any]:
    """Run the chain; returns a summary (output path, steps, drift). Raises UserError on failure,
    including a failed `--max-drop` (after setting the artifact aside as `*.FAILED.*`)."""
    for name in ("model", "out", "calib", "eval_data", "timing_cache", "face_detector"):
        value = getattr(req, name)
        if value is not None:
            setattr(req, name, Path(value).absolute())
    ctx = Context(req)
    t0 = time.monotonic()
    check_request(ctx)
    ctx.onnx_tmp = temp_name(req.out if req.out.suffix == ".onnx" else req.out.with_suffix(".onnx"))
    ctx.temps.append(ctx.onnx_tmp)
    try:
        load_source(ctx)
        keep = [] if req.keep_float == "auto" else list(req.keep_float)
        if ONNX_PRECISION[req.target] == "int8":
            load_calibration(ctx)
            quantise(ctx, keep)
            check_qdq_step(ctx)
        else:
            fp16(ctx, keep)
        write_contract(ctx)
        final_tmp = ctx.onnx_tmp
        if req.eval_data is not None:
            measure_drift(ctx, ctx.onnx_tmp)
            heads_float = ONNX_PRECISION[req.target] == "int8" and ctx.details.get("int8", {}).get("float_heads")
            if req.keep_float == "auto" and ctx.kind == "classifier" and heads_float:
                ctx.record("keep_float_auto", reason="the INT8 scheme keeps both heads in float already")
            elif req.keep_float == "auto" and ctx.kind == "classifier" and needs_float_head(ctx.drift):
                from .quantize import head_nodes

                keep = head_nodes(ctx.model, "intensity")
                ctx.record("keep_float_auto", reason="drift over threshold", nodes=keep)
                if ONNX_PRECISION[req.target] == "int8":
                    quantise(ctx, keep)
                    check_qdq_step(ctx)
                else:
                    fp16(ctx, keep)
                write_contract(ctx)
                measure_drift(ctx, ctx.onnx_tmp)
        if req.target.startswith("trt-"):
            final_tmp = build_trt(ctx)
            write_sidecar(final_tmp, ctx.engine_sidecar)
            ctx.temps.append(sidecar_path(final_tmp))
            if req.eval_data is not None:
                measure_drift(ctx, final_tmp)  # the engine itself, not only the ONNX it came from
        passed, reasons = (True, [])
        if ctx.drift is not None:
            passed, reasons = drift_mod.verdict(ctx.drift, req.max_drop)
            ctx.drift["verdict"] = "pass" if passed else "FAILED"
            ctx.drift["reasons"] = reasons
            ctx.drift["max_drop"] = req.max_drop
        target = req.out if passed else failed_name(req.out)
        os.replace(final_tmp, target)
        if req.target.startswith("trt-"):
            write_sidecar(target, ctx.engine_sidecar)
        reports = drift_mod.write_reports(ctx.drift, target) if ctx.drift is not None else []
        ctx.record("publish", out=str(target), passed=passed, reports=[str(p) for p in reports])
    finally:
        for p in ctx.temps:
            p.unlink(missing_ok=True)
    summary = {"out": str(target), "target": req.target, "kind": ctx.kind, "passed": passed,
               "int8": ctx.details.get("int8"),
               "seconds": round(time.monotonic() - t0, 1), "steps": ctx.steps, "drift": ctx.drift}
    if not passed:
        raise DriftFailed(f"drift over threshold ({'; '.join(reasons)}); artifact kept aside as {target}", summary)
    return summary


class DriftFailed(UserError):
    """`--max-drop` exceeded: the artifact was written as `*.FAILED.*`; exit status 3."""

    exit_code = 3

    def __init__(self, message: str, summary: dict[str, Any]) -> None:
        super().__init__(message)
        self.summary = summary
