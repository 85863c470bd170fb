"""Every registered reward has a toy recipe (plus plain GRPO's), and each validates and trains end to end
through `conciser train`.

The end-to-end runs keep each recipe's own reward, advantage, sampling and budget blocks and shrink only
the scale (2 steps, 4 prompts x 4, a tiny model). Rollouts are scripted (right and wrong answers of
varied length), because a tiny model's answers are all wrong and dynamic sampling would rightly refuse
them; generation itself is covered by test_train_toy.py, test_budget.py and test_vllm_colocate.py.
Run: .venv/bin/pytest tests/trainers/test_recipes_toy.py   (~2 min)
"""

import hashlib
import json

import pytest
import torch
from transformers import AutoModelForCausalLM

from conciser import toy
from conciser.config import list_recipes, load_recipe, resolve_recipe_path
from conciser.rewards import REWARDS, build_reward
from conciser.trainers.train import model_identity, prepare, train

from reference_files import write_reference
from trainer_helpers import completion

METHODS = [*REWARDS, "grpo"]  # every registered reward, and plain GRPO (correctness only)
# what a recipe must show in its logs (besides the common length/ metrics), where its method logs more
SIGNS = {
    "laser_d": {"laser_d/target_easy", "laser_d/monitor_solved_frac"},
    "laser_de": {"laser_de/target_hard", "laser_de/monitor_solved_frac"},
    "dler": {"sampling/gen_batches", "sampling/kept_group_frac", "advantage/centred_std", "dler/target_mean"},
    "dler_da": {"sampling/gen_batches", "advantage/centred_std", "dler_da/target_mean"},
    "drpo": {"drpo/live_group_frac", "drpo/objective", "drpo/kl"},
    "hapo": {"hapo/history_known_frac"},
    "curriculum": {"length/budget"},
    "palu": {"palu/budget_mean"},
    "dot": {"dot/cut_frac"},
    "kimi": {"rewards/kimi/mean"},
    "pear": {"pear/think_entropy_mean", "pear/penalty_mean"},
    "lc_r1": {"lc_r1/unreached_frac", "lc_r1/valid_frac_mean"},
    "grpo_lead": {"grpo_lead/weight_mean", "grpo_lead/gated_group_frac"},
    "efficient_reasoning": {"rewards/efficient_reasoning/mean"},
    "o1_pruner": {"o1_pruner/ref_length_mean", "o1_pruner/length_ratio_mean"},
    "adaptthink": {"adaptthink/nothinking_frac"},
    "a_dlp": {"a_dlp/lambda", "a_dlp/reference_accuracy"},
}
SHARED_REFERENCE = "runs/toy/reference/train/samples.jsonl"  # the toy's reference statistics, built on first use


def _reference(method, model, tmp_path, n_train=None):
    """For a recipe whose reward scores against reference statistics: an override naming a file of them for
    `model` on the recipe's training problems (`conciser train` builds the real one for the toy base)."""
    recipe = load_recipe(f"toy/{method}")
    if build_reward(recipe.rewards.method, **recipe.rewards.params).reference_stats() is None:
        return []
    assert recipe.rewards.params["reference_stats"] == SHARED_REFERENCE
    ids = [p.id for p in toy.train_problems(n_train or recipe.data.n_train, seed=recipe.data.seed)]
    path = write_reference(tmp_path / "REF" / "train", {pid: [(40, True), (60, False)] for pid in ids},
                           model=model_identity(str(model)))
    return [f"rewards.params.reference_stats={path}"]


def test_every_registered_reward_has_a_toy_recipe():
    missing = [name for name in REWARDS if f"toy/{name}" not in list_recipes()]
    assert not missing, f"registered rewards without recipes/toy/<name>.yaml: {missing}"


def _script(p, j, call):
    h = int(hashlib.sha1(f"{p.id}:{j}:{call}".encode()).hexdigest(), 16)
    return completion(p, correct=h % 3 != 0, extra=h % 40)


@pytest.mark.parametrize("method", METHODS)
def test_toy_recipe_validates_and_names_its_launch_command(method, tmp_path):
    assert resolve_recipe_path(f"toy/{method}").read_text().splitlines()[0] == f"# conciser train toy/{method}"
    recipe, rows, reward, args = prepare(f"toy/{method}", _reference(method, "toy", tmp_path))
    assert recipe.model.name_or_path == "toy" and recipe.data.dataset == "toy"
    assert reward.name == ("laser" if method == "grpo" else method)
    assert args.max_completion_length <= 224 and args.max_steps == 60
    assert args.save_strategy == "steps" and args.save_steps <= args.max_steps  # `--resume` has a checkpoint
    # DLER's dynamic sampling runs out of mixed groups on the toy after ~15 steps: its recipes top up
    assert recipe.sampling.on_exhausted == ("fill" if method.startswith("dler") else "error")


@pytest.mark.parametrize("method", METHODS)
def test_toy_recipe_trains_end_to_end(method, tiny_toy_model, scripted, tmp_path):
    scripted(None, _script)
    extra = ["rewards.params.total_steps=2"] if method == "curriculum" else []
    out = train(f"toy/{method}", [
        f"model.name_or_path={tiny_toy_model}", f"trainer.output_dir={tmp_path / 'run'}", "trainer.max_steps=2",
        "trainer.per_device_train_batch_size=16", "trainer.num_generations=4", "trainer.logging_steps=1",
        "data.n_train=32", "sampling.monitor_prompts=4", *extra, *_reference(method, tiny_toy_model, tmp_path, 32)])
    logs = json.loads((out / "trainer_state.json").read_text())["log_history"]
    steps = [log for log in logs if "loss" in log]
    assert len(steps) == 2
    seen = set().union(*steps)
    assert {"length/mean", "length/truncated_frac", "length/budget", "correct/frac"} | SIGNS.get(method, set()) <= seen
    before = AutoModelForCausalLM.from_pretrained(tiny_toy_model).state_dict()
    after = AutoModelForCausalLM.from_pretrained(out).state_dict()
    assert sum(not torch.equal(before[k], after[k]) for k in before) >= len(before) // 2
    if method == "curriculum":
        assert [log["length/budget"] for log in steps] == [160, 87]
