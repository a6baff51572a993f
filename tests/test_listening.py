"""Nothing listens beyond 127.0.0.1 by default (RELIABILITY 21): the listening sockets of this very
process, read from /proc/net/tcp{,6}, before and after starting the network-facing sinks."""

from __future__ import annotations

import base64
import ipaddress
import os
import socket
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from pydantic import ValidationError

from edgefer.edge.sinks.metrics import MetricsConfig, MetricsSink
from edgefer.edge.sinks.web import WebConfig, WebSink
from edgefer.errors import ConfigError, UserError

TCP_LISTEN = "0A"


def _addr(hex_addr: str) -> str:
    """An address as /proc/net/tcp{,6} prints it (per-32-bit-word host byte order) -> text."""
    raw = bytes.fromhex(hex_addr)
    words = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))  # little-endian hosts
    return str(ipaddress.ip_address(words))


def listening() -> set[tuple[str, int]]:
    """(address, port) of every TCP socket this process is listening on."""
    inodes = set()
    for fd in Path("/proc/self/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        if not Path(table).exists():
            continue
        for line in Path(table).read_text().splitlines()[1:]:
            cols = line.split()
            local, state, inode = cols[1], cols[3], cols[9]
            if state == TCP_LISTEN and inode in inodes:
                host, port = local.split(":")
                found.add((_addr(host), int(port, 16)))
    return found


def is_loopback(addr: str) -> bool:
    ip = ipaddress.ip_address(addr)
    return ip.is_loopback or (ip.version == 6 and ip.ipv4_mapped is not None and ip.ipv4_mapped.is_loopback)


def test_proc_reader_sees_a_socket():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen()
    try:
        assert ("127.0.0.1", s.getsockname()[1]) in listening()
    finally:
        s.close()


def test_default_config_opens_no_socket():
    from edgefer.config import Config

    before = listening()
    config = Config()  # the defaults of the real config file model
    sinks = [WebSink(config.web), MetricsSink(config.metrics), WebSink(), MetricsSink()]
    try:
        assert listening() == before
    finally:
        for s in sinks:
            s.close()


def test_enabled_endpoints_bind_loopback_only():
    before = listening()
    web = WebSink(WebConfig(enabled=True, port=0))
    metrics = MetricsSink(MetricsConfig(enabled=True, port=0))
    try:
        new = listening() - before
        assert {port for _, port in new} == {web.address[1], metrics.address[1]}
        assert all(is_loopback(addr) for addr, _ in new), new
        assert not any(addr in ("0.0.0.0", "::") for addr, _ in new)
    finally:
        web.close()
        metrics.close()
    assert listening() == before


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "", "192.168.1.20", "camera.local"])
@pytest.mark.parametrize("kind", ["web", "metrics"])
def test_non_loopback_bind_requires_credentials(host, kind):
    config_cls, sink_cls = (WebConfig, WebSink) if kind == "web" else (MetricsConfig, MetricsSink)
    before = listening()
    with pytest.raises(ValidationError, match="not a loopback address"):
        config_cls(enabled=True, host=host, port=0)
    # also when validation was bypassed: the sink itself refuses, with the key in the message
    with pytest.raises(ConfigError, match=f"{kind}.host"):
        sink_cls(config_cls.model_construct(enabled=True, host=host, port=0))
    assert listening() == before


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1", "localhost"])
def test_loopback_needs_no_credentials(host):
    config = WebConfig(enabled=True, host=host, port=0)
    assert config.username is None
    try:
        sink = WebSink(config)
    except UserError as e:  # e.g. ::1 on a host without IPv6
        pytest.skip(str(e))
    assert is_loopback(sink.address[0])
    sink.close()


def test_all_interfaces_with_credentials_and_wrong_credentials_get_401(tmp_path):
    pw = tmp_path / "pw"
    pw.write_text("right\n")
    pw.chmod(0o600)
    web = WebSink(WebConfig(enabled=True, host="0.0.0.0", port=0, username="u", password_file=pw))
    metrics = MetricsSink(MetricsConfig(enabled=True, host="0.0.0.0", port=0, username="u", password_file=pw))
    try:
        assert ("0.0.0.0", web.address[1]) in listening()
        for url in (f"http://127.0.0.1:{web.address[1]}/results.json", f"http://127.0.0.1:{metrics.address[1]}/metrics"):
            for auth in (None, "u:wrong", "x:right"):
                req = urllib.request.Request(url)
                if auth:
                    req.add_header("Authorization", "Basic " + base64.b64encode(auth.encode()).decode())
                with pytest.raises(urllib.error.HTTPError) as e:
                    urllib.request.urlopen(req, timeout=10)
                assert e.value.code == 401
            req = urllib.request.Request(url)
            req.add_header("Authorization", "Basic " + base64.b64encode(b"u:right").decode())
            with urllib.request.urlopen(req, timeout=10) as resp:
                assert resp.status == 200
    finally:
        web.close()
        metrics.close()


def test_a_run_with_default_config_opens_no_socket(photos_dir, yunet_path):
    """The real service wiring (`build_runner`) with nothing but a source: no web page, no metrics
    endpoint, no socket at all, and no web sink holding frames."""
    import threading

    from edgefer.config import Config
    from edgefer.edge.runner import build_runner

    config = Config.model_validate({"source": {"uri": str(photos_dir / "happy")},
                                    "detector": {"model": str(yunet_path)}, "service": {"max_frames": 3}})
    before = listening()
    runner = build_runner(config)
    try:
        assert listening() == before
        runner.run(threading.Event())
        assert runner.frames == 3
        assert listening() == before
        assert not any(s.name == "web" for s in runner.sinks)
    finally:
        runner.close()


def test_config_file_with_open_bind_and_no_credentials_is_exit_78(tmp_path):
    from edgefer.config import load_config

    path = tmp_path / "edgefer.toml"
    path.write_text('[web]\nenabled = true\nhost = "0.0.0.0"\n')
    with pytest.raises(ConfigError, match="web.*not a loopback address") as e:
        load_config(path)
    assert e.value.exit_code == 78
