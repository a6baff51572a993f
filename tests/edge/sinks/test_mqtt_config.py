"""MQTT configuration and bad input: one-line ConfigErrors, no network needed."""

from __future__ import annotations

import logging
import os

import pytest

from edgefer.edge.sinks.mqtt import MqttSink
from edgefer.edge.sinks.mqtt_config import MqttConfig, load_config, parse_url, read_password
from edgefer.errors import EX_CONFIG, ConfigError


def test_url_forms():
    assert parse_url("mqtt://broker.lan") == {"host": "broker.lan", "tls": False}
    assert parse_url("mqtts://broker:8884") == {"host": "broker", "tls": True, "port": 8884}
    assert parse_url("mqtt://cam@10.0.0.2:1884/home/fer") == {
        "host": "10.0.0.2", "tls": False, "port": 1884, "username": "cam", "prefix": "home/fer"
    }
    cfg = load_config("mqtts://b", device_id="pi")
    assert cfg.effective_port == 8883 and cfg.url == "mqtts://b:8883"
    assert cfg.topic("faces") == "edgefer/pi/faces" and cfg.effective_client_id == "edgefer-pi"
    assert load_config("mqtt://b").effective_port == 1883


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("broker:1883", "unknown MQTT URL scheme"),
        ("http://broker", "unknown MQTT URL scheme 'http'"),
        ("mqtt://", "no host"),
        ("mqtt://broker:notaport", "malformed MQTT URL"),
        ("mqtt://broker:99999", "malformed MQTT URL"),
        ("mqtt://user:pw@broker", "password in the URL"),
        ("mqtt://broker?x=1", "query"),
        ("//broker", "malformed MQTT URL"),
    ],
)
def test_bad_urls_are_one_line_config_errors(url, words):
    with pytest.raises(ConfigError) as ei:
        MqttSink.from_url(url)
    msg = str(ei.value)
    print(f"{url!r}: {msg}")
    assert words in msg and "\n" not in msg and ei.value.exit_code == EX_CONFIG
    assert "pw" not in msg.replace("password", "")


def test_bad_fields_are_config_errors(tmp_path):
    for kw, words in [
        ({"keepalive": 0}, "keepalive"),
        ({"prefix": "a/#"}, "prefix"),
        ({"buffer_size": 10, "max_inflight": 20}, "buffer_size"),
        ({"no_such_key": 1}, "no_such_key"),
    ]:
        with pytest.raises(ConfigError, match=words):
            load_config("mqtt://b", **kw)
    with pytest.raises(ConfigError, match="need TLS"):
        load_config("mqtt://b", ca_file=tmp_path / "ca.pem")


def test_unreadable_password_and_cert_files(tmp_path):
    with pytest.raises(ConfigError, match="cannot read the MQTT password file"):
        MqttSink(load_config("mqtt://127.0.0.1:1", password_file=tmp_path / "missing"), start=False)
    with pytest.raises(ConfigError, match="cannot read the MQTT CA file"):
        MqttSink(load_config("mqtts://127.0.0.1:1", ca_file=tmp_path / "nope.pem"), start=False)
    bad = tmp_path / "garbage.pem"
    bad.write_text("not a certificate\n")
    with pytest.raises(ConfigError, match="TLS setup failed"):
        MqttSink(load_config("mqtts://127.0.0.1:1", ca_file=bad), start=False)
    if os.geteuid() != 0:  # root reads anything
        locked = tmp_path / "locked"
        locked.write_text("x")
        locked.chmod(0)
        with pytest.raises(ConfigError, match="Permission denied"):
            MqttSink(load_config("mqtt://127.0.0.1:1", password_file=locked), start=False)


def test_password_sources_and_world_readable_warning(tmp_path, monkeypatch, caplog):
    pw = tmp_path / "pw"
    pw.write_text("hunter2\n")
    pw.chmod(0o600)
    caplog.set_level(logging.WARNING)
    assert read_password(MqttConfig(password_file=pw)).get_secret_value() == "hunter2"
    assert "world-readable" not in caplog.text
    pw.chmod(0o644)
    secret = read_password(MqttConfig(password_file=pw))
    assert "world-readable" in caplog.text and "hunter2" not in caplog.text
    assert "hunter2" not in repr(secret) and "hunter2" not in str(secret)
    monkeypatch.setenv("EDGEFER_MQTT_PASSWORD", "fromenv")
    assert read_password(MqttConfig()).get_secret_value() == "fromenv"
    monkeypatch.delenv("EDGEFER_MQTT_PASSWORD")
    assert read_password(MqttConfig()) is None


def test_construction_does_not_block_without_broker(tmp_path):
    import time

    t0 = time.monotonic()
    sink = MqttSink.from_url("mqtt://127.0.0.1:9", close_timeout_s=0, state_dir=tmp_path / "s")
    assert time.monotonic() - t0 < 0.5
    assert not sink.wait_connected(0.5)
    sink.close()
