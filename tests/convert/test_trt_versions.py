"""Build recipes per TensorRT version (pure functions)."""

from __future__ import annotations

import pytest

from edgefer.convert.trt_versions import build_plan, install_hint, parse_version
from edgefer.errors import UserError


def test_parse_version() -> None:
    assert parse_version("10.3.0.26") == (10, 3, 0)
    assert parse_version("8.6") == (8, 6, 0)
    with pytest.raises(ValueError):
        parse_version("ten")


@pytest.mark.parametrize("version", ["10.0.1", "10.3.0", "10.13.0.35", "11.0.0"])
@pytest.mark.parametrize("target,onnx", [("trt-fp16", "fp16"), ("trt-int8", "int8")])
def test_trt10_and_11_are_strongly_typed_without_precision_flags(version: str, target: str, onnx: str) -> None:
    plan = build_plan(version, target)
    assert plan.onnx_precision == onnx
    assert plan.network_flags == ("STRONGLY_TYPED",)
    assert plan.builder_flags == () and not plan.legacy_calibrator


def test_trt10_fp16_flag_path_on_fp32_onnx() -> None:
    plan = build_plan("10.3.0", "trt-fp16", fp16_flag=True)
    assert plan.onnx_precision == "fp32" and plan.builder_flags == ("FP16",) and plan.network_flags == ()
    with pytest.raises(UserError, match="TensorRT 11 has no FP16 builder flag"):
        build_plan("11.0.0", "trt-fp16", fp16_flag=True)
    with pytest.raises(UserError):
        build_plan("10.3.0", "trt-int8", fp16_flag=True)


def test_trt8_uses_explicit_batch_and_flags() -> None:
    fp16 = build_plan("8.6.2", "trt-fp16")
    assert fp16.network_flags == ("EXPLICIT_BATCH",) and fp16.builder_flags == ("FP16",) and fp16.onnx_precision == "fp16"
    int8 = build_plan("8.6.2", "trt-int8")
    assert int8.builder_flags == ("INT8",) and int8.onnx_precision == "int8" and not int8.legacy_calibrator


def test_legacy_calibrator_only_below_10_1_and_only_when_asked() -> None:
    plan = build_plan("10.0.1", "trt-int8", legacy_calibrator=True)
    assert plan.legacy_calibrator and plan.onnx_precision == "fp32" and "INT8" in plan.builder_flags
    assert "LEGACY" in plan.notes[0]
    assert build_plan("8.6.2", "trt-int8", legacy_calibrator=True).network_flags == ("EXPLICIT_BATCH",)
    for version in ("10.1.0", "10.3.0", "11.0.0"):
        with pytest.raises(UserError, match="only a fallback"):
            build_plan(version, "trt-int8", legacy_calibrator=True)
    with pytest.raises(UserError):
        build_plan("8.6.2", "trt-fp16", legacy_calibrator=True)


def test_refusals() -> None:
    with pytest.raises(UserError, match="too old"):
        build_plan("8.2.1", "trt-fp16")
    with pytest.raises(UserError, match="unknown TensorRT target"):
        build_plan("10.3.0", "trt-fp8")
    assert "edgefer[tensorrt]" in install_hint() and "python3-libnvinfer" in install_hint()
