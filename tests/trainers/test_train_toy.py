"""Real TRL GRPO steps on a tiny toy model through `conciser train`'s code path."""

import json

import pytest
import torch
from transformers import AutoModelForCausalLM

from conciser.trainers.train import prepare, train


def _overrides(model_dir, out_dir, *extra):
    return [f"model.name_or_path={model_dir}", f"trainer.output_dir={out_dir}", "trainer.max_steps=2",
            "trainer.per_device_train_batch_size=8", "trainer.num_generations=4",
            "trainer.max_completion_length=64", "trainer.logging_steps=1", "data.n_train=16", *extra]


def test_two_grpo_steps_move_parameters_and_log_length_metrics(tiny_sft_toy_model, tmp_path):
    # Kimi's length term separates even wrong answers, so a barely-trained model gets non-zero
    # advantages (with LASER every completion of such a model scores -1 and nothing would move).
    out = train("toy/laser", _overrides(tiny_sft_toy_model, tmp_path / "run", "trainer.learning_rate=0.05",
                                        "rewards.method=kimi", "rewards.params={}"))
    before = AutoModelForCausalLM.from_pretrained(tiny_sft_toy_model).state_dict()
    after = AutoModelForCausalLM.from_pretrained(out).state_dict()
    moved = [k for k in before if not torch.equal(before[k], after[k])]
    assert len(moved) >= len(before) // 2, f"only {len(moved)} of {len(before)} tensors changed"
    assert (out / "recipe.resolved.yaml").is_file()
    logs = json.loads((out / "trainer_state.json").read_text())["log_history"]
    assert {"length/mean", "length/truncated_frac", "correct/frac", "rewards/kimi/mean"} <= set(logs[0])


def test_recipe_errors_come_before_model_loading(tmp_path):
    # A model path that does not exist would fail at load time; the bad key must fail first.
    with pytest.raises(ValueError, match="max_stepz"):
        prepare("toy/laser", ["model.name_or_path=/does/not/exist", "trainer.max_stepz=1"])
