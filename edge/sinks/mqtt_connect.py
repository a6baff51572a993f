"""The MQTT connection: a configured paho client, and one line saying why a connection failed."""

from __future__ import annotations

import socket
import ssl
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from edgefer.errors import ConfigError

from .mqtt_config import MqttConfig, read_password


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
