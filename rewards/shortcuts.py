"""Verdicts the grader can give without math-verify, each the one math-verify would give.

Both functions take the math text of a gold and of an answer: what math-verify parses once the
grader has boxed it (whitespace normalised, dollars and decorations dropped; see
``grading._math_text``). Each returns None whenever it is not sure; the item then goes to
math-verify as before. ``tests/rewards/test_shortcuts.py`` checks both against math-verify itself.

**Plain numbers** (:func:`numeric_verdict`). When gold and answer are both plain numbers (an
integer, a decimal with at most 6 places, a fraction ``\\frac{p}{q}`` / ``\\dfrac{p}{q}`` / ``p/q``;
at most 15 significant digits each), math-verify 0.9 decides by value: it parses them to sympy
Integer / Rational / Float, and ``sympy_expr_eq`` compares Integer and Rational exactly and a Float
against anything after rounding both to ``float_rounding=6`` decimal places. Its string fallback
(the extracted strings compared as text) can only agree when the values do. So: two exact values
are equal or not; with a decimal on either side, the values are compared exactly when the other side
is a decimal too or a rational whose decimal expansion ends within 6 places (rounding to 6 places
then changes neither). A rational that does not end there (``\\frac{1}{3}`` against ``0.333333``,
which math-verify accepts) is left to math-verify. Leading zeros, ``+`` signs, thousands separators,
percentages, exponents and units are all left to it too.

**Hopeless answers** (:func:`hopeless`). math-verify compares by evaluating (``doit``, ``evalf``,
``simplify``), so an answer such as ``9^{9^{9^{9}}}``, ``\\sqrt{2}^{10^{10}}``, ``(10^{6})!`` or
``(1+x)^{10000}`` runs out any deadline (a 10^8-digit power or (10^6)! takes sympy well over 5 s on
our machines, an expansion of a 10,000th power longer still). Such an answer is graded incorrect and
timed out at once, as the deadline would have, when it is *one* such term (an optional minus sign,
then a power of an integer >= 2 with at least 10^8 digits, a factorial of at least 10^6, or a power
>= 10,000 of a binomial in one variable other than e and i) and the gold is *tame*: no factorial, and
no exponent that is itself a power or has 4 or more digits in a row, so the gold's value is nowhere
near 10^(10^8) and it cannot hold the same term. One term cannot cancel: ``10^{10^{10}}-10^{10^{10}}+1``
or ``1^{10^{10}}`` are not matched (math-verify can decide those, or try to). Its verdict, incorrect, is
math-verify's whichever way math-verify ends: it runs out the deadline, or says the values differ.
(Against a gold that math-verify compares without evaluating, say a lone symbol, it can say so
quickly; the grade then says timed out where math-verify would have said incorrect outright.)
"""

from __future__ import annotations

import math
import re
from fractions import Fraction

_INT = r"-?(?:0|[1-9]\d{0,14})"
_POS = r"[1-9]\d{0,14}"
_INT_RE = re.compile(_INT)
_DEC_RE = re.compile(_INT + r"\.\d{1,6}")
_FRAC_RE = re.compile(rf"(-?)\\d?frac\{{({_INT})\}}\{{({_POS})\}}|({_INT})/({_POS})")
MAX_SIGNIFICANT = 15  # digits of a decimal: within a 53-bit float, as math-verify's Float holds it
FLOAT_ROUNDING = 6    # math-verify's verify(float_rounding=6)


def plain_number(s: str) -> tuple[Fraction, bool] | None:
    """(value, is_decimal) of a plain number as defined in the module docstring, else None."""
    if _INT_RE.fullmatch(s):
        return Fraction(int(s)), False
    if _DEC_RE.fullmatch(s):
        if len(s.lstrip("-").replace(".", "").lstrip("0")) > MAX_SIGNIFICANT:
            return None
        return Fraction(s), True
    m = _FRAC_RE.fullmatch(s)
    if m is None:
        return None
    if m.group(2) is not None:
        value = Fraction(int(m.group(2)), int(m.group(3)))
        return (-value if m.group(1) else value), False
    return Fraction(int(m.group(4)), int(m.group(5))), False


def _ends_within_rounding(v: Fraction) -> bool:
    return (v * 10 ** FLOAT_ROUNDING).denominator == 1


def numeric_verdict(gold: str, answer: str) -> bool | None:
    """math-verify's verdict when both are plain numbers and it is decided by value alone, else None."""
    g, a = plain_number(gold), plain_number(answer)
    if g is None or a is None:
        return None
    (gv, g_dec), (av, a_dec) = g, a
    if g_dec != a_dec and not _ends_within_rounding(av if g_dec else gv):
        return None  # a Float against a rational that rounding would change: math-verify's call
    return gv == av


# ---------------------------------------------------------------- hopeless answers

POWER_DIGITS = 1e8         # a power of an integer with this many digits or more
FACTORIAL_OF = 1e6         # n! for n this large or more
BINOMIAL_EXPONENT = 10_000  # (x + 1)^n for n this large or more
_SLACK = 1e-9  # the logarithms are floats: 10^{10^8} must not come out a hair under 10^8 digits
_INT_AT = re.compile(r"0|[1-9]\d*")
_BINOMIAL = re.compile(r"\((?:(\d+)[+-])?([a-dfghj-z])(?:[+-](\d+))?\)\^\{([1-9]\d*)\}")


def _log10_tower(s: str, i: int) -> tuple[float, int] | None:
    """log10 of ``N`` or ``N^D`` or ``N^{tower}`` read from ``s[i:]`` (bases >= 2), and where it ends."""
    m = _INT_AT.match(s, i)
    if m is None:
        return None
    n, i = int(m.group()), m.end()
    if not s.startswith("^", i):
        return (math.log10(n) if n else -math.inf), i
    if n < 2:
        return None
    if s.startswith("{", i + 1):
        inner = _log10_tower(s, i + 2)
        if inner is None or not s.startswith("}", inner[1]):
            return None
        exp_log, i = inner[0], inner[1] + 1
    elif i + 1 < len(s) and s[i + 1].isdigit():
        exp_log, i = math.log10(int(s[i + 1])) if s[i + 1] != "0" else -math.inf, i + 2
    else:
        return None
    exponent = 10.0 ** exp_log if exp_log < 308 else math.inf
    return exponent * math.log10(n), i


def _hopeless_term(s: str) -> bool:
    m = _BINOMIAL.fullmatch(s)
    if m is not None:
        return bool(m.group(1) or m.group(3)) and int(m.group(4)) >= BINOMIAL_EXPONENT
    if s.endswith("!"):
        body = s[:-1]
        if body[:1] + body[-1:] in ("()", "{}"):
            body = body[1:-1]
        t = _log10_tower(body, 0)
        return t is not None and t[1] == len(body) and t[0] >= math.log10(FACTORIAL_OF) - _SLACK
    # A power whose base may be written N, {N}, (N) or \sqrt{N}, N >= 2.
    scale = 1.0
    for opener, closer, factor in (("{", "}", 1.0), ("(", ")", 1.0), ("\\sqrt{", "}", 0.5)):
        if s.startswith(opener):
            end = s.find(closer, len(opener))
            base = s[len(opener):end]
            if end < 0 or not re.fullmatch(r"[1-9]\d*", base) or int(base) < 2 or not s.startswith("^", end + 1):
                return False
            s, scale = base + s[end + 1:], factor
            break
    t = _log10_tower(s, 0)
    return t is not None and t[1] == len(s) and t[0] * scale >= POWER_DIGITS * (1 - _SLACK)


_DIGIT_RUN = re.compile(r"\d{4}")


def tame(gold: str) -> bool:
    """No factorial, and every exponent a single character or a group without ``^`` and without 4 digits
    in a row: the gold's value is far below any hopeless answer's, and it holds no such term."""
    if "!" in gold:
        return False
    i = gold.find("^")
    while i >= 0:
        if gold.startswith("{", i + 1):
            end = gold.find("}", i + 2)
            group = gold[i + 2:end] if end >= 0 else gold[i + 2:]
            if "^" in group or "{" in group or _DIGIT_RUN.search(group):
                return False
        i = gold.find("^", i + 1)
    return True


def hopeless(gold: str, answer: str) -> bool:
    """True when math-verify cannot finish comparing ``answer`` with ``gold`` within any deadline and
    would grade it incorrect if it could (see the module docstring); False when unsure."""
    if not tame(gold):
        return False
    term = answer.replace(" ", "")
    if term.startswith("-"):
        term = term[1:]
    return _hopeless_term(term)


__all__ = ["hopeless", "numeric_verdict", "plain_number", "tame"]
