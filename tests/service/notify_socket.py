"""A socket that plays systemd's side of the notify protocol: it receives the datagrams a service
sends to $NOTIFY_SOCKET and keeps each message with its arrival time (monotonic)."""

from __future__ import annotations

import os
import socket
import threading
import time
from pathlib import Path


class NotifySocket:
    def __init__(self, path: Path | None = None, abstract: str | None = None) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        if abstract:
            self.sock.bind("\0" + abstract)
            self.address = "@" + abstract
        else:
            self.sock.bind(str(path))
            self.address = str(path)
        self.sock.settimeout(0.2)
        self.messages: list[tuple[float, dict[str, str]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(4096)
            except (TimeoutError, OSError):
                continue
            fields = dict(line.split("=", 1) for line in data.decode().splitlines() if "=" in line)
            self.messages.append((time.monotonic(), fields))

    def times(self, key: str, value: str | None = None) -> list[float]:
        return [t for t, m in list(self.messages) if key in m and (value is None or m[key] == value)]

    def statuses(self) -> list[str]:
        return [m["STATUS"] for _, m in list(self.messages) if "STATUS" in m]

    def wait_for(self, key: str, value: str | None = None, timeout: float = 5.0) -> float | None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            t = self.times(key, value)
            if t:
                return t[0]
            time.sleep(0.01)
        return None

    def env(self, watchdog_s: float | None = None) -> dict[str, str]:
        env = dict(os.environ, NOTIFY_SOCKET=self.address)
        if watchdog_s:
            env["WATCHDOG_USEC"] = str(int(watchdog_s * 1e6))
        env.pop("WATCHDOG_PID", None)
        return env

    def close(self) -> None:
        self._stop.set()
        self._thread.join(1.0)
        self.sock.close()
