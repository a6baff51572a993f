"""MQTT settings: the `[mqtt]` config table, `mqtt://` / `mqtts://` URLs and the password.

`MqttConfig` is the one description of a broker connection (host, TLS files, login, topic
prefix, buffer and timing); `load_config` builds it from a URL plus overrides and turns a
validation error into a one-line `ConfigError`. Passwords never come from URLs: from a file
or the environment (`read_password`), and they are never logged.
"""

from __future__ import annotations

import logging
import os
import re
import socket
import stat
import urllib.parse
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator

from edgefer.errors import ConfigError

log = logging.getLogger("edgefer.mqtt")

PASSWORD_ENV = "EDGEFER_MQTT_PASSWORD"
_TOPIC_BAD = re.compile(r"[+#\x00]")


def default_device_id() -> str:
    """The host name, made safe for a topic level."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", socket.gethostname()) or "edgefer"


def default_state_dir() -> Path | None:
    """`$STATE_DIRECTORY/mqtt` where systemd gives the unit a state directory (`StateDirectory=`;
    the first of a colon-separated list), else None: the buffer stays in memory."""
    first = os.environ.get("STATE_DIRECTORY", "").split(":")[0]
    return Path(first) / "mqtt" if first else None


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
    state_dir: Path | None = Field(
        default_factory=default_state_dir,
        description="Keep the buffer on disk here (survives restarts of the daemon). Default: "
        "$STATE_DIRECTORY/mqtt when systemd provides a StateDirectory (the installed service), else in memory.",
    )
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
