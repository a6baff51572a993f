"""The shipped systemd unit: lint clean, exposure <= 2.0, and what install-service writes from it."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from edgefer.systemd.install import plan, render_unit, unit_template

pytestmark = pytest.mark.skipif(shutil.which("systemd-analyze") is None,
                                reason="systemd-analyze is missing (apt-get install -y systemd)")

EXE = Path("/usr/bin/env")  # verify wants ExecStart's binary to exist


def rendered(tmp_path: Path, text: str | None = None) -> Path:
    path = tmp_path / "edgefer.service"
    shipped = unit_template().replace("@EDGEFER@", str(EXE)).replace("@CONFIG@", "/etc/edgefer/config.toml")
    path.write_text(text or shipped)
    return path


def test_verify_is_clean(tmp_path):
    installed = render_unit(EXE, Path("/etc/edgefer/config.toml"), "edgefer", groups=["video"])
    for path in (rendered(tmp_path), rendered(tmp_path / "..", installed)):
        r = subprocess.run(["systemd-analyze", "verify", "--recursive-errors=yes", str(path)],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0 and r.stderr.strip() == "", r.stderr


def exposure(path: Path) -> float:
    r = subprocess.run(["systemd-analyze", "security", "--offline=yes", str(path)], capture_output=True, text=True,
                       timeout=60)
    m = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", r.stdout)
    assert m, r.stdout[-500:] + r.stderr
    return float(m.group(1))


def test_security_exposure_at_most_2(tmp_path):
    score = exposure(rendered(tmp_path))
    print(f"\nexposure {score}")
    assert score <= 2.0
    # What install-service writes here (and its variant for installs in a home folder) too.
    installed = render_unit(EXE, Path("/etc/edgefer/config.toml"), "edgefer", groups=["video"])
    assert exposure(rendered(tmp_path, installed)) <= 2.0
    ro = installed.replace("ProtectHome=yes", "ProtectHome=read-only")
    assert exposure(rendered(tmp_path, ro)) <= 2.0
    # And a bare unit really scores badly (the check measures something).
    bare = "[Service]\nExecStart=/usr/bin/env\n"
    assert exposure(rendered(tmp_path, bare)) > 9.0


def test_unit_contract():
    t = unit_template()
    for line in ("Type=notify", "Restart=on-failure", "RestartPreventExitStatus=78", "ProtectSystem=strict",
                 "StateDirectory=edgefer", "NoNewPrivileges=yes", "DevicePolicy=closed",
                 "DeviceAllow=char-video4linux rw", "DeviceAllow=char-nvhost* rw", "DeviceAllow=char-drm rw"):
        assert re.search(rf"^{re.escape(line)}$", t, re.M), line
    watchdog = int(re.search(r"^WatchdogSec=(\d+)$", t, re.M).group(1))
    from edgefer.config import ServiceConfig

    assert ServiceConfig().hang_timeout_s < watchdog, "a hang is noticed before systemd's watchdog fires"
    assert re.search(r"^SupplementaryGroups=video render$", t, re.M)
    assert "@EDGEFER@" in t and "@CONFIG@" in t


def test_render_uses_existing_groups_and_user():
    text = render_unit(EXE, Path("/etc/e/c.toml"), "fer", groups=[])
    assert "User=fer\n" in text and "Group=fer\n" in text and "\nSupplementaryGroups=" not in text
    assert "ExecStart=/usr/bin/env run --config /etc/e/c.toml" in text


def test_install_to_folders(tmp_path):
    try:
        import tomllib
    except ImportError:  # Python 3.10
        import tomli as tomllib

    from edgefer.systemd.install import install

    p = plan(EXE, "edgefer", tmp_path / "etc", tmp_path / "units", source="v4l2:///dev/video1", create_user=False)
    install(p)
    unit = (tmp_path / "units" / "edgefer.service").read_text()
    assert f"ExecStart={EXE} run --config {tmp_path / 'etc' / 'config.toml'}" in unit
    cfg = tomllib.loads((tmp_path / "etc" / "config.toml").read_text())
    assert cfg["source"]["uri"] == "v4l2:///dev/video1"
    assert oct((tmp_path / "etc" / "config.toml").stat().st_mode & 0o777) == "0o640"
    # A second install keeps the user's edited configuration.
    (tmp_path / "etc" / "config.toml").write_text("[source]\nuri = \"mine\"\n")
    p2 = plan(EXE, "edgefer", tmp_path / "etc", tmp_path / "units", create_user=False)
    install(p2)
    assert "mine" in (tmp_path / "etc" / "config.toml").read_text()
    assert any("keep existing" in a for a in p2.actions)


def test_cli_dry_run_writes_nothing(tmp_path):
    import sys

    r = subprocess.run([sys.executable, "-m", "edgefer", "install-service", "--dry-run", "--config-dir",
                        str(tmp_path / "etc"), "--unit-dir", str(tmp_path / "u"), "--executable", str(EXE),
                        "--user", "nobody"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "Type=notify" in r.stdout and f"would write {tmp_path / 'u' / 'edgefer.service'}" in r.stdout
    assert "create system user" not in r.stdout  # nobody exists
    assert not (tmp_path / "etc").exists() and not (tmp_path / "u").exists()
