"""Budget schedules: the cap at step t, and that generation really uses it (every TRL copy of the cap).

Run: .venv/bin/pytest tests/trainers/test_budget.py
"""

import json
from types import SimpleNamespace

import pytest

from conciser.rewards import build_reward
from conciser.trainers.budget import build_budget, generation_caps, set_generation_cap

from trainer_helpers import completion, toy_inputs


def test_reward_schedules_follow_the_reward():
    curriculum = build_reward("curriculum", start_budget=224, end_budget=96, num_decays=3, total_steps=40)
    s = build_budget("reward", {}, curriculum, 224, 40)
    assert [s.budget_at(t) for t in (0, 9, 10, 20, 30, 39)] == [224, 224, 169, 127, 96, 96]
    prune = build_reward("thinkprune", caps=[160, 120], stage_starts=[0, 5])
    s = build_budget("reward", {}, prune, 224, 10)
    assert [s.budget_at(t) for t in (0, 4, 5, 9)] == [160, 160, 120, 120]


def test_standalone_schedules_and_constant():
    assert build_budget("constant", {}, build_reward("laser"), 224, 10).budget_at(7) == 224
    s = build_budget("linear", {"start_budget": 200, "end_budget": 80, "num_decays": 2, "total_steps": 30},
                     build_reward("dler"), 224, 30)
    assert [s.budget_at(t) for t in (0, 10, 20)] == [200, 140, 80]
    s = build_budget("stages", {"caps": [200, 100], "stage_starts": [0, 3]}, build_reward("hapo"), 224, 5)
    assert [s.budget_at(t) for t in (2, 3)] == [200, 100]


@pytest.mark.parametrize("schedule,params,reward,match", [
    ("reward", {}, "laser", "has no budget"),
    ("stages", {"caps": [300]}, "laser", "reaches 300 tokens but trainer.max_completion_length is 224"),
    ("exponential", {"start_budget": 200, "totl_steps": 3}, "laser", r"unknown key\(s\) \['totl_steps'\]"),
    ("constant", {"caps": [1]}, "laser", "takes no params"),
    ("weekly", {}, "laser", "valid: constant, reward"),
])
def test_bad_budgets_fail_naming_the_field(schedule, params, reward, match):
    with pytest.raises(ValueError, match=match):
        build_budget(schedule, params, build_reward(reward), 224, 10)


def test_per_question_budgets_from_palu():
    palu = build_reward("palu")
    palu.load_state_dict({**palu.state_dict(), "budgets": {"q1": 30}, "pass_rates": {"q1": 1.0}})
    s = build_budget("reward", {}, palu, 64, 10)
    assert s.per_prompt and s.budgets_for(["q1", "q2"], 0) == [30, 64]


def test_set_generation_cap_updates_the_vllm_copy():
    trainer = SimpleNamespace(use_vllm=True, max_completion_length=64,
                              vllm_generation=SimpleNamespace(max_completion_length=64))
    set_generation_cap(trainer, 40)
    assert generation_caps(trainer) == {"max_completion_length": 40, "vllm_generation.max_completion_length": 40}


def test_generation_uses_the_scheduled_cap_after_a_schedule_step(tiny_toy_model, make_trainer, monkeypatch, tmp_path):
    """Two real GRPO steps with ThinkPrune stages 40 -> 24 at step 1: what model.generate receives and what
    it returns follow the schedule (the random tiny model rarely stops, so completions reach the cap)."""
    from trl import GRPOTrainer

    trainer = make_trainer(tiny_toy_model, "thinkprune", {"caps": [40, 24], "stage_starts": [0, 1]},
                           budget={"schedule": "reward"}, max_completion_length=40, max_steps=2)
    seen = []
    original = GRPOTrainer._generate_single_turn
    model_generate = trainer.model.generate

    def spy_generate(*args, **kwargs):
        seen[-1]["model.generate max_new_tokens"] = kwargs["generation_config"].max_new_tokens
        return model_generate(*args, **kwargs)

    def spy(self, *args, **kwargs):
        seen.append({"step": self.state.global_step, **generation_caps(self)})
        completion_ids, logprobs = original(self, *args, **kwargs)
        seen[-1]["longest"] = max(len(c) for c in completion_ids)
        return completion_ids, logprobs

    monkeypatch.setattr(trainer.model, "generate", spy_generate)
    monkeypatch.setattr(GRPOTrainer, "_generate_single_turn", spy)
    trainer.train()
    assert [s["step"] for s in seen] == [0, 1]
    for record, cap in zip(seen, (40, 24)):
        assert {k: v for k, v in record.items() if k not in ("step", "longest")} == {
            "max_completion_length": cap, "generation_config.max_new_tokens": cap,
            "generation_kwargs.max_new_tokens": cap, "model.generate max_new_tokens": cap}
        assert record["longest"] == cap
    budgets = [log["length/budget"] for log in trainer.state.log_history if "length/budget" in log]
    assert budgets == [40, 24]


def test_per_question_cap_cuts_each_completion_at_its_budget(tiny_toy_model, make_trainer, scripted):
    trainer = make_trainer(tiny_toy_model, "palu", {}, budget={"schedule": "reward"}, max_completion_length=64)
    ids = [trainer.train_dataset[i]["problem_id"] for i in range(2)]
    palu = trainer.length_reward
    palu.load_state_dict({**palu.state_dict(), "budgets": {ids[0]: 30, ids[1]: 50}, "pass_rates": {}})
    scripted(trainer, lambda p, j, call: completion(p, extra=40))  # 63 and 71 tokens uncut
    trainer.model.train()
    out = trainer._generate_and_score_completions(toy_inputs(trainer, 2, 4))
    assert trainer.max_completion_length == 50  # generation cap: the batch's largest budget
    assert out["completion_mask"].sum(1).tolist() == [30] * 4 + [50] * 4
    assert trainer._metrics["train"]["length/budget"] == [40.0]
    assert trainer._metrics["train"]["length/truncated_frac"] == [1.0]  # cut = no EOS, as if capped
    assert json.loads(json.dumps(trainer.state_dict()))["budget"]["schedule"] == "reward"
