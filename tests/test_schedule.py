"""The automatic LR rule on scripted validation curves, and the fixed schedules."""

from __future__ import annotations

import math

import pytest
import torch

from autolora.errors import ConfigError
from autolora.train import AutoLRSchedule, CosineSchedule, StepDecaySchedule
from autolora.train.schedule import SCHEDULES, budget_checkpoints
from autolora.train.spikes import GradientSpikes


def _run(schedule, curve):
    return [schedule.step(value) for value in curve]


def test_steady_improvement_never_halves():
    schedule = AutoLRSchedule(0.1, max_epochs=20)
    decisions = _run(schedule, [i / 100 for i in range(20)])
    assert all(not d.halved for d in decisions) and schedule.lr == 0.1
    assert decisions[-1].stop and decisions[-1].reason == "max epochs"
    assert sum(d.stop for d in decisions) == 1


def test_condition_one_halves_at_the_first_checkpoint_and_rolls_back():
    schedule = AutoLRSchedule(0.1, max_epochs=20)
    # epochs 1..5: 2 of the 4 comparisons improve (< 0.75 * 4): halve after epoch 5 = W[1] + 1
    decisions = _run(schedule, [0.30, 0.40, 0.35, 0.38, 0.37])
    assert [d.halved for d in decisions] == [False, False, False, False, True]
    last = decisions[-1]
    assert last.rollback and last.lr == pytest.approx(0.05) and last.reason.startswith("condition 1: 2/4")
    assert schedule.best == 0.40 and schedule.best_epoch == 2


def test_three_of_four_improvements_is_enough():
    schedule = AutoLRSchedule(0.1, max_epochs=20)
    decisions = _run(schedule, [0.30, 0.31, 0.32, 0.33, 0.32])
    assert not decisions[-1].halved  # 3 of 4 improved: not fewer than rho * 4 = 3


def test_ties_do_not_count_as_improvement():
    with_tie = _run(AutoLRSchedule(0.1, max_epochs=20), [0.30, 0.31, 0.32, 0.32, 0.33])
    two_ties = _run(AutoLRSchedule(0.1, max_epochs=20), [0.30, 0.31, 0.32, 0.32, 0.32])
    assert not with_tie[-1].halved  # 3 of 4 comparisons improve
    assert two_ties[-1].halved and two_ties[-1].reason.startswith("condition 1: 2/4")


def test_condition_two_halves_when_the_best_stalls():
    schedule = AutoLRSchedule(0.1, max_epochs=40)
    # window 1 (epochs 1-5): steady gains, best 0.5; window 2 (epochs 5-9): 3 of 4 comparisons improve
    # after a dip, but the best (0.5) is not beaten: condition 2 halves.
    _run(schedule, [0.1, 0.2, 0.3, 0.4, 0.5])
    decisions = _run(schedule, [0.1, 0.2, 0.3, 0.45])
    assert [d.halved for d in decisions] == [False, False, False, True]
    assert decisions[-1].reason.startswith("condition 2") and decisions[-1].rollback
    # right after a halving, condition 2 cannot fire: the next window needs condition 1 to halve again
    decisions = _run(schedule, [0.46, 0.47, 0.48, 0.49])
    assert not decisions[-1].halved and schedule.lr == pytest.approx(0.05)


def test_stops_when_the_lr_falls_below_the_minimum():
    schedule = AutoLRSchedule(3e-5, max_epochs=100)
    decisions = _run(schedule, [0.5] * 9)
    assert decisions[4].halved and not decisions[4].stop and decisions[4].lr == pytest.approx(1.5e-5)
    assert decisions[8].stop and "fell below" in decisions[8].reason and schedule.lr == pytest.approx(7.5e-6)


def test_fault_halves_and_rolls_back_at_once():
    schedule = AutoLRSchedule(0.1, max_epochs=10)
    schedule.step(0.3)
    decision = schedule.fault()
    assert decision.halved and decision.rollback and not decision.stop and "non-finite" in decision.reason
    assert schedule.epoch == 2 and schedule.history[-1] is None


def test_state_dict_round_trip_continues_identically():
    curve = [0.3, 0.4, 0.35, 0.38, 0.37, 0.39, 0.41, 0.40, 0.42, 0.43]
    whole = AutoLRSchedule(0.1, max_epochs=20)
    expected = _run(whole, curve)
    first = AutoLRSchedule(0.1, max_epochs=20)
    head = _run(first, curve[:6])
    second = AutoLRSchedule(0.1, max_epochs=20)
    second.load_state_dict(first.state_dict())
    assert head + _run(second, curve[6:]) == expected


def test_reference_32px_checkpoints():
    schedule = AutoLRSchedule(0.1, max_epochs=50, checkpoints=[0, 16, 24, 28, 36, 40, 42, 44, 46, 48, 50])
    decisions = _run(schedule, [0.5] * 17)
    assert [i + 1 for i, d in enumerate(decisions) if d.halved] == [17]


def test_budget_checkpoints_follow_auto_pgd_and_end_at_the_cap():
    assert budget_checkpoints(10) == [0, 2, 4, 6, 7, 8, 9, 10]
    assert budget_checkpoints(40) == [0, 9, 16, 23, 28, 32, 35, 37, 40]
    for cap in range(1, 80):
        points = budget_checkpoints(cap)
        assert points[0] == 0 and points[-1] == cap and points == sorted(set(points))


def test_budget_checkpoints_lower_the_lr_before_a_cap_that_every_4_epochs_would_not():
    # 10 epochs, improving until epoch 8, then a plateau: the paper's every-4 rule decides after
    # epochs 5 and 9 and sees 3 of 4 improvements at both; the budget checkpoints halve in the plateau.
    curve = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.75, 0.74, 0.74]
    every_4 = _run(AutoLRSchedule(0.1, max_epochs=10), curve)
    budget = _run(SCHEDULES["auto-budget"](0.1, 10), curve)
    assert not any(d.halved for d in every_4)
    assert [i + 1 for i, d in enumerate(budget) if d.halved] == [9, 10]
    assert budget[-1].lr == pytest.approx(0.1 / 4) and budget[-1].stop


def test_step_decay_and_cosine():
    step = StepDecaySchedule(0.1, epochs=8)
    lrs = [step.step(0.1).lr for _ in range(8)]
    assert lrs[:3] == [0.1] * 3 and lrs[3] == pytest.approx(0.01) and lrs[5] == pytest.approx(0.001)
    assert step.fault().stop
    cosine = CosineSchedule(0.1, 4)
    assert [round(cosine.step(0.0).lr, 6) for _ in range(4)] == [
        round(0.05 * (1 + math.cos(math.pi * e / 4)), 6) for e in range(1, 5)
    ]


def test_schedules_validate():
    with pytest.raises(ConfigError, match="lr"):
        AutoLRSchedule(0.0)
    with pytest.raises(ConfigError, match="epochs"):
        StepDecaySchedule(0.1, 0)


def test_a_fault_on_a_checkpoint_epoch_keeps_the_rule_alive():
    schedule = AutoLRSchedule(0.1, max_epochs=40)
    _run(schedule, [0.5] * 4)
    assert schedule.fault().halved  # epoch 5 = W[1] + 1: the fault's halving stands for the checkpoint's
    decisions = _run(schedule, [0.5] * 8)  # flat: condition 1 must still fire at the next checkpoints
    assert [i + 6 for i, d in enumerate(decisions) if d.halved] == [9, 13]


def test_window_means_keep_the_lr_where_a_count_of_noisy_comparisons_halves():
    # a rising curve with alternating noise: 2 of 4 comparisons improve in every window, yet each
    # window's mean is above the one before
    curve = [0.30, 0.36, 0.33, 0.39, 0.36, 0.42, 0.39, 0.45, 0.42, 0.48, 0.45, 0.51, 0.48]
    count = _run(AutoLRSchedule(0.1, max_epochs=20), curve)
    mean = _run(SCHEDULES["auto-mean"](0.1, 20), curve)
    assert [i + 1 for i, d in enumerate(count) if d.halved] == [5, 9, 13]
    assert not any(d.halved for d in mean)


def test_window_means_halve_on_a_plateau_but_never_judge_the_first_window():
    schedule = AutoLRSchedule(0.1, max_epochs=20, progress="mean")
    first = _run(schedule, [0.50, 0.30, 0.31, 0.29, 0.30])  # a first window far below epoch 1: not judged
    assert not any(d.halved for d in first)
    second = _run(schedule, [0.31, 0.29, 0.30, 0.30])  # epochs 6-9: mean 0.30, as epochs 2-5
    assert second[-1].halved and second[-1].rollback
    assert second[-1].reason == "condition 1: mean of epochs 6-9 no better than of epochs 2-5"
    rising = AutoLRSchedule(0.1, max_epochs=20, progress="mean")
    assert not _run(rising, [0.30, 0.29, 0.31, 0.32, 0.30, 0.30, 0.32, 0.31, 0.33])[-1].halved  # 0.315 > 0.305


def test_window_means_skip_faulted_epochs():
    schedule = AutoLRSchedule(0.1, max_epochs=20, progress="mean")
    _run(schedule, [0.30, 0.35, 0.36, 0.37, 0.38])
    schedule.fault()  # epoch 6 halves at once; the next window's mean is taken over its finite epochs
    assert not _run(schedule, [0.39, 0.40, 0.41])[-1].halved
    with pytest.raises(ConfigError, match="progress"):
        AutoLRSchedule(0.1, progress="median")


def test_anneal_decays_the_rules_lr_linearly_over_the_last_quarter():
    schedule = AutoLRSchedule(0.1, max_epochs=20, progress="mean", anneal=0.25)
    decisions = _run(schedule, [i / 100 for i in range(20)])  # still improving at the cap
    lrs = [d.lr for d in decisions]
    assert lrs[:14] == [0.1] * 14  # the rule judged epochs 1-14 and kept the LR
    assert lrs[14:] == pytest.approx([0.1 * k / 6 for k in (5, 4, 3, 2, 1, 0)])  # epochs 16-20 at 5/6 ... 1/6
    assert not any(d.halved or d.rollback for d in decisions) and decisions[-1].stop
    assert decisions[14].reason == "epochs 16-20: the LR falls linearly from 0.1 towards 0"


def test_anneal_starts_from_the_lr_the_rule_reached_and_a_fault_halves_it():
    schedule = AutoLRSchedule(0.1, max_epochs=20, progress="mean", anneal=0.25)
    _run(schedule, [i / 100 for i in range(9)] + [0.0] * 4)  # epochs 10-13 worse than 6-9: halved after 13
    assert schedule.lr == 0.05
    _run(schedule, [0.6, 0.6])  # after epoch 15 the decay begins from 0.05
    assert schedule.lr == pytest.approx(0.05 * 5 / 6)
    assert schedule.fault().rollback  # epoch 16
    assert schedule.step(0.6).lr == pytest.approx(0.025 * 3 / 6)


def test_no_anneal_is_the_paper_rule():
    assert AutoLRSchedule(0.1, max_epochs=12).anneal_from == 12
    assert AutoLRSchedule(0.1, max_epochs=10, anneal=0.25).anneal_from == 7  # 2.5 epochs round up
    with pytest.raises(ConfigError):
        AutoLRSchedule(0.1, max_epochs=12, anneal=1.0)


def test_anneal_after_halving_leaves_a_run_that_never_halved_to_the_rule():
    rising = [i / 100 for i in range(20)]
    schedule = AutoLRSchedule(0.1, max_epochs=20, progress="mean", anneal=0.25, anneal_after_halving=True)
    assert [d.lr for d in _run(schedule, rising)] == [0.1] * 20  # still learning at the cap: no decay
    # a halving inside the tail (after epoch 17: 14-17 worse than 10-13) is the rule's, not the start of a decay
    schedule = AutoLRSchedule(0.1, max_epochs=20, progress="mean", anneal=0.25, anneal_after_halving=True)
    decisions = _run(schedule, rising[:13] + [0.0] * 7)
    assert [d.lr for d in decisions[15:]] == [0.1, 0.05, 0.05, 0.05, 0.05]


def test_anneal_after_halving_decays_from_the_rules_lr_once_it_has_halved():
    schedule = AutoLRSchedule(0.1, max_epochs=20, progress="mean", anneal=0.25, anneal_after_halving=True)
    decisions = _run(schedule, [i / 100 for i in range(9)] + [0.0] * 4 + [0.6] * 7)  # halved after epoch 13
    assert [d.lr for d in decisions[12:]] == pytest.approx([0.05, 0.05] + [0.05 * k / 6 for k in (5, 4, 3, 2, 1, 0)])


def test_with_late_halving_anneals_a_halving_inside_the_tail_decays_over_the_epochs_left():
    schedule = AutoLRSchedule(0.1, max_epochs=20, progress="mean", anneal=0.25, anneal_after_halving=True,
                              late_halving_anneals=True)  # fmt: skip
    decisions = _run(schedule, [i / 100 for i in range(13)] + [0.0] * 7)  # halved after epoch 17, in the tail
    assert [d.lr for d in decisions[15:]] == pytest.approx([0.1, 0.05, 0.05 * 2 / 3, 0.05 / 3, 0.0])
    assert decisions[16].halved and decisions[17].reason == "epochs 19-20: the LR falls linearly from 0.05 towards 0"
    still_learning = AutoLRSchedule(0.1, max_epochs=20, progress="mean", anneal=0.25, anneal_after_halving=True,
                                    late_halving_anneals=True)  # fmt: skip
    assert [d.lr for d in _run(still_learning, [i / 100 for i in range(20)])] == [0.1] * 20


def test_a_decay_resumed_from_a_state_without_its_start_began_with_the_tail():
    schedule = AutoLRSchedule(0.1, max_epochs=20, progress="mean", anneal=0.25)
    _run(schedule, [i / 100 for i in range(16)])  # decaying since epoch 15
    older = {k: v for k, v in schedule.state_dict().items() if k not in ("anneal_start", "late_halving_anneals")}
    resumed = AutoLRSchedule(0.1, max_epochs=20, progress="mean", anneal=0.25)
    resumed.load_state_dict(older)
    assert resumed.step(0.5).lr == schedule.step(0.5).lr == pytest.approx(0.1 * 3 / 6)


def test_an_unhalved_tail_holds_the_lr_and_asks_for_the_average_once():
    schedule = SCHEDULES["auto-mean-anneal-or-average"](0.1, 20)
    decisions = _run(schedule, [i / 100 for i in range(20)])  # never halved: still learning at the cap
    assert [d.lr for d in decisions] == [0.1] * 20 and not any(d.halved for d in decisions)
    assert [d.average for d in decisions].index(True) == 14 and sum(d.average for d in decisions) == 1
    assert decisions[14].reason == "epochs 16-20: the LR stays at 0.1; the run ends on their mean"
    assert decisions[-1].stop
    halved = SCHEDULES["auto-mean-anneal-or-average"](0.1, 20)  # a run that halved before the tail decays
    decisions = _run(halved, [i / 100 for i in range(9)] + [0.0] * 4 + [0.6] * 7)
    assert [d.lr for d in decisions[14:]] == pytest.approx([0.05 * k / 6 for k in (5, 4, 3, 2, 1, 0)])
    assert not any(d.average for d in decisions)


def test_an_unhalved_tail_judges_no_checkpoint_and_resumes_without_asking_again():
    schedule = SCHEDULES["auto-mean-anneal-or-average"](0.1, 20)
    decisions = _run(schedule, [i / 100 for i in range(13)] + [0.0] * 7)  # the rule would halve after 17
    assert [d.lr for d in decisions[15:]] == [0.1] * 5 and not any(d.halved for d in decisions)
    assert decisions[15].is_best and not decisions[16].is_best  # the tail's first mean beats earlier iterates
    resumed = SCHEDULES["auto-mean-anneal-or-average"](0.1, 20)
    resumed.load_state_dict(schedule.state_dict())
    assert resumed.average_start == 15


def test_a_decayed_tail_can_end_on_its_mean_too():
    schedule = SCHEDULES["auto-mean-anneal-and-average"](0.1, 20)  # a run that halved before the tail
    decisions = _run(schedule, [i / 100 for i in range(9)] + [0.0] * 4 + [0.6] * 7)
    assert [d.lr for d in decisions[14:]] == pytest.approx([0.05 * k / 6 for k in (5, 4, 3, 2, 1, 0)])
    assert [d.average for d in decisions].index(True) == 14 and sum(d.average for d in decisions) == 1
    assert decisions[14].reason == "epochs 16-20: the LR falls linearly from 0.05 towards 0; the run ends on their mean"
    assert decisions[15].is_best  # the tail's first mean competes only with the tail's means
    unhalved = SCHEDULES["auto-mean-anneal-and-average"](0.1, 20)  # a run that never halved holds its LR, as before
    decisions = _run(unhalved, [i / 100 for i in range(20)])
    assert [d.lr for d in decisions] == [0.1] * 20 and [d.average for d in decisions].index(True) == 14


def test_a_gradient_spike_halves_and_rolls_back_where_its_epoch_ended_no_better_than_it_started():
    schedule = AutoLRSchedule(0.1, max_epochs=20, progress="mean")
    _run(schedule, [0.30, 0.35])
    assert not schedule.step(0.40, unstable=True).halved  # a new best: the spike did no harm
    harmed = schedule.step(0.20, unstable=True)
    assert harmed.halved and harmed.rollback and not harmed.stop and "gradient spike" in harmed.reason
    assert schedule.lr == 0.05 and schedule.history[-1] is None  # rolled back: out of the windows, as a fault
    # the next epoch starts from the model rolled back to (0.40): 0.30 beats the epoch before, not its start
    assert schedule.step(0.30, unstable=True).halved and schedule.lr == 0.025
    assert not schedule.step(0.45, unstable=True).halved and schedule.best == 0.45
    step = StepDecaySchedule(0.1, 20)
    step.step(0.4)
    decision = step.step(0.2, unstable=True)
    assert not decision.rollback and step.history == [0.4, 0.2]  # the fixed baselines take no notice


def _epoch_of_norms(spikes, norms):
    for norm in norms:
        spikes._epoch.append(torch.tensor(norm))
    return spikes.end_epoch()


def test_a_spike_is_a_step_norm_against_the_median_of_the_window_before_it_across_epochs():
    spikes = GradientSpikes(window=4)
    assert _epoch_of_norms(spikes, [1.0, 2.0, 1.0]) is None  # no step has a full window before it
    assert _epoch_of_norms(spikes, [1.0, 8.0]) == pytest.approx(8.0)  # median of 1, 2, 1, 1
    resumed = GradientSpikes(window=4)
    resumed.load_state_dict(spikes.state_dict())
    assert _epoch_of_norms(resumed, [3.0]) == pytest.approx(2.0)  # the median of the last 4, 2, 1, 1, 8: 1.5
    resumed.rescale(4.0)  # a loss four times heavier: the last 4 read as 4, 4, 32, 12
    assert _epoch_of_norms(resumed, [14.0]) == pytest.approx(14.0 / 8.0)  # unscaled, 14 over 2: a spike
    model = torch.nn.Linear(3, 1)
    model(torch.ones(2, 3)).sum().backward()
    norm = torch.cat([p.grad.flatten() for p in model.parameters()]).norm().item()
    resumed.observe(model.parameters(), batch_size=128)
    resumed.observe(model.parameters(), batch_size=32)  # a pass's short last batch: its noise, a root of 4 more
    assert [n.item() for n in resumed._epoch] == pytest.approx([norm, norm / 2])


def test_only_an_unstable_epochs_roll_back_clears_the_momentum_and_a_tails_still_judges_the_next_spike():
    schedule = SCHEDULES["auto-mean-anneal-and-average"](0.1, 8)  # the tail: epochs 7-8, no halving before
    _run(schedule, [0.30, 0.35, 0.40, 0.41, 0.42])
    entering = schedule.step(0.44)  # the tail's mean starts; its averages compete only with each other
    assert entering.average and not entering.clear_momentum and schedule.best == -math.inf
    harmed = schedule.step(0.20, unstable=True)
    assert harmed.rollback and harmed.clear_momentum  # back to the last best, the epoch-6 model
    assert schedule.start_metric == 0.44  # that model's metric, not the tail's empty best
    assert schedule.fault().clear_momentum
    plateau = AutoLRSchedule(0.1, max_epochs=20)
    (halving,) = [d for d in _run(plateau, [0.5] * 5) if d.halved]  # the rule's own halving keeps it
    assert halving.rollback and not halving.clear_momentum
