"""TLS and login matrix against a real Mosquitto with a TLS listener and a password file.

The test makes its own CAs and certificates with `cryptography`: only the right CA with the
right password connects; a wrong CA, a wrong password and plaintext to the TLS port each fail
with a clear one-line reason within the connect timeout, never hanging.
"""

from __future__ import annotations

import datetime
import ipaddress
import time

import pytest
from broker import Mosquitto
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from edgefer.edge.sinks.mqtt import MqttSink

TIMEOUT = 3.0


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _cert(subject: str, key, issuer_name: x509.Name, issuer_key, *, ca: bool, san: list | None = None) -> x509.Certificate:
    now = datetime.datetime.now(datetime.timezone.utc)
    b = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if san:
        b = b.add_extension(x509.SubjectAlternativeName(san), critical=False)
    return b.sign(issuer_key, hashes.SHA256())


def _write(path, *objs) -> str:
    data = b""
    for o in objs:
        if isinstance(o, x509.Certificate):
            data += o.public_bytes(serialization.Encoding.PEM)
        else:
            data += o.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    path.write_bytes(data)
    return str(path)


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    d = tmp_path_factory.mktemp("pki")
    ca_key, other_key, srv_key = (ec.generate_private_key(ec.SECP256R1()) for _ in range(3))
    ca = _cert("edgefer test CA", ca_key, _name("edgefer test CA"), ca_key, ca=True)
    other = _cert("some other CA", other_key, _name("some other CA"), other_key, ca=True)
    san = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    srv = _cert("localhost", srv_key, ca.subject, ca_key, ca=False, san=san)
    cli_key = ec.generate_private_key(ec.SECP256R1())
    cli = _cert("edgefer-device", cli_key, ca.subject, ca_key, ca=False)
    return {
        "client_cert": _write(d / "client.pem", cli),
        "client_key": _write(d / "client.key", cli_key),
        "ca": _write(d / "ca.pem", ca),
        "wrong_ca": _write(d / "other-ca.pem", other),
        "cert": _write(d / "server.pem", srv),
        "key": _write(d / "server.key", srv_key),
        "dir": d,
    }


@pytest.fixture(scope="module")
def tls_broker(pki, tmp_path_factory):
    b = Mosquitto(tls={"ca": pki["ca"], "cert": pki["cert"], "key": pki["key"]}, users={"cam": "s3cret"})
    b.start()
    yield b
    b.cleanup()


def _attempt(url: str, password: str | None, pki, monkeypatch, **kw) -> tuple[bool, str | None, float]:
    if password is None:
        monkeypatch.delenv("EDGEFER_MQTT_PASSWORD", raising=False)
    else:
        monkeypatch.setenv("EDGEFER_MQTT_PASSWORD", password)
    t0 = time.monotonic()
    sink = MqttSink.from_url(url, username="cam", device_id="tls", connect_timeout_s=3.0, close_timeout_s=0, **kw)
    try:
        ok = sink.wait_connected(TIMEOUT)
        if not ok:  # give the failing attempt's reason time to be recorded
            deadline = time.monotonic() + 1
            while sink.last_error is None and time.monotonic() < deadline:
                time.sleep(0.05)
        return ok, sink.last_error, time.monotonic() - t0
    finally:
        sink.close()


def test_right_ca_right_password_connects(tls_broker, pki, monkeypatch):
    ok, err, dt = _attempt(tls_broker.tls_url, "s3cret", pki, monkeypatch, ca_file=pki["ca"])
    print(f"right CA + right password: connected={ok} in {dt:.2f} s")
    assert ok and err is None


def test_wrong_ca_fails_clearly(tls_broker, pki, monkeypatch):
    ok, err, dt = _attempt(tls_broker.tls_url, "s3cret", pki, monkeypatch, ca_file=pki["wrong_ca"])
    print(f"wrong CA: connected={ok}, {dt:.2f} s: {err}")
    assert not ok and err and "certificate" in err and "not trusted" in err
    assert "s3cret" not in err


def test_wrong_password_fails_clearly(tls_broker, pki, monkeypatch):
    ok, err, dt = _attempt(tls_broker.tls_url, "wrong", pki, monkeypatch, ca_file=pki["ca"])
    print(f"wrong password: connected={ok}, {dt:.2f} s: {err}")
    assert not ok and err and "refused the login" in err


def test_no_password_fails_clearly(tls_broker, pki, monkeypatch):
    ok, err, dt = _attempt(tls_broker.tls_url, None, pki, monkeypatch, ca_file=pki["ca"])
    print(f"no password: connected={ok}, {dt:.2f} s: {err}")
    assert not ok and err and "refused the login" in err


def test_plaintext_to_tls_port_fails_clearly(tls_broker, pki, monkeypatch):
    ok, err, dt = _attempt(f"mqtt://127.0.0.1:{tls_broker.tls_port}", "s3cret", pki, monkeypatch)
    print(f"plaintext to the TLS port: connected={ok}, {dt:.2f} s: {err}")
    assert not ok and err and "closed the connection before answering the login" in err and "mqtts://" in err


def test_tls_to_plaintext_port_fails_clearly(tls_broker, pki, monkeypatch):
    ok, err, dt = _attempt(f"mqtts://localhost:{tls_broker.port}", "s3cret", pki, monkeypatch, ca_file=pki["ca"])
    print(f"TLS to the plaintext port: connected={ok}, {dt:.2f} s: {err}")
    assert not ok and err and "TLS handshake" in err


def test_password_never_logged(tls_broker, pki, monkeypatch, caplog):
    caplog.set_level("DEBUG")
    _attempt(tls_broker.tls_url, "s3cret", pki, monkeypatch, ca_file=pki["ca"])
    _attempt(tls_broker.tls_url, "wr0ngpass", pki, monkeypatch, ca_file=pki["ca"])
    assert "s3cret" not in caplog.text and "wr0ngpass" not in caplog.text


def test_client_certificate_required(pki, monkeypatch):
    """A broker that requires client certificates: the device's certificate connects, none fails."""
    b = Mosquitto(tls={"ca": pki["ca"], "cert": pki["cert"], "key": pki["key"], "require_certificate": True},
                  users={"cam": "s3cret"})
    b.start()
    try:
        ok, err, dt = _attempt(b.tls_url, "s3cret", pki, monkeypatch, ca_file=pki["ca"],
                               cert_file=pki["client_cert"], key_file=pki["client_key"])
        print(f"client certificate: connected={ok} in {dt:.2f} s")
        assert ok and err is None
        ok, err, dt = _attempt(b.tls_url, "s3cret", pki, monkeypatch, ca_file=pki["ca"])
        print(f"no client certificate: connected={ok}, {dt:.2f} s: {err}")
        assert not ok and err and "client certificate" in err
    finally:
        b.cleanup()
