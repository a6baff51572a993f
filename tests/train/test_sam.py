"""Sharpness-aware minimisation (`--sam`): the ascent step, its undoing, and that the second pass
neither counts in the batch-norm statistics nor leaves them frozen."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch", reason="the training extra (torch) is not installed")

from edgefer.train.config import TrainConfig  # noqa: E402
from edgefer.train.model import EmotionNet  # noqa: E402
from edgefer.train.recipe import train  # noqa: E402
from edgefer.train.sam import bn_stats_frozen, sam_ascend, sam_descend  # noqa: E402


def _net_with_grads() -> EmotionNet:
    torch.manual_seed(0)
    net = EmotionNet((8, 8, 8, 8))
    logits, inten = net.forward_raw(torch.randn(4, 1, 48, 48))
    (logits.square().mean() + inten.mean()).backward()
    return net


def test_ascent_moves_rho_along_the_gradient_and_descent_undoes_it():
    net = _net_with_grads()
    before = {n: p.detach().clone() for n, p in net.named_parameters()}
    grads = {n: p.grad.clone() for n, p in net.named_parameters()}
    gnorm = torch.norm(torch.stack([g.norm() for g in grads.values()]))
    moves = sam_ascend(net, 0.05)
    step = torch.norm(torch.stack([(p.detach() - before[n]).norm() for n, p in net.named_parameters()]))
    assert step == pytest.approx(0.05, rel=1e-4)
    for n, p in net.named_parameters():
        assert torch.allclose(p.detach() - before[n], grads[n] * (0.05 / gnorm), atol=1e-7)
    sam_descend(moves)
    for n, p in net.named_parameters():
        assert torch.allclose(p.detach(), before[n], atol=1e-6)
    assert len(moves) == len(before)


def test_sam_step_counts_batch_norm_once_and_changes_the_weights(tmp_path, fer_npz):
    """One step with and without SAM, same seed: the batch-norm running statistics are identical (the
    second pass does not update them), the momentum is back afterwards, the weights differ."""
    from edgefer.data import load_faces

    faces = load_faces(fer_npz)
    tr, te = faces.usage == "Training", faces.usage == "PublicTest"
    faces = faces.select((tr & (tr.cumsum() <= 256)) | (te & (te.cumsum() <= 128)))
    small = dict(epochs=1, batch_size=64, threads=1, max_steps=1)
    state = {}
    for name, rho in (("plain", 0.0), ("sam", 0.05)):
        train(faces, tmp_path / name, TrainConfig(sam=rho, **small), progress=False)
        state[name] = torch.load(tmp_path / name / "last.pt", weights_only=False)["model"]
    stats = [k for k in state["plain"] if k.endswith(("running_mean", "running_var"))]
    assert stats and all(torch.equal(state["plain"][k], state["sam"][k]) for k in stats)
    assert not torch.equal(state["plain"]["features.0.0.weight"], state["sam"]["features.0.0.weight"])
    net = EmotionNet((8, 8, 8, 8))
    bns = [m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    with bn_stats_frozen(net):
        assert bns and all(m.momentum == 0.0 for m in bns)
    assert all(m.momentum == 0.1 for m in bns)
