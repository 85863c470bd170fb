"""The `toy-scan` task: add numbers in order until one equals the running total; where that happens
shows only by doing the additions.

A problem is a hint with its odds, a start digit and k named operands. Starting from the start digit,
add the operands in order (mod 10), but first compare each operand with the running total: the first
operand equal to it stops the scan, and the answer is that total. Exactly one stop happens within the k
operands (the generator places it; what follows it is noise):

    prompt      hint:5 sure:7. start=8; a3; b9; c0; d7; e1; f4.
    minimal     <think> a3:8=1. b9:1=0. c0:0 stop.</think>\\boxed{0}<|end|>
    shortcut    <think> hmm, use the hint.</think>\\boxed{5}<|end|>

A step "b9:1=0." reads "step b adds 9 to 1, giving 0" (the chain task's step, which a 2-layer model
learns by SFT: the operand is a one-token induction copy of the name, the result a sum of two nearby
digits); "c0:0 stop." is the step whose operand equals the total. Every word, digit and symbol is one
token, so a scan that stops at step h has a minimal completion of 7h + 6 tokens (EOS included, as TRL
counts it) — `minimal_tokens`.

Why this shape (DESIGN §4, "Lesson of the first toy"):
  * needed length is found only by thinking: every prompt of a level has the same k operands, and the
    stop step h is drawn from 1..k (P(h) ∝ h^-alpha, uniform on the hard levels); where the running total
    first meets an equal operand depends on all the sums before it, which a 2-layer model cannot do
    several of in one token. So the minimal length varies inside every level (CV about 0.42-0.46);
  * so a concise policy's accuracy under a thinking budget B rises gradually with B (the share of
    problems whose stop comes within B), not in one step at a printed difficulty;
  * tempting shortcuts with odds the policy can read: the hint is the answer with probability sure/10
    (`sure` printed in the prompt, uniform on `SURE`: 50-90%, 70% on average), else another digit.
    Answering from it costs 13 tokens whatever h is (as many as a scan that stops at step 1); the
    base's SFT traces take it in a quarter of the sure:8 problems and half of the sure:9 ones (at once,
    or after some plain steps), never below, so the base reads the odds and RL can find the shortcut
    and overuse it.
  * why the odds are printed and varied: with one hint accuracy for every problem (the design before,
    60%), a reward "correct - price x tokens" has the same optimum — the minimal trace — for every price
    below about 0.012 a token, and above it whole levels switch to the hint at once, so every length
    reward ended at the same point (bench/shortcut_front.py). With 5 odds x 5 levels the best policy
    gives up on one more (level, odds) cell at a time as the price rises from 0.004 to 0.03 a token,
    so rewards that price tokens differently can end at different accuracies and lengths.
`minimal_tokens` is the shortest completion that is right for certain (every step up to the stop
written); the hint completion is shorter for every h > 1 (13 tokens) and right sure/10 of the time, so
tokens/minimal can go below 1.0 only by taking that gamble.

The verbose "overthinking" traces the base is trained on add, as in the chain task: slips that a
re-check always fixes, redundant re-checks, filler and a final re-verification pass, unless they take
the hint. Late stops' verbose traces overrun `DEFAULT_MAX_COMPLETION`. Everything is deterministic
given a seed; answers are graded by `grade_toy` (the boxed digit).
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field

from conciser import toy
from conciser.toy import EOS, THINK_CLOSE, THINK_OPEN

NAME = "toy-scan"


@dataclass(frozen=True)
class Level:
    """A difficulty level: k operands in every prompt; the scan stops at step h, P(h) ∝ h^-alpha on 1..k."""

    k: int
    alpha: float


# Minimal lengths (7h + 6): level means about 21, 27, 31, 35, 41 tokens (13-69); CV about 0.42-0.48 in each.
# Scans stop within 9 steps: in the first design (k up to 14, hint right 70%, cap 160) the verbose base
# overran the cap on a third of the problems, so answering from the hint beat thinking there and plain
# GRPO, correctness only, collapsed onto the hint in 40 steps (accuracy 0.69 at 20 tokens, every method
# alike). Now only the longest scans overrun the cap, and the hint is right less often than thinking
# on average (70%); only the surest hints (90%) beat a base that overruns the cap.
LEVELS: dict[int, Level] = {
    1: Level(k=5, alpha=1.0),
    2: Level(k=6, alpha=0.4),
    3: Level(k=7, alpha=0.3),
    4: Level(k=8, alpha=0.15),
    5: Level(k=9, alpha=0.0),
}
# Level 0 is not part of the task: short scans, only for the start of the base's SFT curriculum.
WARMUP_LEVEL = Level(k=3, alpha=0.0)
SURE = (5, 6, 7, 8, 9)     # the hint's printed odds: P(hint == answer) = sure / 10; otherwise another digit
NAMES = "abcdefghijklmnop"
# About the 90th percentile of the verbose traces' lengths: the base overruns it on late stops only
# (mostly levels 4-5), as R1-distilled models overrun their caps on the hardest problems.
DEFAULT_MAX_COMPLETION = 192
EVAL_SEED = 20261203


def minimal_tokens(h: int) -> int:
    """Token count of the shortest sure completion of a scan that stops at step h (EOS included)."""
    return 7 * h + 6


@dataclass(frozen=True)
class ScanProblem:
    """One toy-scan problem. The scan stops at step `stop` (1-based): operands[stop - 1] equals the total."""

    id: str
    level: int
    start: int
    operands: tuple[int, ...]
    hint: str
    sure: int              # the hint is right with probability sure / 10, printed in the prompt
    answer: str
    stop: int
    minimal_tokens: int

    @property
    def prompt(self) -> str:
        ops = "; ".join(f"{NAMES[i]}{v}" for i, v in enumerate(self.operands))
        return f"hint:{self.hint} sure:{self.sure}. start={self.start}; {ops}."

    def to_row(self) -> dict:
        """A dataset row: the column names every conciser dataset uses."""
        return {
            "problem_id": self.id,
            "prompt": [{"role": "user", "content": self.prompt}],
            "answer": self.answer,
            "level": self.level,
            "minimal_tokens": self.minimal_tokens,
        }


def scan(start: int, operands) -> tuple[int, int]:
    """(stop step h, 1-based, or 0 if none; the total there): the rule the answer follows."""
    total = start
    for i, v in enumerate(operands):
        if v == total:
            return i + 1, total
        total = (total + v) % 10
    return 0, total


def make_problem(rng: random.Random, level: int) -> ScanProblem:
    lv = WARMUP_LEVEL if level == 0 else LEVELS[level]
    stop = rng.choices(range(1, lv.k + 1), weights=[h ** -lv.alpha for h in range(1, lv.k + 1)])[0]
    start = rng.randrange(10)
    total, operands = start, []
    for _ in range(stop - 1):  # operands before the stop differ from the running total
        v = rng.choice([d for d in range(10) if d != total])
        operands.append(v)
        total = (total + v) % 10
    operands.append(total)
    operands += [rng.randrange(10) for _ in range(lv.k - stop)]
    answer = str(total)
    sure = rng.choice(SURE)
    hint = answer if rng.random() < sure / 10 else str(rng.choice([d for d in range(10) if d != total]))
    p = ScanProblem("", level, start, tuple(operands), hint, sure, answer, stop, minimal_tokens(stop))
    pid = f"scan-L{level}-" + hashlib.sha1(f"{level}:{p.prompt}".encode()).hexdigest()[:10]
    return ScanProblem(pid, level, start, p.operands, hint, sure, answer, stop, p.minimal_tokens)


def make_problems(n: int, seed: int, levels: tuple[int, ...] = tuple(LEVELS), exclude: set[str] = frozenset()) -> list[ScanProblem]:
    """n distinct problems, levels cycled evenly, none of whose ids is in `exclude`."""
    return toy.make_problems(n, seed, levels, exclude, make=make_problem)


def eval_problems(n: int = 250) -> list[ScanProblem]:
    return make_problems(n, seed=EVAL_SEED)


def train_problems(n: int, seed: int = 0) -> list[ScanProblem]:
    held_out = {p.id for p in eval_problems(1000)}
    return make_problems(n, seed=seed, exclude=held_out)


# ---------------------------------------------------------------- traces


@dataclass(frozen=True)
class Verbosity:
    """How the overthinking base writes. Probabilities are per step unless noted."""

    p_slip: float = 0.05          # a step's result is wrong; a fixing re-check always follows
    p_check: float = 0.7          # redundant re-check of a correct step
    p_filler: float = 0.5         # filler phrase(s) after a step (1-2 phrases)
    p_final_pass: float = 0.7     # per problem: re-verify every step at the end
    p_opening: float = 0.8        # per problem: a filler phrase before the first step
    # per problem, by the printed odds: the share of traces that answer from the hint after 0..h-1 plain
    # steps (uniform), never below sure:8. Why so many and only there: at 5% of traces spread over every
    # odds (scan-v4) the hint was too small a part of the SFT loss for the base to read the odds (it took
    # the hint as often at sure:5 as at sure:9), so RL met one coin and each seed raced to all-hint or
    # none; traces that take it in 25-50% of the surest problems are a base that prices the odds
    # (measured in bench/README.md, "What the toy shows").
    hint_by_sure: dict[int, float] = field(default_factory=lambda: {8: 0.25, 9: 0.5})


FILLERS = toy.FILLERS
HINT_PHRASE = "hmm, use the hint."


def _steps(p: ScanProblem) -> list[tuple[str, int, int, int | None]]:
    """(name, operand, total before, total after or None at the stop) for the steps up to the stop."""
    out, total = [], p.start
    for i, v in enumerate(p.operands[: p.stop]):
        nxt = None if i == p.stop - 1 else (total + v) % 10
        out.append((NAMES[i], v, total, nxt))
        total = nxt
    return out


def _step(name: str, v: int, prev: int, result: int | None) -> str:
    return f"{name}{v}:{prev} stop." if result is None else f"{name}{v}:{prev}={result}."


def _completion(parts: list[str], answer: str) -> str:
    # The space after <think> makes the first step name the same token as the others (" a").
    return THINK_OPEN + " " + " ".join(parts) + THINK_CLOSE + "\\boxed{" + answer + "}" + EOS


def minimal_trace(p: ScanProblem) -> str:
    return _completion([_step(*s) for s in _steps(p)], p.answer)


def reached_stop(p: ScanProblem, text: str) -> bool:
    """Whether completion `text` wrote `p`'s stop step ("c0:0 stop"), with or without its period: a
    concise policy can learn to drop the period, so the period cannot tell a scan from a guess."""
    name, v, prev, _ = _steps(p)[-1]
    return _step(name, v, prev, None)[:-1] in text


def false_stop(p: ScanProblem, text: str) -> bool:
    """Whether completion `text` claims a stop in its thinking without writing `p`'s stop step. Two causes,
    both wrong answers that are not the hint's shortcut: a scan error (a misread operand or a slipped
    sum made some step meet the stop rule: "h1:1 stop." where the prompt has h3) and a made-up stop, an
    over-compression where a policy writes "stop" where its own step does not meet the rule and answers
    that total ("a3:0 stop." at step 1)."""
    thinking = text.split(THINK_CLOSE, 1)[0]
    return " stop" in thinking and not reached_stop(p, text)


def hint_trace(p: ScanProblem, after: int = 0) -> str:
    """The shortcut: the first `after` steps (plain), then the hint as the answer (right sure/10 of the time)."""
    return _completion([_step(*s) for s in _steps(p)[:after]] + [HINT_PHRASE], p.hint)


def verbose_trace(p: ScanProblem, rng: random.Random, style: Verbosity = Verbosity()) -> str:
    """One overthinking completion for `p`: correct (its slips are fixed) unless it takes the hint."""
    steps = _steps(p)
    if rng.random() < style.hint_by_sure.get(p.sure, 0.0):
        return hint_trace(p, after=rng.randrange(len(steps)))
    out: list[str] = []
    if rng.random() < style.p_opening:
        out.append(rng.choice(FILLERS))
    for s in steps:
        name, v, prev, result = s
        if result is not None and rng.random() < style.p_slip:
            wrong = (result + rng.randrange(1, 10)) % 10
            out += [_step(name, v, prev, wrong), "wait, check", _step(*s), "fix."]
        else:
            out.append(_step(*s))
            if rng.random() < style.p_check:
                out += ["wait, check", _step(*s), "ok."]
        if rng.random() < style.p_filler:
            out += [rng.choice(FILLERS) for _ in range(rng.randint(1, 2))]
    if rng.random() < style.p_final_pass:
        out += ["wait, let me verify again.", *(_step(*s) for s in steps), "ok."]
    return _completion(out, p.answer)


def _tokenizer_corpus() -> list[str]:
    rng = random.Random(0)
    texts = []
    for level in LEVELS:
        for _ in range(60):
            p = make_problem(rng, level)
            texts += [p.prompt, verbose_trace(p, rng), minimal_trace(p), hint_trace(p)]
    return texts


def build_tokenizer():
    """The toy-scan tokenizer (every word, digit and symbol one token); see `toy.build_tokenizer`."""
    return toy.build_tokenizer(_tokenizer_corpus())
