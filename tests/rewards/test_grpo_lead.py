"""GRPO-LEAD's reward (arXiv 2504.09696): hand-computed tables of exp(-alpha z) for correct answers (z over the
group's correct lengths, sample std, std 1 below two), -1 for wrong ones, 0 without an answer, and the code's
length gate (three shortest completions average > length_gate). The advantage reweighting is the
`grpo_lead` estimator: tests/trainers/test_advantages.py.

Run: .venv/bin/pytest tests/rewards/test_grpo_lead.py
"""

import math
from functools import partial

import pytest

from conciser.rewards import build_reward

from batches import make_batch

mk = partial(make_batch, max_length=10000)
E = math.exp
# 5000 6000 7000 8000: mean 6500, sample std sqrt(5e6 / 3); z = -+1500 / std, -+500 / std
S = math.sqrt(5e6 / 3)

CASES = [
    ("three correct (mean 20, std 10), one wrong", dict(length_gate=0),
     dict(lengths=[10, 20, 30, 40], correct=[True, True, True, False]), [E(0.05), 1.0, E(-0.05), -1.0]),
    ("all wrong: the explicit penalty", dict(length_gate=0),
     dict(lengths=[10, 20], correct=[False, False]), [-1.0, -1.0]),
    ("no answer (format fail): 0 in the code", dict(length_gate=0),
     dict(lengths=[10, 20, 30], correct=[False, False, True], format_ok=[True, False, True]), [-1.0, 0.0, 1.0]),
    ("the paper: every incorrect answer -1", dict(length_gate=0, format_reward=-1.0),
     dict(lengths=[10, 20], correct=[False, False], format_ok=[True, False]), [-1.0, -1.0]),
    ("single correct: std 1, z 0", dict(length_gate=0),
     dict(lengths=[10, 99, 5], correct=[False, True, False]), [-1.0, 1.0, -1.0]),
    ("ties: std 0, z 0", dict(length_gate=0), dict(lengths=[20, 20]), [1.0, 1.0]),
    ("all right, past the default gate (4000)", {},
     dict(lengths=[5000, 6000, 7000, 8000]),
     [E(0.05 * 1500 / S), E(0.05 * 500 / S), E(-0.05 * 500 / S), E(-0.05 * 1500 / S)]),
    ("three shortest average 3700 <= 4000: no length term", {},
     dict(lengths=[100, 5000, 6000, 7000]), [1.0] * 4),
    ("the gate is strict: an average of exactly 4000 stays off", {},
     dict(lengths=[3000, 4000, 5000, 9000]), [1.0] * 4),
    ("the gate counts wrong answers too", {},
     dict(lengths=[100, 200, 300, 9000, 9100], correct=[False, False, False, True, True]), [-1.0] * 3 + [1.0] * 2),
    ("under three completions the gate always passes (mean 10, std sqrt 50)", {},
     dict(lengths=[5, 15]), [E(0.05 * 5 / math.sqrt(50)), E(-0.05 * 5 / math.sqrt(50))]),
    ("groups are gated and normalised on their own", dict(length_gate=15),
     dict(lengths=[10, 20, 30, 40, 10, 11, 12, 100], ids=["a"] * 4 + ["b"] * 4),
     [E(0.05 * 15 / math.sqrt(500 / 3)), E(0.05 * 5 / math.sqrt(500 / 3)), E(-0.05 * 5 / math.sqrt(500 / 3)),
      E(-0.05 * 15 / math.sqrt(500 / 3)), 1.0, 1.0, 1.0, 1.0]),
    ("alpha 0: plain +1 / -1", dict(alpha=0.0, length_gate=0),
     dict(lengths=[10, 40], correct=[True, False]), [1.0, -1.0]),
]


@pytest.mark.parametrize("case,config,batch,expected", CASES, ids=[c[0] for c in CASES])
def test_grpo_lead_table(case, config, batch, expected):
    assert build_reward("grpo_lead", **config)(mk(**batch)) == pytest.approx(expected, rel=1e-6)


def test_defaults_follow_the_code_and_name_its_estimator():
    r = build_reward("grpo_lead")
    c = r.config
    assert (c.alpha, c.correct_reward, c.wrong_reward, c.format_reward, c.std_eps, c.length_gate) == \
        (0.05, 1.0, -1.0, 0.0, 1e-6, 4000)
    assert r.preferred_estimator == "grpo_lead"


def test_length_scope_answer_counts_answer_tokens():
    # totals 10 / 30 but answers 10 / 5: the scope flips which correct answer is rewarded above 1
    b = mk(lengths=[10, 30], think_lengths=[0, 25], answer_lengths=[10, 5])
    total = build_reward("grpo_lead", length_gate=0)(b)
    answer = build_reward("grpo_lead", length_gate=0, length_scope="answer")(b)
    z = 10 / math.sqrt(200)
    assert total == pytest.approx([E(0.05 * z), E(-0.05 * z)])
    assert answer == pytest.approx([E(-0.05 * 2.5 / math.sqrt(12.5)), E(0.05 * 2.5 / math.sqrt(12.5))])


def test_metrics_report_the_gated_share():
    b = mk(lengths=[5000, 6000, 7000, 1, 2, 3], ids=["a"] * 3 + ["b"] * 3)
    assert build_reward("grpo_lead").metrics(b) == {"gated_group_frac": 0.5}
