"""The training losses against hand computations, and where each one's gradient goes."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from autolora.attacks import PGD, LinfBall, RandomStart
from autolora.inputs import InputSpec
from autolora.lora import branch_layers, inject
from autolora.models import create_model
from autolora.train import (
    AutoLoraObjective,
    AutoScalars,
    LossSettings,
    LossWeights,
    TradesObjective,
    autolora_loss,
    kl_batchmean,
)


def test_autolora_loss_matches_a_hand_computation():
    z_nat = torch.tensor([[2.0, 0.0, -1.0], [0.5, 0.5, 0.0]])
    z_adv = torch.tensor([[0.0, 1.0, 0.0], [1.0, -1.0, 2.0]])
    y = torch.tensor([0, 2])
    l1, l2 = 0.3, 4.2

    def softmax(row):
        exps = [math.exp(v) for v in row]
        return [e / sum(exps) for e in exps]

    ce = lambda z, t: sum(-math.log(softmax(row)[c]) for row, c in zip(z.tolist(), t.tolist(), strict=True)) / 2  # noqa: E731
    kl = (
        sum(
            sum(p * math.log(p / q) for p, q in zip(softmax(a), softmax(b), strict=True))
            for a, b in zip(z_nat.tolist(), z_adv.tolist(), strict=True)
        )
        / 2
    )
    expected = l1 * ce(z_nat, y) + (1 - l1) * ce(z_adv, y) + l2 * kl
    assert autolora_loss(z_nat, z_adv, y, LossWeights(l1, l2)).item() == pytest.approx(expected, rel=1e-5)


def test_kl_gives_gradient_to_both_sides():
    p = torch.randn(4, 3, requires_grad=True)
    q = torch.randn(4, 3, requires_grad=True)
    kl_batchmean(p, q).backward()
    assert p.grad.abs().sum() > 0 and q.grad.abs().sum() > 0
    assert kl_batchmean(p, p).item() == pytest.approx(0.0, abs=1e-6)


def test_automatic_scalars():
    scalars = AutoScalars(LossWeights())
    weights = scalars.update(0.25)
    assert (weights.lambda1, weights.lambda2) == (0.75, 1.5)
    restored = AutoScalars(LossWeights())
    restored.load_state_dict(scalars.state_dict())
    assert restored.weights == weights and restored.acc_nat == 0.25
    with pytest.raises(ValueError):
        scalars.update(1.5)


def _model():
    torch.manual_seed(0)
    model = inject(create_model("resnet8", 4, InputSpec.plain(1, 16)))
    for layer in branch_layers(model):
        torch.nn.init.normal_(layer.lora_B, std=0.02)
    return model.train()


def test_autolora_objective_routes_each_term():
    x, y = torch.rand(6, 1, 16, 16), torch.arange(6) % 4
    attack = PGD(LinfBall(0.1), steps=2, random_start=RandomStart.NORMAL)
    # lambda1 = 1 and lambda2 = 0: only natural CE, so only the branch and the head learn
    model = _model()
    AutoLoraObjective(attack, LossWeights(1.0, 0.0))(model, x, y).loss.backward()
    touched = {n for n, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    assert touched and all("lora_" in n or n.startswith("head.") for n in touched)
    # lambda1 = 0, lambda2 = 0: only adversarial CE, so no branch learns and the feature extractor does
    model = _model()
    AutoLoraObjective(attack, LossWeights(0.0, 0.0))(model, x, y).loss.backward()
    touched = {n for n, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    assert not any("lora_" in n for n in touched) and "features.layer1.0.conv1.base_layer.weight" in touched


def test_autolora_objective_equals_the_loss_on_its_own_adversarial_examples():
    model = _model()
    x, y = torch.rand(6, 1, 16, 16), torch.arange(6) % 4
    weights = LossWeights(0.4, 2.0)
    objective = AutoLoraObjective(PGD(LinfBall(0.1), steps=2, random_start=RandomStart.NORMAL), weights)
    torch.manual_seed(5)
    output = objective(model, x, y)
    assert output.natural_logits is not None
    expected = autolora_loss(output.natural_logits, output.logits, y, weights)
    assert output.loss.item() == pytest.approx(expected.item())


def test_the_clean_share_moves_deployed_path_ce_to_the_clean_image_and_spares_the_branch():
    x, y = torch.rand(6, 1, 16, 16), torch.arange(6) % 4
    attack = PGD(LinfBall(0.1), steps=2, random_start=RandomStart.NORMAL)
    weights = LossWeights(0.25, 0.0)  # no KL: the branch learns from natural CE alone
    outputs, grads = {}, {}
    for share in (0.0, 0.5):
        model = _model()
        torch.manual_seed(5)
        outputs[share] = AutoLoraObjective(attack, weights, settings=LossSettings(clean_share=share))(model, x, y)
        outputs[share].loss.backward()
        grads[share] = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
    z_clean = _model()(x)  # train mode: the batch's own statistics, as inside the objective
    half = outputs[0.5]
    expected = 0.25 * F.cross_entropy(half.natural_logits, y) + 0.75 * (
        0.5 * F.cross_entropy(half.logits, y) + 0.5 * F.cross_entropy(z_clean, y)
    )
    assert half.loss.item() == pytest.approx(expected.item(), rel=1e-5)
    paper = outputs[0.0]
    assert paper.loss.item() == pytest.approx(autolora_loss(paper.natural_logits, paper.logits, y, weights).item())
    branch = [n for n in grads[0.5] if "lora_" in n]
    assert branch and all(torch.allclose(grads[0.5][n], grads[0.0][n], rtol=0, atol=1e-7) for n in branch)
    conv = "features.layer1.0.conv1.base_layer.weight"
    assert not torch.allclose(grads[0.5][conv], grads[0.0][conv])


def test_a_fixed_teacher_keeps_the_kl_gradient_off_the_branch_and_the_deployed_paths_unchanged():
    x, y = torch.rand(6, 1, 16, 16), torch.arange(6) % 4
    attack = PGD(LinfBall(0.1), steps=2, random_start=RandomStart.NORMAL)
    weights = LossWeights(0.0, 3.0)  # the KL term alone: what reaches the branch comes from it
    grads = {}
    for fixed in (False, True):
        model = _model()
        torch.manual_seed(5)
        AutoLoraObjective(attack, weights, settings=LossSettings(fixed_teacher=fixed))(model, x, y).loss.backward()
        grads[fixed] = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
    branch = [n for n in grads[False] if "lora_" in n]
    assert branch and any(grads[False][n].abs().sum() > 0 for n in branch)  # the paper: the KL moves the branch
    assert all(grads[True].get(n) is None or not grads[True][n].any() for n in branch)
    deployed = [n for n in grads[False] if "lora_" not in n and n.startswith("features")]
    assert deployed and all(torch.allclose(grads[True][n], grads[False][n], atol=1e-6) for n in deployed)


def test_a_full_natural_weight_scales_the_branchs_gradient_by_one_over_lambda1_and_spares_the_extractor():
    x, y = torch.rand(6, 1, 16, 16), torch.arange(6) % 4
    attack = PGD(LinfBall(0.1), steps=2, random_start=RandomStart.NORMAL)
    weights = LossWeights(0.25, 3.0)
    outputs, grads = {}, {}
    for natural_weight in ("lambda1", "full"):
        model = _model()
        torch.manual_seed(5)
        objective = AutoLoraObjective(
            attack, weights, settings=LossSettings(fixed_teacher=True, natural_weight=natural_weight)
        )
        outputs[natural_weight] = objective(model, x, y)
        outputs[natural_weight].loss.backward()
        grads[natural_weight] = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
    full = outputs["full"]
    expected = F.cross_entropy(full.natural_logits, y) + 0.75 * F.cross_entropy(full.logits, y)
    expected = expected + 3.0 * kl_batchmean(full.natural_logits, full.logits)
    assert full.loss.item() == pytest.approx(expected.item(), rel=1e-5)
    branch = [n for n in grads["full"] if "lora_" in n]  # a fixed teacher: the natural CE is all the branch learns
    assert branch and all(torch.allclose(grads["full"][n], 4 * grads["lambda1"][n], atol=1e-6) for n in branch)
    deployed = [n for n in grads["full"] if "lora_" not in n and n.startswith("features")]
    assert deployed and all(torch.allclose(grads["full"][n], grads["lambda1"][n], atol=1e-6) for n in deployed)
    assert weights.total(LossSettings(natural_weight="full")) == pytest.approx(1 + 0.75 + 3)
    assert weights.total() == pytest.approx(4)


def test_trades_loss_is_ce_plus_beta_kl():
    torch.manual_seed(0)
    model = create_model("resnet8", 4, InputSpec.plain(1, 16)).train()
    x, y = torch.rand(6, 1, 16, 16), torch.arange(6) % 4
    output = TradesObjective(PGD(LinfBall(0.1), steps=2, random_start=RandomStart.NORMAL), beta=6.0)(model, x, y)
    expected = F.cross_entropy(output.natural_logits, y) + 6.0 * kl_batchmean(output.natural_logits, output.logits)
    assert output.loss.item() == pytest.approx(expected.item(), rel=1e-5)


@pytest.mark.parametrize("channels_last", [False, True])
def test_bf16_autocast_and_channels_last_train_like_fp32(channels_last):
    x, y = torch.rand(8, 1, 16, 16), torch.arange(8) % 4
    memory = torch.channels_last if channels_last else torch.contiguous_format
    losses = {}
    for dtype in (None, torch.bfloat16):
        model = _model().to(memory_format=memory)
        attack = PGD(LinfBall(0.1), steps=2, random_start=RandomStart.NORMAL, autocast=dtype)
        torch.manual_seed(0)
        output = AutoLoraObjective(attack, LossWeights(0.5, 3.0), dtype)(model, x.contiguous(memory_format=memory), y)
        output.loss.backward()
        assert output.loss.dtype == torch.float32 and torch.isfinite(output.loss)
        assert all(p.grad is None or torch.isfinite(p.grad).all() for p in model.parameters())
        losses[dtype] = output.loss.item()
    assert losses[torch.bfloat16] == pytest.approx(losses[None], rel=0.05)
