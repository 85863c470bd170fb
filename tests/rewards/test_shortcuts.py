"""The grader's shortcuts give math-verify's own verdicts: plain numbers by value, hopeless answers.

Run: .venv/bin/pytest tests/rewards/test_shortcuts.py
"""

import logging
import random
from fractions import Fraction

import pytest

from conciser.rewards import grading
from conciser.rewards.shortcuts import hopeless, numeric_verdict, plain_number


def _forms(v: Fraction, rng: random.Random) -> list[str]:
    """Ways to write `v` that the plain-number grammar takes (and a few it must leave alone)."""
    p, q = v.numerator, v.denominator
    out = [f"\\frac{{{p}}}{{{q}}}", f"\\dfrac{{{p}}}{{{q}}}", f"{p}/{q}", f"\\frac{{{2 * p}}}{{{2 * q}}}"]
    if p < 0:
        out.append(f"-\\frac{{{-p}}}{{{q}}}")
    if q == 1:
        out.append(str(p))
    for places in range(1, 8):  # decimals: up to 6 places are plain, 7 are not
        x = v * 10 ** places
        if x.denominator == 1:
            digits = str(abs(x.numerator)).rjust(places + 1, "0")
            sign = "-" if x.numerator < 0 else ""
            out += [f"{sign}{digits[:-places]}.{digits[-places:]}", f"{sign}{digits[:-places]}.{digits[-places:]}0"]
            break
    return out


def _pairs(n_values: int = 70, seed: int = 0) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    values = {Fraction(0), Fraction(1, 2), Fraction(-1, 2), Fraction(1, 3), Fraction(2, 3), Fraction(1, 10),
              Fraction(1, 10 ** 6), Fraction(1, 2 * 10 ** 6), Fraction(5), Fraction(123456789, 1000)}
    while len(values) < n_values:
        kind = rng.randrange(3)
        if kind == 0:
            values.add(Fraction(rng.randint(-2000, 2000)))
        elif kind == 1:
            values.add(Fraction(rng.randint(-10 ** 7, 10 ** 7), 10 ** rng.randint(1, 7)))
        else:
            values.add(Fraction(rng.randint(-60, 60), rng.randint(1, 40)))
    pairs = []
    for v in sorted(values):
        forms = _forms(v, rng)
        pairs += [(rng.choice(forms), rng.choice(forms)) for _ in range(2)]
        for d in (Fraction(1, 10 ** 6), Fraction(1, 10 ** 7), Fraction(1), Fraction(1, 3)):  # near, not equal
            pairs.append((rng.choice(forms), rng.choice(_forms(v + d, rng))))
    return pairs + [("0", "-0"), ("0", "-0.0"), ("5", "5.000000"), ("5", "5.0000001"), ("1", "1.000001"),
                    ("\\frac{1}{3}", "0.333333"), ("-1/2", "-0.5"), ("1.5", "3/2"), ("007", "7"), ("1", "01"),
                    ("1234567890123456", "1234567890123456"), ("0.5", "\\frac12"), ("1,234", "1234")]


def test_plain_number_grammar():
    assert plain_number("42") == (Fraction(42), False)
    assert plain_number("-0.25") == (Fraction(-1, 4), True)
    assert plain_number("\\dfrac{3}{4}") == (Fraction(3, 4), False)
    assert plain_number("-\\frac{3}{4}") == plain_number("\\frac{-3}{4}") == plain_number("-3/4")
    for not_plain in ("007", "+5", "1,234", "1 234", "5.", ".5", "1e5", "10\\%", "\\frac{1}{0}", "1/0", "\\frac12",
                      "0.1234567", "1234567890123456", "12345678901.12345", "x", "", "\\sqrt{4}"):
        assert plain_number(not_plain) is None, not_plain


def test_numeric_verdicts_are_math_verifys():
    """Every pair the shortcut decides, math-verify (in this process, no pool) decides the same way."""
    logging.getLogger("math_verify").setLevel(logging.ERROR)
    decided = 0
    for gold, answer in _pairs():
        verdict = numeric_verdict(gold, answer)
        if verdict is None:
            continue
        decided += 1
        assert grading._judge(gold, answer) == (verdict, None), (gold, answer, verdict)
    assert decided > 300  # most of the table is decided without math-verify


@pytest.mark.parametrize("gold,answer,expected", [
    ("\\frac{1}{3}", "0.333333", None),  # math-verify rounds the fraction to 6 places: its call
    ("\\frac{1}{4}", "0.25", True),
    ("5", "5.0", True),
    ("5", "5.000001", False),
    ("5", "x = 5", None),
    ("1.6", "1.60", True),
    ("2", "3", False),
])
def test_numeric_verdict(gold, answer, expected):
    assert numeric_verdict(gold, answer) is expected


@pytest.mark.parametrize("answer", [
    "10^{10^{10}}", "9^{9^{9^{9}}}", "2^{2^{40}}", "(10^{6})!", "(1+x)^{10000}", "\\sqrt{2}^{10^{10}}",
    "-10^{10^{10}}", "{10}^{10^{10}}", "(x-3)^{20000}", "10^{10^8}", "2^{2^{2^{2^{2^{2}}}}}",
])
def test_hopeless_answers(answer):
    for gold in ("5", "-\\frac{3}{4}", "x", "\\frac{\\sqrt{21}}{5}", "s^{2}+\\omega^{2}", "(1, 2]", "f(x)=2 x",
                 "\\frac{32}{9},\\frac{1}{2}", "180^\\circ", "2^{100}"):
        assert hopeless(gold, answer), gold
    assert not hopeless(answer, answer)         # the gold may hold the same term: math-verify matches it
    for gold in ("10^{10^{10}}", "(10^{6})!", "2^{1000}", "5!", "x^{2^{3}}"):  # not tame
        assert not hopeless(gold, answer), gold


def test_hopeless_answers_parse_to_what_hangs():
    """math-verify reads each form as the unevaluated power / factorial the docstring reasons about
    (its parse returns quickly; the comparison is what never ends)."""
    import sympy

    for answer in ("9^{9^{9^{9}}}", "\\sqrt{2}^{10^{10}}", "{10}^{10^{10}}", "10^{10^8}", "(10^{6})!", "(x-3)^{20000}",
                   "-10^{10^{10}}"):
        parsed = grading._parse(answer)[0]
        assert isinstance(parsed, sympy.Basic) and not parsed.is_Integer, (answer, parsed)
        assert parsed.has(sympy.Pow) or parsed.has(sympy.factorial), (answer, parsed)


@pytest.mark.parametrize("answer", [
    "10^{10^{10}}-10^{10^{10}}+1",  # cancels: math-verify can find it equal to 1
    "1^{10^{10}}", "0^{10^{10}}",   # 1 and 0
    "10^{10^{7}}",                  # 10^7 digits: sympy may finish within a deadline
    "(10^{5})!", "(1+x)^{1000}", "x^{10000}", "(1+i)^{10000}", "(1+e)^{10000}",
    "10^{-10^{10}}", "10^{10^{10}} \\cdot 0", "2^{0^{10}}", "10^{10}", "5", "1 + 1 + 1",
])
def test_not_hopeless(answer):
    assert not hopeless("1", answer)


def test_hopeless_answer_is_a_timeout_without_the_pool(monkeypatch):
    def no_pool(*a, **k):
        raise AssertionError("the pool was used")

    monkeypatch.setattr(grading, "_get_pool", no_pool)
    grading.clear_cache()
    got = grading.grade_batch(golds=["2", "2", "\\frac{1}{2}", "7"],
                              completions=[f"</think> \\boxed{{{a}}}" for a in ("9^{9^{9^{9}}}", "2.0", "0.5", "$7$.")])
    assert [(g.correct, g.timed_out, g.error) for g in got] == [
        (False, True, "timeout"), (True, False, None), (True, False, None), (True, False, None)]
