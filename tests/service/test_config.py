"""The TOML configuration: unknown keys rejected, errors name key and line, exit 78, example round trip."""

from __future__ import annotations

import subprocess
import sys

import pytest

try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib

from edgefer.config import Config, example_toml, key_lines, load_config
from edgefer.errors import ConfigError


def edgefer(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edgefer", *args], capture_output=True, text=True, timeout=120, **kw)


def test_example_is_valid_and_equals_the_defaults(tmp_path):
    text = example_toml()
    data = tomllib.loads(text)
    cfg = Config.model_validate(data)
    defaults = Config()
    for name in ("source", "detector", "classifier", "pipeline", "jsonl", "service", "tracker", "web", "metrics"):
        assert getattr(cfg, name) == getattr(defaults, name), name
    assert "mqtt" not in data, "MQTT stays off unless the user turns it on"
    # Every field of every section is described (the example shows each description).
    for name, field in Config.model_fields.items():
        for sub, f in field.annotation.model_fields.items():
            assert f.description, f"{name}.{sub} has no description"


def test_unknown_key_names_key_and_line(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("# comment\n[source]\nuri = \"clip.mp4\"\n\n[pipeline]\nmax_face = 3\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    msg = str(err.value)
    assert msg.startswith(f"{path}:6: pipeline.max_face: unknown key (known: max_faces)")
    assert err.value.exit_code == 78 and "\n" not in msg


def test_wrong_value_and_unknown_section(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("[service]\nhang_timeout_s = 0\n[camera]\nx = 1\n")
    msg = str(pytest.raises(ConfigError, load_config, path).value)
    assert f"{path}:2: service.hang_timeout_s: Input should be greater than 0 (got 0)" in msg
    assert f"{path}:3: camera: unknown key" in msg


def test_toml_syntax_error_has_the_line(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("[source]\nuri = clip.mp4\n")
    msg = str(pytest.raises(ConfigError, load_config, path).value)
    assert msg.startswith(f"{path}: invalid TOML") and "line 2" in msg


def test_flag_overrides_and_their_errors(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("[pipeline]\nmax_faces = 3\n[detector]\nmodel = \"models/yunet.onnx\"\n")
    cfg = load_config(path, {"pipeline": {"max_faces": 5}, "source": {"uri": None}})
    assert cfg.pipeline.max_faces == 5 and cfg.source.uri is None
    assert cfg.detector.model == (tmp_path / "models" / "yunet.onnx"), "relative to the config file"
    msg = str(pytest.raises(ConfigError, load_config, path, {"pipeline": {"max_faces": 0}}).value)
    assert msg.startswith("pipeline.max_faces (from the command line): Input should be greater than or equal to 1")


def test_key_lines():
    text = "a = 1\n[s]\nb = 2 # x\n\"q.r\" = 3\n[t.u]\nc.d = 4\n"
    assert key_lines(text) == {("a",): 1, ("s",): 2, ("s", "b"): 3, ("s", "q.r"): 4, ("t", "u"): 5,
                               ("t", "u", "c", "d"): 6}


def test_cli_check_and_example(tmp_path):
    ok = edgefer("config", "--example")
    assert ok.returncode == 0
    good = tmp_path / "good.toml"
    good.write_text(ok.stdout)
    r = edgefer("config", "--check", str(good))
    assert r.returncode == 0 and r.stdout.strip() == f"{good}: OK"
    bad = tmp_path / "bad.toml"
    bad.write_text("[source]\nstall_timeout_s = \"soon\"\n")
    for args in (("config", "--check", str(bad)), ("run", "--config", str(bad))):
        r = edgefer(*args)
        assert r.returncode == 78, r.stderr
        lines = r.stderr.strip().splitlines()
        assert lines == [f"edgefer: error: {bad}:2: source.stall_timeout_s: Input should be a valid number, "
                         "unable to parse string as a number (got 'soon')"]


def test_unwritable_state_dir_names_key_and_line_and_exits_78(tmp_path):
    """`[mqtt] state_dir` (and `[jsonl] path`) where nothing can be written: refused when the file is
    read (`config --check`, `run`, a reload), naming the key and its line, before any work starts."""
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    cases = {"/proc/edgefer-mqtt": "No such file or directory", f"{tmp_path}/c.toml/x": "Not a directory"}
    if subprocess.run(["touch", str(ro / "probe")], capture_output=True).returncode != 0:  # root may write anyway
        cases[str(ro / "mqtt")] = "Permission denied"
    for state_dir, why in cases.items():
        path = tmp_path / "c.toml"
        path.write_text(f'[source]\nuri = "clip.mp4"\n\n[mqtt]\nhost = "127.0.0.1"\nstate_dir = "{state_dir}"\n')
        for args in (["config", "--check", str(path)], ["run", "--config", str(path), "--max-frames", "1"]):
            r = edgefer(*args)
            assert r.returncode == 78, r.stderr
            assert r.stderr.strip().splitlines() == [f"edgefer: error: {path}:6: mqtt.state_dir: cannot write {state_dir}: {why}"]
    path.write_text('[jsonl]\npath = "/proc/x/results.jsonl"\n')
    msg = str(pytest.raises(ConfigError, load_config, path).value)
    assert msg == f"{path}:2: jsonl.path: cannot write /proc/x/results.jsonl: No such file or directory"
    # A folder that does not exist yet but can be made is fine (the daemon makes it).
    path.write_text(f'[mqtt]\nstate_dir = "{tmp_path}/new/mqtt"\n')
    assert load_config(path).mqtt.state_dir == tmp_path / "new" / "mqtt" and not (tmp_path / "new").exists()
