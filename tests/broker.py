"""A real Mosquitto broker for tests and benchmarks: 127.0.0.1, a free port, its own config and
persistence directory, stopped, paused (SIGSTOP: a partition) and restarted on demand.

As root, mosquitto drops to user `mosquitto`, so its directory is handed to that user.
Used by `tests/edge/sinks/conftest.py` (fixture `broker`) and by `benchmarks/mqtt_reliability.py`.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def have_mosquitto() -> bool:
    return shutil.which("mosquitto") is not None or Path("/usr/sbin/mosquitto").exists()


class Mosquitto:
    """One broker. `tls=dict(ca=..., cert=..., key=...)` adds a TLS listener on `tls_port`;
    `users={"name": "password"}` turns anonymous access off.

    Its directory is a fresh 0755 folder under the system temp dir (pytest's tmp_path is 0700, which
    the `mosquitto` user could not enter); `workdir`, if given, gets a symlink to it for debugging."""

    def __init__(
        self, workdir: Path | None = None, *, tls: dict | None = None, users: dict[str, str] | None = None, port: int | None = None
    ):
        self.dir = Path(tempfile.mkdtemp(prefix="edgefer-mosquitto-"))
        os.chmod(self.dir, 0o755)
        if workdir is not None:
            Path(workdir).parent.mkdir(parents=True, exist_ok=True)
            try:
                Path(workdir).symlink_to(self.dir)
            except OSError:
                pass
        self.port = port or free_port()
        self.tls_port = free_port() if tls else None
        self.tls = tls
        self.users = users
        self.proc: subprocess.Popen | None = None
        self.starts = 0
        self._write_config()

    def _write_config(self) -> None:
        lines = [
            "persistence true",
            f"persistence_location {self.dir}/",
            "persistence_file mosquitto.db",
            f"log_dest file {self.dir}/mosquitto.log",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_type information",
            "max_queued_messages 0",  # unlimited queue for offline persistent subscribers
            "max_inflight_messages 0",
            "per_listener_settings false",
            f"listener {self.port} 127.0.0.1",
        ]
        if self.users:
            pw = self.dir / "passwd"
            pw.write_text("")
            for name, password in self.users.items():
                subprocess.run(["mosquitto_passwd", "-b", str(pw), name, password], check=True, capture_output=True)
            lines += [f"password_file {pw}", "allow_anonymous false"]
        else:
            lines.append("allow_anonymous true")
        if self.tls:
            for k in ("ca", "cert", "key"):
                shutil.copy(self.tls[k], self.dir / f"tls-{k}.pem")
            lines += [
                f"listener {self.tls_port} 127.0.0.1",
                f"cafile {self.dir}/tls-ca.pem",
                f"certfile {self.dir}/tls-cert.pem",
                f"keyfile {self.dir}/tls-key.pem",
            ]
            if self.tls.get("require_certificate"):
                lines.append("require_certificate true")
        (self.dir / "mosquitto.conf").write_text("\n".join(lines) + "\n")
        if os.geteuid() == 0:
            try:
                ent = pwd.getpwnam("mosquitto")
            except KeyError:
                return
            for p in [self.dir, *self.dir.iterdir()]:
                os.chown(p, ent.pw_uid, ent.pw_gid)

    # -- control -------------------------------------------------------------------------------
    def start(self, timeout: float = 10.0) -> Mosquitto:
        if self.running:
            return self
        binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        self.proc = subprocess.Popen(
            [binary, "-c", str(self.dir / "mosquitto.conf")], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        self.starts += 1
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode(errors="replace") if self.proc.stderr else ""
                raise RuntimeError(f"mosquitto exited with {self.proc.returncode}: {err} {self.log_tail()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.02)
        raise RuntimeError(f"mosquitto did not listen on {self.port} within {timeout} s: {self.log_tail()}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> None:
        """Stop (SIGTERM: mosquitto saves its persistence first; SIGKILL: it does not)."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.resume()
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def pause(self) -> None:
        """SIGSTOP: connections stay open but nothing answers (a network partition, as the client sees it)."""
        if self.proc is not None:
            self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    @property
    def tls_url(self) -> str:
        return f"mqtts://localhost:{self.tls_port}"

    def log_tail(self, n: int = 20) -> str:
        try:
            return "\n".join((self.dir / "mosquitto.log").read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def __enter__(self) -> Mosquitto:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.cleanup()

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


class Subscriber:
    """A persistent-session (clean_session=False) QoS 1 subscriber that records every message.
    `ids(topic_suffix)` are the `frame` numbers of received `faces` payloads, in arrival order."""

    def __init__(self, url_port: int, topic: str = "#", client_id: str = "test-subscriber", *, host: str = "127.0.0.1"):
        import threading

        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        self.topic = topic
        self.messages: list[tuple[str, bytes, bool, float, bool]] = []  # topic, payload, retain, monotonic, dup
        self.lock = threading.Lock()
        self.connected = threading.Event()
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False)
        c.reconnect_delay_set(0.05, 0.25)
        c.on_connect = self._on_connect
        c.on_disconnect = lambda *a: self.connected.clear()
        c.on_message = self._on_message
        c.connect_async(host, url_port, keepalive=5)
        c.loop_start()
        self.client = c

    def _on_connect(self, client, userdata, flags, reason, properties) -> None:
        if not reason.is_failure:
            client.subscribe(self.topic, qos=1)
            self.connected.set()

    def _on_message(self, client, userdata, msg) -> None:
        with self.lock:
            self.messages.append((msg.topic, bytes(msg.payload), bool(msg.retain), time.monotonic(), bool(msg.dup)))

    def wait_connected(self, timeout: float = 10.0) -> bool:
        ok = self.connected.wait(timeout)
        time.sleep(0.2)  # let the SUBACK arrive
        return ok

    def on(self, suffix: str) -> list[tuple[str, bytes, bool, float, bool]]:
        with self.lock:
            return [m for m in self.messages if m[0].endswith("/" + suffix)]

    def ids(self, suffix: str = "faces") -> list[int]:
        import json

        return [json.loads(m[1])["frame"] for m in self.on(suffix)]

    def duplicates(self, suffix: str = "faces") -> tuple[int, int]:
        """(copies the publisher sent more than once, copies the broker resent to us with DUP set)."""
        import json

        fresh: dict[int, int] = {}
        resent = 0
        seen: set[int] = set()
        for m in self.on(suffix):
            i = json.loads(m[1])["frame"]
            if m[4] and i in seen:
                resent += 1
            elif not m[4]:
                fresh[i] = fresh.get(i, 0) + 1
            seen.add(i)
        return sum(n - 1 for n in fresh.values()), resent

    def wait_ids(self, expected: set[int], timeout: float, suffix: str = "faces") -> set[int]:
        """Wait until every id in `expected` has arrived (or the timeout); the missing ones."""
        deadline = time.monotonic() + timeout
        while True:
            missing = expected - set(self.ids(suffix))
            if not missing or time.monotonic() > deadline:
                return missing
            time.sleep(0.05)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
