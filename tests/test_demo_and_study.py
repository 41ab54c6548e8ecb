"""The demo's pipeline and the reproduction study's --quick mode, end to end on tiny sizes."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from autolora import demo
from autolora.errors import CheckpointError
from autolora.models import load_classifier

from .helpers import needs_fashion_mnist

ROOT = Path(__file__).resolve().parents[1]


def test_the_shipped_checkpoint_is_a_robust_fashion_mnist_model():
    model, record, report = load_classifier(demo.default_checkpoint())
    assert record.architecture == "resnet8" and record.num_classes == 10 and record.input.size == 28
    assert report.layout == "autolora run directory"
    evaluation = json.loads((demo.default_checkpoint() / "evaluation.json").read_text())
    assert evaluation["eps"] == pytest.approx(0.1) and evaluation["n"] == 10000
    assert 0.5 < evaluation["autoattack_acc"] <= evaluation["pgd_acc"] + 0.02 <= evaluation["clean_acc"] + 0.02
    assert (demo.default_checkpoint() / "model.safetensors").stat().st_size < 5 * 2**20


@pytest.mark.slow
def test_demo_pipeline_writes_runs_report_and_figure(tmp_path, monkeypatch, cli):
    tiny = demo.DemoSize("tiny test", 150, 2, 2, 1, "fast", 16)
    monkeypatch.setattr(demo, "QUICK", tiny)
    result = cli("demo", "--quick", "--out", tmp_path / "d", "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert "autolora" in result.output and "vanilla" in result.output and "demo took" in result.output
    report = (tmp_path / "d" / "report.md").read_text()
    assert "autolora" in report and "vanilla" in report and "(fast" in report
    assert (tmp_path / "d" / "comparison.png").stat().st_size > 1000
    summary = json.loads((tmp_path / "d" / "vanilla" / "summary.json").read_text())
    assert summary["method"] == "vanilla" and summary["evaluation"]["autoattack"]["version"] == "fast"
    again = cli("demo", "--quick", "--out", tmp_path / "d", "--device", "cpu")  # a rerun continues, never clobbers
    assert again.exit_code == 0, again.output
    assert "is finished; its summary stands" in " ".join(again.output.split())  # rich wraps at 80 columns
    assert json.loads((tmp_path / "d" / "vanilla" / "summary.json").read_text()) == summary


@pytest.mark.long
@needs_fashion_mnist
def test_reproduction_study_quick_mode(tmp_path):
    runs = "vanilla lr=0.1,autolora (paper),autolora,no pre-training (vanilla lr=0.1)"
    command = [sys.executable, str(ROOT / "benchmarks" / "reproduce.py"), "--quick", "--seeds", "0", "--out",
               str(tmp_path), "--tasks", "digits,fmnist-inverted", "--budgets", "300", "--runs", runs]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    record = json.loads((tmp_path / "results.json").read_text())
    found = {(row["task"], row["budget"], row["run"]) for row in record["table"]}
    assert found == {(t, "300", r) for t in ("digits", "fmnist-inverted") for r in runs.split(",")}
    rows = {(r["task"], r["run"]): r for r in record["rows"]}
    assert rows[("digits", "autolora")]["optimizer_steps"] > 0 and rows[("digits", "autolora")]["initial_lr"] > 0
    assert rows[("digits", "autolora (paper)")]["initial_lr"] == 0.1
    assert {v["task"] for v in record["verdicts"]} == {"digits", "fmnist-inverted"}
    assert (tmp_path / "sensitivity.png").exists() and "| autolora |" in (tmp_path / "study.md").read_text()
    again = subprocess.run(command, capture_output=True, text=True, timeout=900)  # resumes: nothing to train
    assert again.returncode == 0 and "== digits" not in again.stdout


def load_benchmark(name: str):
    """``benchmarks/<name>.py`` as a module (the study's first, which the other benchmarks import)."""
    import importlib.util

    if name != "reproduce" and "reproduce" not in sys.modules:
        load_study()
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up there, and benchmarks import the study so
    spec.loader.exec_module(module)
    return module


def load_study():
    """``benchmarks/reproduce.py`` as a module."""
    return load_benchmark("reproduce")


def test_every_committed_study_row_stands_for_the_run_it_names():
    """A changed default renames its rows (the default before it keeps its numbers under its own name):
    a committed row its run would train again, or one of a run no longer defined, fails here."""
    study = load_study()
    runs = {run.name: run for run in study.RUNS}
    rows = [json.loads(p.read_text()) for p in (ROOT / "benchmarks" / "results" / "study" / "rows").rglob("*.json")]
    assert len(rows) > 100
    for row in rows:
        run = runs[row["run"]]
        size = study.Size(**row["size"]) if "size" in row else study.FULL
        assert study.measured_as_asked(row, run, study.train_config(run, size, row["seed"], False), size), row["dir"]


def test_a_study_row_is_judged_by_whether_its_run_kept_the_stem(tmp_path):
    """The default keeps a stem that embeds patches: a task's flag for that is its source's, and a ViT
    row trained with the stem (before the freeze) does not stand for today's default."""
    from autolora.lora import find_stem
    from autolora.train.stem import embeds_patches

    study = load_study()
    study.study_sources_in(tmp_path)
    for task in study.TASKS.values():
        model = load_classifier(task.source(study.FULL, tmp_path))[0]
        assert embeds_patches(model.get_submodule(find_stem(model))) == task.patch_stem, task.name
    runs = {run.name: run for run in study.RUNS}
    cell = ROOT / "benchmarks" / "results" / "study_controls" / "rows_vit_avx512" / "fmnist-split-vit" / "300" / "seed0"
    trained = json.loads((cell / "autolora__the_default_before_the_frozen_patch_embedding.json").read_text())
    for name, current in (("autolora (the default before the frozen patch embedding)", True), ("autolora", False)):
        config = study.train_config(runs[name], study.FULL, 0, False)
        assert study.measured_as_asked(trained, runs[name], config, study.FULL) == current, name
    config = study.train_config(runs["autolora"], study.FULL, 0, False)
    assert study.measured_as_asked(trained | {"frozen_stem": True}, runs["autolora"], config, study.FULL)


def test_the_study_report_names_the_machines_that_measured_its_rows():
    """CPU results differ between models, so a study whose rows come from several machines says which."""
    study = load_study()
    xeon, epyc = {"cpu": "Xeon", "cpu_kernels": "AVX512"}, {"cpu": "EPYC", "cpu_kernels": "AVX2"}
    rows = [*({"run": f"vanilla lr={lr}", "machine": xeon} for lr in (0.001, 0.01, 0.1, 0.1)),
            {"run": "autolora", "machine": epyc, "autoattack_machine": epyc},
            {"run": "roli", "machine": xeon, "autoattack_machine": epyc}, {"run": "twins"}]  # fmt: skip
    assert study.machines_markdown(rows) == (
        "Rows by machine: Xeon (AVX512), 4 rows: vanilla lr=0.001, vanilla lr=0.01, vanilla lr=0.1; "
        "EPYC (AVX2), 1 row: autolora; Xeon (AVX512), AutoAttack on EPYC (AVX2), 1 row: roli; "
        "a machine not recorded, 1 row: twins.\n"
    )


def test_a_resumed_study_run_counts_the_seconds_of_its_earlier_sittings(tmp_path):
    """A row's wall time is the whole run's: the phase seconds an interrupted run's state has summed,
    read without its weights, plus the sitting that finishes it; a run with no state has none."""
    from autolora.train.state import load_state_record, save_state

    study = load_study()
    assert study.seconds_spent_before(tmp_path) == 0.0
    timing = {"train": 100.25, "scalars": 3.0, "validation": 20.5, "test": 0.0}
    save_state(tmp_path / study.STATE, {"model": {"w": torch.ones(3)}, "timing": timing, "epoch": 7})
    assert study.seconds_spent_before(tmp_path) == 123.8
    record = load_state_record(tmp_path / study.STATE)
    assert record["epoch"] == 7 and record["model"]["w"] == {"__tensor__": "model.w"}  # no tensor read


def test_a_seed_exactly_on_a_criterion_bound_meets_it():
    """Accuracies come as float32 fractions: 0.886 against vanilla's 0.906 - 0.02 must read as equal."""
    study = load_study()
    f32 = lambda x: float(torch.tensor(x, dtype=torch.float32))  # noqa: E731 - how the runs record them

    def row(run, seed, clean, robust):
        return {"task": "t", "budget": "1000", "run": run, "seed": seed, "clean_acc": f32(clean), "pgd_acc": f32(robust),
                "autoattack_acc": f32(robust), "optimizer_steps": 10, "attack_passes": 1, "wall_s": 1.0}  # fmt: skip

    vanilla = [row(f"vanilla lr={lr:g}", seed, 0.880 + 0.026 * (seed == 1), 0.5 * lr) for lr in (0.001, 0.01)
               for seed in (0, 1, 2)]  # fmt: skip
    best = [
        row("vanilla lr=0.1", 0, 0.880, 0.70),
        row("vanilla lr=0.1", 1, 0.927, 0.75),
        row("vanilla lr=0.1", 2, 0.911, 0.80),
    ]
    autolora = [row("autolora", 0, 0.898, 0.75), row("autolora", 1, 0.886, 0.721132)]
    (found,) = study.verdicts(study.aggregate([*vanilla, *best, *autolora]))
    assert found["clean_ok"]  # 0.886 is 0.906 - 0.02 to the image
    assert found["robust_ok"] and not found["beats_every_vanilla"]  # 0.721132 is 0.75 - SE 0.028868 to 1e-6
    assert not study.verdicts(study.aggregate([*vanilla, *best, row("autolora", 1, 0.885, 0.72)]))[0]["clean_ok"]


def test_the_study_compares_twins_and_roli_with_autolora(tmp_path, monkeypatch):
    """A seconds-long run of the study's own code: every fine-tuning method on one task."""
    # on the CPU: the byte-identical twins below need deterministic training, which CUDA kernels
    # do not give (seen failing on an H200 with `device="auto"`)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    study = load_study()
    tiny = study.Size(None, 1, 1, 20, 8, "fast", 1, 1)
    chosen = study.select_runs("autolora (CE validation, budget checkpoints),vanilla lr=0.1")
    assert [r.name for r in chosen] == ["vanilla lr=0.1", "autolora (CE validation, budget checkpoints)"]
    with pytest.raises(ValueError, match="unknown runs: autolora \\(CE validation"):
        study.select_runs("autolora (CE validation")  # a typo is an error, never an empty study
    runs = [r for r in study.RUNS if r.name in ("vanilla lr=0.1", "twins", "roli", "autolora")]
    rows = study.run_study(["digits"], ["300"], [0], runs, tiny, tmp_path, autoattack=False)
    by_run = {row["run"]: row for row in rows}
    assert set(by_run) == {"vanilla lr=0.1", "twins", "roli", "autolora"}
    assert by_run["roli"]["head_start"]["head_init"] == "robust-linear"
    assert all(0 <= row["pgd_acc"] <= row["clean_acc"] <= 1 and row["optimizer_steps"] > 0 for row in rows)
    shipped = study.file_digest(study.default_checkpoint() / "model.safetensors")
    assert {row["source_sha256"] for row in rows} == {shipped}  # which source each row fine-tuned
    table = study.aggregate(study.finished_rows(tmp_path))
    assert "| twins |" in study.markdown(table, tiny) and "| roli |" in study.markdown(table, tiny)
    assert study.verdicts(table)[0]["best_vanilla"] == "vanilla lr=0.1"
    assert study.verdicts(table)[0]["metric"] == "pgd-20"
    verdict_table = study.verdict_markdown(study.verdicts(table))
    assert "| digits, 300 | autolora, by PGD-20, 1 seed | " in verdict_table  # a partial cell says so
    assert "(1 of 3 LRs run)" in verdict_table  # and a grid not yet complete
    assert "(vanilla lr=0.1, PGD-20, 1 seed)" in verdict_table and " ± " not in verdict_table  # one seed, no SE
    only_autolora = [e for e in table if e["run"] == "autolora"]  # a budget whose vanilla rows are not in yet
    assert study.sensitivity_figure(only_autolora, tmp_path / "sensitivity.png").stat().st_size > 0
    # --autoattack afterwards: finished rows gain AutoAttack from their deployed models, no training again
    headline = [r for r in runs if r.name in ("vanilla lr=0.1", "autolora")]
    steps_before = {name: by_run[name]["optimizer_steps"] for name in ("vanilla lr=0.1", "autolora")}
    rows = study.run_study(["digits"], ["300"], [0], headline, tiny, tmp_path, autoattack=True)
    assert all(row["autoattack"] and 0 <= row["autoattack_acc"] <= row["autoattack_same_examples"]["clean_acc"]
               and row["evaluated_n"]["autoattack"] == tiny.autoattack_n for row in rows)  # fmt: skip
    assert {row["run"]: row["optimizer_steps"] for row in rows} == steps_before
    verdict = study.verdicts(study.aggregate(study.finished_rows(tmp_path)))[0]
    assert verdict["metric"] == "autoattack" and verdict["best_vanilla_metric"] == "autoattack"
    default = next(row for row in rows if row["run"] == "autolora")
    assert default["batchnorm"] == "recomputed" and default["batchnorm_images"] > 0
    autolora = study.get_method("autolora")
    assert default["schedule"] == autolora.defaults.schedule  # the recipe's, recorded though the run named none
    assert default["fixed_teacher"] is True and default["read_statistics"] == "batch-then-running-attack"
    (default_run,) = (r for r in runs if r.name == "autolora")
    config = study.train_config(default_run, tiny, 0, True)
    assert study.measured_as_asked(default, default_run, config, tiny)
    for before in ({"fixed_teacher": False}, {"read_statistics": "batch"}):  # a row of a default before it
        assert not study.measured_as_asked(default | before, default_run, config, tiny)
    assert default["period_steps"] == 8 and default["val_metric"] == "robust_loss"  # the recipe's, recorded
    for taken_back in ({"period_steps": 1}, {"val_metric": "robust_acc"}, {"val_attack_loss": "ce"},
                       {"initial_lr": 0.2}):  # fmt: skip
        assert not study.measured_as_asked(default | taken_back, default_run, config, tiny)  # a leave-one-out row
    assert not study.measured_as_asked(
        {k: v for k, v in default.items() if k != "fixed_teacher"}, default_run, config, tiny
    )  # a row from before rows recorded it had the paper's KL
    # a recipe whose schedule changes makes its rows out of date: the study does not take them as
    # measured, and their run directory, trained with the old schedule, refuses to finish with the new
    with monkeypatch.context() as patch, pytest.raises(CheckpointError, match="written with other settings"):
        patch.setattr(autolora, "defaults", dataclasses.replace(autolora.defaults, schedule="auto"))
        study.run_study(["digits"], ["300"], [0], [r for r in runs if r.name == "autolora"], tiny, tmp_path, False)
    # one epoch leaves the LR rule no decision: the count rule deploys the bytes of the default as it
    # was before the BatchNorm re-estimate, and is measured once
    before, count_rule = ([r for r in study.RUNS if r.name == name] for name in
                          ("autolora (BatchNorm statistics as trained)", "autolora (count rule)"))  # fmt: skip
    (measured,) = study.run_study(["digits"], ["300"], [0], before, tiny, tmp_path, autoattack=True)
    study.run_study(["digits"], ["300"], [0], count_rule, tiny, tmp_path, autoattack=False)
    (twin,) = study.run_study(["digits"], ["300"], [0], count_rule, tiny, tmp_path, autoattack=True)
    assert twin["autoattack_of"] == measured["run"] and twin["autoattack_acc"] == measured["autoattack_acc"]


def test_the_parameter_free_benchmark_trains_with_the_optimizer_it_names(tmp_path, tiny_model):
    """``benchmarks/parameter_free_steps.py`` swaps the trainer's optimizer for the run's length only,
    and records the step size of every optimizer step (here a stand-in: the packages are an extra)."""
    from autolora import api
    from autolora.attacks import Threat
    from autolora.data import DataConfig
    from autolora.eval import EvalConfig
    from autolora.models import save_run_model
    from autolora.train import TrainConfig
    from autolora.train import trainer as training

    bench = load_benchmark("parameter_free_steps")
    trainers_own, built = training.build_optimizer, []

    class OwnEntries(torch.optim.SGD):  # keeps an entry of its own beside the parameters' state, as DoG does
        def state_dict(self):
            state = super().state_dict()
            state["state"]["_first_step"] = False
            return state

    def stand_in(parameters, config):  # and says its step size as DoG does
        optimizer = OwnEntries(parameters, lr=config.lr)
        optimizer.param_groups[0]["eta"] = [torch.tensor(0.25), torch.tensor(0.5)]
        built.append(optimizer)
        return optimizer

    source = tmp_path / "source"
    save_run_model(source, tiny_model, "resnet8")
    data = DataConfig("digits", classes="0-3", limit_train=120, limit_test=24)
    config = TrainConfig(method="autolora", lr=0.2, epochs=2, batch_size=32, threat=Threat(0.1), attack_steps=1,
                         period_steps=1, evaluation=EvalConfig(pgd_steps=1))  # fmt: skip
    trace = []
    with bench.optimizer_traced(stand_in, trace):
        summary = api.finetune(source, data, config, tmp_path / "run", device="cpu")
    assert len(built) == 1 and len(trace) == summary["optimizer_steps"] > 0
    with bench.optimizer_traced(stand_in, []):  # a resumed run restores that state
        assert api.finetune(source, data, config, tmp_path / "run", device="cpu", resume=True) == summary
    assert {step["step_size"] for step in trace} == {0.375} and trace[0]["multiplier"] == 0.2
    assert bench.summarise(trace)["largest"] == 0.375  # the median of its two tensors
    assert training.build_optimizer is trainers_own  # the swap lasts for the runs inside it only
    assert bench.run_of("default").name == "autolora" and bench.run_of("dog").lr == 1.0
    result, row = tmp_path / "result.json", {"optimizer": "dog", "task": "digits", "budget": "300", "seed": 0}
    result.write_text(json.dumps(bench.merged(result, [row | {"clean_acc": 0.5}], {"seeds": "0"})))
    again = bench.merged(result, [row | {"clean_acc": 0.6}, row | {"seed": 1, "clean_acc": 0.5}], {"seeds": "0,1"})
    assert len(again["invocations"]) == 2  # a later invocation adds its rows, and replaces a row it measured again
    assert sorted((r["seed"], r["clean_acc"]) for r in again["rows"]) == [(0, 0.6), (1, 0.5)]


def test_the_parameter_free_benchmark_measures_the_step_an_optimizer_does_not_state():
    """Prodigy and COCOB keep no step size of their own: the benchmark records the length of the step
    taken over the gradient's norm, which for plain SGD is its LR (and 0 where nothing moved)."""
    from types import SimpleNamespace

    from autolora.train import trainer as training

    bench = load_benchmark("parameter_free_steps")
    weight, trace = torch.nn.Parameter(torch.ones(3)), []
    with bench.optimizer_traced(lambda parameters, config: torch.optim.SGD(parameters, lr=config.lr), trace):
        optimizer = training.build_optimizer([weight], SimpleNamespace(lr=0.2))
    weight.grad = torch.tensor([3.0, 0.0, 4.0])
    optimizer.step()
    assert weight.tolist() == pytest.approx([0.4, 1.0, 0.2])
    optimizer.param_groups[0]["lr"] = 0.0
    optimizer.step()
    assert trace == [{"multiplier": 0.2, "step_size": pytest.approx(0.2)}, {"multiplier": 0.0, "step_size": 0.0}]


def test_the_gradient_spike_benchmark_clips_only_a_step_far_above_the_recent_median():
    """``benchmarks/gradient_spikes.py`` records each step's gradient norm before the step; with a
    clip of K it scales a step's gradient down to K times the median of the window before it, and
    leaves every other step, and the first half-window, as they are."""
    from types import SimpleNamespace

    from autolora.train import trainer as training

    bench = load_benchmark("gradient_spikes")
    weight, trace = torch.nn.Parameter(torch.zeros(2)), []
    with bench.gradients_traced(trace, clip=5.0, window=8):
        optimizer = training.build_optimizer([weight], SimpleNamespace(lr=1.0, momentum=0.0, weight_decay=0.0))
    for gradient in (1.0, 1.0, 1.0, 1.0, 10.0, 4.0):
        weight.grad = torch.tensor([0.0, gradient])
        optimizer.step()
    assert [step["norm"] for step in trace] == [1.0, 1.0, 1.0, 1.0, 10.0, 4.0]  # as computed, before clipping
    assert [step["clipped"] for step in trace] == [False] * 4 + [True, False]
    assert weight.tolist() == [0.0, -(4 * 1.0 + 5.0 + 4.0)]  # the spike moved it by the bound, 5 x median 1
    assert bench.spike_bound([1.0, 1.0, 1.0], 5.0, 8) is None and bench.spike_bound([1.0] * 4, None, 8) is None
    brief = bench.summarise(trace, window=4, train_images=128 + 32)  # passes of two steps: 128, then 32
    assert (brief["largest_ratio"], brief["largest_ratio_step"], brief["clipped"]) == (10.0, 5, 1)
    # every second step is a 32-image batch, its norm halved: 1, .5, 1, .5, 10 over the median .75
    assert (brief["largest_scaled_ratio"], brief["largest_scaled_ratio_step"]) == (pytest.approx(10 / 0.75), 5)


def test_the_stem_gradient_benchmark_compares_the_stem_with_the_source_layers_after_it(tiny_model):
    """``benchmarks/stem_gradients.py`` reads the source's weights only (no head, bias or norm) and puts
    the stem's gradient norm against the other layers' median, as is and relative to each weight."""
    from autolora.lora import find_stem, inject

    bench = load_benchmark("stem_gradients")
    model = inject(tiny_model, rank=2)
    weights, stem = bench.source_weights(model), find_stem(model)
    assert f"{stem}.weight" in weights and all(p.dim() > 1 for p in weights.values())
    assert not any("lora_" in name or name.startswith("head.") for name in weights)
    for name, parameter in weights.items():  # each gradient a multiple of its weight: 4 for the stem, 1 elsewhere
        parameter.grad = parameter.detach() * (4.0 if name == f"{stem}.weight" else 1.0)
    step = bench.step_record(weights, stem)
    assert step["stem_relative"] == pytest.approx(4.0) and step["others_relative_median"] == pytest.approx(1.0)
    brief = bench.summarise([step, {**step, "others_median": 0.0}])  # a step before the features learn: left out
    assert brief["steps"] == 2 and brief["steps_with_feature_gradients"] == 1
    assert brief["relative_stem_over_others_median"] == pytest.approx(4.0)


def test_the_spike_reweighing_replay_reads_epoch_2_as_the_trainer_recorded_it():
    """``benchmarks/spike_reweighing.py`` replays the trainer's ``GradientSpikes`` over a committed
    step log: read the old way it gives the ratio the run's ``metrics.jsonl`` recorded (6.81, a halving
    on the poor source with all labels); read at epoch 2's weights it stays under the bound."""
    load_benchmark("gradient_spikes")  # which it imports, as a script finds it beside itself
    bench = load_benchmark("spike_reweighing")
    log = bench.RESULTS / "first_steps" / "digits-to-fashion_all_seed0_autolora_steps_1-1113.jsonl"
    run = bench.from_step_log(log)
    recorded = json.loads(log.with_suffix(".metrics.json").read_text())[1]["gradient_spike"]
    assert run.epoch_ends == (446, 892) and run.harmful
    assert bench.epoch_2_ratio(run, reweighed=False) == pytest.approx(recorded, rel=1e-5)
    compared = bench.compared(run, bound=5.0)
    assert compared["before"] > 5.0 > compared["now"] and compared["decision_changes"]
    unflagged = bench.compared(dataclasses.replace(run, loss_weights=(1.0, 1.0)), bound=5.0)
    assert unflagged["now"] == pytest.approx(recorded, rel=1e-5)  # no re-weighing, no new reading
