"""PGD stays in the threat model, increases the loss, restores the model's mode, agrees with torchattacks."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from autolora.attacks import (
    PGD,
    KLObjective,
    L2Ball,
    LinfBall,
    MarginObjective,
    RandomStart,
    evaluating,
    run_autoattack,
)
from autolora.errors import CheckpointError, ConfigError


def _net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Flatten(), nn.Dropout(0.2), nn.Linear(8 * 64, 4)
    )


@pytest.fixture
def batch():
    generator = torch.Generator().manual_seed(1)
    return torch.rand(16, 1, 8, 8, generator=generator), torch.randint(0, 4, (16,), generator=generator)


def _loss(model, x, y):
    with torch.no_grad(), evaluating(model):
        return F.cross_entropy(model(x), y, reduction="none")


@pytest.mark.parametrize("threat", [LinfBall(0.1), L2Ball(0.5)])
@pytest.mark.parametrize("start", list(RandomStart))
def test_pgd_stays_in_the_ball_and_the_image_range(threat, start, batch):
    x, y = batch
    x_adv = PGD(threat, steps=5, random_start=start)(_net(), x, y)
    assert (threat.distance(x_adv, x) <= threat.eps + 1e-6).all()
    assert x_adv.min() >= 0.0 and x_adv.max() <= 1.0
    assert x_adv.shape == x.shape and not x_adv.requires_grad


def test_pgd_increases_the_loss(batch):
    x, y = batch
    model = _net()
    x_adv = PGD(LinfBall(0.1), steps=10)(model, x, y)
    assert _loss(model, x_adv, y).mean() > _loss(model, x, y).mean() + 0.1


def test_keep_best_is_never_worse_than_the_random_start(batch):
    x, y = batch
    model = _net()
    torch.manual_seed(7)
    start = LinfBall(0.1).start(x, RandomStart.UNIFORM)
    torch.manual_seed(7)
    # a huge step overshoots, so the last iterate can be worse than the start; the best iterate cannot
    x_adv = PGD(LinfBall(0.1), steps=3, step_size=10.0, keep_best=True)(model, x, y)
    adv_loss, start_loss = _loss(model, x_adv, y), _loss(model, start, y)
    misclassified = _predict(model, x_adv) != y
    assert ((adv_loss >= start_loss - 1e-5) | misclassified).all()


def _predict(model, x):
    with torch.no_grad(), evaluating(model):
        return model(x).argmax(1)


def test_restarts_keep_the_per_example_worst_case(batch):
    x, y = batch
    model = _net()
    torch.manual_seed(3)
    one = PGD(LinfBall(0.05), steps=2, restarts=1, keep_best=True)(model, x, y)
    torch.manual_seed(3)
    three = PGD(LinfBall(0.05), steps=2, restarts=3, keep_best=True)(model, x, y)
    broken_one, broken_three = _predict(model, one) != y, _predict(model, three) != y
    assert (broken_three | ~broken_one).all()  # every example the first restart broke stays broken
    assert (_loss(model, three, y)[~broken_three] >= _loss(model, one, y)[~broken_three] - 1e-5).all()


def test_mode_is_restored_even_on_error(batch):
    x, _ = batch
    model = _net().train()
    model[1].eval()  # a submodule in its own mode must get it back too

    class Boom:
        def loss(self, logits):
            raise RuntimeError("boom")

        def success(self, logits):
            return logits.argmax(1) < 0

    with pytest.raises(RuntimeError, match="boom"):
        PGD(LinfBall(0.1), steps=2)(model, x, Boom())
    assert model.training and not model[1].training and model[4].training


def test_the_model_is_attacked_in_eval_mode(batch):
    x, y = batch
    seen = []
    model = _net()
    model.register_forward_pre_hook(lambda module, args: seen.append(module.training))
    model.train()
    PGD(LinfBall(0.1), steps=2)(model, x, y)
    assert seen and not any(seen) and model.training


def test_batch_statistics_read_the_batch_and_leave_the_running_ones(batch):
    x, y = batch
    model = _net().train()
    norm = model[1]
    norm.running_mean.fill_(5.0)  # running statistics far from this batch's: an eval-mode read is off
    before = {name: b.clone() for name, b in model.named_buffers()}
    with torch.no_grad(), evaluating(model, batch_statistics=True):
        assert norm.training and not model[4].training  # BatchNorm on the batch, dropout off
        read = model(x)
        assert not torch.allclose(read, model(x[:4]).repeat(4, 1)[: len(x)])  # not a per-example function
    for name, value in model.named_buffers():
        assert torch.equal(value, before[name]), name
    assert model.training and norm.track_running_stats
    with torch.no_grad(), evaluating(model):
        expected = model[2:](F.batch_norm(model[0](x), None, None, norm.weight, norm.bias, training=True))
        assert torch.allclose(read, expected, atol=1e-6)
        assert not torch.allclose(model(x), read, atol=1e-3)  # the running read differs
    seen = []
    norm.register_forward_pre_hook(lambda module, args: seen.append((module.training, module.track_running_stats)))
    PGD(LinfBall(0.1), steps=2, batch_statistics=True)(model, x, y)
    assert seen and all(mode == (True, False) for mode in seen)
    assert all(torch.equal(value, before[name]) for name, value in model.named_buffers())


def test_kl_objective_moves_away_from_the_clean_prediction(batch):
    x, _ = batch
    model = _net()
    with torch.no_grad(), evaluating(model):
        clean = model(x)
    objective = KLObjective(clean)
    x_adv = PGD(LinfBall(0.1), steps=5, random_start=RandomStart.NORMAL)(model, x, objective)
    with torch.no_grad(), evaluating(model):
        assert objective.loss(model(x_adv)).mean() > objective.loss(model(x + 1e-3)).mean()


def test_margin_objective_is_the_scale_free_dlr():
    logits = torch.tensor([[4.0, 1.0, 0.0, -1.0], [0.0, 3.0, 2.0, 1.0]])
    labels = torch.tensor([0, 2])
    objective = MarginObjective(labels)
    # -(z_y - max other) / (z_(1) - z_(3)): -(4 - 1) / (4 - 0) and -(2 - 3) / (3 - 1)
    assert torch.allclose(objective.loss(logits), torch.tensor([-0.75, 0.5]))
    assert torch.allclose(objective.loss(100 * logits), objective.loss(logits))
    assert objective.success(logits).tolist() == [False, True]
    two = MarginObjective(torch.tensor([1]))
    assert torch.allclose(two.loss(torch.tensor([[2.0, 0.5]])), torch.tensor([1.5]))


def test_margin_pgd_attacks_a_saturated_softmax_that_cross_entropy_pgd_cannot(batch):
    x, y = batch
    model = _net()
    with torch.no_grad():
        model[-1].weight.mul_(1e4)  # confident predictions: the softmax saturates, CE's gradient is 0
        y = model(x).argmax(dim=1)  # every example classified "correctly"
    attack = PGD(LinfBall(0.3), steps=10, step_size=0.1, random_start=RandomStart.NONE)
    x_ce, x_margin = attack(model, x, y), attack(model, x, MarginObjective(y))
    with evaluating(model), torch.no_grad():
        fooled_ce = (model(x_ce).argmax(1) != y).float().mean()
        fooled_margin = (model(x_margin).argmax(1) != y).float().mean()
    assert fooled_margin > fooled_ce + 0.25, (fooled_ce, fooled_margin)


def test_agrees_with_torchattacks(batch):
    torchattacks = pytest.importorskip("torchattacks")
    x, y = batch
    model = _net().eval()
    ours = PGD(LinfBall(0.1), steps=10, step_size=0.025, random_start=RandomStart.NONE)(model, x, y)
    theirs = torchattacks.PGD(model, eps=0.1, alpha=0.025, steps=10, random_start=False)(x, y)
    # the same deterministic algorithm: identical up to float rounding at sign(0) boundaries
    assert (ours - theirs).abs().max() < 1e-5 or (ours != theirs).float().mean() < 0.01
    acc_ours = (_predict(model, ours) == y).float().mean()
    acc_theirs = (_predict(model, theirs) == y).float().mean()
    assert abs(acc_ours - acc_theirs) <= 1 / 16


def test_pgd_validates_its_settings():
    with pytest.raises(ConfigError, match="eps"):
        LinfBall(-0.1)
    with pytest.raises(ConfigError, match="eps"):
        LinfBall(1.5)
    with pytest.raises(ConfigError, match="restarts"):
        PGD(LinfBall(0.1), restarts=0)
    assert PGD(LinfBall(8 / 255)).step_size == pytest.approx(2 / 255)


def test_autoattack_adapter_on_a_tiny_model(batch):
    x, y = batch
    model = _net()
    clean = (_predict(model, x) == y).float().mean().item()
    result = run_autoattack(model, x, y, 0.1, version="fast", batch_size=16)
    assert result.attacks == ["apgd-ce", "apgd-t"] and result.version == "fast" and result.n == 16
    assert 0.0 <= result.accuracy <= clean
    assert result.robust.dtype == torch.bool and result.robust.shape == (16,)
    assert set(result.to_dict()) >= {"autoattack_acc", "n", "version", "attacks", "flags", "seconds"}


def test_autoattack_reports_its_own_flags(batch):
    x, y = batch

    class Probabilities(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = _net()

        def forward(self, inputs):
            return F.softmax(self.net(inputs), dim=1)

    result = run_autoattack(Probabilities(), x[:4], y[:4], 0.1, version="fast", batch_size=4)
    assert any("probability" in flag for flag in result.flags)


def test_autoattack_resumes_from_its_state_file(batch, tmp_path):
    x, y = batch
    model = _net()
    state = tmp_path / "aa.json"
    first = run_autoattack(model, x, y, 0.1, version="fast", batch_size=16, state_path=state)
    saved = json.loads(state.read_text())
    assert set(saved["done"]) == {"apgd-ce", "apgd-t"}
    saved["done"].pop("apgd-t")  # as if killed after the first attack
    state.write_text(json.dumps(saved))
    again = run_autoattack(model, x, y, 0.1, version="fast", batch_size=16, state_path=state)
    assert again.accuracy <= saved["done"]["apgd-ce"] and set(again.per_attack) == {"apgd-ce", "apgd-t"}
    assert again.accuracy == pytest.approx(first.accuracy, abs=1 / 16)
    with pytest.raises(CheckpointError, match="belongs to another"):
        run_autoattack(model, x, y, 0.2, version="fast", batch_size=16, state_path=state)


def test_autoattack_on_three_classes_skips_the_targeted_attack():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 3))
    x, y = torch.rand(8, 1, 8, 8), torch.arange(8) % 3
    result = run_autoattack(model, x, y, 0.1, version="fast", batch_size=8)
    assert result.attacks == ["apgd-ce"] and any("APGD-T needs" in flag for flag in result.flags)
