"""edgefer: facial emotion recognition with per-emotion intensity, for edge devices."""

import os

__version__ = "0.1.0"

# ONNX Runtime's official wheels (1.29 and later) collect usage telemetry on Linux too: a persistent
# device id and queued events under ~/.cache/Microsoft, uploaded to Microsoft. Nothing leaves the
# device unless its user asks, so edgefer turns that off before any session is made; a user who
# wants it sets ORT_DISABLE_TELEMETRY=0 (a value they set is left alone).
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
