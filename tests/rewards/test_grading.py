"""The grader: answer extraction, math-verify equivalences, deadlines, batch == serial, toy grader.

Run: .venv/bin/pytest tests/rewards/test_grading.py
"""

import threading
import time

import pytest

from conciser import toy
from conciser.rewards import grading
from conciser.rewards.grading import (
    EXTRACTIONS, GRADERS, Grade, extract_answer, get_grader, grade, grade_batch, grade_toy, grade_toy_batch,
    unparseable_golds,
)

# Far beyond anything sympy can evaluate: math-verify would spend hours on it.
TOWER = "2^{2^{2^{2^{2^{2^{2^{2^{2^{2}}}}}}}}}"
# The tower alone is known hopeless without trying (see test_shortcuts.py); plus one it is not a
# single term, so math-verify tries (and hangs evaluating it): the item reaches the pool and its deadline.
HUNG = TOWER + "+1"


@pytest.fixture(scope="module", autouse=True)
def _stop_workers_after():
    yield
    grading.shutdown()


def done(answer: str) -> str:
    """A completion that thinks (with a distracting box), closes thinking, then boxes `answer`."""
    return f"<think>maybe \\boxed{{999}}? let me check.</think> So the answer is $\\boxed{{{answer}}}$."


# (case, gold, completion, correct, error). Every row was checked against math-verify 0.9.0.
ROWS = [
    # LaTeX / numeric equivalences
    ("frac vs decimal", "\\frac{1}{2}", done("0.5"), True, None),
    ("decimal gold vs frac", "0.5", done("\\frac{1}{2}"), True, None),
    ("dfrac", "\\frac{1}{2}", done("\\dfrac{1}{2}"), True, None),
    ("frac12 shorthand", "\\frac12", done("1/2"), True, None),
    ("sqrt forms", "\\sqrt{2}/2", done("\\frac{\\sqrt2}{2}"), True, None),
    ("sqrt forms, reversed", "\\frac{\\sqrt{2}}{2}", done("\\frac{1}{\\sqrt{2}}"), True, None),
    ("simplified radical", "2 \\sqrt{5}", done("\\sqrt{20}"), True, None),
    ("thousands separator", "1,234", done("1234"), True, None),
    ("trailing zero", "1.6", done("1.60"), True, None),
    ("percent gold accepts the number", "10\\%", done("10"), True, None),
    ("percent gold accepts the fraction", "10\\%", done("0.1"), True, None),
    ("degrees", "76^\\circ", done("76"), True, None),
    ("units in the gold", "15\\mbox{ cm}^2", done("15"), True, None),
    ("dollar sign", "18", done("\\$18"), True, None),
    ("complex", "6+9i", done("9i+6"), True, None),
    ("polynomial, spacing", "x^5 - x^4 + x^3 - x^2 + x - 1", done("x^5-x^4+x^3-x^2+x-1"), True, None),
    ("ordered pair with \\left(", "\\left( 3, \\frac{\\pi}{2} \\right)", done("(3, \\frac{\\pi}{2})"),
     True, None),
    ("unordered solutions", "-2,1", done("1, -2"), True, None),
    ("set with escaped braces (nested)", "\\{1,2\\}", done("\\{2, 1\\}"), True, None),
    ("matrix", "\\begin{pmatrix} -1 & 0 \\\\ 0 & -1 \\end{pmatrix}",
     done("\\begin{pmatrix}-1&0\\\\0&-1\\end{pmatrix}"), True, None),
    ("multiple choice", "\\text{(C)}", done("C"), True, None),
    ("gold in dollars", "$\\frac{1}{2}$", done("0.5"), True, None),
    ("stray dollars in a gold (minerva)",
     "x_{0} \\cos (\\omega t)+$ $\\dot{x}_{0} \\sin (\\omega t) / \\omega",
     done("x_0\\cos(\\omega t) + \\frac{\\dot{x}_0 \\sin(\\omega t)}{\\omega}"), True, None),
    ("dollars inside the box", "5", "</think> \\boxed{$5$}", True, None),
    # decoration only: a sentence's full stop, a bold choice (AIME/AMC solutions)
    ("full stop in the box", "104", done("104."), True, None),
    ("decimal point is not a full stop", "104", done("104.5"), False, None),
    ("bold choice with leading zero", "73", done("\\textbf{(073)}"), True, None),
    ("bold number, full stop", "73", done("\\mathbf{73}."), True, None),
    ("bold wrong number", "73", done("\\textbf{(074)}"), False, None),
    ("bold part of the answer only", "2", done("\\textbf{2} + 1"), False, None),
    # intervals
    ("half-open interval", "(1,2]", done("(1,2]"), True, None),
    ("half-open interval, spacing", "[1,2)", done("[1, 2)"), True, None),
    ("interval union", "(-\\infty, 2) \\cup (3, \\infty)", done("(-\\infty,2)\\cup(3,\\infty)"), True, None),
    ("wrong endpoint type", "(1,2]", done("(1,2)"), False, None),
    ("wrong endpoint type, closed", "(1,2]", done("[1,2]"), False, None),
    # equations: gold first matters
    ("assignment gold vs number", "x=3", done("3"), True, None),
    ("number gold vs assignment", "3", done("x=3"), True, None),
    ("same equation", "x=3", done("x = 3"), True, None),
    ("other variable", "x=3", done("y=3"), False, None),
    ("inequality gold accepts an interval", "x>1", done("(1,\\infty)"), True, None),
    ("interval gold rejects an inequality", "(1,\\infty)", done("x>1"), False, None),
    # wrong answers
    ("wrong integer", "2", done("3"), False, None),
    ("wrong fraction", "\\frac{1}{2}", done("\\frac{1}{3}"), False, None),
    ("rounded pi is not pi", "\\pi", done("3.14"), False, None),
    ("too coarse decimal", "\\frac{1}{3}", done("0.33"), False, None),
    ("plus-minus is not the value", "2021", done("\\pm 2021"), False, None),
    ("number in words", "5", done("five"), False, None),
    # which box
    ("last box wins", "5", "\\boxed{3}, no wait: \\boxed{5}", True, None),
    ("last box wins (earlier one ignored)", "3", "\\boxed{3}, no wait: \\boxed{5}", False, None),
    ("box in closed thinking ignored", "3", "<think>\\boxed{3}</think> final: \\boxed{4}", False, None),
    ("box only in closed thinking", "3", "<think>\\boxed{3}</think> the answer is 3", False, "no_answer"),
    ("think opened by the prompt", "3", "so \\boxed{2}? no. </think> \\boxed{3}", True, None),
    ("fbox", "7", "</think> \\fbox{7}", True, None),
    ("spaces inside the box", "7", "</think> \\boxed{ 7 }", True, None),
    # no answer
    ("missing box", "3", "<think>easy</think> The answer is 3.", False, "no_answer"),
    ("empty completion", "3", "", False, "no_answer"),
    ("empty box", "3", "</think> \\boxed{}", False, "no_answer"),
    ("unclosed box", "3", "</think> \\boxed{\\frac{3}{1}", False, "no_answer"),
    ("truncated thinking", "3", "<think>so it is \\boxed{3} and then", False, "unclosed_think"),
]
IDS = [r[0] for r in ROWS]


@pytest.mark.parametrize("case,gold,completion,correct,error", ROWS, ids=IDS)
def test_grade_table(case, gold, completion, correct, error):
    g = grade(gold=gold, completion=completion)
    assert (g.correct, g.error, g.timed_out) == (correct, error, False), g


@pytest.mark.parametrize("completion,expected", [
    ("\\boxed{\\frac{1}{2}}", "\\frac{1}{2}"),
    ("\\boxed{\\frac{\\sqrt{2}}{2}} text", "\\frac{\\sqrt{2}}{2}"),
    ("\\boxed{\\{1,2\\}}", "\\{1,2\\}"),
    ("\\boxed{\\begin{pmatrix}1\\\\2\\end{pmatrix}}", "\\begin{pmatrix}1\\\\2\\end{pmatrix}"),
    ("\\boxed {4} and \\fbox{5}", "5"),
    ("\\boxed{\\boxed{6}}", "\\boxed{6}"),                    # the outer box is the last one
    ("<think>\\boxed{1}</think><think>\\boxed{2}</think>\\boxed{3}", "3"),
    ("<think>\\boxed{1}</think>", None),
    ("<think>\\boxed{1}", None),
    ("\\boxed{1} then \\boxed{2", None),                      # the final answer was cut off
    ("\\boxed{  }", None),
    ("\\boxedx{1}", None),
    ("", None),
])
def test_extract_answer(completion, expected):
    assert extract_answer(completion) == expected


def test_keyword_only():
    with pytest.raises(TypeError):
        grade("1", "\\boxed{1}")  # type: ignore[misc]
    with pytest.raises(TypeError):
        grade_batch(["1"], ["\\boxed{1}"])  # type: ignore[misc]
    with pytest.raises(TypeError):
        grade_toy("1", "\\boxed{1}")  # type: ignore[misc]


def test_batch_equals_serial_equals_math_verify():
    golds = [r[1] for r in ROWS]
    completions = [r[2] for r in ROWS]
    # A deadline no row comes near, on any machine: this compares verdicts, and under heavy load one row
    # once ran past the default 5 s in the pool but not serially (timeouts are tested on their own below).
    grading.clear_cache()
    batch = grade_batch(golds=golds, completions=completions, workers=2, timeout=60.0)
    grading.clear_cache()
    serial = [grade(gold=g, completion=c, timeout=60.0) for g, c in zip(golds, completions)]
    assert batch == serial
    # ... and both are what math-verify says when called directly, in this process.
    for (_, gold, _, _, _), g in zip(ROWS, batch):
        if g.error is None:
            assert g.correct == grading._judge(grading._normalize(gold),
                                               grading._normalize(g.extracted))[0]


def test_batch_duplicates_and_order():
    golds = ["\\frac{1}{2}", "2", "\\frac{1}{2}", "2", "3"]
    completions = [done("0.5"), done("3"), done("0.5"), "", done("3")]
    got = grade_batch(golds=golds, completions=completions)
    assert [g.correct for g in got] == [True, False, True, False, True]
    assert [g.extracted for g in got] == ["0.5", "3", "0.5", None, "3"]
    assert grade_batch(golds=[], completions=[]) == []


def test_identical_strings_skip_the_pool(monkeypatch):
    def no_pool(*a, **k):
        raise AssertionError("the pool was used")

    monkeypatch.setattr(grading, "_get_pool", no_pool)
    got = grade_batch(golds=["\\frac{1}{2}", "x = 3"], completions=[done(" \\frac{1}{2} "), done("x  =  3")])
    assert [g.correct for g in got] == [True, True]


def test_power_tower_times_out_within_deadline():
    grade(gold="1", completion=done("1"))  # the pool is up, so we time grading, not start-up
    deadline = 1.5
    t0 = time.monotonic()
    g = grade(gold="2", completion=done(HUNG), timeout=deadline)
    elapsed = time.monotonic() - t0
    assert g == Grade(correct=False, extracted=HUNG, timed_out=True, error="timeout")
    assert elapsed < deadline + 10
    # the killed worker was replaced: grading goes on
    assert grade(gold="2", completion=done("2.0")).correct


def test_batch_with_a_hanging_item_returns_every_other_verdict():
    rows = ROWS[:12] + [("tower", "2", done(HUNG), False, "timeout")] + ROWS[12:24]
    grading.clear_cache()
    # The deadline leaves room for a loaded machine: every other item must still get its verdict.
    t0 = time.monotonic()
    got = grade_batch(golds=[r[1] for r in rows], completions=[r[2] for r in rows], timeout=8.0,
                      workers=2)
    # a guard against waiting on the hung item without end, not a speed check (bench/grading measures speed):
    # under the load of a vLLM bench beside the test-suite this batch once took 95 s
    assert time.monotonic() - t0 < 8.0 + 240
    assert [(g.correct, g.error) for g in got] == [(r[3], r[4]) for r in rows]
    assert [g.timed_out for g in got] == [r[0] == "tower" for r in rows]


def test_crashed_worker_is_reported_and_replaced(monkeypatch):
    from conciser.rewards import workers

    # No suspicion: on a loaded machine the kill may come late, and a suspect's task would be requeued.
    monkeypatch.setattr(workers, "SUSPECT_FRACTION", 1.0)
    grade(gold="1", completion=done("1.0"))
    killed = []

    def kill_when_busy():
        t_end = time.monotonic() + 20
        while time.monotonic() < t_end and not killed:
            pool = grading._POOL
            busy = [w for w in pool.workers if w.inflight] if pool else []
            if busy:
                busy[0].proc.kill()  # as the OOM killer would
                killed.append(True)
            time.sleep(0.05)

    threading.Thread(target=kill_when_busy, daemon=True).start()
    got = grade_batch(golds=["2"], completions=[done(HUNG)], timeout=30.0, workers=1)
    assert killed
    assert got == [Grade(correct=False, extracted=HUNG, timed_out=False, error="worker_crashed")]
    assert grade(gold="2", completion=done("2.0")).correct


def test_grade_from_a_thread():
    # math-verify's own signal-based timeout fails off the main thread; ours must not.
    out = []
    t = threading.Thread(target=lambda: out.append(grade(gold="\\frac{1}{4}", completion=done("0.25"))))
    t.start()
    t.join(timeout=60)
    assert out and out[0].correct


def test_bad_arguments():
    with pytest.raises(ValueError, match="differ in length"):
        grade_batch(golds=["1"], completions=[])
    with pytest.raises(ValueError, match="timeout"):
        grade(gold="1", completion="\\boxed{1}", timeout=0)


# ---------------------------------------------------------------- toy grader

@pytest.mark.parametrize("gold,completion,correct,error", [
    ("4", "<think> a: 8 + 3 = 1 . b: 1 + 9 = 0 . c: 0 + 4 = 4 . </think> \\boxed{ 4 } <|end|>",
     True, None),
    ("4", "<think> a: 8 + 3 = 1 . </think> \\boxed{ 5 } <|end|>", False, None),
    ("4", "<think> hmm , quick . </think> \\boxed{ 04 } <|end|>", False, None),   # exact match only
    ("4", "<think> \\boxed{ 4 } </think> <|end|>", False, "no_answer"),
    ("4", "<think> a: 8 + 3 = 1 . wait , check", False, "unclosed_think"),
    ("4", "", False, "no_answer"),
])
def test_grade_toy(gold, completion, correct, error):
    g = grade_toy(gold=gold, completion=completion)
    assert (g.correct, g.error, g.timed_out) == (correct, error, False)


def test_toy_traces_are_graded_correct():
    import random

    problems = toy.make_problems(20, seed=0)
    rng = random.Random(0)
    completions = [toy.minimal_trace(p) for p in problems] + [toy.verbose_trace(p, rng) for p in problems]
    golds = [p.answer for p in problems] * 2
    assert all(g.correct for g in grade_toy_batch(golds=golds, completions=completions))
    wrong = [str((int(p.answer) + 1) % 10) for p in problems]
    assert not any(g.correct for g in grade_toy_batch(golds=wrong, completions=completions[:20]))


# ---------------------------------------------------------------- registry

def test_registry():
    assert GRADERS == {"math": grade_batch, "toy": grade_toy_batch}
    assert get_grader("toy") is grade_toy_batch
    assert get_grader("math") is grade_batch
    with pytest.raises(ValueError, match="math, toy"):
        get_grader("nope")
    # every grader takes the same call
    for name in GRADERS:
        assert get_grader(name)(golds=["7"], completions=["</think> \\boxed{7}"], timeout=5.0)[0].correct


# ---------------------------------------------------------------- answer extraction modes

# (case, gold, completion, boxed: (correct, extracted, error), lenient: (correct, extracted, error)).
# "lenient" falls back to math-verify's own extraction only when no box follows the thinking.
EXTRACTION_ROWS = [
    ("boxed", "12", "<think>try 11</think> So it is \\boxed{12}.",
     (True, "12", None), (True, "12", None)),
    ("unboxed last number", "8", "There are 3 apples, then 5 more, so 8.",
     (False, None, "no_answer"), (True, "8", None)),
    ("unboxed expression", "\\frac{3}{4}", "<think>half of 1.5</think> We get $\\frac{3}{4}$ as the result.",
     (False, None, "no_answer"), (True, "\\frac{3}{4}", None)),
    ("unboxed wrong expression", "\\frac{3}{4}", "The final answer is $\\frac{2}{3}$. I hope it is correct.",
     (False, None, "no_answer"), (False, "\\frac{2}{3}", None)),
    ("no answer", "8", "<think>no idea</think> I cannot solve this.",
     (False, None, "no_answer"), (False, None, "no_answer")),
    ("answer only inside the thinking", "7", "<think>it is 7, so \\boxed{7}</think> Hmm, not sure.",
     (False, None, "no_answer"), (False, None, "no_answer")),
    ("thinking cut off", "7", "<think>it is 7", (False, None, "unclosed_think"), (False, None, "unclosed_think")),
    ("box cut off is not replaced by a number", "12", "So 3 + 9 gives \\boxed{1",
     (False, None, "no_answer"), (False, None, "no_answer")),
]


@pytest.mark.parametrize("case,gold,completion,boxed,lenient", EXTRACTION_ROWS, ids=[r[0] for r in EXTRACTION_ROWS])
def test_extraction_modes(case, gold, completion, boxed, lenient):
    for mode, want in (("boxed", boxed), ("lenient", lenient)):
        g = grade(gold=gold, completion=completion, extraction=mode)
        assert (g.correct, g.extracted, g.error) == want, mode
        assert extract_answer(completion, extraction=mode) == want[1]
    # the default stays "boxed": training rewards must not credit unboxed answers
    assert grade(gold=gold, completion=completion) == grade(gold=gold, completion=completion, extraction="boxed")


def test_extraction_mode_reaches_every_grader():
    assert EXTRACTIONS == ("boxed", "lenient")
    unboxed = "<think> a: 1 + 2 = 3 . </think> it is 3 <|end|>"
    for name in GRADERS:
        assert not get_grader(name)(golds=["3"], completions=[unboxed])[0].correct
        assert get_grader(name)(golds=["3"], completions=[unboxed], extraction="lenient")[0].correct
    assert grade_toy(gold="3", completion=unboxed, extraction="lenient").extracted == "3"
    with pytest.raises(ValueError, match="unknown extraction 'loose'; valid: boxed, lenient"):
        grade_batch(golds=["1"], completions=["1"], extraction="loose")
    with pytest.raises(ValueError, match="unknown extraction"):
        extract_answer("1", extraction="loose")


def test_unparseable_golds():
    # "}{" yields nothing to parse (GOLD_PARSE_ERROR); a blank gold has nothing to compare with.
    # Broken LaTeX such as "\\frac{1}{" is not flagged: math-verify falls back to its raw string,
    # and the verdict path counts that as a parsed gold (it can match an identical string only).
    golds = ["\\frac{1}{2}", "}{", "0", "", "x=3", "\\text{(C)}"]
    assert unparseable_golds(golds) == [1, 3]
    assert unparseable_golds([]) == []
