"""TensorRT backend: a serialised engine with its JSON sidecar, pycuda buffers, one CUDA stream.

An engine is native code: before it is deserialised, its sidecar must exist, its sha256 must
match the sidecar, it must sit inside the configured model directory, and it must have been built
by this TensorRT version for this GPU's compute capability (`edgefer.convert.engine_cache`).
Otherwise it is refused with one line saying what to rebuild. TensorRT and pycuda are imported
only when an engine is opened. Uses the TensorRT >= 8.5 tensor API (`set_input_shape`,
`set_tensor_address`, `execute_async_v3`).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from edgefer.errors import ConfigError

from .base import TensorSpec

log = logging.getLogger(__name__)


def spec_shape(dims: Any) -> tuple[int | None, ...]:
    """TensorRT dims (with -1 for dynamic) -> TensorSpec shape (None for dynamic)."""
    return tuple(None if int(d) < 0 else int(d) for d in dims)


def check_feed(specs: list[TensorSpec], feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Contiguous arrays of the engine's dtypes, in input order; ConfigError on a missing input or
    a shape that contradicts a static dimension."""
    out = {}
    for spec in specs:
        if spec.name not in feed:
            raise ConfigError(f"engine input {spec.name!r} missing from feed (got {sorted(feed)})")
        arr = np.ascontiguousarray(feed[spec.name], dtype=spec.dtype)
        if arr.ndim != len(spec.shape) or any(s is not None and s != a for s, a in zip(spec.shape, arr.shape)):
            raise ConfigError(f"engine input {spec.name!r} expects shape {spec.shape}, got {arr.shape}")
        out[spec.name] = arr
    return out


class TrtBackend:
    """Runs one TensorRT engine. `.info` is the model contract from the sidecar (None for the
    detector). `model_dir` is the configured model folder (default: the engine's own folder)."""

    name = "tensorrt"

    def __init__(self, path: str | Path, model_dir: str | Path | None = None, device: int = 0, **_ignored: Any) -> None:
        from edgefer.convert.engine_cache import check_engine, compare_runtime, contract_of
        from edgefer.convert.trt_build import import_tensorrt, runtime_identity

        self.path = Path(path).expanduser().resolve()
        import_tensorrt()  # one-line install hint when missing
        import tensorrt as trt
        version, cc = runtime_identity()
        check = check_engine(self.path, None, Path(model_dir).resolve() if model_dir else self.path.parent)
        if check.status != "ok" or check.sidecar is None:
            raise ConfigError("; ".join(check.reasons) or f"{self.path}: engine refused")
        diffs = compare_runtime(check.sidecar, version, cc)
        if diffs:
            raise ConfigError(f"{self.path}: engine built for another setup ({'; '.join(diffs)}); rebuild it here "
                              "with 'edgefer convert --to trt-...'")
        self.sidecar = check.sidecar
        self.info = contract_of(check.sidecar, str(self.path))

        import pycuda.driver as cuda

        self._cuda = cuda
        self._ctx = cuda.Device(device).make_context()  # pushed around every call: any thread may infer
        try:
            self._logger = trt.Logger(trt.Logger.WARNING)
            self._runtime = trt.Runtime(self._logger)
            self.engine = self._runtime.deserialize_cuda_engine(self.path.read_bytes())
            if self.engine is None:
                raise ConfigError(f"{self.path}: TensorRT could not deserialise this engine")
            self.context = self.engine.create_execution_context()
            self.stream = cuda.Stream()
            self.inputs: list[TensorSpec] = []
            self.outputs: list[TensorSpec] = []
            for i in range(self.engine.num_io_tensors):
                name = self.engine.get_tensor_name(i)
                dims = self.engine.get_tensor_shape(name)
                spec = TensorSpec(name, spec_shape([dims[k] for k in range(len(dims))]),
                                  np.dtype(trt.nptype(self.engine.get_tensor_dtype(name))))
                (self.inputs if self.engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT else self.outputs).append(spec)
            self._device: dict[str, Any] = {}  # name -> (DeviceAllocation, nbytes)
            self._host: dict[str, np.ndarray] = {}  # name -> page-locked host array
        finally:
            self._ctx.pop()
        log.info("opened engine %s (TensorRT %s, sm %s, %s)", self.path.name, version, cc,
                 self.sidecar["key"]["precision"])

    def _buffer(self, name: str, shape: tuple[int, ...], dtype: np.dtype) -> tuple[Any, np.ndarray]:
        """Device and page-locked host buffers for `name`, grown when a larger batch arrives."""
        nbytes = int(np.prod(shape)) * dtype.itemsize
        dev = self._device.get(name)
        if dev is None or dev[1] < nbytes:
            if dev is not None:
                dev[0].free()
            self._device[name] = (self._cuda.mem_alloc(max(nbytes, 1)), nbytes)
        host = self._host.get(name)
        if host is None or host.shape != tuple(shape):
            host = self._cuda.pagelocked_empty(shape, dtype)
            self._host[name] = host
        return self._device[name][0], host

    def infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        arrays = check_feed(self.inputs, feed)
        cuda = self._cuda
        self._ctx.push()
        try:
            for spec in self.inputs:
                arr = arrays[spec.name]
                self.context.set_input_shape(spec.name, arr.shape)
                dev, host = self._buffer(spec.name, arr.shape, spec.dtype)
                np.copyto(host, arr)
                cuda.memcpy_htod_async(dev, host, self.stream)
                self.context.set_tensor_address(spec.name, int(dev))
            outs = {}
            for spec in self.outputs:
                dims = self.context.get_tensor_shape(spec.name)
                shape = tuple(int(dims[k]) for k in range(len(dims)))
                dev, host = self._buffer(spec.name, shape, spec.dtype)
                self.context.set_tensor_address(spec.name, int(dev))
                outs[spec.name] = (dev, host)
            if not self.context.execute_async_v3(self.stream.handle):
                raise RuntimeError(f"{self.path}: TensorRT execution failed")
            for dev, host in outs.values():
                cuda.memcpy_dtoh_async(host, dev, self.stream)
            self.stream.synchronize()
            return {name: host.astype(np.float32, copy=True) for name, (_, host) in outs.items()}
        finally:
            self._ctx.pop()

    def close(self) -> None:
        if getattr(self, "_ctx", None) is None:
            return
        self._ctx.push()
        try:
            for dev, _ in self._device.values():
                dev.free()
            self._device.clear()
            self._host.clear()
            del self.context, self.engine
        finally:
            self._ctx.pop()
            self._ctx.detach()
            self._ctx = None
