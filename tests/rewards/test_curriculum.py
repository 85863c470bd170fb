"""Curriculum GRPO (arXiv 2508.08940): hand-computed tables from methods-core §5.1-5.2.

Run: .venv/bin/pytest tests/rewards/test_curriculum.py
"""

from functools import partial

import pytest

from conciser.rewards import build_reward

from batches import make_batch


mk = partial(make_batch, max_length=1024)


@pytest.mark.parametrize("config,steps,expected", [
    # paper main run: 256 -> 87, n = 3, I = 150 -> 256, 179, 125, 87 (rounded to nearest)
    ({}, [0, 149, 150, 299, 300, 449, 450, 599, 10_000], [256, 256, 179, 179, 125, 125, 87, 87, 87]),
    (dict(rounding="floor"), [0, 150, 300, 450], [256, 178, 124, 87]),
    # linear: three equal drops of 169/3 = 56.3: 256, 199.67, 143.33, 87
    (dict(schedule="linear"), [0, 150, 300, 450], [256, 200, 143, 87]),
    (dict(schedule="linear", rounding="floor"), [0, 150, 300, 450], [256, 199, 143, 87]),
    (dict(schedule="constant"), [0, 300, 10_000], [256, 256, 256]),
    # n = 1: I = 300, d = 87/256
    (dict(num_decays=1), [299, 300], [256, 87]),
    # small budgets, exact at each decay
    (dict(start_budget=4, end_budget=1, num_decays=2, total_steps=3), [0, 1, 2], [4, 2, 1]),
])
def test_budget_schedule(config, steps, expected):
    r = build_reward("curriculum", **config)
    assert [r.budget_at(t) for t in steps] == expected


def test_budget_prompt():
    r = build_reward("curriculum")
    assert r.budget_prompt(150) == "IMPORTANT: You should use exactly 179 tokens in your response."


GOOD = "<think>2+2</think> <answer>4</answer>"


@pytest.mark.parametrize("case,config,batch,expected", [
    # step 0: L = 256; weights 0.45 / 0.45 / 0.1; alpha_think = alpha_answer = 0.5
    ("triangular, both tags", {},
     dict(lengths=[128, 256, 384, 512, 600, 0], correct=[True, True, False, False, False, True],
          texts=[GOOD] * 6),
     [0.45 + 0.45 * 0.5 + 0.1, 0.45 + 0.45 + 0.1, 0.45 * 0.5 + 0.1, 0.1, 0.1, 0.45 + 0.1]),
    ("band shape: flat up to L", dict(length_shape="band"),
     dict(lengths=[1, 128, 384], correct=[True, True, True], texts=[GOOD] * 3),
     [1.0, 1.0, 0.45 + 0.45 * 0.5 + 0.1]),
    ("format tags: think only, answer only, none, doubled, empty", {},
     dict(lengths=[600] * 5, correct=[False] * 5,
          texts=["<think>x</think> 4", "<answer>4</answer>", "4",
                 "<think>a</think><think>b</think><answer>4</answer>", "<think> </think><answer>4</answer>"]),
     [0.05, 0.05, 0.0, 0.05, 0.05]),
    ("correctness needs format_ok too; truncated scored as any other", {},
     dict(lengths=[256, 256], correct=[True, True], format_ok=[False, True], truncated=[False, True],
          texts=[GOOD] * 2),
     [0.45 + 0.1, 1.0]),
    ("later step uses the smaller budget (L = 87)", {},
     dict(lengths=[87, 174], correct=[True, True], texts=[GOOD] * 2, step=450),
     [1.0, 0.45 + 0.1]),
    ("length-heavy ablation weights, no format term", dict(correctness_weight=0.3, length_weight=0.6,
                                                           format_weight=0.0),
     dict(lengths=[128], correct=[True]), [0.3 + 0.6 * 0.5]),
])
def test_reward_table(case, config, batch, expected):
    assert build_reward("curriculum", **config)(mk(**batch)) == pytest.approx(expected)


def test_length_term_is_not_gated_on_correctness():
    r = build_reward("curriculum", format_weight=0.0)
    assert r(mk(lengths=[256, 256], correct=[True, False])) == pytest.approx([0.9, 0.45])


def test_format_term_needs_texts():
    with pytest.raises(ValueError, match="texts.*format_weight=0"):
        build_reward("curriculum")(mk(lengths=[1], correct=[True]))


@pytest.mark.parametrize("config,match", [
    (dict(schedule="cosine"), "curriculum.schedule"),
    (dict(num_decays=0), "curriculum.num_decays"),
    (dict(prompt_template="use {n} tokens"), "prompt_template"),
])
def test_bad_config(config, match):
    with pytest.raises(ValueError, match=match):
        build_reward("curriculum", **config)
