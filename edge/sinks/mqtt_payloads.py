"""What goes on the wire: the payload version and compact JSON of numpy-bearing documents.

Payloads hold boxes, landmarks and numbers only, never image data.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

PAYLOAD_VERSION = 1


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def dumps(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, separators=(",", ":"), default=_json_default).encode()
