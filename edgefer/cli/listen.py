"""`edgefer listen`: subscribe to an edgefer broker and pretty-print what the devices publish."""

from __future__ import annotations

import json
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import click

from edgefer.errors import UserError


def format_message(topic: str, payload: bytes) -> str:
    """One human line for one message (falls back to the raw payload for foreign topics)."""
    leaf = topic.rsplit("/", 1)[-1]
    try:
        doc: Any = json.loads(payload) if payload else None
    except (ValueError, UnicodeDecodeError):
        doc = None
    if not isinstance(doc, dict):
        text = payload.decode("utf-8", "replace") if payload else "(empty)"
        return f"{topic}: {text[:200]}"
    dev = doc.get("device_id", topic.split("/")[-2] if topic.count("/") >= 2 else "?")
    ts = doc.get("timestamp")
    when = time.strftime("%H:%M:%S", time.localtime(ts)) + f".{int((ts % 1) * 1000):03d}" if isinstance(ts, (int, float)) else "--:--:--"
    if leaf == "faces" and "faces" in doc:
        parts = []
        for f in doc["faces"]:
            probs = f.get("smoothed_probabilities") or f.get("probabilities") or {}
            inten = f.get("smoothed_intensity") or f.get("intensity") or {}
            emo = f.get("stable_emotion") or f.get("emotion", "?")
            tid = f.get("track_id")
            top = sorted(inten.items(), key=lambda kv: -kv[1])[:2]
            parts.append(
                f"#{tid if tid is not None else '-'} {emo} {probs.get(emo, 0):.2f}"
                + (f" (raw {f['emotion']})" if f.get("emotion") and f.get("emotion") != emo else "")
                + " | " + " ".join(f"{k} {v:.2f}" for k, v in top)
            )
        return f"{when} {dev} frame {doc.get('frame')}: " + ("; ".join(parts) if parts else "no faces")
    if leaf == "events" and "type" in doc:
        t = doc["type"]
        if t == "emotion_changed":
            what = f"{doc.get('from')} -> {doc.get('to')}"
        else:
            what = doc.get("emotion", "")
        return f"{when} {dev} EVENT track {doc.get('track_id')} {t} {what}".rstrip()
    rest = {k: v for k, v in doc.items() if k not in ("version", "device_id", "timestamp")}
    return f"{when} {dev} {leaf.upper()} " + json.dumps(rest, separators=(",", ":"))


@click.command("listen")
@click.option("--mqtt", "url", required=True, metavar="URL", help="Broker: mqtt://host[:port] or mqtts://host[:port].")
@click.option("--topic", "topics", multiple=True, metavar="TOPIC", help="Topic filter(s); default <prefix>/#.")
@click.option("--username", default=None, help="Login user name.")
@click.option("--password-file", type=click.Path(path_type=Path), default=None,
              help="File with the password (else $EDGEFER_MQTT_PASSWORD).")
@click.option("--ca-file", type=click.Path(path_type=Path), default=None, help="CA certificate for mqtts://.")
@click.option("--cert-file", type=click.Path(path_type=Path), default=None, help="Client certificate for mqtts://.")
@click.option("--key-file", type=click.Path(path_type=Path), default=None, help="Client key for mqtts://.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object per message instead of a summary.")
@click.option("--count", type=int, default=0, help="Exit after this many messages (0 = run until Ctrl-C).")
@click.option("--timeout", type=float, default=0.0, help="Exit after this many seconds (0 = no limit).")
@click.option("--connect-timeout", type=float, default=10.0, show_default=True, help="Give up connecting after this long.")
def listen(url, topics, username, password_file, ca_file, cert_file, key_file, as_json, count, timeout, connect_timeout):
    """Print what edgefer devices publish: faces, events, status, stats, availability.

    \b
    Example:
      edgefer listen --mqtt mqtt://127.0.0.1:1883
      edgefer listen --mqtt mqtts://broker.lan:8883 --ca-file ca.pem --username me --password-file pw --json
    """
    from edgefer.edge.sinks.mqtt_config import load_config
    from edgefer.edge.sinks.mqtt_connect import describe_connect_error, make_client

    cfg = load_config(
        url, username=username, password_file=password_file, ca_file=ca_file, cert_file=cert_file, key_file=key_file,
        connect_timeout_s=min(connect_timeout, 30.0) if connect_timeout > 0 else None,
    )
    filters = list(topics) or [f"{cfg.prefix}/#"]
    client = make_client(cfg, f"edgefer-listen-{uuid.uuid4().hex[:8]}", clean_session=True)
    connected, done = threading.Event(), threading.Event()
    state: dict[str, Any] = {"n": 0, "error": None}

    def on_connect(c, userdata, flags, reason, properties):
        if reason.is_failure:
            state["error"] = f"broker {cfg.url} refused the login: {reason}"
            done.set()
            return
        for f in filters:
            c.subscribe(f, qos=1)
        connected.set()

    def on_connect_fail(c, userdata):
        state["error"] = describe_connect_error(sys.exc_info()[1], cfg)

    def on_message(c, userdata, msg):
        if done.is_set():
            return
        if as_json:
            try:
                payload: Any = json.loads(msg.payload) if msg.payload else None
            except (ValueError, UnicodeDecodeError):
                payload = msg.payload.decode("utf-8", "replace")
            line = json.dumps({"topic": msg.topic, "retain": bool(msg.retain), "payload": payload})
        else:
            line = format_message(msg.topic, msg.payload)
        click.echo(line)
        sys.stdout.flush()
        state["n"] += 1
        if count and state["n"] >= count:
            done.set()

    client.on_connect, client.on_connect_fail, client.on_message = on_connect, on_connect_fail, on_message
    client.on_disconnect = lambda c, u, f, reason, p: connected.clear()
    client.reconnect_delay_set(0.5, 5)
    client.connect_async(cfg.host, cfg.effective_port, keepalive=30)
    client.loop_start()
    try:
        t0 = time.monotonic()
        while not connected.is_set() and not done.is_set():
            if time.monotonic() - t0 > connect_timeout:
                raise UserError(state["error"] or f"could not connect to {cfg.url} within {connect_timeout:g} s")
            time.sleep(0.05)
        if state["error"] and not connected.is_set():
            raise UserError(state["error"])
        done.wait(timeout if timeout > 0 else None)
    except KeyboardInterrupt:
        pass
    finally:
        client.disconnect()
        client.loop_stop()
