"""Engine cache keys, sidecars and the load / rebuild / refuse decision (no TensorRT needed)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgefer.convert.engine_cache import (
    EngineKey,
    cache_path,
    check_engine,
    compare_runtime,
    contract_of,
    make_sidecar,
    read_sidecar,
    sha256_file,
    write_sidecar,
)
from edgefer.errors import ConfigError
from edgefer.modelinfo import ModelInfo

KEY = EngineKey("a" * 64, "10.3.0", "8.7", "int8")


def fake_engine(folder: Path, key: EngineKey = KEY, info: ModelInfo | None = None) -> Path:
    engine = folder / "model.engine"
    engine.write_bytes(b"serialised engine bytes")
    write_sidecar(engine, make_sidecar(info or ModelInfo(precision="int8"), key, sha256_file(engine), {"x": 1}))
    return engine


def test_key_digest_is_stable_and_sensitive() -> None:
    assert KEY.digest() == EngineKey("a" * 64, "10.3.0", "8.7", "int8").digest()
    others = [EngineKey("b" * 64, "10.3.0", "8.7", "int8"), EngineKey("a" * 64, "10.4.0", "8.7", "int8"),
              EngineKey("a" * 64, "10.3.0", "8.6", "int8"), EngineKey("a" * 64, "10.3.0", "8.7", "fp16")]
    assert len({KEY.digest(), *(k.digest() for k in others)}) == 5
    assert KEY.differences(others[2]) == ["compute_capability 8.6 != 8.7"]
    assert cache_path("/models", "edgefer-fer-v1.onnx", KEY) == Path(f"/models/edgefer-fer-v1.int8.{KEY.digest()}.engine")


def test_valid_engine_is_ok_and_carries_the_contract(tmp_path: Path) -> None:
    engine = fake_engine(tmp_path)
    check = check_engine(engine, KEY, tmp_path)
    assert check.status == "ok", check.reasons
    info = contract_of(check.sidecar, str(engine))
    assert info is not None and info.precision == "int8"
    assert compare_runtime(check.sidecar, "10.3.0", "8.7") == []
    assert compare_runtime(check.sidecar, "10.5.0", "8.9") == ["TensorRT 10.3.0 != 10.5.0 here",
                                                              "GPU compute capability 8.7 != 8.9 here"]


def test_engine_without_sidecar_is_refused(tmp_path: Path) -> None:
    engine = tmp_path / "m.engine"
    engine.write_bytes(b"x")
    check = check_engine(engine, KEY, tmp_path)
    assert check.status == "refused" and "no sidecar" in check.reasons[0]
    with pytest.raises(ConfigError):
        read_sidecar(engine)


def test_modified_engine_is_refused(tmp_path: Path) -> None:
    engine = fake_engine(tmp_path)
    engine.write_bytes(b"tampered")
    check = check_engine(engine, KEY, tmp_path)
    assert check.status == "refused" and "sha256" in check.reasons[0]


def test_engine_outside_model_dir_is_refused(tmp_path: Path) -> None:
    (tmp_path / "models").mkdir()
    (tmp_path / "elsewhere").mkdir()
    engine = fake_engine(tmp_path / "elsewhere")
    check = check_engine(engine, KEY, tmp_path / "models")
    assert check.status == "refused" and "outside the model directory" in check.reasons[0]
    link = tmp_path / "models" / "link.engine"
    link.symlink_to(engine)  # a symlink pointing out of the folder is outside too
    assert check_engine(link, KEY, tmp_path / "models").status == "refused"


def test_foreign_engine_is_stale(tmp_path: Path) -> None:
    engine = fake_engine(tmp_path, EngineKey("a" * 64, "8.6.2", "7.2", "int8"))
    check = check_engine(engine, KEY, tmp_path)
    assert check.status == "stale"
    assert "trt_version 8.6.2 != 10.3.0" in check.reasons[0] and "compute_capability 7.2 != 8.7" in check.reasons[0]


def test_malformed_sidecar_is_refused(tmp_path: Path) -> None:
    engine = fake_engine(tmp_path)
    sidecar = Path(str(engine) + ".json")
    data = json.loads(sidecar.read_text())
    del data["key"]["precision"]
    sidecar.write_text(json.dumps(data))
    check = check_engine(engine, KEY, tmp_path)
    assert check.status == "refused" and "malformed" in check.reasons[0]
    sidecar.write_text("{not json")
    assert check_engine(engine, KEY, tmp_path).status == "refused"


def test_detector_sidecar_has_no_contract(tmp_path: Path) -> None:
    engine = tmp_path / "yunet.engine"
    engine.write_bytes(b"y")
    write_sidecar(engine, make_sidecar(None, KEY, sha256_file(engine), {}))
    check = check_engine(engine, KEY, tmp_path)
    assert check.status == "ok" and contract_of(check.sidecar, "y") is None


def test_cache_decision(tmp_path: Path) -> None:
    from edgefer.convert.engine_cache import cache_decision

    missing = check_engine(tmp_path / "absent.engine", KEY, tmp_path)
    assert cache_decision(missing) == "build"
    engine = fake_engine(tmp_path)
    assert cache_decision(check_engine(engine, KEY, tmp_path)) == "use"
    other = EngineKey("a" * 64, "10.4.0", "8.7", "int8")
    assert cache_decision(check_engine(engine, other, tmp_path)) == "build"  # stale: rebuilt, never loaded
    engine.write_bytes(b"someone else's file")
    assert cache_decision(check_engine(engine, KEY, tmp_path)) == "refuse"
