"""The project's user-facing error type.

A `UserError` is something the user can fix (a wrong path, a bad config, a corrupt model): the
CLI prints its one-line message and exits with `exit_code`, without a traceback. Anything else
is a bug and keeps its traceback.
"""

from __future__ import annotations

EX_USAGE = 64
EX_DATAERR = 65
EX_TEMPFAIL = 75  # a temporary failure: e.g. MQTT messages not delivered yet
EX_CONFIG = 78


class UserError(Exception):
    """An error the user can fix; `str(err)` is the whole message, on one line."""

    exit_code: int = 1

    def __init__(self, message: str, exit_code: int | None = None) -> None:
        super().__init__(" ".join(str(message).split()))
        if exit_code is not None:
            self.exit_code = exit_code


class ConfigError(UserError):
    """Invalid configuration or model file: exit 78 (EX_CONFIG), which systemd does not restart."""

    exit_code = EX_CONFIG
