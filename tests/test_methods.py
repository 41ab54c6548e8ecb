"""Methods as strategies: the registry, a method added from outside, TWINS, RoLI, one threat model."""

from __future__ import annotations

import ast
import copy
import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from autolora import api
from autolora.attacks import PGD, BatchNoise, LinfBall, RandomStart, Threat
from autolora.data import BatchLoader, DataConfig
from autolora.errors import ConfigError
from autolora.eval import EvalConfig
from autolora.inputs import InputSpec
from autolora.lora import (
    branch_config,
    branch_layers,
    export,
    find_stem,
    inject,
    load_branch,
    natural_forward,
    natural_statistics,
)
from autolora.models import create_model, save_run_model
from autolora.train import METHODS, TrainConfig, get_method, register_method, robust_linear_probe
from autolora.train.method import MethodDefaults
from autolora.train.methods.pgd_at import PgdAt
from autolora.train.methods.twins import TwinBatchNorm, add_twins, remove_twins, split_batches

from .helpers import random_images

SRC = Path(__file__).resolve().parents[1] / "src" / "autolora"
# Each top-level part of the package may import only parts of a lower or equal rank.
LAYERS = {
    "errors": 0, "fileio": 0, "inputs": 0, "runtime": 0, "registry": 0, "progress": 0, "__init__": 0, "__main__": 9,
    "shipped": 2, "run_settings": 6,
    "attacks": 1, "data": 1, "lora": 1, "distributed": 2, "models": 2, "checkpoints": 2,
    "eval": 3, "train": 4, "report": 5, "diagnose": 6, "api": 7, "demo": 8, "cli": 9,
}  # fmt: skip


def _imports(path: Path) -> list[str]:
    """The autolora modules a file imports, as dotted names relative to the package."""
    parts = path.relative_to(SRC).with_suffix("").parts
    package = ".".join(parts[:-1])  # what relative imports start from (for __init__.py: its own package)
    tree = ast.parse(path.read_text())
    for block in ast.walk(tree):  # imports for type checkers only are not run: drop them
        if isinstance(block, ast.If) and getattr(block.test, "id", None) == "TYPE_CHECKING":
            block.body = []
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level:
            names = package.split(".") if package else []
            base = names[: len(names) - node.level + 1]
            if node.module:
                found.append(".".join([*base, node.module]))
            else:
                found += [".".join([*base, a.name]) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("autolora"):
            found.append(node.module.removeprefix("autolora").lstrip("."))
    return [f for f in found if f]


def test_no_layer_imports_from_a_higher_one():
    wrong = []
    for path in SRC.rglob("*.py"):
        top = path.relative_to(SRC).parts[0].removesuffix(".py")
        for target in _imports(path):
            if LAYERS.get(target.split(".")[0], 0) > LAYERS[top]:  # a name from the root package: rank 0
                wrong.append(f"{path.relative_to(SRC)} imports {target}")
    assert not wrong, wrong


def test_no_import_cycles_inside_train():
    graph: dict[str, set[str]] = {}
    for path in (SRC / "train").rglob("*.py"):
        name = ".".join(path.relative_to(SRC).with_suffix("").parts).removesuffix(".__init__")
        graph[name] = {t for t in _imports(path) if t.startswith("train")}

    def reach(start: str, node: str, seen: set[str]) -> bool:
        for nxt in graph.get(node, ()):
            matches = [n for n in graph if nxt == n or nxt.startswith(n + ".")]
            for n in sorted(matches, key=len)[-1:]:  # the module itself, or the package it is named from
                if n == start:
                    return True
                if n not in seen:
                    seen.add(n)
                    if reach(start, n, seen):
                        return True
        return False

    cycles = [n for n in graph if reach(n, n, set())]
    assert not cycles, cycles


def test_every_method_describes_its_loss_parameters_and_schedule(cli):
    text = cli("methods").output
    for name, method in METHODS.items():
        assert name in text and method.loss_description.split(" ")[0] in text
    for word in ("loss:", "trains:", "default schedule:", "aff", "twins", "roli", "pgd-at-ft"):
        assert word in text
    assert "the natural path's own BatchNorm statistics" in METHODS["autolora"].describe()["default schedule"]
    assert "BatchNorm statistics" not in METHODS["vanilla"].describe()["default schedule"]


def test_aliases_resolve_to_the_method_the_paper_means():
    assert get_method("aff") is get_method("vanilla")
    assert TrainConfig(method="aff").method == "vanilla"
    with pytest.raises(ConfigError, match="method='sgd' is invalid"):
        TrainConfig(method="sgd")


def test_method_defaults_fill_the_config():
    autolora = TrainConfig(method="autolora")
    assert (autolora.lr, autolora.epochs, autolora.head_init, autolora.period_steps) == (0.1, 40, "zero", 8)
    assert TrainConfig(method="autolora", find_lr=True).lr is None  # found by a range test
    roli = TrainConfig(method="roli")
    assert (roli.lr, roli.epochs, roli.head_init) == (0.01, 30, "robust-linear")
    assert TrainConfig(method="vanilla", head_init="robust-linear").head_init == "robust-linear"


@pytest.mark.parametrize(
    ("method", "own"), [("autolora", "normal"), ("vanilla", "normal"), ("twins", "normal"), ("pgd-at", "uniform")]
)
def test_the_training_attack_starts_where_the_config_says(method, own):
    def start(**settings) -> RandomStart:
        config = TrainConfig(method=method, **settings)
        return get_method(method)(config).build_objective().attack.random_start

    assert start() is RandomStart(own)  # the method's own (TRADES's x + 0.001 N(0, 1) for the TRADES losses)
    assert start(attack_start="uniform") is RandomStart.UNIFORM
    assert start(attack_start="none") is RandomStart.NONE
    with pytest.raises(ConfigError, match="attack-start='gauss' is invalid: choose one of: none, uniform, normal"):
        TrainConfig(method=method, attack_start="gauss")


def _prepared_for_autolora(**settings) -> torch.nn.Module:
    """A small ResNet as AutoLoRa's ``prepare`` leaves it under a config of ``settings``."""
    model = create_model("resnet8", 3, InputSpec.plain(1, 16))
    get_method("autolora")(TrainConfig(method="autolora", **settings)).prepare(model)
    return model


def test_autolora_keeps_the_natural_paths_own_statistics_only_where_asked():
    assert natural_statistics(_prepared_for_autolora()) is not None  # the default recipe's
    assert natural_statistics(_prepared_for_autolora(recipe="paper")) is None  # the paper's one set
    assert natural_statistics(_prepared_for_autolora(natural_batchnorm="shared")) is None
    with pytest.raises(ConfigError, match="natural-batchnorm='own' is invalid: only autolora has a natural path"):
        TrainConfig(method="vanilla", natural_batchnorm="own")
    with pytest.raises(ConfigError, match="natural-batchnorm='mine' is invalid: choose one of: shared, own"):
        TrainConfig(method="autolora", natural_batchnorm="mine")


def test_autolora_scales_its_branch_as_asked_and_the_scale_survives_a_saved_branch():
    paper = _prepared_for_autolora(rank=16)
    assert {layer.scale for layer in branch_layers(paper)} == {1 / 16}  # the paper's alpha 1 over r
    stabilised = _prepared_for_autolora(rank=16, branch_scale="1/sqrt(r)")
    assert {layer.scale for layer in branch_layers(stabilised)} == {0.25}  # sqrt(16) / 16
    assert branch_config(stabilised).alpha == pytest.approx(4.0)  # what a saved branch records
    with pytest.raises(ConfigError, match="branch-scale='1/sqrt\\(r\\)' is invalid: only autolora has a low-rank"):
        TrainConfig(method="vanilla", branch_scale="1/sqrt(r)")
    with pytest.raises(ConfigError, match="branch-scale='1/2' is invalid: choose one of: 1/r, 1/sqrt\\(r\\)"):
        TrainConfig(method="autolora", branch_scale="1/2")


# ----------------------------------------------------------------- one threat model


def test_a_run_is_evaluated_under_its_own_threat_model():
    threat = Threat(0.1, "L2")
    config = TrainConfig(method="vanilla", threat=threat)
    assert config.evaluation.threat == threat
    assert config.attack(RandomStart.UNIFORM).threat == threat.ball()
    with pytest.raises(ConfigError, match="evaluation.threat"):
        TrainConfig(method="vanilla", threat=threat, evaluation=EvalConfig(threat=Threat(8 / 255)))
    with pytest.raises(ConfigError, match="threat model"):
        EvalConfig().pgd()  # a standalone evaluation must say its budget


def test_the_summary_budget_is_the_evaluated_budget(tmp_path, tiny_model):
    source = tmp_path / "source"
    save_run_model(source, tiny_model, "resnet8")
    data = DataConfig("digits", classes="0-3", limit_train=120, limit_test=24)
    config = TrainConfig(method="vanilla", epochs=1, batch_size=32, threat=Threat(0.5, "L2"), attack_steps=1,
                         evaluation=EvalConfig(pgd_steps=2))  # fmt: skip
    summary = api.finetune(source, data, config, tmp_path / "run", device="cpu")
    evaluation = summary["evaluation"]
    assert (summary["norm"], summary["eps"]) == ("L2", 0.5)
    assert (evaluation["norm"], evaluation["eps"]) == ("L2", 0.5)
    record = json.loads((tmp_path / "run" / "config.json").read_text())["training"]
    assert record["threat"] == {"norm": "L2", "eps": 0.5, "relative_step": 0.25}
    assert record["evaluation"]["threat"] == record["threat"]
    assert (record["schedule"], record["lr"]) == (config.resolved_schedule, 0.01)  # what it followed, not None


# ----------------------------------------------------------------- a method added from outside


class CleanHalfAdversarial(PgdAt):
    """A toy method: PGD-AT's loss, a constant LR, and a column of its own."""

    name = "toy-constant"
    description = "a toy: PGD-AT at a constant LR"
    defaults = MethodDefaults(lr=0.02, epochs=1, schedule="cosine")
    columns = ("toy_epoch_seen",)

    def begin_epoch(self, model, epoch):
        return {"toy_epoch_seen": epoch}


def test_a_method_registered_from_outside_trains_through_the_public_api(tmp_path, tiny_model):
    if "toy-constant" not in METHODS:
        register_method(CleanHalfAdversarial)
    with pytest.raises(ValueError, match="already registered"):
        register_method(CleanHalfAdversarial)
    source = tmp_path / "source"
    save_run_model(source, tiny_model, "resnet8")
    data = DataConfig("digits", classes="0-3", limit_train=120, limit_test=24)
    config = TrainConfig(method="toy-constant", batch_size=32, threat=Threat(0.1), attack_steps=1)
    summary = api.finetune(source, data, config, tmp_path / "toy", device="cpu")
    rows = [json.loads(line) for line in (tmp_path / "toy" / "metrics.jsonl").read_text().splitlines()]
    assert [r["toy_epoch_seen"] for r in rows] == [1] and rows[0]["lr"] == 0.02
    assert summary["method"] == "toy-constant" and summary["epochs"] == 1


# ----------------------------------------------------------------- TWINS


def test_twins_wings_frozen_statistics_and_export(tiny_model):
    plain = copy.deepcopy(tiny_model)
    model = copy.deepcopy(tiny_model)
    twins = add_twins(model.features)
    assert twins and all(isinstance(t, TwinBatchNorm) for t in twins)
    x = torch.rand(8, 1, 28, 28)
    model.eval(), plain.eval()
    assert torch.allclose(model(x), plain(x))  # outside split_batches it is the plain model
    frozen_before = [t.frozen.running_mean.clone() for t in twins]
    adaptive_before = [t.adaptive.running_mean.clone() for t in twins]
    model.train()
    with split_batches(model):
        logits = model(x)
        # the frozen half sees the pre-trained statistics: exactly the plain model in eval mode
        assert torch.allclose(logits[:4], plain(x[:4]), atol=1e-5)
    F.cross_entropy(logits, torch.arange(8) % 10).backward()
    assert all(torch.equal(b, t.frozen.running_mean) for b, t in zip(frozen_before, twins, strict=True))
    assert any(not torch.equal(b, t.adaptive.running_mean) for b, t in zip(adaptive_before, twins, strict=True))
    assert twins[0].frozen.weight.grad is not None and twins[0].adaptive.weight.grad is not None
    exported = remove_twins(model)
    plain.load_state_dict(exported.state_dict())  # strict: the original keys, no frozen wing


# ----------------------------------------------------------------- RoLI's head start


def test_robust_linear_probe_trains_the_head_alone(tiny_model):
    model = copy.deepcopy(tiny_model)
    model.reset_classifier(4, zero_init=True)
    features_before = {k: v.clone() for k, v in model.features.state_dict().items()}
    images = random_images(64, classes=4)
    loader = BatchLoader(images, model.spec, 32, torch.device("cpu"), shuffle=True)
    attack = PGD(LinfBall(0.05), steps=1, random_start=RandomStart.UNIFORM)
    from autolora.train import ProbeSettings

    record = robust_linear_probe(model, loader, attack, BatchNoise(0), ProbeSettings(epochs=1, min_steps=6))
    assert record["steps"] == 6 and record["head_init"] == "robust-linear"
    assert model.head.weight.abs().sum() > 0  # the head learned
    for key, value in model.features.state_dict().items():
        assert torch.equal(value, features_before[key]), key  # weights and BatchNorm statistics untouched


# ----------------------------------------------------------------- the branch and its config


def test_a_branch_reloads_with_its_own_rank_and_alpha(tiny_model):
    model = inject(copy.deepcopy(tiny_model), rank=4, alpha=4.0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("lora_B"):
                p.normal_()
    config = branch_config(model)
    assert (config.rank, config.alpha) == (4, 4.0) and len(config.layers) > 3
    tensors = {n: p.detach().clone() for n, p in model.named_parameters() if ".lora_" in n}
    x = torch.rand(4, 1, 28, 28)
    model.eval()
    expected = natural_forward(model, x)
    reloaded = load_branch(export(model), tensors, type(config).from_metadata(config.to_metadata())).eval()
    assert torch.allclose(natural_forward(reloaded, x), expected, atol=1e-5)
    guessed = load_branch(export(model), tensors).eval()  # an old file: rank inferred, alpha 1
    assert branch_config(guessed).rank == 4 and not torch.allclose(natural_forward(guessed, x), expected)


def test_a_second_inject_says_the_model_is_already_branched(tiny_model):
    model = inject(copy.deepcopy(tiny_model))
    with pytest.raises(ValueError, match="already has low-rank branches"):
        inject(model)


def test_l2_runs_pretrain_finetune_and_evaluate_end_to_end(cli, tmp_path):
    pre, fine = tmp_path / "pre", tmp_path / "fine"
    common = ["--eps", "0.5", "--norm", "L2", "--attack-steps", "1", "--device", "cpu", "--batch-size", "32"]
    result = cli("pretrain", "--dataset", "digits", "--model", "resnet8", "--epochs", "1", "--limit-train", "160",
                 "--limit-test", "24", "--out", pre, *common)  # fmt: skip
    assert result.exit_code == 0, result.output
    result = cli("finetune", "--checkpoint", pre, "--dataset", "digits", "--classes", "0-4", "--limit-train", "120",
                 "--limit-test", "24", "--epochs", "1", "--out", fine, *common)  # fmt: skip
    assert result.exit_code == 0, result.output
    summary = json.loads((fine / "summary.json").read_text())
    assert (summary["norm"], summary["eps"]) == ("L2", 0.5)
    report = tmp_path / "e.json"
    result = cli("evaluate", "--checkpoint", fine, "--dataset", "digits", "--classes", "0-4", "--limit-test", "24",
                 "--eps", "0.5", "--norm", "L2", "--attacks", "clean,pgd,autoattack", "--autoattack-version", "fast",
                 "--pgd-steps", "2", "--json", report)  # fmt: skip
    assert result.exit_code == 0, result.output
    data = json.loads(report.read_text())
    assert data["norm"] == "L2" and data["autoattack"]["norm"] == "L2"
    assert data["autoattack_acc"] <= data["pgd_acc"] <= data["clean_acc"]


def test_diagnose_runs_under_the_l2_threat_model(tiny_model):
    from autolora.diagnose import DiagnoseConfig, diagnose

    config = DiagnoseConfig(Threat(0.5, "L2"), batches=1, batch_size=16, attack_steps=1)
    result = diagnose(tiny_model, random_images(16, classes=10), config, torch.device("cpu"))
    assert result["config"]["threat"]["norm"] == "L2" and -1 <= result["autolora"]["overall_cosine"] <= 1


def test_an_epoch_repeats_the_data_to_reach_its_period_in_optimizer_steps(tmp_path, tiny_model):
    source = tmp_path / "source"
    save_run_model(source, tiny_model, "resnet8")
    data = DataConfig("digits", classes="0-3", limit_train=120, limit_test=24)
    config = TrainConfig(method="vanilla", epochs=11, batch_size=32, threat=Threat(0.1), attack_steps=1,
                         period_steps=10, val_metric="robust_loss", evaluation=EvalConfig(pgd_steps=1))  # fmt: skip
    summary = api.finetune(source, data, config, tmp_path / "run", device="cpu")
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    per_pass = summary["data"]["train"] // 32 + (summary["data"]["train"] % 32 > 1)
    passes = -(-10 // per_pass)  # whole passes, at least 10 steps
    periods = 11 // passes  # --epochs counts passes over the data, and caps them
    assert [r["steps"] for r in rows] == [passes * per_pass * (i + 1) for i in range(periods)] and periods >= 2
    assert summary["optimizer_steps"] == periods * passes * per_pass and summary["passes"] == periods * passes
    assert summary["attack_passes"] >= summary["optimizer_steps"]
    assert all(r["val_robust_loss"] > 0 for r in rows)


def test_validation_can_attack_the_dlr_margin_and_the_run_records_it(tmp_path, tiny_model):
    assert TrainConfig(method="vanilla").val_attack_loss == "ce"
    with pytest.raises(ConfigError, match="val-attack-loss"):
        TrainConfig(method="autolora", val_attack_loss="hinge")
    source = tmp_path / "source"
    save_run_model(source, tiny_model, "resnet8")
    data = DataConfig("digits", classes="0-3", limit_train=120, limit_test=24)
    config = TrainConfig(method="autolora", epochs=1, batch_size=32, threat=Threat(0.1), attack_steps=1,
                         period_steps=1, val_attack_loss="dlr", evaluation=EvalConfig(pgd_steps=1))  # fmt: skip
    api.finetune(source, data, config, tmp_path / "run", device="cpu")
    (row,) = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert row["val_robust_acc"] <= row["val_clean_acc"] and row["val_robust_loss"] > 0
    assert json.loads((tmp_path / "run" / "config.json").read_text())["training"]["val_attack_loss"] == "dlr"


# ----------------------------------------------------------------- the default recipe's parts


def test_the_range_test_chooses_a_tenth_of_the_best_rate():
    from autolora.train.lr_search import RangeTest, lr_range_test

    # a loss that falls while lr < 0.2 and blows up beyond: the edge is about 0.2
    result = lr_range_test(lambda lr: 1.0 - lr if lr < 0.2 else 10 * lr, RangeTest(steps=40))
    assert 0.1 <= result.lr <= 0.2 and len(result.lrs) < 40  # stopped once the loss blew up
    assert lr_range_test(lambda lr: 1.0 - lr if lr < 0.2 else 10 * lr, RangeTest(steps=40, divisor=10)).lr < 0.03
    assert lr_range_test(lambda lr: float("nan")).lr == RangeTest().lr_min


def _digits_trainer(tmp_path, tiny_model, config: TrainConfig):
    """A trainer of ``config`` on 200 images of digits 0-4 (before the validation split)."""
    from autolora.data import prepare_data
    from autolora.train import Trainer
    from autolora.train.run_dir import RunDirectory

    data = prepare_data(DataConfig("digits", classes="0-4", limit_train=200, limit_test=20))
    tiny_model.reset_classifier(5)
    run = RunDirectory(tmp_path / "run")
    run.open()
    return Trainer(tiny_model, "resnet8", data, config, run, device=torch.device("cpu"))


def test_the_lr_search_restores_the_model_and_sets_the_schedule(tmp_path, tiny_model):
    config = TrainConfig(method="autolora", batch_size=50, threat=Threat(0.1), attack_steps=1, find_lr=True,
                         head_init="linear")  # fmt: skip
    trainer = _digits_trainer(tmp_path, tiny_model, config)
    trainer._start_head()
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    assert trainer.model.head.weight.abs().sum() > 0  # the linear probe fitted a head
    trainer._search_lr()
    assert all(torch.equal(v, trainer.model.state_dict()[k]) for k, v in before.items())
    chosen = trainer.lr_search["lr"]
    assert trainer.schedule.lr == chosen == trainer.optimizer.param_groups[0]["lr"]
    assert len(trainer.lr_search["sweep"]) >= 2 and not trainer.optimizer.state  # momentum from the test is gone


def test_a_warm_up_raises_the_lr_step_by_step_to_the_schedules(tmp_path, tiny_model):
    config = TrainConfig(method="autolora", recipe="paper", epochs=2, lr=0.08, batch_size=50, threat=Threat(0.1),
                         attack_steps=1, warmup_steps=4)  # fmt: skip
    trainer = _digits_trainer(tmp_path, tiny_model, config)
    assert len(trainer.train_loader) == 2  # two batches a pass: the warm-up spans both epochs
    taken: list[float] = []
    own_step = trainer.optimizer.step
    trainer.optimizer.step = lambda: (taken.append(trainer.optimizer.param_groups[0]["lr"]), own_step())[1]
    summary = trainer.fit()
    assert taken == pytest.approx([0.02, 0.04, 0.06, 0.08])
    assert [row["lr"] for row in trainer.metrics] == [0.08, 0.08]  # the schedule's LR, which the warm-up scales
    assert summary["warmup_steps"] == 4
    with pytest.raises(ConfigError, match="warmup-steps"):
        TrainConfig(method="autolora", warmup_steps=-1)


def test_a_frozen_stem_keeps_the_sources_first_convolution_and_the_rest_trains(tmp_path, tiny_model):
    """``stem="frozen"`` (SGD freeze-embed): the optimizer never holds the stem, which ends as the source
    had it, while the convolution after it trains; the run records the setting."""
    config = TrainConfig(method="autolora", recipe="paper", epochs=1, lr=0.1, batch_size=50, threat=Threat(0.1),
                         attack_steps=1, stem="frozen")  # fmt: skip
    trainer = _digits_trainer(tmp_path, tiny_model, config)
    stem = trainer.model.get_submodule(find_stem(trainer.model))
    after_stem = next(iter(branch_layers(trainer.model))).base_layer
    source = {"stem": stem.weight.detach().clone(), "after": after_stem.weight.detach().clone()}
    summary = trainer.fit()
    held = {id(p) for group in trainer.optimizer.param_groups for p in group["params"]}
    assert id(stem.weight) not in held and id(after_stem.weight) in held
    assert torch.equal(stem.weight, source["stem"]) and not torch.equal(after_stem.weight, source["after"])
    assert summary["stem"] == "frozen" and summary["frozen_stem"] == find_stem(trainer.model)
    with pytest.raises(ConfigError, match="stem"):
        TrainConfig(method="autolora", stem="thawed")
    # the default recipe keeps only a stem that embeds patches; the paper's and vanilla's train it
    assert TrainConfig(method="autolora").stem == "frozen-if-patches"
    assert TrainConfig(method="autolora", recipe="paper").stem == TrainConfig(method="vanilla").stem == "trained"


def test_the_paper_recipe_is_the_papers_algorithm():
    paper = TrainConfig(method="autolora", recipe="paper")
    assert (paper.lr, paper.epochs, paper.head_init, paper.period_steps, paper.val_metric, paper.val_attack_loss,
            paper.average_epochs) == (0.1, 60, "zero", None, "robust_acc", "ce", 0)  # fmt: skip
    default = TrainConfig(method="autolora")
    assert (default.period_steps, default.val_metric, default.val_attack_loss) == (8, "robust_loss", "dlr")
    assert default.clean_share == paper.clean_share == 0  # the paper's deployed path sees no clean image
    for wrong in ({"method": "vanilla", "clean_share": 0.5}, {"method": "autolora", "clean_share": 1.5}):
        with pytest.raises(ConfigError, match="clean-share"):
            TrainConfig(**wrong)
    autolora = get_method("autolora")
    assert autolora(TrainConfig(method="autolora", clean_share=0.5)).build_objective().settings.clean_share == 0.5
    assert paper.fixed_teacher is False and default.fixed_teacher is True  # the paper's KL moves both paths
    assert autolora(default).build_objective().settings.fixed_teacher
    assert not autolora(TrainConfig(method="autolora", fixed_teacher=False)).build_objective().settings.fixed_teacher
    for wrong in ({"method": "vanilla", "fixed_teacher": True}, {"method": "autolora", "fixed_teacher": "yes"}):
        with pytest.raises(ConfigError, match="fixed-teacher"):
            TrainConfig(**wrong)
    assert (
        autolora(TrainConfig(method="autolora", natural_weight="full")).build_objective().settings.natural_weight
        == "full"
    )
    for wrong in ({"method": "vanilla", "natural_weight": "full"}, {"method": "autolora", "natural_weight": "one"}):
        with pytest.raises(ConfigError, match="natural-weight"):
            TrainConfig(**wrong)
    assert (paper.read_statistics, default.read_statistics) == ("running", "batch-then-running-attack")
    assert default.batch_statistics and autolora(default).build_objective().attack.batch_statistics
    assert not autolora(paper).build_objective().attack.batch_statistics
    with pytest.raises(
        ConfigError, match="read-statistics='eval' is invalid: choose one of: running, batch, batch-then-running-attack"
    ):
        TrainConfig(method="autolora", read_statistics="eval")
    with pytest.raises(ConfigError, match="read-statistics='batch' is invalid: twins keeps the source's statistics"):
        TrainConfig(method="twins", read_statistics="batch")
    assert autolora(paper).build_schedule(0.1, 10).progress == "count"  # the paper's condition 1
    assert autolora(default).build_schedule(0.1, 10).progress == "mean"
    assert autolora(paper).build_schedule(0.1, 40).anneal_from == 40  # the paper ends where the cap cuts it
    assert autolora(default).build_schedule(0.1, 40).anneal_from == 30 < 40  # a tail, once the rule has halved
    from dataclasses import replace

    vanilla = TrainConfig(method="vanilla", recipe="paper")
    assert replace(vanilla, recipe="default") == TrainConfig(method="vanilla")  # it has one way to run
    with pytest.raises(ConfigError, match="recipe='best'"):
        TrainConfig(method="autolora", recipe="best")
