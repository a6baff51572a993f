"""The shadow check on real models and real photos: a broken artifact is caught within the first
faces and the pipeline falls back to FP32 (or refuses); a correct one passes; every outcome shows
in the status line, /healthz, the metrics and the MQTT status payload (the runner's snapshot)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from edgefer.convert.engine_cache import sha256_file
from edgefer.edge.classifier import Classifier, default_model_path
from edgefer.edge.pipeline import open_pipeline
from edgefer.edge.precision import embedded_int8_path
from edgefer.edge.service import status_line
from edgefer.edge.shadow import ShadowCheckFailed, ShadowConfig, compare, judge, reference_model
from edgefer.edge.sources.files import ImageFolderSource
from edgefer.errors import ConfigError


def perturbed(src: Path, out: Path, factor: float = 1.5) -> Path:
    """`src` with the weight scales of its first two convolutions multiplied by `factor`: a model
    that loads, runs and carries the right contract, but computes something else."""
    model = onnx.load(str(src))
    inits = {i.name: i for i in model.graph.initializer}
    producers = {o: n for n in model.graph.node for o in n.output}
    for conv in [n for n in model.graph.node if n.op_type == "Conv"][:2]:
        scale = producers[conv.input[1]].input[1]
        inits[scale].CopyFrom(numpy_helper.from_array(numpy_helper.to_array(inits[scale]) * np.float32(factor), scale))
    onnx.save(model, str(out))
    return out


@pytest.fixture(scope="module")
def broken(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return perturbed(embedded_int8_path(), tmp_path_factory.mktemp("shadow") / "broken.int8.onnx")


@pytest.fixture(scope="module")
def faces_folder(photos_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("shadow_photos")
    for f in sorted((photos_dir / "happy").glob("*.jpg"))[:36] + sorted((photos_dir / "sad").glob("*.jpg"))[:12]:
        shutil.copy(f, folder / f.name)
    return folder


def run_photos(pipe, folder: Path) -> list:
    src = ImageFolderSource(folder)
    results = []
    while (frame := src.read()) is not None:
        results.append(pipe.process(frame))
    if pipe.shadow is not None:
        pipe.shadow.finish()
    return results


def test_compare_and_judge() -> None:
    p = np.array([[0.9, 0.1], [0.2, 0.8]], np.float32)
    f = compare(p, p, p, p)
    assert f["agreement"] == 1.0 and f["mean_prob_diff"] == 0.0 and f["max_prob_diff"] == 0.0
    assert judge(f, ShadowConfig())[0]
    q = np.array([[0.1, 0.9], [0.2, 0.8]], np.float32)
    f = compare(p, p, q, p)
    assert f["agreement"] == 0.5 and f["mean_prob_diff"] == pytest.approx(0.4) and f["max_prob_diff"] == pytest.approx(0.8)
    ok, summary = judge(f, ShadowConfig())
    assert not ok and "agreement 50.0%" in summary


def test_reference_is_found_by_sha256(broken: Path, tmp_path: Path) -> None:
    info = Classifier.open(broken).info
    path, reason = reference_model(info)
    assert path == default_model_path() and not reason
    assert reference_model(Classifier.open(None).info) == (None, "an FP32 model is its own reference")
    with pytest.raises(ConfigError, match="not the FP32 model this int8 model was converted from"):
        reference_model(info, broken)  # any other file than its FP32 source
    orphan = tmp_path / "orphan.int8.onnx"
    model = onnx.load(str(broken))
    from edgefer.modelinfo import read_onnx_info, write_onnx_info

    meta = read_onnx_info(model)
    meta.extra["conversion"]["source_sha256"] = "0" * 64
    write_onnx_info(model, meta)
    onnx.save(model, str(orphan))
    path, reason = reference_model(Classifier.open(orphan).info)
    assert path is None and "[shadow] reference" in reason
    with pytest.raises(ConfigError, match="sha256"):
        reference_model(Classifier.open(orphan).info, default_model_path())


def test_broken_artifact_is_caught_and_the_pipeline_falls_back(broken: Path, faces_folder: Path, yunet_path: Path) -> None:
    pipe = open_pipeline(model=broken, shadow=ShadowConfig(faces=20), detector=yunet_path, threads=1)
    fp32 = open_pipeline(detector=yunet_path, threads=1)
    try:
        results = run_photos(pipe, faces_folder)
        r = pipe.shadow.result()
        assert r["state"] == "failed" and r["action"] == "fell back to FP32", r
        assert 20 <= r["faces"] <= 30  # within the first N faces (the queue holds a few batches)
        assert r["mean_prob_diff"] > 0.05
        assert pipe.classifier.info.precision == "fp32" and pipe.choice["precision"] == "fp32"
        # after the fallback, the pipeline's results are the FP32 model's
        reference = run_photos(fp32, faces_folder)
        tail = [(a, b) for a, b in zip(results, reference) if a.faces and b.faces][-10:]
        assert tail and all(np.allclose(a.faces[0].probabilities, b.faces[0].probabilities, atol=1e-5) for a, b in tail)
        snap = {"state": "streaming", "shadow": r}
        assert "shadow check FAILED, fell back to FP32" in status_line(snap)
    finally:
        pipe.close()
        fp32.close()


def test_correct_artifact_passes(faces_folder: Path, yunet_path: Path) -> None:
    pipe = open_pipeline(model=embedded_int8_path(), shadow=ShadowConfig(faces=20), detector=yunet_path, threads=1)
    try:
        run_photos(pipe, faces_folder)
        r = pipe.shadow.result()
        assert r["state"] == "passed", r
        assert r["mean_prob_diff"] < 0.03 and r["agreement"] >= 0.9
        assert pipe.classifier.info.precision == "int8"
    finally:
        pipe.close()


def test_refuse_stops_the_pipeline(broken: Path, faces_folder: Path, yunet_path: Path) -> None:
    pipe = open_pipeline(model=broken, shadow=ShadowConfig(faces=10, on_failure="refuse"), detector=yunet_path, threads=1)
    try:
        with pytest.raises(ShadowCheckFailed, match="shadow check failed: disagrees with its FP32 model"):
            for _ in range(20):
                run_photos(pipe, faces_folder)
    finally:
        pipe.close()


@pytest.fixture(scope="module")
def trt_scheme(fer_npz: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The embedded model converted with --for tensorrt (full-range int8 weights)."""
    from edgefer.calibration.build import build_calibration_set
    from edgefer.convert.chain import Request, convert

    tmp = tmp_path_factory.mktemp("trt_scheme")
    build_calibration_set([fer_npz], tmp / "calib.npz", Classifier.open(None).info.input, per_class=20)
    out = tmp / "m.trt.onnx"
    convert(Request(model=default_model_path(), target="onnx-int8", out=out, calib=tmp / "calib.npz", int8_for="tensorrt"))
    return out


def test_an_artifact_known_to_be_wrong_here_fails_before_the_first_face(trt_scheme: Path, yunet_path: Path) -> None:
    """A full-range (tensorrt scheme) artifact where the probe says full-range INT8 saturates: no
    face goes through it. The facts are those the probe measures on such a CPU (x86 without VNNI;
    measured under emulation in tests/convert/test_emulated_cpus.py); with the facts of an exact
    CPU the same artifact runs."""
    avx2 = {"cpu_kind": "x86-avx2", "full_range": False, "cpu_scheme": True}
    pipe = open_pipeline(model=trt_scheme, shadow=ShadowConfig(), detector=yunet_path, threads=1, facts=avx2)
    try:
        r = pipe.shadow.result()
        assert r["state"] == "failed" and "not computed exactly" in r["reason"], r
        assert r.get("faces", 0) == 0  # no face was compared, none was needed
        assert pipe.shadow.failed and pipe.classifier.info.precision == "fp32"
    finally:
        pipe.close()
    vnni = {"cpu_kind": "x86-vnni", "full_range": True, "cpu_scheme": True}
    pipe = open_pipeline(model=trt_scheme, shadow=ShadowConfig(), detector=yunet_path, threads=1, facts=vnni)
    try:
        assert pipe.shadow.state == "checking" and pipe.classifier.info.precision == "int8"
    finally:
        pipe.close()


def test_no_shadow_for_fp32_and_when_turned_off(yunet_path: Path) -> None:
    pipe = open_pipeline(shadow=ShadowConfig(), detector=yunet_path, threads=1)
    assert pipe.shadow is None
    pipe.close()
    pipe = open_pipeline(model=embedded_int8_path(), shadow=ShadowConfig(enabled=False), detector=yunet_path, threads=1)
    assert pipe.shadow is None and pipe.classifier.info.precision == "int8"
    pipe.close()


def test_embedded_int8_is_the_twin_of_the_embedded_model() -> None:
    """Fails while the shipped INT8 model is stale (rebuild it with scripts/embed_int8.py)."""
    info = Classifier.open(embedded_int8_path()).info
    conv = info.extra["conversion"]
    assert conv["source_sha256"] == sha256_file(default_model_path())
    assert conv["int8"]["name"] == "cpu" and info.precision == "int8"


def test_eval_and_predict_report_a_failed_shadow_check(broken: Path, fer_npz: Path, faces_folder: Path,
                                                       yunet_path: Path) -> None:
    import json
    import subprocess
    import sys

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "edgefer", *map(str, args)], capture_output=True, text=True,
                              timeout=300)

    r = cli("eval", fer_npz, "--split", "PublicTest", "--model", broken, "--json")
    assert r.returncode == 0 and json.loads(r.stdout)["shadow"]["state"] == "failed"
    assert "warning: shadow check failed" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    r = cli("eval", fer_npz, "--split", "PublicTest", "--model", embedded_int8_path(), "--json")
    assert json.loads(r.stdout)["shadow"]["state"] == "passed" and not r.stderr.strip()
    r = cli("predict", faces_folder, "--model", broken, "--detector", yunet_path)
    assert r.returncode == 1 and "error: shadow check failed" in r.stderr
    assert len(r.stdout.strip().splitlines()) == 48  # every photo's result is still printed
