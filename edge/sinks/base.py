"""The sink protocol: where per-frame results and tracker events go (MQTT, JSONL, overlay, metrics).

A sink must never block the pipeline for long: slow I/O belongs in the sink's own thread or
buffer. `publish` is called once per processed frame, `event` once per tracker event
(track started / ended, emotion changed), `status` with periodic service state.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from edgefer.types import FrameResult


@runtime_checkable
class Sink(Protocol):
    name: str

    def publish(self, result: FrameResult) -> None: ...

    def event(self, event: dict[str, Any]) -> None: ...

    def status(self, status: dict[str, Any]) -> None: ...

    def close(self) -> None: ...


class NullSink:
    """Base class with no-op methods, so a sink implements only what it needs."""

    name = "null"

    def publish(self, result: FrameResult) -> None:
        pass

    def event(self, event: dict[str, Any]) -> None:
        pass

    def status(self, status: dict[str, Any]) -> None:
        pass

    def close(self) -> None:
        pass
