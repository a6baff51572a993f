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

import logging
import queue
import socket
import sqlite3
import sys
import threading
import time
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode

from edgefer.types import FrameResult

from . import homeassistant
from .base import NullSink
from .buffer import Buffer, open_buffer
from .mqtt_config import MqttConfig, load_config
from .mqtt_connect import describe_connect_error, make_client
from .mqtt_payloads import PAYLOAD_VERSION, dumps

log = logging.getLogger("edgefer.mqtt")


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
        #: messages still in the buffer when `close()` finished (lost unless `config.state_dir` is set)
        self.undelivered = 0
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
        self.undelivered = left
        if left:
            kept = f"kept in {self.config.state_dir} for the next start" if self.config.state_dir else "lost"
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
