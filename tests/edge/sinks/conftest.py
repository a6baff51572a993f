"""Fixtures for the MQTT sink tests: a real Mosquitto on 127.0.0.1 (see tests/broker.py)."""

from __future__ import annotations

import pytest
from broker import Mosquitto, have_mosquitto


@pytest.fixture
def broker(tmp_path):
    """A running Mosquitto with its own config and persistence dir; stop/restart/pause it at will."""
    if not have_mosquitto():
        pytest.fail("mosquitto is not installed (apt-get install -y mosquitto mosquitto-clients)")
    b = Mosquitto(tmp_path / "broker")
    b.start()
    yield b
    b.cleanup()
