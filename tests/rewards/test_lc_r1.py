"""LC-R1 (arXiv 2506.14755; code zxiangx/LC-R1): hand-computed tables of
format + accuracy + (1 - L' / max right L') + compress, where compress = f - 1 for a right answer whose
thinking first writes the answer after a share f of its characters, -1 when it never does, and L' takes
the invalid thinking (round((1 - f) * think tokens)) out of right answers.

Run: .venv/bin/pytest tests/rewards/test_lc_r1.py
"""

import random
from functools import partial

import pytest

from conciser import toy
from conciser.errors import UserError
from conciser.rewards import build_reward
from conciser.rewards.lc_r1 import answer_reached, valid_fraction

from batches import make_batch

mk = partial(make_batch, max_length=100)


def text(body, answer="4", tags=1):
    """A completion whose thinking (between the tags) is exactly `body`."""
    return "<think>" + body + "</think>" * tags + "\\boxed{" + answer + "}" + toy.EOS


def batch(rows, **kw):
    """rows: (body, correct, think tokens, answer tokens[, tags]) per completion, one group."""
    return mk(lengths=[r[2] + r[3] for r in rows], correct=[r[1] for r in rows],
              texts=[text(r[0], tags=r[4] if len(r) > 4 else 1) for r in rows],
              think_lengths=[r[2] for r in rows], answer_lengths=[r[3] for r in rows], **kw)


# bodies of 10 characters; the answer point is the end of the sentence that first writes "=4"
EARLY = ("=4. zzzzzz", True, 10, 4)   # f = 3/10: 7 of 10 thinking tokens invalid -> L' = 14 - 7 = 7
LATE = ("zzzzzz =4.", True, 10, 4)    # f = 1: nothing to compress, L' = 14
NEVER = ("z" * 10, True, 10, 4)       # never writes the answer: compress -1, L' = 14
WRONG = ("=4. zzzzzz", False, 16, 4)  # wrong: L' = 20 (not compressed), no compress term

CASES = [
    ("early, late, never, wrong (max right L' = 14)", dict(answer_match="after_equals"),
     [EARLY, LATE, NEVER, WRONG],
     [2 + (1 - 7 / 14) - 0.7, 2.0, 2 - 1.0, 1 + (1 - 20 / 14)]),
    ("length_on_wrong=False: wrong answers get no length term", dict(answer_match="after_equals",
                                                                      length_on_wrong=False),
     [EARLY, LATE, WRONG], [2 + (1 - 7 / 14) - 0.7, 2.0, 1.0]),
    ("all wrong: format only", {}, [WRONG, WRONG], [1.0, 1.0]),
    ("all right, ties: no length term", dict(answer_match="after_equals"), [LATE, LATE], [2.0, 2.0]),
    ("single correct: its own maximum", dict(answer_match="after_equals"), [EARLY, WRONG],
     [2 + 0.0 - 0.7, 1 + (1 - 20 / 7)]),
    ("two </think> tags: not right (format 0), no compress; measured against the right ones",
     dict(answer_match="after_equals"), [LATE, ("=4. zzzzzz", True, 10, 4, 2)],
     [2.0, 0 + 1 + (1 - 14 / 14)]),
    ("weights", dict(answer_match="after_equals", length_weight=0.5, compress_weight=2.0, format_reward=0.0),
     [EARLY, LATE], [1 + 0.5 * (1 - 7 / 14) - 1.4, 1.0]),
    ("standalone matches 'is 4' (f = 5/10, L' = 10 - 4 = 6)", {},
     [("is 4. zzzz", True, 8, 2), ("z" * 10, True, 8, 2)], [2 + (1 - 6 / 10) - 0.5, 2 - 1.0]),
    ("after_equals does not match 'is 4'", dict(answer_match="after_equals"),
     [("is 4. zzzz", True, 8, 2), ("z" * 10, True, 8, 2)], [1.0, 1.0]),
]


@pytest.mark.parametrize("case,config,rows,expected", CASES, ids=[c[0] for c in CASES])
def test_lc_r1_table(case, config, rows, expected):
    assert build_reward("lc_r1", **config)(batch(rows)) == pytest.approx(expected)


def test_no_thinking_tag_is_not_right_but_still_correct():
    b = mk(lengths=[5, 5], correct=[True, False], texts=["\\boxed{4}" + toy.EOS] * 2,
           think_lengths=[5, 5], answer_lengths=[0, 0])
    assert build_reward("lc_r1")(b) == [1.0, 0.0]


@pytest.mark.parametrize("scope,expected", [
    # think: L' = 10 - 7 = 3 vs 10 -> 1 - 3/10; answer: nothing is cut, 4 vs 4 -> 0 for both
    ("think", [2 + (1 - 3 / 10) - 0.7, 2.0]),
    ("answer", [2 - 0.7, 2.0]),
])
def test_length_scope(scope, expected):
    r = build_reward("lc_r1", answer_match="after_equals", length_scope=scope)
    assert r(batch([EARLY, LATE])) == pytest.approx(expected)
    assert r.needs() == {"texts", "think_lengths", "answer_lengths"}


@pytest.mark.parametrize("thinking,answer,match,prefix", [
    ("a3:8=1. b9:1=0. c4:0=4.", "4", "after_equals", "a3:8=1. b9:1=0. c4:0=4."),  # a result, not operand c4
    ("a3:4=7. b7:7=4. ok.", "4", "after_equals", "a3:4=7. b7:7=4."),  # the previous value in a3:4=7 is no result
    ("a3:4=7. b7:7=4. ok.", "4", "standalone", "a3:4=7."),
    ("x = 42, so it is 42. check", "42", "after_equals", "x = 42, so it is 42."),
    ("x = 42.5, not 42", "42", "after_equals", None),   # 42.5 is another number
    ("0.4 or 14 or 4x, then \\boxed{4} wait", "4", "standalone", "0.4 or 14 or 4x, then \\boxed{4} wait"),
    ("so \\frac{1}{2}\nnext line", "\\frac{1}{2}", "standalone", "so \\frac{1}{2}\n"),
    ("nothing here", "4", "standalone", None),
    ("anything", "", "standalone", None),
])
def test_answer_reached(thinking, answer, match, prefix):
    end = answer_reached(thinking, answer, match)
    assert (None if end is None else thinking[:end]) == prefix


def _earlier_result_is_the_answer(p):
    values, cur = [], p.start
    for v in p.operands:
        cur = (cur + v) % 10
        values.append(cur)
    return str(p.answer) in map(str, values[:-1])


def test_on_the_toy_the_answer_is_first_written_by_the_step_that_computes_it():
    problems = toy.make_problems(200, seed=1)
    for p in problems:  # minimal traces: the last step, unless an earlier step's result equalled the answer
        f = valid_fraction(toy.minimal_trace(p), "after_equals")
        assert (f == 1.0) == (not _earlier_result_is_the_answer(p)), toy.minimal_trace(p)
    rng = random.Random(0)
    traces = [toy.verbose_trace(p, rng, toy.Verbosity(p_shortcut=0.2)) for p in problems]
    verbose = [valid_fraction(t, "after_equals") for t in traces]
    # a shortcut ("hmm, quick.") answers without ever computing it: unreached, compress -1
    assert [f is None for f in verbose] == ["hmm, quick." in t for t in traces] and any(f is None for f in verbose)
    reached = [f for f in verbose if f is not None]
    assert sum(reached) / len(reached) < 0.8  # the re-checks and the final re-verification are invalid thinking


def test_metrics():
    r = build_reward("lc_r1", answer_match="after_equals")
    assert r.metrics(batch([EARLY, LATE, NEVER, WRONG])) == pytest.approx(
        {"unreached_frac": 1 / 3, "valid_frac_mean": 0.65})


def test_bad_config_and_scope_errors():
    with pytest.raises(ValueError, match="answer_match='first'"):
        build_reward("lc_r1", answer_match="first")
    with pytest.raises(UserError, match="length_scope='both' is not one of"):
        build_reward("lc_r1", length_scope="both")
