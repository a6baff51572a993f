"""`edgefer install-service`: the shipped unit and a configuration, filled in for this machine.

The unit template (`edgefer.service` beside this file) has two placeholders, `@EDGEFER@` (the
installed `edgefer` executable) and `@CONFIG@` (the configuration file); the user and the
supplementary groups are set to what exists here (a `render` group is not on every board, and
systemd refuses to start a unit naming a missing group). Files are written atomically (temporary
file, then rename); an existing configuration is kept unless `force` is given.
"""

from __future__ import annotations

import grp
import os
import pwd
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from edgefer.errors import UserError

UNIT_NAME = "edgefer.service"
DEVICE_GROUPS = ("video", "render")


def unit_template() -> str:
    return (resources.files("edgefer.systemd") / UNIT_NAME).read_text(encoding="utf-8")


def find_executable() -> Path:
    """The `edgefer` console script of this installation (the one on PATH next to this Python first)."""
    beside = Path(sys.executable).parent / "edgefer"
    if beside.is_file() and os.access(beside, os.X_OK):
        return beside.resolve()
    found = shutil.which("edgefer")
    if found:
        return Path(found).resolve()
    raise UserError("cannot find the installed `edgefer` executable; pass --executable PATH")


def existing_groups(names: tuple[str, ...] = DEVICE_GROUPS) -> list[str]:
    out = []
    for name in names:
        try:
            grp.getgrnam(name)
        except KeyError:
            continue
        out.append(name)
    return out


def render_unit(executable: Path, config: Path, user: str = "edgefer", groups: list[str] | None = None) -> str:
    """The unit text for this machine."""
    for value, what in ((str(executable), "executable"), (str(config), "config path")):
        if not value.startswith("/") or re.search(r"\s", value):
            raise UserError(f"the {what} must be an absolute path without spaces, got {value!r}")
    if not re.fullmatch(r"[a-z_][a-z0-9_-]{0,31}", user):
        raise UserError(f"{user!r} is not a valid system user name")
    text = unit_template().replace("@EDGEFER@", str(executable)).replace("@CONFIG@", str(config))
    text = re.sub(r"^User=.*$", f"User={user}", text, flags=re.M)
    text = re.sub(r"^Group=.*$", f"Group={user}", text, flags=re.M)
    if any(_under_home(p) for p in (executable, config, Path(sys.prefix), Path(sys.executable).resolve())):
        # ProtectHome=yes would hide an installation (or config) that lives in a home folder.
        text = re.sub(r"^ProtectHome=yes$", "ProtectHome=read-only", text, flags=re.M)
    groups = existing_groups() if groups is None else groups
    line = f"SupplementaryGroups={' '.join(groups)}" if groups else "# SupplementaryGroups= (no video/render group here)"
    return re.sub(r"^SupplementaryGroups=.*$", line, text, flags=re.M)


def _under_home(path: Path) -> bool:
    return any(str(path).startswith(home) for home in ("/home/", "/root/", "/run/user/"))


def render_config(source: str | None = None) -> str:
    """The commented example configuration, with `[source] uri` set when given; validated."""
    from edgefer.config import example_toml, load_config

    text = "# Written by `edgefer install-service`. Check edits with `edgefer config --check FILE`,\n" \
           "# then `systemctl reload edgefer` (an invalid file is refused and the running one kept).\n" + example_toml()
    if source is not None:
        text = text.replace("# uri =\n", f"uri = {_toml_string(source)}\n", 1)
    with tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False) as fh:
        fh.write(text)
    try:
        load_config(fh.name)
    finally:
        os.unlink(fh.name)
    return text


def _toml_string(s: str) -> str:
    import json

    return json.dumps(s)


def write_atomic(path: Path, text: str, mode: int, group: str | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.chmod(tmp, mode)
        if group is not None:
            try:
                os.chown(tmp, -1, grp.getgrnam(group).gr_gid)
            except (KeyError, PermissionError):
                pass
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


@dataclass
class Plan:
    """What `install` does (or, dry, would do): each action as one printable line."""

    unit_path: Path
    config_path: Path
    unit_text: str
    config_text: str | None  # None: keep the existing configuration
    user: str
    create_user: list[str] | None  # the useradd command, when the user is missing
    actions: list[str] = field(default_factory=list)


def plan(executable: Path | None = None, user: str = "edgefer", config_dir: Path = Path("/etc/edgefer"),
         unit_dir: Path = Path("/etc/systemd/system"), source: str | None = None, force: bool = False,
         create_user: bool = True) -> Plan:
    executable = executable or find_executable()
    config_path = config_dir / "config.toml"
    unit_text = render_unit(executable, config_path, user)
    keep = config_path.exists() and not force
    p = Plan(unit_dir / UNIT_NAME, config_path, unit_text, None if keep else render_config(source), user, None)
    try:
        pwd.getpwnam(user)
    except KeyError:
        if create_user:
            p.create_user = ["useradd", "--system", "--user-group", "--no-create-home", "--home-dir", "/var/lib/edgefer",
                             "--shell", "/usr/sbin/nologin", user]
    if p.create_user:
        p.actions.append("create system user: " + " ".join(p.create_user))
    p.actions.append(f"write {p.unit_path} (ExecStart={executable} run --config {config_path}, User={user})")
    if "ProtectHome=read-only" in unit_text:
        p.actions.append("note: edgefer is installed in a home folder, so the unit uses ProtectHome=read-only; "
                         f"user {user} must be able to read it (a system-wide install or venv under /opt is better)")
    p.actions.append(f"keep existing {config_path} (--force replaces it)" if keep else f"write {config_path}")
    return p


def install(p: Plan) -> None:
    """Carry out a plan. Needs write access to the target folders (root for /etc)."""
    try:
        if p.create_user:
            subprocess.run(p.create_user, check=True, capture_output=True, text=True)
        write_atomic(p.unit_path, p.unit_text, 0o644)
        if p.config_text is not None:
            write_atomic(p.config_path, p.config_text, 0o640, group=p.user)
    except PermissionError as exc:
        raise UserError(f"{exc.filename}: permission denied; run with sudo, or use --dry-run to see what would be done") from None
    except subprocess.CalledProcessError as exc:
        raise UserError(f"creating user {p.user} failed: {(exc.stderr or '').strip()}") from None
    except OSError as exc:  # a folder that cannot be created, a read-only or full file system, ...
        from edgefer.paths import reason

        raise UserError(f"cannot write {exc.filename or p.config_path.parent}: {reason(exc)}") from None
