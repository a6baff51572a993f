"""Train a tiny run for a few steps on a slice of FER-2013, export it, and check the exported ONNX
end to end through the CLI: metadata, output shapes and ranges, `edgefer eval --json`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the training extra (torch) is not installed")

from edgefer.contract import CLASS_NAMES, ferplus_shares  # noqa: E402
from edgefer.modelinfo import read_onnx_info  # noqa: E402

EDGEFER = [sys.executable, "-m", "edgefer"]


def cli(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run([*EDGEFER, *map(str, args)], capture_output=True, text=True, check=check, timeout=600)


@pytest.fixture(scope="module")
def slice_npz(tmp_path_factory, fer_slice) -> Path:
    """512 Training and 256 PublicTest rows, in the shared npz format."""
    return fer_slice(tmp_path_factory.mktemp("data") / "slice.npz", 512, 256)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, slice_npz) -> Path:
    out = tmp_path_factory.mktemp("run")
    cli("train", "--data", slice_npz, "--out", out, "--epochs", "2", "--max-steps", "3", "--threads", "2")
    return out


def test_train_writes_checkpoint_and_logs(run_dir):
    history = json.loads((run_dir / "history.json").read_text())
    assert history[-1]["step"] == 3
    assert {"val_accuracy", "val_intensity_rmse", "val_ferplus_accuracy", "val_ferplus_accuracy_clear",
            "train_loss"} <= set(history[-1])
    assert (run_dir / "curves.png").stat().st_size > 1000
    assert (run_dir / "last.pt").exists()


def test_refuses_to_overwrite_a_run_without_resume(run_dir, slice_npz):
    r = cli("train", "--data", slice_npz, "--out", run_dir, "--max-steps", "1", check=False)
    assert r.returncode != 0 and "--resume" in r.stderr and "Traceback" not in r.stderr


def test_seeded_runs_are_reproducible(tmp_path, slice_npz):
    """Two runs with the same seed and config give bit-identical weights."""
    from edgefer.data import load_faces
    from edgefer.train.config import TrainConfig
    from edgefer.train.recipe import train

    faces = load_faces(slice_npz)
    for name in ("a", "b"):
        train(faces, tmp_path / name, TrainConfig(epochs=1, batch_size=64, threads=1, max_steps=4), progress=False)
    a = torch.load(tmp_path / "a" / "last.pt", weights_only=False)["model"]
    b = torch.load(tmp_path / "b" / "last.pt", weights_only=False)["model"]
    for k in a:
        assert torch.equal(a[k], b[k]), f"not reproducible: {k}"


def test_resume_across_epochs(tmp_path, slice_npz):
    from edgefer.data import load_faces
    from edgefer.train.config import TrainConfig
    from edgefer.train.recipe import train

    faces = load_faces(slice_npz)
    small = dict(batch_size=256, threads=1)  # 2 steps per epoch on 512 rows
    train(faces, tmp_path / "full", TrainConfig(epochs=2, **small), progress=False)
    train(faces, tmp_path / "part", TrainConfig(epochs=2, max_steps=2, **small), progress=False)
    train(faces, tmp_path / "part", TrainConfig(epochs=2, **small), resume=True, progress=False)
    a = torch.load(tmp_path / "full" / "last.pt", weights_only=False)
    b = torch.load(tmp_path / "part" / "last.pt", weights_only=False)
    assert a["step"] == b["step"] == 4
    for k in a["model"]:
        assert torch.allclose(a["model"][k].float(), b["model"][k].float(), atol=1e-6), k


def test_moving_average_is_delivered_and_survives_resume(tmp_path, slice_npz):
    """With --ema the checkpoint delivers the averaged weights (export and --init take them), and a
    run interrupted between epochs ends with the same average as an uninterrupted one."""
    from edgefer.data import load_faces
    from edgefer.train.checkpoint import delivered_weights, load_checkpoint
    from edgefer.train.config import TrainConfig
    from edgefer.train.recipe import train

    faces = load_faces(slice_npz)
    small = dict(batch_size=256, threads=1, ema=0.5)  # 2 steps per epoch on 512 rows
    train(faces, tmp_path / "full", TrainConfig(epochs=2, **small), progress=False)
    train(faces, tmp_path / "part", TrainConfig(epochs=2, max_steps=2, **small), progress=False)
    train(faces, tmp_path / "part", TrainConfig(epochs=2, **small), resume=True, progress=False)
    a = torch.load(tmp_path / "full" / "last.pt", weights_only=False)
    b = torch.load(tmp_path / "part" / "last.pt", weights_only=False)
    for k in a["ema"]:
        assert torch.allclose(a["ema"][k].float(), b["ema"][k].float(), atol=1e-6), k
    w = "features.0.0.weight"
    assert not torch.allclose(a["ema"][w], a["model"][w]), "the average should lag the last weights"
    assert delivered_weights(a) is a["ema"]
    model, _ = load_checkpoint(tmp_path / "full" / "last.pt")
    assert torch.equal(model.state_dict()[w], a["ema"][w])
    # the logged validation figures are those of the delivered (averaged) weights
    assert "val_raw_accuracy" in a["history"][-1]


def test_fine_tune_stage_starts_from_init_and_sees_deployment_framing(tmp_path, run_dir, slice_npz, yunet_path):
    """The second stage of the default model's recipe: weights from a checkpoint, and a share of each
    batch re-framed by the deployment detector and aligner (cached, so a resumed run reuses it)."""
    from edgefer.cli.train import load_template
    from edgefer.data import load_faces
    from edgefer.train.config import TrainConfig
    from edgefer.train.realign import realigned_cached
    from edgefer.train.recipe import train

    faces = load_faces(slice_npz)
    tpl = load_template(None)["points"]
    cfg = dict(epochs=1, batch_size=64, threads=1, lr=0.0, warmup_frac=0.0, dropout=0.0, init=str(run_dir / "last.pt"),
               detector=str(yunet_path), template=tpl)
    # lr 0: the weights must stay exactly those of --init (so they were loaded, not re-initialised).
    train(faces, tmp_path / "ft", TrainConfig(max_steps=1, realigned_frac=1.0, **cfg), progress=False)
    init = torch.load(run_dir / "last.pt", weights_only=False)["model"]
    ft = torch.load(tmp_path / "ft" / "last.pt", weights_only=False)["model"]
    for k in init:
        if k.endswith(("running_mean", "running_var", "num_batches_tracked")):
            continue  # batch-norm statistics move in train mode even at lr 0
        assert torch.equal(init[k], ft[k]), k
    cache = list((tmp_path / "ft").glob("realigned-*.npz"))
    assert len(cache) == 1
    crops, found = realigned_cached(faces.split("Training").pixels, yunet_path, tpl, 48, tmp_path / "ft")
    print(f"realigned: faces found on {found.sum()}/{len(found)} training crops")
    assert found.mean() > 0.9 and crops.shape == (512, 48, 48)
    # re-framed crops differ from the originals (else the stage would teach nothing)
    assert np.abs(crops[found].astype(int) - faces.split("Training").pixels[found]).mean() > 5
    # and they do reach the network: batch-norm statistics differ from a run on the original crops
    train(faces, tmp_path / "plain", TrainConfig(max_steps=1, **cfg), progress=False)
    plain = torch.load(tmp_path / "plain" / "last.pt", weights_only=False)["model"]
    assert not torch.equal(plain["features.0.1.running_mean"], ft["features.0.1.running_mean"])


def test_realigned_crops_shared_among_workers_are_those_of_one_process(tmp_path, fer_npz, yunet_path):
    """Framing the training crops is spread over processes (one per core on a GPU machine's many
    cores); each face is framed on its own, so two workers give the crops one process gives."""
    from edgefer.cli.train import load_template
    from edgefer.data import load_faces
    from edgefer.train.realign import realigned_cached

    pixels = load_faces(fer_npz).split("Training").pixels[:2000]
    tpl = load_template(None)["points"]
    one = realigned_cached(pixels, yunet_path, tpl, 48, tmp_path / "one", progress=False, workers=1)
    two = realigned_cached(pixels, yunet_path, tpl, 48, tmp_path / "two", progress=False, workers=2)
    assert one[1].mean() > 0.9
    assert np.array_equal(one[1], two[1])
    assert np.abs(one[0].astype(int) - two[0].astype(int)).max() <= 1  # ONNX Runtime on 1 thread vs default


@pytest.fixture(scope="module")
def exported(run_dir, tmp_path_factory, slice_npz) -> Path:
    tpl = tmp_path_factory.mktemp("tpl") / "template.json"
    tpl.write_text(json.dumps({"size": 48, "points": [[15, 18], [33, 18], [24, 27], [17, 36], [31, 36]]}))
    out = run_dir / "model.onnx"
    r = cli("export", "--checkpoint", run_dir / "last.pt", "--out", out, "--template", tpl,
            "--eval-data", slice_npz, "--eval-split", "PublicTest", "--version", "0.0-test")
    assert json.loads(r.stdout)["parity_max_abs_diff"] < 1e-4
    return out


def test_export_carries_contract(exported):
    info = read_onnx_info(exported)
    assert info.class_names == CLASS_NAMES
    assert info.input.size == 48 and info.input.name == "input"
    assert info.template[0] == [15.0, 18.0]
    assert info.version == "0.0-test" and info.precision == "fp32"
    assert info.validation["n"] == 256 and 0 <= info.validation["accuracy"] <= 1


def test_exported_outputs_through_onnxruntime(exported, slice_npz):
    import onnxruntime as ort

    from edgefer.contract import preprocess
    from edgefer.edge.classifier import softmax

    info = read_onnx_info(exported)
    sess = ort.InferenceSession(str(exported), providers=["CPUExecutionProvider"])
    (inp,) = sess.get_inputs()
    assert inp.shape[1:] == [1, 48, 48] and not isinstance(inp.shape[0], int)  # dynamic batch
    for n in (1, 5):
        pixels = np.load(slice_npz)["pixels"][:n]
        logits, intensity = sess.run(["logits", "intensity"], {"input": preprocess(pixels, info.input)})
        assert logits.shape == (n, 7) and intensity.shape == (n, 7)
        np.testing.assert_allclose(softmax(logits).sum(axis=1), 1.0, rtol=1e-5)
        assert ((intensity >= 0) & (intensity <= 1)).all()


def test_eval_json_agrees_with_metadata(exported, slice_npz, run_dir):
    r = cli("eval", slice_npz, "--model", exported, "--split", "PublicTest", "--json")
    m = json.loads(r.stdout)  # exactly one JSON object
    info = read_onnx_info(exported)
    assert m["n"] == 256
    assert m["accuracy"] == pytest.approx(info.validation["accuracy"])
    # the training log's FER+ figures (PyTorch, the same split) read the votes as `edgefer eval` does
    last = json.loads((run_dir / "history.json").read_text())[-1]
    for k in ("ferplus_accuracy", "ferplus_accuracy_clear"):
        assert m[k] == pytest.approx(last[f"val_{k}"], abs=0.01), k
    assert m["intensity_rmse"] == pytest.approx(info.validation["intensity_rmse"])
    assert set(m["per_class_recall"]) == set(CLASS_NAMES)
    assert np.array(m["confusion"]).sum() == 256
    assert 0 <= m["ferplus_accuracy"] <= 1 and m["no_face"] == 0
    shares = ferplus_shares(np.load(slice_npz)["ferplus_votes"][-256:])
    assert m["intensity_rmse"] < np.sqrt((shares**2).mean()) + 0.5  # sane scale


def test_eval_human_report_and_plot(exported, slice_npz, tmp_path):
    r = cli("eval", slice_npz, "--model", exported, "--plot", tmp_path / "cm.png")
    assert "accuracy:" in r.stdout and "confusion" in r.stdout
    assert (tmp_path / "cm.png").stat().st_size > 1000


@pytest.mark.parametrize("args, message", [
    (["eval", "/nonexistent.npz"], "no such file"),
    (["train", "--data", "/nonexistent.npz", "--out", "/tmp/x"], "no such file"),
    (["export", "--checkpoint", "/nonexistent.pt", "--out", "/tmp/x.onnx", "--template", "/nonexistent.json"],
     "not an alignment template"),
])
def test_bad_input_is_one_line(args, message):
    r = cli(*args, check=False)
    assert r.returncode != 0
    assert message in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_model_without_contract_is_refused(tmp_path, exported):
    import onnx

    proto = onnx.load(str(exported))
    del proto.metadata_props[:]
    bare = tmp_path / "bare.onnx"
    onnx.save(proto, str(bare))
    r = cli("eval", "/dev/null", "--model", bare, check=False)
    assert r.returncode == 78 and "not an edgefer model" in r.stderr and "Traceback" not in r.stderr
    (tmp_path / "garbage.onnx").write_bytes(b"\x00garbage" * 100)
    r = cli("eval", "/dev/null", "--model", tmp_path / "garbage.onnx", check=False)
    assert r.returncode == 78 and "not a valid ONNX file" in r.stderr


def test_teacher_targets_are_the_flip_average(run_dir):
    """The teacher's targets are the mean of its outputs on a batch and on its mirror image: the same
    for a face and its mirror, probabilities summing to 1, intensities in 0..1."""
    from edgefer.train.checkpoint import load_checkpoint
    from edgefer.train.recipe import teacher_targets

    teacher, _ = load_checkpoint(run_dir / "last.pt")
    x = torch.randn(8, 1, 48, 48)
    probs, inten = teacher_targets(teacher, x)
    probs_m, inten_m = teacher_targets(teacher, x.flip(3))
    assert torch.allclose(probs, probs_m, atol=1e-6) and torch.allclose(inten, inten_m, atol=1e-6)
    assert torch.allclose(probs.sum(1), torch.ones(8), atol=1e-5)
    assert float(inten.min()) >= 0 and float(inten.max()) <= 1
    with torch.no_grad():
        single = teacher(x)[0].softmax(1)
    assert not torch.equal(probs, single), "a barely trained net is not mirror-symmetric"


def test_distillation_changes_only_the_targets(tmp_path, slice_npz, run_dir):
    """A teacher at weight 0 leaves the run bit-identical to one without (it draws no random numbers
    and touches no weights); at weight 1 the student learns something else."""
    from edgefer.data import load_faces
    from edgefer.train.config import TrainConfig
    from edgefer.train.recipe import train

    faces = load_faces(slice_npz)
    small = dict(epochs=1, batch_size=64, threads=1, max_steps=3)
    teacher = str(run_dir / "last.pt")
    runs = {"plain": TrainConfig(**small), "w0": TrainConfig(teacher=teacher, distill=0.0, **small),
            "w1": TrainConfig(teacher=teacher, distill=1.0, **small)}
    weights = {}
    for name, cfg in runs.items():
        train(faces, tmp_path / name, cfg, progress=False)
        weights[name] = torch.load(tmp_path / name / "last.pt", weights_only=False)["model"]
    w = "features.0.0.weight"
    assert all(torch.equal(weights["plain"][k], weights["w0"][k]) for k in weights["plain"])
    assert not torch.equal(weights["plain"][w], weights["w1"][w])


def test_intensity_head_has_its_own_distill_weight():
    """`distill_intensity` moves only the intensity targets: unset it is `distill`; at 1 the intensity
    loss is the sigmoid cross-entropy against the teacher's intensities alone, and the classification
    loss is that of `distill` whatever it is."""
    import torch.nn.functional as F

    from edgefer.train.config import TrainConfig
    from edgefer.train.model import EmotionNet
    from edgefer.train.recipe import batch_losses

    torch.manual_seed(0)
    model = EmotionNet().eval()
    xb = torch.randn(6, 1, 48, 48)
    yb = torch.tensor([0, 1, 2, 3, 4, 5])
    tb = torch.rand(6, 7)
    tb = tb / tb.sum(1, keepdim=True)
    wb = torch.tensor([1.0, 1.0, 0.0, 1.0, 1.0, 1.0])
    t_probs = torch.softmax(torch.randn(6, 7), 1)
    t_int = torch.rand(6, 7)

    def losses(**kw):
        return batch_losses(model, xb, yb, tb, wb, t_probs, t_int, TrainConfig(**kw))

    same, unset = losses(distill=0.5, distill_intensity=0.5), losses(distill=0.5)
    assert all(torch.equal(a, b) for a, b in zip(same, unset))
    apart = losses(distill=0.5, distill_intensity=1.0)
    assert torch.equal(apart[1], same[1]), "the classification loss does not change"
    int_logits = model.forward_raw(xb)[1]
    bce = F.binary_cross_entropy_with_logits(int_logits, t_int, reduction="none").mean(1)
    assert torch.allclose(apart[2], (bce * wb).sum() / wb.sum())
    assert not torch.allclose(apart[2], same[2])


def test_missing_teacher_is_one_line(tmp_path, slice_npz):
    r = cli("train", "--data", slice_npz, "--out", tmp_path / "r", "--teacher", tmp_path / "nope.pt", check=False)
    assert r.returncode != 0 and "teacher checkpoint not found" in r.stderr and "Traceback" not in r.stderr


def test_training_only_the_class_head_keeps_everything_else(tmp_path, slice_npz):
    """`--train-only cls-head` (issue 24, round 9): from the embedded model, a few steps move the
    classification head and nothing else: convolutions, batch-norm statistics and the intensity head
    stay bit-identical, so the intensities on real faces are the start's."""
    from edgefer.contract import InputSpec, preprocess
    from edgefer.data import load_faces
    from edgefer.edge.classifier import default_model_path
    from edgefer.train.checkpoint import load_checkpoint, load_network
    from edgefer.train.config import TrainConfig
    from edgefer.train.recipe import train

    faces = load_faces(slice_npz)
    init = default_model_path()
    cfg = TrainConfig(epochs=1, batch_size=64, threads=1, max_steps=3, lr=0.05, warmup_frac=0.0,
                      init=str(init), train_only="cls-head", cls_target="ferplus-soft", cls_target_weight=0.5)
    train(faces, tmp_path / "head", cfg, progress=False)
    spec, tr = InputSpec(size=48), faces.split("Training")
    x = torch.from_numpy(preprocess(faces.split("PublicTest").pixels[:64], spec))
    start = load_network(init, calib=torch.from_numpy(preprocess(tr.pixels[tr.labels >= 0], spec))[:2048])
    trained, ck = load_checkpoint(tmp_path / "head" / "last.pt")
    before, after = start.state_dict(), ck["model"]
    moved = [k for k in before if not torch.equal(before[k], after[k])]
    assert moved and all(k.startswith("cls_head.") for k in moved), moved
    with torch.no_grad():
        (lo0, it0), (lo1, it1) = start.eval()(x), trained(x)
    assert torch.equal(it0, it1)
    assert not torch.allclose(lo0, lo1)


def test_training_only_the_class_head_needs_a_start(tmp_path, slice_npz):
    r = cli("train", "--data", slice_npz, "--out", tmp_path / "r", "--train-only", "cls-head", "--max-steps", "1",
            check=False)
    assert r.returncode != 0 and "give --init" in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
