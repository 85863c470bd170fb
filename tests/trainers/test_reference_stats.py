"""Rewards scored against reference statistics, through the trainer: `conciser reference-stats` (the eval
harness) writes them, `prepare` checks them before any model loads, and o1_pruner / adaptthink / a_dlp
train from them; adaptthink's forced empty thinking really opens half of each group's rollouts.

Real generation with a tiny random toy model (no scripted rollouts).
Run: .venv/bin/pytest tests/trainers/test_reference_stats.py   (~1 min)
"""

import json
import math

import pytest
import torch

from conciser import toy
from conciser.errors import MissingInput, UserError
from conciser.reference_cli import build_reference_stats
from conciser.rewards.reference import ProblemStats, ReferenceStats, load_reference_stats
from conciser.trainers.train import model_identity, prepare, train

from reference_files import write_reference
from trainer_helpers import toy_inputs

REFERENCE_METHODS = ["o1_pruner", "adaptthink", "a_dlp"]


def _overrides(model, stats, *extra):
    return [f"model.name_or_path={model}", "data.n_train=8", "trainer.max_completion_length=32",
            f"rewards.params.reference_stats={stats}", *extra]


@pytest.fixture(scope="module")
def reference(tiny_toy_model, tmp_path_factory):
    """The tiny base's reference statistics, written by the eval harness: 8 training problems x 4 samples."""
    stats = tmp_path_factory.mktemp("ref") / "REF" / "train" / "samples.jsonl"
    return build_reference_stats("toy/o1_pruner", _overrides(tiny_toy_model, stats), n=4, progress=False)


def test_reference_stats_command_writes_what_the_loader_reads(reference, tiny_toy_model):
    records = [json.loads(line) for line in reference.read_text().splitlines()]
    assert len(records) == 8 * 4 and all("correct" in r and r["tokens"] <= 32 for r in records)
    stats = load_reference_stats(reference)
    assert set(stats.problems) == {p.id for p in toy.train_problems(8)}
    assert stats.model == model_identity(str(tiny_toy_model)) and all(p.samples == 4 for p in stats.problems.values())
    problems = [json.loads(line) for line in (reference.parent.parent / "train.jsonl").read_text().splitlines()]
    assert problems[0] == {"id": toy.train_problems(1)[0].id, "problem": toy.train_problems(1)[0].prompt,
                           "answer": toy.train_problems(1)[0].answer}


@pytest.mark.parametrize("method", REFERENCE_METHODS)
def test_eval_then_two_training_steps(method, reference, tiny_toy_model, tmp_path):
    out = train(f"toy/{method}", _overrides(tiny_toy_model, reference, f"trainer.output_dir={tmp_path / 'run'}",
                                            "trainer.max_steps=2", "trainer.per_device_train_batch_size=8",
                                            "trainer.num_generations=4", "trainer.logging_steps=1"))
    steps = [log for log in json.loads((out / "trainer_state.json").read_text())["log_history"] if "loss" in log]
    assert len(steps) == 2 and all(math.isfinite(log["loss"]) for log in steps)
    signs = {"o1_pruner": "o1_pruner/ref_accuracy_mean", "adaptthink": "adaptthink/nothinking_frac",
             "a_dlp": "a_dlp/lambda"}
    assert all(signs[method] in log for log in steps)
    if method == "adaptthink":  # half of every group starts with the forced empty thinking
        assert all(log["adaptthink/nothinking_frac"] >= 0.5 for log in steps)


def test_prepare_fails_before_any_model_loads_naming_the_file_and_the_command(reference, tiny_toy_model, tmp_path):
    model = f"model.name_or_path={tiny_toy_model}"
    with pytest.raises(MissingInput, match=r"reference_stats: reference statistics .*nope do not exist.*"
                                           r"`conciser reference-stats toy/a_dlp model.name_or_path="):
        prepare("toy/a_dlp", [model, f"rewards.params.reference_stats={tmp_path / 'nope'}"])
    with pytest.raises(UserError, match="written for the model .* but this run starts from 'org/other-base'"):
        prepare("toy/o1_pruner", _overrides("org/other-base", reference))
    with pytest.raises(UserError, match="no samples of 8 of the 16 training problems.*conciser reference-stats"):
        prepare("toy/adaptthink", _overrides(tiny_toy_model, reference, "data.n_train=16"))
    with pytest.raises(UserError, match="rewards.params.reference_stats: the 'o1_pruner' reward scores against"):
        prepare("toy/o1_pruner", [model, "rewards.params.reference_stats="])
    _, _, reward, _ = prepare("toy/a_dlp", [model, "rewards.params.reference_stats=", "rewards.params.reference_accuracy=0.7"])
    assert reward.reference_accuracy == 0.7


def test_prepare_gives_the_reward_the_training_problems_statistics(tiny_toy_model, tmp_path):
    ids = [p.id for p in toy.train_problems(4)]
    path = write_reference(tmp_path / "REF" / "t", {**{pid: [(10, True), (30, False)] for pid in ids},
                                                    "extra": [(5, False)]}, model=model_identity(str(tiny_toy_model)))
    _, _, reward, _ = prepare("toy/a_dlp", [f"model.name_or_path={tiny_toy_model}", "data.n_train=4",
                                            f"rewards.params.reference_stats={path}"])
    assert set(reward.reference.problems) == set(ids) and reward.reference_accuracy == 0.5  # "extra" left out


def _adaptthink(make_trainer, model, **params):
    trainer = make_trainer(model, "adaptthink", {"nothinking_prefix": "<think></think>", "thinking_prefix": None,
                                                 **params}, advantage={"estimator": "raw"})
    ids = [trainer.train_dataset[i]["problem_id"] for i in range(len(trainer.train_dataset))]
    trainer.length_reward.use_reference(ReferenceStats({pid: ProblemStats(20.0, 0.5, 4) for pid in ids}, "REF"))
    return trainer


def test_adaptthink_forces_an_empty_thinking_on_half_of_each_group(tiny_toy_model, make_trainer):
    trainer = _adaptthink(make_trainer, tiny_toy_model)
    prefix = trainer.processing_class.encode("<think></think>", add_special_tokens=False)
    assert len(prefix) == 2
    trainer.model.train()
    out = trainer._generate_and_score_completions(toy_inputs(trainer, 2, 4))
    completions = [ids[mask.bool()].tolist() for ids, mask in zip(out["completion_ids"], out["completion_mask"])]
    forced = [c[:2] == prefix for c in completions]
    assert forced == [True, True, False, False] * 2  # the first half of each group of 4
    assert all(len(c) <= 48 for c in completions)
    assert all(p[-2:].tolist() != prefix for p in out["prompt_ids"])  # the prefix is completion, not prompt
    texts = trainer.processing_class.batch_decode(completions, skip_special_tokens=True)
    assert all(t.startswith("<think></think>") for t, f in zip(texts, forced) if f)
    assert trainer._metrics["train"]["adaptthink/nothinking_frac"][-1] == 0.5
    # behaviour log-probs: the decision token </think> was drawn with probability 0.5 (half the group), the
    # <think> before it with 1; the freely sampled rows keep the policy's own log-probs
    old = out["old_per_token_logps"]
    policy = trainer._policy_logps(out)
    for i, f in enumerate(forced):
        if f:
            assert old[i, 0].item() == 0.0 and old[i, 1].item() == pytest.approx(math.log(0.5))
            assert torch.equal(old[i, 2:], policy[i, 2:])
        else:
            assert torch.equal(old[i], policy[i])


def test_evaluation_samples_freely(tiny_toy_model, make_trainer):
    trainer = _adaptthink(make_trainer, tiny_toy_model, nothinking_ratio=1.0)
    prefix = trainer.processing_class.encode("<think></think>", add_special_tokens=False)
    trainer.model.eval()
    out = trainer._generate_and_score_completions(toy_inputs(trainer, 2, 4))
    assert not any(ids[:2].tolist() == prefix for ids in out["completion_ids"])
    trainer.model.train()
    out = trainer._generate_and_score_completions(toy_inputs(trainer, 2, 4))
    assert all(ids[:2].tolist() == prefix for ids in out["completion_ids"])


def test_conciser_train_builds_the_toy_statistics_when_missing_or_stale(tiny_toy_model, tmp_path, monkeypatch):
    import shutil

    from conciser.reference_cli import ensure_toy_reference
    from conciser.trainers.toy_sft import toy_base_dir

    monkeypatch.setenv("CONCISER_CACHE", str(tmp_path / "cache"))
    base = toy_base_dir()
    shutil.copytree(tiny_toy_model, base)
    (base / "toy_base.json").write_text("{}")  # what ensure_toy_base looks for
    stats = tmp_path / "REF" / "train" / "samples.jsonl"
    overrides = ["data.n_train=4", "trainer.max_completion_length=16", f"rewards.params.reference_stats={stats}"]
    built = ensure_toy_reference("toy/adaptthink", overrides, n=2)
    assert built == stats and load_reference_stats(stats).model == str(base.resolve())
    assert ensure_toy_reference("toy/adaptthink", overrides, n=2) is None  # fresh: nothing to do
    assert prepare("toy/adaptthink", overrides)[2].reference.model == str(base.resolve())
    assert ensure_toy_reference("toy/adaptthink", [*overrides, "data.n_train=6"], n=2) == stats  # new problems
    assert len(load_reference_stats(stats)) == 6
    write_reference(stats.parent, {p.id: [(3, True)] for p in toy.train_problems(6)}, model="/another/base")
    assert ensure_toy_reference("toy/adaptthink", [*overrides, "data.n_train=6"], n=2) == stats  # stale
    assert load_reference_stats(stats).model == str(base.resolve())
    # another model than a toy base: left to the trainer, which names the command
    assert ensure_toy_reference("toy/adaptthink", [*overrides, f"model.name_or_path={tiny_toy_model}"]) is None
    # another toy base's folder (a bench's quick build, a base built elsewhere): built for it
    other = tmp_path / "other-base"
    shutil.copytree(base, other)
    assert ensure_toy_reference("toy/adaptthink", [*overrides, f"model.name_or_path={other}"], n=2) == stats
    assert load_reference_stats(stats).model == str(other.resolve())


def test_the_command_needs_a_reward_with_reference_statistics(capsys):
    from conciser.cli import main

    assert main(["reference-stats", "toy/laser"]) == 2
    assert "rewards.params.reference_stats is not set (the 'laser' reward uses none); pass --out" in capsys.readouterr().err
