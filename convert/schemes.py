"""INT8 schemes: how a model is quantised for the runtime that will execute it.

Two artifacts, because no one Q/DQ graph is both exact on every CPU and compilable by TensorRT
(measured; docs/int8.md has the figures and the rule they were chosen by):

- ``cpu`` (the default of ``--to onnx-int8``): uint8 activations (asymmetric, as ONNX Runtime's x86
  kernels take them natively), int8 symmetric per-channel weights held to the 7-bit range
  [-64, 64], percentile calibration, both heads in float. Exact on every CPU ONNX Runtime runs it
  on: x86-64 without VNNI multiplies u8 x s8 pairs into saturating 16-bit sums (``vpmaddubsw``),
  and 255 * 64 * 2 = 32,640 stays below 32,767; VNNI and Arm (with or without the dot-product
  extension) accumulate in 32 bits anyway. TensorRT does not take uint8 activations.
- ``tensorrt`` (the default of ``--to trt-int8``): int8 symmetric activations and full-range int8
  weights, zero points 0, the Q/DQ form TensorRT compiles. Exact in TensorRT, on x86 VNNI and on
  Arm; **not** on x86-64 without VNNI, where 16-bit pair sums saturate (measured: 77% top-1
  agreement with FP32). The runtime refuses to run it there on ONNX Runtime (`runtime_problem`).

"Exact" means the integer sums are: no kernel saturates. The classifier's cpu artifact is then
bit-identical on every CPU measured (x86 VNNI, x86 AVX2, Cortex-A72, Cortex-A76; largest difference
1e-7). YuNet's graph also has quantised Add/Concat/Resize, which x86 and Arm round differently by one
step now and then: its boxes differ by a few pixels between the two, its faces found do not.

The scheme travels in the artifact's metadata (``extra.conversion.int8``), so a device can tell
what it was given; `edgefer doctor` and the shadow check measure what this CPU actually computes.
"""

from __future__ import annotations

import platform
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

#: CPU kinds, as `cpu_kind()` names them and `exact_on` lists them.
X86_AVX2, X86_VNNI, ARM64, ARM64_DOT, TENSORRT = "x86-avx2", "x86-vnni", "arm64", "arm64-dotprod", "tensorrt"
CPU_KINDS = (X86_AVX2, X86_VNNI, ARM64, ARM64_DOT)


@dataclass(frozen=True)
class Int8Scheme:
    """One way to quantise. `weight_max` bounds |q| of every int8 weight (64: the 7-bit range)."""

    name: str
    activations: str  # "uint8" (asymmetric) or "int8" (symmetric, zero point 0)
    weight_max: int
    method: str  # default calibration method (classifier)
    percentile: float
    detector_method: str  # default for YuNet: its calibration images differ in shape, which percentile cannot stack
    float_heads: bool  # the nodes computing only the outputs stay float (classifier: both heads; YuNet: 12 branches)
    exact_on: tuple[str, ...]
    inexact_on: tuple[str, ...]
    why: str

    @property
    def reduce_range(self) -> bool:
        return self.weight_max < 127

    def describe(self, method: str | None = None) -> dict[str, Any]:
        """What goes into the artifact's metadata."""
        d = asdict(self)
        d["method"] = method or self.method
        d["activations"] = ("uint8 asymmetric" if self.activations == "uint8" else "int8 symmetric (zero point 0)")
        d["weights"] = f"int8 symmetric, |q| <= {self.weight_max}"
        d["exact_on"], d["inexact_on"] = list(self.exact_on), list(self.inexact_on)
        return d


SCHEMES: dict[str, Int8Scheme] = {
    "cpu": Int8Scheme(
        name="cpu", activations="uint8", weight_max=64, method="percentile", percentile=99.999, detector_method="minmax",
        float_heads=True, exact_on=CPU_KINDS, inexact_on=(),
        why="exact on x86 with and without VNNI and on Arm with and without dot product; not for TensorRT"),
    "tensorrt": Int8Scheme(
        name="tensorrt", activations="int8", weight_max=127, method="percentile", percentile=99.999, detector_method="minmax",
        float_heads=True, exact_on=(TENSORRT, X86_VNNI, ARM64, ARM64_DOT), inexact_on=(X86_AVX2,),
        why="the symmetric Q/DQ TensorRT compiles; its 16-bit pair sums saturate on x86 without VNNI"),
}


def scheme(name: str) -> Int8Scheme:
    from edgefer.errors import UserError

    if name not in SCHEMES:
        raise UserError(f"unknown INT8 target {name!r} (choose from: {', '.join(SCHEMES)})")
    return SCHEMES[name]


def weight_range_problems(model: Any, weight_max: int) -> list[str]:
    """Int8 weight initialisers (inputs of DequantizeLinear that feed a Conv/Gemm/MatMul weight)
    whose largest |q| exceeds `weight_max`: the claim of the `cpu` scheme, checked on the file."""
    from onnx import numpy_helper

    inits = {i.name: i for i in model.graph.initializer}
    producers = {o: n for n in model.graph.node for o in n.output}
    problems = []
    for node in model.graph.node:
        if node.op_type not in ("Conv", "Gemm", "MatMul", "ConvTranspose") or len(node.input) < 2:
            continue
        dq = producers.get(node.input[1])
        if dq is None or dq.op_type != "DequantizeLinear" or dq.input[0] not in inits:
            continue
        q = numpy_helper.to_array(inits[dq.input[0]])
        if q.dtype == np.int8 and int(np.abs(q.astype(np.int16)).max()) > weight_max:
            problems.append(f"{node.name}: weights reach |q| = {int(np.abs(q.astype(np.int16)).max())} > {weight_max}")
    return problems


def cpu_kind(flags: str | None = None, machine: str | None = None) -> str:
    """This CPU as one of `CPU_KINDS`, or the architecture's name when it is neither x86-64 nor Arm64.

    Given `flags` (/proc/cpuinfo's `flags` / `Features` words) it decides from them alone. Else it
    asks numpy's runtime dispatch (CPUID on x86, HWCAP on Arm: what this process really runs on,
    also under an emulator, whose /proc/cpuinfo is the host's), and /proc/cpuinfo only for AVX-VNNI
    (which numpy does not list) when that file agrees with CPUID about AVX-512."""
    machine = machine or platform.machine()
    if flags is None:
        flags = _cpuinfo_flags()
        features = _numpy_features()
        if features:
            words = set(flags.split())
            agrees = bool(features.get("AVX512F")) == ("avx512f" in words)
            flags = " ".join(
                [w for w, key in (("avx512_vnni", "AVX512VNNI"), ("asimddp", "ASIMDDP")) if features.get(key)]
                + (["avx_vnni"] if agrees and "avx_vnni" in words else []))
    words = set(flags.split())
    if machine in ("x86_64", "AMD64"):
        return X86_VNNI if words & {"avx512_vnni", "avx512vnni", "avx_vnni"} else X86_AVX2
    if machine in ("aarch64", "arm64"):
        return ARM64_DOT if "asimddp" in words else ARM64
    return machine


def _numpy_features() -> dict[str, bool]:
    try:
        from numpy._core._multiarray_umath import __cpu_features__  # numpy >= 2
    except ImportError:
        try:
            from numpy.core._multiarray_umath import __cpu_features__  # numpy 1.x
        except ImportError:
            return {}
    return dict(__cpu_features__)


def _cpuinfo_flags() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.lower().startswith(("flags", "features")):
                    return line.split(":", 1)[1]
    except OSError:
        pass
    return ""


def scheme_of(info_extra: dict[str, Any] | None) -> dict[str, Any] | None:
    """The INT8 scheme recorded in a converted model's contract `extra` (None: none recorded)."""
    conv = (info_extra or {}).get("conversion") or {}
    return conv.get("int8")


def runtime_problem(int8: dict[str, Any] | None, kind: str, full_range_exact: bool | None = None) -> str | None:
    """Why an INT8 artifact with this recorded scheme must not run on ONNX Runtime here, or None.

    Weights within the 7-bit range are exact on every CPU kernel. Full-range weights are exact
    only where `full_range_exact` (the probe's measurement, `edgefer.convert.probe`) says so; when
    it was not measured, the scheme's own `inexact_on` list decides."""
    if not int8 or int(int8.get("weight_max", 127)) <= 64:
        return None
    if full_range_exact is None:
        full_range_exact = kind not in int8.get("inexact_on", ())
    if full_range_exact:
        return None
    return (f"this INT8 model ({int8.get('name', '?')} scheme, full-range weights) is not computed exactly by "
            f"ONNX Runtime on this CPU ({kind}: 16-bit sums saturate); use the cpu artifact "
            f"(edgefer convert --to onnx-int8) or the FP32 model")
