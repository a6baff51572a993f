"""MQTT sink: results, events, status and stats to a broker, losing nothing while it is away.

Topics, under `<prefix>/<device_id>/`:
- `availability`: retained `online` after each connect; `offline` as the last will (the broker
  sends it when the daemon dies or the link times out) and published explicitly on `close()`.
- `faces`: one JSON document per processed frame (`FrameResult.to_dict()`: the face schema of
  `edgefer predict` with `track_id` and the smoothed values) plus `version`, `device_id`, `queued_at`.
- `events`: tracker events (track started / ended, emotion changed), plus `version`, `device_id`.
- `status` (retained, on change) and `stats` (every `stats_interval_s`): service state and counters.
- `state` (retained, only with Home Assistant discovery): the main face, for HA's sensors.

Delivery: `faces` and `events` go through our own bounded buffer (`buffer.py`; in memory, or on
disk under `state_dir`). A sender thread hands at most `max_inflight` messages at a time to paho
(QoS 1, persistent session: `clean_session=False` with a stable client id), and a message leaves
the buffer only when paho reports its PUBACK. paho keeps in-flight messages across reconnects
and resends them, so a broker restart loses nothing (a message the broker got but whose PUBACK was
lost is sent twice: at least once). When the buffer is full the oldest pending message is dropped
and counted. `availability`, `status` and `stats` are latest-value topics, sent only while
connected and never buffered.

No image data is ever published: payloads hold boxes, landmarks and numbers only.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import re
import socket
import sqlite3
import ssl
import stat
import sys
import threading
import time
import urllib.parse
from pathlib import Path
from typing import Any

import numpy as np
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator

from edgefer.errors import ConfigError
from edgefer.types import FrameResult

from . import homeassistant
from .base import NullSink
from .buffer import Buffer, open_buffer

log = logging.getLogger("edgefer.mqtt")

PAYLOAD_VERSION = 1
PASSWORD_ENV = "EDGEFER_MQTT_PASSWORD"
_TOPIC_BAD = re.compile(r"[+#\x00]")


def default_device_id() -> str:
    """The host name, made safe for a topic level."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", socket.gethostname()) or "edgefer"


class MqttConfig(BaseModel):
    """Where and how results are published over MQTT."""

    model_config = ConfigDict(extra="forbid")

    host: str = Field("127.0.0.1", description="Broker host name or address.")
    port: int | None = Field(None, ge=1, le=65535, description="Broker port; default 1883, or 8883 with TLS.")
    tls: bool = Field(False, description="Connect with TLS (mqtts://).")
    ca_file: Path | None = Field(None, description="CA certificate(s) to verify the broker with; default: the system's.")
    cert_file: Path | None = Field(None, description="Client certificate (PEM) for TLS client authentication.")
    key_file: Path | None = Field(None, description="Private key (PEM) of the client certificate.")
    username: str | None = Field(None, description="User name for the broker login.")
    password_file: Path | None = Field(
        None, description="File holding the password (first line). Warned about when world-readable."
    )
    password_env: str = Field(
        PASSWORD_ENV, description="Environment variable holding the password, used when no password_file is set."
    )
    prefix: str = Field("edgefer", description="First topic level.")
    device_id: str = Field(default_factory=default_device_id, description="Second topic level; default: host name.")
    client_id: str | None = Field(None, description="MQTT client id (stable, for the persistent session); default edgefer-<device_id>.")
    keepalive: int = Field(10, ge=1, le=65535, description="Keepalive in seconds: a dead link is detected within two.")
    connect_timeout_s: float = Field(5.0, gt=0, description="Timeout of one TCP/TLS connection attempt.")
    reconnect_min_delay_s: float = Field(0.25, gt=0, description="First delay between reconnection attempts.")
    reconnect_max_delay_s: float = Field(
        1.0, gt=0, description="Longest delay between attempts (backoff doubles up to this)."
    )
    buffer_size: int = Field(10000, ge=2, description="Messages kept while the broker is away; the oldest are dropped beyond.")
    state_dir: Path | None = Field(None, description="Keep the buffer on disk here (survives restarts of the daemon).")
    max_inflight: int = Field(20, ge=1, description="Messages handed to the broker at once, awaiting acknowledgement.")
    stats_interval_s: float = Field(30.0, gt=0, description="Period of the stats topic.")
    close_timeout_s: float = Field(
        3.0, ge=0, description="On close, wait this long for buffered messages to go out (close takes at most ~1.5 s more)."
    )
    homeassistant: bool = Field(False, description="Publish Home Assistant MQTT discovery for a device and its sensors.")
    homeassistant_prefix: str = Field("homeassistant", description="Home Assistant's discovery prefix.")
    homeassistant_remove_on_close: bool = Field(
        False, description="Remove the Home Assistant device on a clean close (else it just shows unavailable)."
    )

    @field_validator("prefix", "device_id", "homeassistant_prefix")
    @classmethod
    def _topic_level(cls, v: str) -> str:
        if not v or _TOPIC_BAD.search(v) or v.startswith("/") or v.endswith("/"):
            raise ValueError(f"{v!r} is not usable in a topic (empty, wildcard or leading/trailing '/')")
        return v

    @model_validator(mode="after")
    def _check(self) -> MqttConfig:
        if self.buffer_size <= self.max_inflight:
            raise ValueError(f"buffer_size ({self.buffer_size}) must exceed max_inflight ({self.max_inflight})")
        if self.reconnect_max_delay_s < self.reconnect_min_delay_s:
            raise ValueError("reconnect_max_delay_s must be at least reconnect_min_delay_s")
        if (self.cert_file or self.key_file or self.ca_file) and not self.tls:
            raise ValueError("ca_file/cert_file/key_file need TLS (use mqtts://)")
        return self

    @property
    def effective_port(self) -> int:
        return self.port or (8883 if self.tls else 1883)

    @property
    def effective_client_id(self) -> str:
        return self.client_id or f"edgefer-{self.device_id}"

    def topic(self, leaf: str) -> str:
        return f"{self.prefix}/{self.device_id}/{leaf}"

    @property
    def url(self) -> str:
        """The broker URL, without credentials (safe to log)."""
        return f"{'mqtts' if self.tls else 'mqtt'}://{self.host}:{self.effective_port}"


def parse_url(url: str) -> dict[str, Any]:
    """`mqtt://[user@]host[:port][/prefix]` or `mqtts://...` -> MqttConfig fields. Passwords in
    URLs are refused (they end up in process lists and logs)."""
    try:
        u = urllib.parse.urlsplit(url)
        port = u.port
    except ValueError as exc:
        raise ConfigError(f"malformed MQTT URL {url!r}: {exc}") from None
    scheme = u.scheme.lower()
    if scheme in ("mqtt", "tcp"):
        tls = False
    elif scheme in ("mqtts", "ssl"):
        tls = True
    elif not scheme:
        raise ConfigError(f"malformed MQTT URL {url!r}: expected mqtt://host[:port] or mqtts://host[:port]")
    else:
        raise ConfigError(f"unknown MQTT URL scheme {u.scheme!r} in {url!r}: use mqtt:// or mqtts://")
    if not u.hostname:
        raise ConfigError(f"malformed MQTT URL {url!r}: no host")
    if u.password is not None:
        raise ConfigError(
            f"do not put the MQTT password in the URL; use a password file or ${PASSWORD_ENV}"
        )
    if u.query or u.fragment:
        raise ConfigError(f"malformed MQTT URL {url!r}: query strings and fragments are not supported")
    fields: dict[str, Any] = {"host": u.hostname, "tls": tls}
    if port is not None:
        fields["port"] = port
    if u.username:
        fields["username"] = urllib.parse.unquote(u.username)
    path = u.path.strip("/")
    if path:
        fields["prefix"] = path
    return fields


def load_config(url: str | None = None, **overrides: Any) -> MqttConfig:
    """MqttConfig from a URL and keyword overrides (None values are ignored); ConfigError if invalid."""
    fields = parse_url(url) if url else {}
    fields.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return MqttConfig(**fields)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "mqtt"
        raise ConfigError(f"mqtt config: {where}: {err['msg']}") from None


def read_password(cfg: MqttConfig) -> SecretStr | None:
    """The password from `password_file` or the environment; ConfigError if the file is unreadable.
    Never logged."""
    if cfg.password_file is not None:
        path = cfg.password_file
        try:
            mode = path.stat().st_mode
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read the MQTT password file {path}: {getattr(exc, 'strerror', None) or exc}") from None
        if mode & stat.S_IROTH:
            log.warning("the MQTT password file %s is world-readable; chmod 600 it", path)
        lines = text.splitlines()
        return SecretStr(lines[0] if lines else "")
    value = os.environ.get(cfg.password_env)
    return SecretStr(value) if value is not None else None


def _check_readable(path: Path | None, what: str) -> str | None:
    if path is None:
        return None
    try:
        with open(path, "rb") as fh:
            fh.read(1)
    except OSError as exc:
        raise ConfigError(f"cannot read the MQTT {what} {path}: {exc.strerror or exc}") from None
    return str(path)


def describe_connect_error(exc: BaseException | None, cfg: MqttConfig) -> str:
    """One line saying why a connection attempt failed."""
    where = cfg.url
    if exc is None:
        return f"cannot connect to {where}"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"TLS certificate of {where} not trusted: {exc.verify_message} (check ca_file)"
    if isinstance(exc, ssl.SSLError):
        reason = exc.reason or str(exc)
        hint = " (is that port plaintext? use mqtt://)" if reason in ("WRONG_VERSION_NUMBER", "UNEXPECTED_EOF_WHILE_READING") else ""
        return f"TLS handshake with {where} failed: {reason}{hint}"
    if isinstance(exc, ConnectionResetError) and cfg.tls:
        return f"TLS handshake with {where} failed: connection reset (is that port plaintext? use mqtt://)"
    if isinstance(exc, ConnectionRefusedError):
        return f"connection to {where} refused (is the broker running?)"
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return f"connecting to {where} timed out after {cfg.connect_timeout_s:g} s"
    if isinstance(exc, socket.gaierror):
        return f"cannot resolve the MQTT host {cfg.host!r}: {exc.strerror}"
    return f"cannot connect to {where}: {exc}"


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def dumps(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, separators=(",", ":"), default=_json_default).encode()


def make_client(cfg: MqttConfig, client_id: str, clean_session: bool) -> mqtt.Client:
    """A paho client (callback API 2, MQTT 3.1.1) with the config's TLS and login applied;
    ConfigError for unreadable or invalid CA/certificate/key/password files."""
    ca = _check_readable(cfg.ca_file, "CA file")
    cert = _check_readable(cfg.cert_file, "client certificate")
    key = _check_readable(cfg.key_file, "client key")
    password = read_password(cfg)
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=clean_session, protocol=mqtt.MQTTv311)
    if cfg.tls:
        try:
            c.tls_set(ca_certs=ca, certfile=cert, keyfile=key, cert_reqs=ssl.CERT_REQUIRED)
        except (ssl.SSLError, OSError) as exc:
            raise ConfigError(f"MQTT TLS setup failed (ca/cert/key files): {exc}") from None
    if cfg.username is not None or password is not None:
        c.username_pw_set(cfg.username or "", password.get_secret_value() if password is not None else None)
    c.connect_timeout = cfg.connect_timeout_s
    return c


class MqttSink(NullSink):
    """The MQTT sink (see the module docstring). Construction never blocks on the network:
    it validates the config (ConfigError on bad files), opens the buffer and starts connecting in
    the background; `wait_connected` waits for the first connection when a caller wants to."""

    name = "mqtt"

    def __init__(self, config: MqttConfig, *, start: bool = True) -> None:
        self.config = cfg = config
        c = make_client(cfg, cfg.effective_client_id, clean_session=False)
        self.buffer: Buffer = open_buffer(cfg.buffer_size, cfg.state_dir)
        self.topics = {leaf: cfg.topic(leaf) for leaf in ("availability", "faces", "events", "status", "stats", "state")}
        c.will_set(self.topics["availability"], "offline", qos=1, retain=True)
        c.reconnect_delay_set(cfg.reconnect_min_delay_s, cfg.reconnect_max_delay_s)
        c.max_inflight_messages_set(cfg.max_inflight)
        c.max_queued_messages_set(0)
        c.on_pre_connect = self._on_pre_connect
        c.on_connect = self._on_connect
        c.on_connect_fail = self._on_connect_fail
        c.on_disconnect = self._on_disconnect
        c.on_publish = self._on_publish
        self.client = c

        self.connected = threading.Event()
        self._ever_connected = False
        self._awaiting_connack = False
        self._acks: queue.SimpleQueue[tuple[int, Any]] = queue.SimpleQueue()
        self._mids: dict[int, int] = {}  # paho mid -> buffer seq (sender thread only)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._closed = False
        self._lock = threading.Lock()
        self._status: dict[str, Any] = {}
        self._last_state_pub = 0.0
        self._last_state_emotion: str | None = None
        self.last_error: str | None = None
        self.counters = {"published": 0, "delivered": 0, "reconnects": 0, "rejected": 0, "disconnects": 0, "write_errors": 0}
        self._last_write_error_log = -1e9
        self.connected_at: float | None = None  # monotonic, of the last successful connect
        self.disconnected_at: float | None = None  # monotonic, of the last loss
        self._sender = threading.Thread(target=self._run, name="edgefer-mqtt-sender", daemon=True)
        if start:
            self.start()

    @classmethod
    def from_url(cls, url: str, **overrides: Any) -> MqttSink:
        """`MqttSink.from_url("mqtts://broker:8883", ca_file=..., state_dir=...)`; ConfigError if invalid."""
        return cls(load_config(url, **overrides))

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> None:
        cfg = self.config
        log.info("MQTT: connecting to %s as %s (topics %s/...)", cfg.url, cfg.effective_client_id, f"{cfg.prefix}/{cfg.device_id}")
        self.client.connect_async(cfg.host, cfg.effective_port, keepalive=cfg.keepalive)
        self.client.loop_start()
        self._sender.start()

    def wait_connected(self, timeout: float) -> bool:
        """Wait up to `timeout` seconds for a connection; on False, `last_error` says why."""
        return self.connected.wait(timeout)

    def close(self) -> None:
        """Flush (up to `close_timeout_s` while connected), publish `offline`, disconnect.
        A disk buffer keeps what was not delivered for the next start."""
        if self._closed:
            return
        self._closed = True
        now = time.monotonic()
        deadline = now + self.config.close_timeout_s
        # Not connected (yet): give a connection in progress a short chance, so a sink closed right
        # after start-up still delivers, without stretching a shutdown while the broker is down.
        connect_deadline = now + min(1.5, self.config.close_timeout_s)
        while len(self.buffer) and time.monotonic() < deadline:
            if not self.connected.is_set() and time.monotonic() > connect_deadline:
                break
            self._wake.set()
            time.sleep(0.02)
        left = len(self.buffer)
        if left:
            kept = "kept on disk" if self.config.state_dir else "lost"
            log.warning("MQTT: closing with %d undelivered messages (%s)", left, kept)
        self._stop.set()
        self._wake.set()
        if self._sender.is_alive():
            self._sender.join(timeout=1)
        if self.connected.is_set():
            infos = []
            if self.config.homeassistant and self.config.homeassistant_remove_on_close:
                for topic, payload in homeassistant.removal_messages(self.config.homeassistant_prefix, self.config.device_id):
                    infos.append(self.client.publish(topic, payload, qos=1, retain=True))
            infos.append(self.client.publish(self.topics["availability"], "offline", qos=1, retain=True))
            for info in infos:
                try:
                    info.wait_for_publish(timeout=max(0.3, deadline - time.monotonic()))
                except (RuntimeError, ValueError):
                    pass
        self.client.disconnect()
        # loop_stop joins paho's thread, which may sit in a blocking connect (up to
        # connect_timeout_s): don't let that delay a shutdown; the thread is a daemon.
        stopper = threading.Thread(target=self.client.loop_stop, daemon=True)
        stopper.start()
        stopper.join(timeout=1)
        self.buffer.close()

    # -- the Sink protocol -------------------------------------------------------------------
    def publish(self, result: FrameResult) -> None:
        doc = {"version": PAYLOAD_VERSION, "device_id": self.config.device_id, **result.to_dict(), "queued_at": round(time.time(), 3)}
        self._enqueue(self.topics["faces"], dumps(doc))
        if self.config.homeassistant:
            self._ha_state(result)

    def event(self, event: dict[str, Any]) -> None:
        doc = {"version": PAYLOAD_VERSION, "device_id": self.config.device_id, **event}
        self._enqueue(self.topics["events"], dumps(doc))

    def status(self, status: dict[str, Any]) -> None:
        """Latest service state; published retained now if connected, else on the next connect."""
        with self._lock:
            self._status = dict(status)
        if self.connected.is_set():
            self._publish_status()

    def stats(self) -> dict[str, Any]:
        """Counters: published (accepted), delivered (acknowledged by the broker), buffered (in the
        buffer now, in flight included), dropped (oldest-first when full), reconnects, ..."""
        return {
            **self.counters,
            "buffered": len(self.buffer),
            "dropped": self.buffer.dropped,
            "inflight": len(self._mids),
            "connected": self.connected.is_set(),
            "last_error": self.last_error,
        }

    # -- internals ---------------------------------------------------------------------------
    def _enqueue(self, topic: str, payload: bytes) -> None:
        if self._closed:
            raise RuntimeError("MqttSink is closed")
        self.counters["published"] += 1
        try:
            dropped = self.buffer.put(topic, payload)
        except (sqlite3.Error, OSError) as exc:  # disk full, I/O error: count, never crash the pipeline
            self.counters["write_errors"] += 1
            now = time.monotonic()
            if now - self._last_write_error_log > 60:
                self._last_write_error_log = now
                log.error("MQTT: cannot store a message in the buffer (%s); %d lost so far", exc, self.counters["write_errors"])
            return
        if dropped:
            log.debug("MQTT buffer full: dropped %d oldest", dropped)
        self._wake.set()

    def _run(self) -> None:
        next_stats = time.monotonic() + self.config.stats_interval_s
        while not self._stop.is_set():
            self._wake.wait(timeout=0.1)
            self._wake.clear()
            try:
                self._drain_acks()
                if self.connected.is_set():
                    self._send_some()
                if time.monotonic() >= next_stats:
                    next_stats = time.monotonic() + self.config.stats_interval_s
                    if self.connected.is_set():
                        self.client.publish(self.topics["stats"], dumps(self._stats_doc()), qos=1)
            except Exception:  # a bug here must not silently stop delivery
                log.exception("MQTT sender loop error")
                time.sleep(0.5)
        self._drain_acks()

    def _send_some(self) -> None:
        room = self.config.max_inflight - len(self._mids)
        if room <= 0:
            return
        for m in self.buffer.take(room):
            info = self.client.publish(m.topic, m.payload, qos=1, retain=m.retain)
            if info.rc in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN):
                self._mids[info.mid] = m.seq  # NO_CONN: paho queued it and sends it on reconnect
            else:
                log.error("MQTT: message of %d bytes to %s rejected by the client: %s", len(m.payload), m.topic, mqtt.error_string(info.rc))
                self.buffer.ack(m.seq)
                self.counters["rejected"] += 1

    def _drain_acks(self) -> None:
        while True:
            try:
                mid, reason = self._acks.get_nowait()
            except queue.Empty:
                return
            seq = self._mids.pop(mid, None)
            if seq is None:
                continue  # availability, status, stats: not buffered
            if reason is not None and reason.is_failure:
                log.error("MQTT: broker refused a message: %s", reason)
                self.counters["rejected"] += 1
            else:
                self.counters["delivered"] += 1
            self.buffer.ack(seq)

    def _stats_doc(self) -> dict[str, Any]:
        return {"version": PAYLOAD_VERSION, "device_id": self.config.device_id, "timestamp": round(time.time(), 3), **self.stats()}

    def _publish_status(self) -> None:
        with self._lock:
            doc = {"version": PAYLOAD_VERSION, "device_id": self.config.device_id, "timestamp": round(time.time(), 3), **self._status}
        self.client.publish(self.topics["status"], dumps(doc), qos=1, retain=True)

    def _ha_state(self, result: FrameResult) -> None:
        now = time.monotonic()
        doc = homeassistant.state_payload(result)
        if doc["emotion"] == self._last_state_emotion and now - self._last_state_pub < 1.0:
            return
        if self.connected.is_set():
            self._last_state_pub, self._last_state_emotion = now, doc["emotion"]
            self.client.publish(self.topics["state"], dumps(doc), qos=0, retain=True)

    def _set_error(self, message: str | None, level: int = logging.ERROR) -> None:
        if message and message != self.last_error:
            log.log(level, "MQTT: %s", message)
        self.last_error = message

    # paho callbacks (paho's network thread) -------------------------------------------------
    def _on_pre_connect(self, client: mqtt.Client, userdata: Any) -> None:
        self._awaiting_connack = True

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        self._awaiting_connack = False
        if reason.is_failure:
            self._set_error(f"broker {self.config.url} refused the login: {reason}")
            return
        if self._ever_connected:
            self.counters["reconnects"] += 1
        self._ever_connected = True
        self.connected_at = time.monotonic()
        self._set_error(None)
        log.info("MQTT: connected to %s (session present: %s)", self.config.url, flags.session_present)
        client.publish(self.topics["availability"], "online", qos=1, retain=True)
        if self.config.homeassistant:
            for topic, payload in homeassistant.discovery_messages(
                self.config.homeassistant_prefix, self.config.prefix, self.config.device_id
            ):
                client.publish(topic, payload, qos=1, retain=True)
        if self._status:
            self._publish_status()
        self.connected.set()
        self._wake.set()

    def _on_connect_fail(self, client: mqtt.Client, userdata: Any) -> None:
        self._awaiting_connack = False
        exc = sys.exc_info()[1]
        transient = isinstance(exc, (ConnectionRefusedError, socket.timeout, TimeoutError))
        self._set_error(describe_connect_error(exc, self.config), logging.WARNING if transient else logging.ERROR)

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        was = self.connected.is_set()
        self.connected.clear()
        if was:
            self.disconnected_at = time.monotonic()
            self.counters["disconnects"] += 1
        if self._closed:
            return
        if self._awaiting_connack:
            self._awaiting_connack = False
            if str(reason) == "Keep alive timeout":  # our side gave up waiting: hung broker or partition
                self._set_error(
                    f"no answer from {self.config.url} within {self.config.keepalive} s (broker hung or network down); retrying",
                    logging.WARNING,
                )
            else:
                hint = (
                    " (does it require a client certificate? check cert_file/key_file)"
                    if self.config.tls
                    else " (a TLS port? use mqtts://)"
                )
                self._set_error(f"{self.config.url} closed the connection before answering the login{hint}")
        elif was:
            self._set_error(f"connection to {self.config.url} lost ({reason}); buffering", logging.WARNING)

    def _on_publish(self, client: mqtt.Client, userdata: Any, mid: int, reason: Any, properties: Any) -> None:
        self._acks.put((mid, reason))
        self._wake.set()
