"""The bounded store-and-forward buffer between a sink and its broker.

A message enters with `put` and leaves only with `ack`, when the broker has confirmed it. In
between it is *pending* (waiting to be handed to the client library) or *in flight* (handed
over, not yet confirmed; `take` moves messages from pending to in flight, `requeue` back).
When the buffer is full, `put` drops the oldest *pending* message and counts it in `dropped`:
in-flight messages are never dropped, so `capacity` must exceed the in-flight window, and
every dropped message is a message that will never be delivered (the count is exact).

Two stores with the same interface: `MemoryBuffer`, and `DiskBuffer` (SQLite in WAL mode under
a state directory; a committed `put` survives a SIGKILL of the process, and messages that were
in flight at the kill are pending again after a restart, so they are resent: at least once).
"""

from __future__ import annotations

import collections
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from edgefer.errors import ConfigError


@dataclass(slots=True)
class Message:
    seq: int
    topic: str
    payload: bytes
    retain: bool = False


class Buffer(Protocol):
    capacity: int
    dropped: int

    def put(self, topic: str, payload: bytes, retain: bool = False) -> int:
        """Store a message; returns how many old messages were dropped to make room."""
        ...

    def take(self, limit: int) -> list[Message]:
        """Up to `limit` oldest pending messages, now in flight."""
        ...

    def ack(self, seq: int) -> bool:
        """Remove a delivered message; False if it was not there."""
        ...

    def requeue(self) -> None:
        """Every in-flight message becomes pending again (the client lost them)."""
        ...

    def __len__(self) -> int: ...

    @property
    def pending(self) -> int: ...

    def close(self) -> None: ...


class MemoryBuffer:
    """In-memory buffer; lost with the process."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ConfigError(f"buffer capacity must be at least 1, got {capacity}")
        self.capacity = capacity
        self.dropped = 0
        self._pending: collections.OrderedDict[int, Message] = collections.OrderedDict()
        self._inflight: dict[int, Message] = {}
        self._seq = 0
        self._lock = threading.Lock()

    def put(self, topic: str, payload: bytes, retain: bool = False) -> int:
        with self._lock:
            self._seq += 1
            self._pending[self._seq] = Message(self._seq, topic, bytes(payload), retain)
            n = 0
            while len(self._pending) + len(self._inflight) > self.capacity and self._pending:
                self._pending.popitem(last=False)
                n += 1
            self.dropped += n
            return n

    def take(self, limit: int) -> list[Message]:
        out = []
        with self._lock:
            while self._pending and len(out) < limit:
                _, msg = self._pending.popitem(last=False)
                self._inflight[msg.seq] = msg
                out.append(msg)
        return out

    def ack(self, seq: int) -> bool:
        with self._lock:
            return self._inflight.pop(seq, None) is not None or self._pending.pop(seq, None) is not None

    def requeue(self) -> None:
        with self._lock:
            merged = sorted([*self._inflight.values(), *self._pending.values()], key=lambda m: m.seq)
            self._inflight.clear()
            self._pending = collections.OrderedDict((m.seq, m) for m in merged)

    def __len__(self) -> int:
        with self._lock:
            return len(self._pending) + len(self._inflight)

    @property
    def pending(self) -> int:
        with self._lock:
            return len(self._pending)

    def close(self) -> None:
        pass


class DiskBuffer:
    """SQLite-backed buffer in `<state_dir>/<name>` (WAL, synchronous=NORMAL: each put is one
    committed transaction, durable against a crash or SIGKILL of the process; a power cut may
    lose the last few). The drop counter is stored too, so it survives restarts."""

    def __init__(self, path: str | Path, capacity: int) -> None:
        if capacity < 1:
            raise ConfigError(f"buffer capacity must be at least 1, got {capacity}")
        self.path = Path(path)
        self.capacity = capacity
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS messages (seq INTEGER PRIMARY KEY AUTOINCREMENT, "
                "topic TEXT NOT NULL, payload BLOB NOT NULL, retain INTEGER NOT NULL)"
            )
            self._db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL)")
            row = self._db.execute("SELECT value FROM meta WHERE key='dropped'").fetchone()
            (self._count,) = self._db.execute("SELECT COUNT(*) FROM messages").fetchone()
        except (OSError, sqlite3.Error) as exc:
            raise ConfigError(f"cannot open the MQTT buffer {self.path}: {exc}") from None
        self.dropped = int(row[0]) if row else 0
        self._inflight: set[int] = set()
        self._cursor = 0  # every pending seq is > cursor or was requeued below it (see take)
        self._lock = threading.Lock()

    def put(self, topic: str, payload: bytes, retain: bool = False) -> int:
        """As `Buffer.put`; raises sqlite3.Error (e.g. disk full) with the buffer unchanged."""
        with self._lock:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                db.execute(
                    "INSERT INTO messages (topic, payload, retain) VALUES (?, ?, ?)", (topic, bytes(payload), int(retain))
                )
                victims: list[int] = []
                excess = self._count + 1 - self.capacity
                if excess > 0:
                    rows = db.execute(
                        "SELECT seq FROM messages ORDER BY seq LIMIT ?", (excess + len(self._inflight),)
                    ).fetchall()
                    victims = [s for (s,) in rows if s not in self._inflight][:excess]
                    db.executemany("DELETE FROM messages WHERE seq=?", [(s,) for s in victims])
                    db.execute(
                        "INSERT INTO meta (key, value) VALUES ('dropped', ?) "
                        "ON CONFLICT(key) DO UPDATE SET value=excluded.value",
                        (self.dropped + len(victims),),
                    )
                db.execute("COMMIT")
            except BaseException:
                try:
                    db.execute("ROLLBACK")
                except sqlite3.Error:
                    pass
                raise
            self._count += 1 - len(victims)
            self.dropped += len(victims)
            return len(victims)

    def take(self, limit: int) -> list[Message]:
        with self._lock:
            rows = self._db.execute(
                "SELECT seq, topic, payload, retain FROM messages WHERE seq > ? ORDER BY seq LIMIT ?",
                (self._cursor, limit + len(self._inflight)),
            ).fetchall()
            out = []
            for seq, topic, payload, retain in rows:
                if seq in self._inflight:
                    continue
                out.append(Message(seq, topic, bytes(payload), bool(retain)))
                self._inflight.add(seq)
                if len(out) >= limit:
                    break
            if out:
                self._cursor = max(self._cursor, out[-1].seq)
            return out

    def ack(self, seq: int) -> bool:
        with self._lock:
            self._inflight.discard(seq)
            cur = self._db.execute("DELETE FROM messages WHERE seq=?", (seq,))
            if cur.rowcount:
                self._count -= cur.rowcount
            return cur.rowcount > 0

    def requeue(self) -> None:
        with self._lock:
            self._inflight.clear()
            self._cursor = 0

    def __len__(self) -> int:
        with self._lock:
            return self._count

    @property
    def pending(self) -> int:
        with self._lock:
            return self._count - len(self._inflight)

    def close(self) -> None:
        with self._lock:
            self._db.close()


def open_buffer(capacity: int, state_dir: str | Path | None = None, name: str = "mqtt-buffer.sqlite3") -> Buffer:
    """A `DiskBuffer` under `state_dir` when one is given, else a `MemoryBuffer`."""
    if state_dir is None:
        return MemoryBuffer(capacity)
    return DiskBuffer(Path(state_dir) / name, capacity)
