"""Home Assistant MQTT discovery: one device with sensors for the main face's emotion and intensities.

The sink publishes, retained, one discovery config per sensor under
`<discovery_prefix>/sensor/<node_id>/<object_id>/config`, and a small retained state document
on `<prefix>/<device_id>/state` (at most once a second, and whenever the stable emotion
changes). Removing the device is publishing an empty retained payload to each config topic.
The "main" face is the largest one in the frame.
"""

from __future__ import annotations

import json
import re
from typing import Any

from edgefer import __version__
from edgefer.contract import CLASS_NAMES
from edgefer.types import FrameResult


def node_id(device_id: str) -> str:
    """Home Assistant's node ids allow [a-zA-Z0-9_-] only."""
    return re.sub(r"[^a-zA-Z0-9_-]", "_", device_id)


def sensors() -> list[tuple[str, str, str]]:
    """(object_id, name, value_template) of every sensor."""
    out = [("emotion", "Emotion", "{{ value_json.emotion }}"), ("faces", "Faces", "{{ value_json.faces }}")]
    for name in CLASS_NAMES:
        out.append((f"intensity_{name}", f"Intensity {name}", f"{{{{ (value_json.intensity.{name} * 100) | round(1) }}}}"))
    return out


def discovery_messages(discovery_prefix: str, prefix: str, device_id: str) -> list[tuple[str, bytes]]:
    """The retained (topic, payload) pairs that announce the device and its sensors."""
    node = node_id(device_id)
    base = f"{prefix}/{device_id}"
    device = {
        "identifiers": [f"edgefer_{node}"],
        "name": f"edgefer {device_id}",
        "manufacturer": "edgefer",
        "model": "facial emotion recognition",
        "sw_version": __version__,
    }
    msgs = []
    for object_id, name, template in sensors():
        cfg: dict[str, Any] = {
            "name": name,
            "unique_id": f"edgefer_{node}_{object_id}",
            "object_id": f"edgefer_{node}_{object_id}",
            "state_topic": f"{base}/state",
            "value_template": template,
            "availability_topic": f"{base}/availability",
            "payload_available": "online",
            "payload_not_available": "offline",
            "device": device,
        }
        if object_id.startswith("intensity_"):
            cfg["unit_of_measurement"] = "%"
            cfg["state_class"] = "measurement"
        elif object_id == "faces":
            cfg["state_class"] = "measurement"
        msgs.append((f"{discovery_prefix}/sensor/{node}/{object_id}/config", json.dumps(cfg).encode()))
    return msgs


def removal_messages(discovery_prefix: str, device_id: str) -> list[tuple[str, bytes]]:
    """Empty retained payloads that remove every sensor (and so the device) from Home Assistant."""
    node = node_id(device_id)
    return [(f"{discovery_prefix}/sensor/{node}/{object_id}/config", b"") for object_id, _, _ in sensors()]


def state_payload(result: FrameResult) -> dict[str, Any]:
    """The state document for one frame: the main (largest) face's stable emotion and smoothed
    intensities; emotion `none` and zero intensities when no face is in view."""
    if not result.faces:
        return {"emotion": "none", "faces": 0, "track_id": None, "intensity": dict.fromkeys(CLASS_NAMES, 0.0)}
    main = max(result.faces, key=lambda f: float(f.face.box[2]) * float(f.face.box[3]))
    inten = main.smoothed_intensity if main.smoothed_intensity is not None else main.intensity
    return {
        "emotion": main.stable_emotion or main.emotion,
        "faces": len(result.faces),
        "track_id": main.track_id,
        "intensity": {n: round(float(v), 4) for n, v in zip(CLASS_NAMES, inten)},
    }
