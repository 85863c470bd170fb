"""PEAR (arXiv 2510.08026): hand-computed tables of r = min(1, s - max(0, H_think - alpha H_answer)) for
correct answers, the format score for wrong ones (methods-more §7e).

Run: .venv/bin/pytest tests/rewards/test_pear.py
"""

from functools import partial

import pytest

from conciser.errors import UserError
from conciser.rewards import build_reward

from batches import make_batch

mk = partial(make_batch, max_length=100)


def ent(think, answer, **kw):
    """A batch of len(think) completions (one group) with these per-phase mean entropies."""
    return mk(lengths=[10] * len(think), think_entropies=think, answer_entropies=answer, **kw)


# (case, config, batch, expected)
CASES = [
    ("mixed group: penalty, no penalty (answer more uncertain), wrong, no answer", {},
     ent([0.8, 0.2, 0.9, 0.9], [0.3, 0.5, 0.1, 0.1], correct=[True, True, False, False],
         format_ok=[True, True, True, False]),
     [0.5, 1.0, 0.0, 0.0]),
    ("wrong answers get the format score, answerless ones 0", dict(format_score=0.1),
     ent([0.8, 0.8, 0.8], [0.3, 0.3, 0.3], correct=[True, False, False], format_ok=[True, True, False]),
     [0.5, 0.1, 0.0]),
    ("all wrong: entropy never matters", {},
     ent([0.1, 2.0], [0.0, 0.0], correct=[False, False]), [0.0, 0.0]),
    ("all right", {},
     ent([1.0, 0.5, 0.25], [0.25, 0.5, 0.0]), [0.25, 1.0, 0.75]),
    ("single correct answer", {},
     ent([0.6, 0.6], [0.2, 0.2], correct=[False, True]), [0.0, 0.6]),
    ("no thinking tag: no answer part, H_answer = 0 (the paper's k = T)", {},
     ent([0.4], [None]), [0.6]),
    ("empty thinking counts as entropy 0", {},
     ent([None], [0.3]), [1.0]),
    ("ties: equal entropies, equal rewards", {},
     ent([0.7, 0.7], [0.2, 0.2]), [0.5, 0.5]),
    ("alpha 0.5 weighs the answer's entropy half", dict(alpha=0.5),
     ent([0.8], [0.4]), [0.4]),
    ("alpha 2", dict(alpha=2.0),
     ent([0.8, 0.5], [0.3, 0.3]), [0.8, 1.0]),
    ("min(1, s - P): a score above 1 is capped", dict(score=2.0),
     ent([0.5, 1.5], [0.0, 0.0]), [1.0, 0.5]),
    ("not clipped below: a very uncertain thinking scores under a wrong answer", {},
     ent([2.5, 0.1], [0.5, 0.1], correct=[True, False]), [-1.0, 0.0]),
    ("truncated completions are scored like any other", {},
     ent([0.8], [0.3], truncated=[True]), [0.5]),
]


@pytest.mark.parametrize("case,config,batch,expected", CASES, ids=[c[0] for c in CASES])
def test_pear_table(case, config, batch, expected):
    assert build_reward("pear", **config)(batch) == pytest.approx(expected)


def test_defaults_match_the_paper_and_it_asks_for_entropies():
    r = build_reward("pear")
    assert (r.config.alpha, r.config.score, r.config.format_score) == (1.0, 1.0, 0.0)
    assert r.needs() == {"think_entropies", "answer_entropies"}


def test_without_entropies_it_says_how_to_get_them():
    with pytest.raises(ValueError, match="pear.*think_entropies.*needs\\(\\)"):
        build_reward("pear")(mk(lengths=[3]))


def test_metrics():
    b = ent([0.8, 0.2, 0.4], [0.3, 0.5, None], correct=[True, True, False])
    assert build_reward("pear").metrics(b) == pytest.approx(
        {"think_entropy_mean": 1.4 / 3, "answer_entropy_mean": 0.8 / 3, "penalty_mean": 0.25})


def test_pear_measures_no_length_so_it_refuses_a_length_scope():
    with pytest.raises(UserError, match="pear.length_scope='think'.*supports length_scope total only"):
        build_reward("pear", length_scope="think")
