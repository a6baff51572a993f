"""The daemon around the run loop: systemd's notify protocol, the watchdog, signals, reload.

systemd's notify protocol is a few lines, written here by hand (no libsystemd binding): one
datagram of `KEY=VALUE` lines to the AF_UNIX socket named by `$NOTIFY_SOCKET` (a leading `@`
means the abstract namespace). We send `READY=1` once the models are loaded and the capture is
started (a missing camera does not delay it: the status says `camera_unavailable`), `STATUS=...`
when the state changes, `WATCHDOG=1` every quarter of `$WATCHDOG_USEC` but only while the run
loop makes progress (a hung model stops the pings and systemd restarts us), `RELOADING=1` on
SIGHUP and `STOPPING=1` on SIGTERM. Outside systemd all of this is a no-op.

SIGTERM/SIGINT: stop within `stop_timeout_s` (exit 0). SIGHUP: re-read the configuration; if it
is invalid, log one line and keep running with the old one. Every timer is `time.monotonic()`.

Nothing is lost silently: if JSON lines could not be written, or MQTT messages are still
undelivered at the exit, `run` raises a
`UserError` (exit 75, EX_TEMPFAIL) saying how many, when they are lost (buffer in memory), and
also when a run that ended by itself (end of file, `max_frames`) leaves them on disk for the next
start. A stop by signal with a disk buffer (the installed service) keeps them and exits 0.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from edgefer.errors import EX_TEMPFAIL, UserError

log = logging.getLogger(__name__)


class Notifier:
    """Sends sd_notify messages to `$NOTIFY_SOCKET` (or `address`); silent when there is none.
    Send errors are logged once and otherwise ignored: the notify socket must never stop the daemon."""

    def __init__(self, address: str | None = None, watchdog_usec: int | None = None) -> None:
        env = os.environ
        self.address = address if address is not None else env.get("NOTIFY_SOCKET") or None
        if watchdog_usec is None:
            pid = env.get("WATCHDOG_PID")
            usec = env.get("WATCHDOG_USEC")
            if usec and usec.isdigit() and (not pid or pid == str(os.getpid())):
                watchdog_usec = int(usec)
        self.watchdog_s = watchdog_usec / 1e6 if watchdog_usec else None
        self.sent: list[str] = []  # newest messages, for `edgefer` diagnostics and tests
        self._sock: socket.socket | None = None
        self._failed = False
        if self.address:
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)

    @property
    def enabled(self) -> bool:
        return self._sock is not None

    def notify(self, **fields: Any) -> bool:
        """Send `KEY=value` lines, e.g. `notify(READY=1, STATUS="streaming")`; True if sent."""
        if self._sock is None or self.address is None:
            return False
        message = "\n".join(f"{k}={' '.join(str(v).splitlines())}" for k, v in fields.items())
        target = "\0" + self.address[1:] if self.address.startswith("@") else self.address
        try:
            self._sock.sendto(message.encode(), target)
        except OSError as exc:
            if not self._failed:
                log.warning("systemd notify socket %s: %s", self.address, exc)
            self._failed = True
            return False
        self.sent = (self.sent + [message])[-16:]
        return True

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def status_line(snapshot: dict[str, Any]) -> str:
    """The one-line `STATUS=` text `systemctl status` shows."""
    text = f"{snapshot.get('state', '?')}: {snapshot.get('fps', 0):.1f} fps, {snapshot.get('frames', 0)} frames, " \
           f"{snapshot.get('faces', 0)} faces, {snapshot.get('frames_skipped', 0)} skipped, " \
           f"{snapshot.get('frames_dropped_total', 0)} dropped, {snapshot.get('source_reconnects', 0)} reconnects"
    if snapshot.get("source_error"):
        text += f" (source: {snapshot['source_error']})"
    shadow = snapshot.get("shadow") or {}
    if shadow.get("state") == "failed":
        text += f"; shadow check FAILED, {shadow.get('action', '')}: {shadow.get('reason', '')}"
    elif shadow.get("state") in ("checking", "unavailable"):
        text += f"; shadow check {shadow['state']}" + (f" ({shadow['faces']}/{shadow['faces_needed']} faces)"
                                                       if shadow.get("faces") else "")
    return text


class Service:
    """Runs `build(load())` until stopped. `load` reads the configuration (raises `ConfigError`),
    `build` turns it into a started `Runner` (see `edge/runner.py`). `install_signals=False`
    lets tests drive `request_stop`/`request_reload` from another thread."""

    def __init__(self, load: Callable[[], Any], build: Callable[[Any], Any], notifier: Notifier | None = None,
                 *, install_signals: bool = True, tick_s: float = 0.2) -> None:
        self.load = load
        self.build = build
        self.notifier = notifier or Notifier()
        self.install_signals = install_signals
        self.tick_s = tick_s
        self.config: Any = None
        self.runner: Any = None
        self.reloads = 0
        self.reload_failures = 0
        self.last_reload_error = ""
        self._stop = threading.Event()
        self._reload = threading.Event()
        self._wake = threading.Event()
        self._run_stop: threading.Event | None = None
        self._thread: threading.Thread | None = None
        self._crash: BaseException | None = None
        self._undelivered: list[tuple[Any, int]] = []

    # -- control ------------------------------------------------------------------------------

    def request_stop(self, *_: Any) -> None:
        self._stop.set()
        self._wake.set()

    def request_reload(self, *_: Any) -> None:
        self._reload.set()
        self._wake.set()

    def _setting(self, name: str, default: float) -> float:
        service = getattr(self.config, "service", None)
        return float(getattr(service, name, default))

    # -- the runner thread --------------------------------------------------------------------

    def _start_runner(self, runner: Any) -> None:
        self.runner = runner
        self._run_stop = threading.Event()
        self._crash = None

        def target(stop: threading.Event = self._run_stop) -> None:
            try:
                runner.run(stop)
            except UserError as exc:  # e.g. a refused shadow check: one line, its exit status (78: no restart)
                log.error("%s", exc)
                self._crash = exc
            except BaseException as exc:  # a bug: keep its traceback, exit non-zero (systemd restarts)
                log.exception("the run loop failed")
                self._crash = exc
            finally:
                self._wake.set()

        self._thread = threading.Thread(target=target, name="edgefer-run", daemon=True)
        self._thread.start()

    def _stop_runner(self, timeout: float) -> bool:
        """Stop and close the current runner; False if its loop did not finish in time (hung)."""
        if self.runner is None or self._run_stop is None or self._thread is None:
            return True
        deadline = time.monotonic() + timeout
        self._run_stop.set()
        self._thread.join(max(0.0, deadline - time.monotonic() - 1.0))
        closer = threading.Thread(target=self.runner.close, kwargs={"models": False}, name="edgefer-close", daemon=True)
        closer.start()
        closer.join(max(0.1, deadline - time.monotonic()))
        if closer.is_alive():
            log.error("closing the sinks took longer than the stop budget")
        self._thread.join(max(0.0, deadline - time.monotonic()))
        finished = not self._thread.is_alive()
        if finished:
            self.runner.close_models()
        else:  # freeing a model that a thread is still running aborts the process: leave it to the exit
            log.error("the run loop did not stop within %.1f s; sinks closed, models left to the exit", timeout)
        self._undelivered = self.runner.undelivered() if hasattr(self.runner, "undelivered") else []
        self.runner = None
        return finished

    def _mqtt_wait_s(self) -> float:
        mqtt = getattr(self.config, "mqtt", None)
        return float(getattr(mqtt, "close_timeout_s", 0.0))

    def _check_delivered(self, signalled: bool) -> None:
        """Raise `UserError` (exit 75) for messages that a sink could not deliver (module docstring)."""
        for sink, n in self._undelivered:
            if getattr(sink, "name", "") == "jsonl":
                raise UserError(f"cannot write {sink.path}: {sink.last_error} ({n} JSON line{'s' * (n != 1)} lost)",
                                exit_code=EX_TEMPFAIL)
            cfg = getattr(sink, "config", None)
            where = getattr(cfg, "url", getattr(sink, "name", "the sink"))
            why = getattr(sink, "last_error", None) or f"{where} did not acknowledge them in time"
            state_dir = getattr(cfg, "state_dir", None)
            if state_dir is None:
                raise UserError(f"{n} MQTT messages were not delivered and are lost ({why}); set [mqtt] state_dir "
                                "to keep them on disk for the next run, or wait longer with --mqtt-wait SECONDS",
                                exit_code=EX_TEMPFAIL)
            if not signalled:
                raise UserError(f"{n} MQTT messages not delivered yet ({why}); kept in {state_dir} and sent on the "
                                "next start", exit_code=EX_TEMPFAIL)

    # -- main ---------------------------------------------------------------------------------

    def run(self) -> int:
        """Serve until SIGTERM/SIGINT (0), the source ends (0), or the run loop crashes (1).
        A configuration or start-up error raises before READY (the CLI exits 78 / 1)."""
        n = self.notifier
        n.notify(STATUS="loading configuration and models")
        self.config = self.load()
        self._start_runner(self.build(self.config))
        if self.install_signals:
            signal.signal(signal.SIGTERM, self.request_stop)
            signal.signal(signal.SIGINT, self.request_stop)
            signal.signal(signal.SIGHUP, self.request_reload)
        n.notify(READY=1, STATUS=status_line(self.runner.snapshot()), MAINPID=os.getpid())
        log.info("ready")
        last_ping = last_status_t = 0.0
        last_status = ""
        code = 0
        try:
            while not self._stop.is_set():
                self._wake.wait(self.tick_s)
                self._wake.clear()
                if self._stop.is_set():
                    break
                if self._thread is not None and not self._thread.is_alive():
                    if self._crash is not None:
                        code = getattr(self._crash, "exit_code", 1)
                    break
                if self._reload.is_set():
                    self._reload.clear()
                    self._do_reload()
                now = time.monotonic()
                progressing = now - self.runner.beat < self._setting("hang_timeout_s", 10.0)
                if n.watchdog_s and progressing and now - last_ping >= n.watchdog_s / 4:
                    n.notify(WATCHDOG=1)
                    last_ping = now
                text = status_line(self.runner.snapshot()) if progressing else "pipeline hung: no progress"
                if text.split(":")[0] != last_status.split(":")[0] or now - last_status_t >= 5.0:
                    n.notify(STATUS=text)
                    last_status, last_status_t = text, now
        finally:
            signalled = self._stop.is_set()
            n.notify(STOPPING=1, STATUS="stopping")
            log.info("stopping")
            # A run that ended by itself may wait for its MQTT messages (--mqtt-wait); a signal may not.
            extra = 0.0 if signalled else self._mqtt_wait_s()
            self._stop_runner(self._setting("stop_timeout_s", 4.0) + extra)
            n.close()
        if code == 0:
            self._check_delivered(signalled)
        return code

    @contextlib.contextmanager
    def _keepalive(self) -> Iterator[None]:
        """Ping the watchdog from a helper thread while the main thread rebuilds the pipeline."""
        interval = self.notifier.watchdog_s
        done = threading.Event()

        def ping() -> None:
            while interval and not done.wait(interval / 4):
                self.notifier.notify(WATCHDOG=1)

        thread = threading.Thread(target=ping, name="edgefer-keepalive", daemon=True)
        thread.start()
        try:
            yield
        finally:
            done.set()
            thread.join(1.0)

    def _do_reload(self) -> None:
        """SIGHUP: a valid new configuration replaces the running one; an invalid one is logged
        (one line) and ignored. If the new one is valid but cannot start (a missing model file),
        the old one is started again."""
        n = self.notifier
        n.notify(RELOADING=1, MONOTONIC_USEC=int(time.clock_gettime(time.CLOCK_MONOTONIC) * 1e6),
                 STATUS="reloading configuration")
        try:
            new = self.load()
        except UserError as exc:
            self.reload_failures += 1
            self.last_reload_error = str(exc)
            log.error("reload refused, keeping the running configuration: %s", exc)
            n.notify(READY=1, STATUS=f"reload failed, kept the old configuration: {exc}")
            return
        self._stop_runner(self._setting("stop_timeout_s", 4.0))
        with self._keepalive():  # loading models (or building an engine) is progress, not a hang
            try:
                runner = self.build(new)
            except UserError as exc:
                self.reload_failures += 1
                self.last_reload_error = str(exc)
                log.error("reloaded configuration cannot start (%s); restarting the old one", exc)
                runner = self.build(self.config)
            else:
                self.config = new
                self.reloads += 1
                log.info("configuration reloaded")
        self._start_runner(runner)
        n.notify(READY=1, STATUS=status_line(runner.snapshot()))
