"""What the local HTTP endpoints (overlay page, metrics) share: the bind rule, credentials, Basic auth.

The rule (RELIABILITY 21, 23): an endpoint binds 127.0.0.1 unless told otherwise; any address that is not
loopback requires a username and a password; the password comes from a file or an environment variable,
never from the config file itself, and never appears in logs or error messages.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import ipaddress
import logging
import os
import socket
import socketserver
import stat
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from edgefer.errors import ConfigError, UserError

REALM = "edgefer"

log = logging.getLogger(__name__)


def is_loopback(host: str) -> bool:
    """True for `localhost` and loopback IP literals (127.0.0.0/8, ::1); any other name or address,
    including "" and 0.0.0.0 (all interfaces), is treated as reachable from the network."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class HttpEndpointConfig(BaseModel):
    """Bind address and credentials of one local HTTP endpoint."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(False, description="Start the endpoint. Off by default: no socket is opened at all.")
    host: str = Field(
        "127.0.0.1",
        description="Address to bind. Anything other than a loopback address (127.0.0.1, ::1, localhost) "
        "requires `username` and a password (`password_file` or `password_env`).",
    )
    port: int = Field(8080, ge=0, le=65535, description="TCP port (0 picks a free one, for tests).")
    username: str | None = Field(None, min_length=1, description="HTTP Basic auth user name; set it with a password.")
    password_file: Path | None = Field(
        None,
        description="File holding the Basic auth password (first line). Must not be readable by other users "
        "(e.g. mode 0600, or a systemd credential).",
    )
    password_env: str | None = Field(
        None, min_length=1, description="Name of the environment variable holding the Basic auth password."
    )

    @model_validator(mode="after")
    def _credentials_rule(self) -> HttpEndpointConfig:
        has_password = self.password_file is not None or self.password_env is not None
        if self.password_file is not None and self.password_env is not None:
            raise ValueError("set one of password_file and password_env, not both")
        if (self.username is None) != (not has_password):
            raise ValueError("username and a password (password_file or password_env) go together")
        if not is_loopback(self.host) and self.username is None:
            raise ValueError(
                f"host {self.host!r} is not a loopback address: set username and password_file or password_env"
            )
        return self


def resolve_credentials(config: HttpEndpointConfig, key: str) -> tuple[str, str] | None:
    """The (username, password) pair, read now from the password file or environment, or None when the
    endpoint has no credentials. `key` names the config section in error messages (e.g. "web").

    Raises ConfigError for a non-loopback bind without credentials (also when the config object bypassed
    validation), a missing, empty or world-readable password file, or an unset or empty variable."""
    if config.username is None:
        if not is_loopback(config.host):
            raise ConfigError(
                f"{key}.host: {config.host!r} is not a loopback address; set {key}.username and "
                f"{key}.password_file or {key}.password_env"
            )
        return None
    if config.password_file is not None:
        path = config.password_file.expanduser()
        try:
            mode = path.stat().st_mode
            text = path.read_text(encoding="utf-8")
        except OSError as e:
            raise ConfigError(f"{key}.password_file: cannot read {path}: {e.strerror}") from None
        if mode & stat.S_IROTH:
            raise ConfigError(f"{key}.password_file: {path} is readable by other users; chmod o-r it (e.g. 0600)")
        password = text.splitlines()[0].strip() if text.strip() else ""
        if not password:
            raise ConfigError(f"{key}.password_file: {path} is empty")
    elif config.password_env is not None:
        password = os.environ.get(config.password_env, "")
        if not password:
            raise ConfigError(f"{key}.password_env: environment variable {config.password_env} is unset or empty")
    else:
        raise ConfigError(f"{key}.username is set but no password: set {key}.password_file or {key}.password_env")
    return config.username, password


def check_basic_auth(header: str | None, credentials: tuple[str, str] | None) -> bool:
    """True when no credentials are configured, or when an `Authorization: Basic` header matches them
    (constant-time comparison of both parts)."""
    if credentials is None:
        return True
    if not header or not header[:6].lower() == "basic ":
        return False
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return False
    user, sep, password = decoded.partition(":")
    if not sep:
        return False
    ok_user = hmac.compare_digest(user.encode(), credentials[0].encode())
    ok_password = hmac.compare_digest(password.encode(), credentials[1].encode())
    return ok_user and ok_password


def send_unauthorized(handler: BaseHTTPRequestHandler) -> None:
    """A 401 asking for Basic auth, with an empty body."""
    handler.send_response(401)
    handler.send_header("WWW-Authenticate", f'Basic realm="{REALM}", charset="UTF-8"')
    handler.send_header("Content-Length", "0")
    handler.end_headers()


class LocalHTTPServer(ThreadingHTTPServer):
    """ThreadingHTTPServer that picks the address family from the host (IPv6 literals bind AF_INET6) and
    whose request threads never keep the process alive."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(*args, **kwargs)

    def server_bind(self) -> None:
        """As HTTPServer's, without its reverse DNS lookup of the bind address (slow when offline)."""
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]

    def process_request(self, request, client_address) -> None:
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def stop(self) -> None:
        """Stop accepting, close the listening socket, and end every open connection (keep-alive
        connections and streams included), so nothing is served after this returns."""
        self.shutdown()
        self.server_close()
        with self._connections_lock:
            connections = list(self._connections)
        for conn in connections:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def handle_error(self, request, client_address) -> None:
        """A client that went away is routine (debug); anything else is a bug: logged with its traceback
        instead of socketserver's print to stderr."""
        exc = sys.exc_info()[1]
        if isinstance(exc, ConnectionError | TimeoutError):
            log.debug("client %s went away: %s", client_address[0], exc)
        else:
            log.exception("error serving %s", client_address[0])


def bind_server(host: str, port: int, handler: type[BaseHTTPRequestHandler], key: str) -> LocalHTTPServer:
    """Bind (and listen) now, so that a taken port or a bad address is one clear line at start-up."""
    host = host.strip("[]")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    cls = type("LocalHTTPServer", (LocalHTTPServer,), {"address_family": family})
    try:
        return cls((host, port), handler)
    except OSError as e:
        raise UserError(f"{key}: cannot listen on {host}:{port}: {e.strerror or e}") from None
