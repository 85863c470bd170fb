"""Per-prompt token budgets (L1's l1_exact / l1_max): drawn into the prompts by `data.target_lengths`,
or taken from a `target_length` column; checked before any model loads; passed to the reward.
Run: .venv/bin/python -m pytest tests/trainers/test_target_lengths.py   (~30 s)
"""

import json
import re

import pytest

from conciser.config import RecipeError
from conciser.trainers.train import prepare, train

from trainer_helpers import completion

L1 = ["rewards.method=l1_max", "rewards.params={}"]


def test_drawn_budgets_are_seeded_in_range_and_stated_in_the_prompt():
    _, rows, reward, _ = prepare("toy/laser", [*L1, "data.target_lengths=[30,90]", "data.n_train=64"])
    _, again, _, _ = prepare("toy/laser", [*L1, "data.target_lengths=[30,90]", "data.n_train=64"])
    assert rows == again
    budgets = [r["target_length"] for r in rows]
    assert all(30 <= n <= 90 for n in budgets) and len(set(budgets)) > 10
    for r in rows:
        assert r["prompt"][-1]["content"].endswith(f" Think for maximum {r['target_length']} tokens.")
    _, exact, _, _ = prepare("toy/laser", ["rewards.method=l1_exact", "rewards.params={}", "data.target_lengths=[30,90]"])
    assert exact[0]["prompt"][-1]["content"].endswith(f" Think for {exact[0]['target_length']} tokens.")


@pytest.mark.parametrize("overrides, match", [
    (L1, r"rewards.method=l1_max .* no positive integer 'target_length'.*data.target_lengths=\[lo, hi\]"),
    ([*L1, "data.target_lengths=[90,30]"], r"data.target_lengths: expected \[lo, hi\]"),
    ([*L1, "data.target_lengths=[30]"], r"data.target_lengths: expected \[lo, hi\]"),
    ([*L1, "data.target_lengths=[30,400]"], r"400 tokens does not fit trainer.max_completion_length=160"),
    (["data.target_lengths=[30,90]"], r"'laser' reward has no per-prompt budget.*remove data.target_lengths"),
])
def test_bad_budgets_fail_before_the_model_loads(overrides, match):
    with pytest.raises(RecipeError, match=match):
        prepare("toy/laser", overrides)


def test_a_target_length_column_is_used_as_it_is(tmp_path):
    data = tmp_path / "train.jsonl"
    data.write_text("".join(json.dumps({"prompt": f"solve: start=1; a{i}; b2.", "answer": str((3 + i) % 10),
                                        "target_length": 40 + i}) + "\n" for i in range(4)))
    _, rows, _, _ = prepare("toy/laser", [*L1, f"data.dataset={data}"])
    assert [r["target_length"] for r in rows] == [40, 41, 42, 43]
    assert rows[0]["prompt"] == [{"role": "user", "content": "solve: start=1; a0; b2."}]


def test_l1_trains_on_the_budgets_it_states(tiny_toy_model, scripted, tmp_path):
    calls = scripted(None, lambda p, j, call: completion(p, correct=j % 2 == 0, extra=4 * j))
    out = train("toy/laser", [
        *L1, "data.target_lengths=[30,90]", "data.n_train=16", f"model.name_or_path={tiny_toy_model}",
        f"trainer.output_dir={tmp_path / 'run'}", "trainer.max_steps=2", "trainer.per_device_train_batch_size=8",
        "trainer.num_generations=4", "trainer.logging_steps=1"])
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_toy_model)
    stated = [re.search(r"Think for maximum (\d+) tokens\.", tok.decode(ids)) for prompt_ids, _ in calls
              for ids in prompt_ids]
    assert stated and all(m and 30 <= int(m.group(1)) <= 90 for m in stated)
    logs = [log for log in json.loads((out / "trainer_state.json").read_text())["log_history"] if "loss" in log]
    assert len(logs) == 2
    # l1_max pays a correct completion at most 1 and a wrong one 0: half the group is wrong
    assert all(0.0 < log["reward"] <= 0.5 + 1e-6 for log in logs)
