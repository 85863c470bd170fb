"""The grading bench's inputs: completions built from the bundled benchmark text (`eval/data/*.jsonl`).

Two corpora, both deterministic for a seed:

* **The bench corpus** (`build_items`): for each sampled problem, its reference solution as thinking
  with the final answer boxed after it, an equivalent rewrite of the gold (``\\dfrac``, ``x = 5``,
  ``0.25`` as ``\\frac{1}{4}`` ...), a perturbed answer (one number changed), a missing answer (no box,
  thinking cut off, empty box, box only inside thinking), and, for a few problems, an adversarial
  answer (power towers such as ``9^{9^{9^{9}}}``, ``(10^{6})!``, ``(1+x)^{10000}``, a 3,000-term sum)
  that sympy cannot finish. Every (gold, completion) pair is distinct, so de-duplication and the
  verdict cache gain nothing.
* **The RL-shaped corpus** (`build_rl_items`): what a GRPO step grades. For each problem a group of
  16 completions whose final answers repeat as real groups do: each problem has a difficulty (the
  chance a completion is right), a right completion boxes the gold as written (most often) or an
  equivalent form, a wrong one mostly repeats one of the problem's two or three common wrong answers,
  some completions are cut off by the generation cap; and a few completions in the whole corpus are
  adversarial answers. The thinking differs from completion to completion, as it does.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from fractions import Fraction

# Problems sampled per bundled benchmark (full mode); each yields 4 items (+ adversarial ones).
FULL_SAMPLE = {"math500": 250, "minerva": 100, "olympiadbench": 150, "gsm8k": 150,
               "aime24": 30, "aime25": 30, "amc23": 40}
QUICK_SAMPLE = {"math500": 40, "minerva": 15, "olympiadbench": 20, "gsm8k": 20,
                "aime24": 5, "aime25": 0, "amc23": 0}

# Answers no grader can finish on: each is paired with several golds (so every pair is distinct).
ADVERSARIAL = [
    "10^{10^{10}}",
    "9^{9^{9^{9}}}",
    "2^{2^{40}}",
    "(10^{6})!",
    "(1+x)^{10000}",
    "\\sqrt{2}^{10^{10}}",
    "10^{10^{10}}-10^{10^{10}}+1",
    " + ".join(["1"] * 3000),
]
# The adversarial items of each corpus: every expression 3 times (full: 24, 0.8% and 0.5% of the two
# corpora). --quick: four, about the same share (1.0% and 0.5%) and the same mix: three that the batch
# grader's `hopeless` shortcut settles and one it must send to math-verify (full: 18 and 6). Each costs the
# serial loop a 5 s timeout, so one of each expression (2% of the quick bench corpus, 6 of them shortcut)
# made most of its serial time and its ratio.
FULL_ADVERSARIAL = ADVERSARIAL * 3
QUICK_ADVERSARIAL = [*ADVERSARIAL[:3], ADVERSARIAL[6]]


@dataclass(frozen=True)
class Item:
    gold: str
    completion: str
    category: str      # bench corpus: reference | equivalent | perturbed | missing | adversarial;
                       # RL-shaped: gold_string | equivalent | wrong | truncated | adversarial
    source: str        # benchmark/problem id


# ---------------------------------------------------------------- items from real benchmark text

_NUM = re.compile(r"\d+")


def _solution_text(row: dict) -> str | None:
    sol = row.get("solution")
    if not isinstance(sol, str) or sol.strip() in ("", "None"):
        return None
    if "####" in sol:  # gsm8k: drop the "#### 18" line and the <<calculator>> annotations
        sol = re.sub(r"<<[^>]*>>", "", sol.rsplit("####", 1)[0]).strip()
    return sol


def _equivalent(gold: str, rng: random.Random) -> str:
    """An answer math-verify should accept for `gold`, written differently."""
    g = gold.strip()
    if re.fullmatch(r"-?\d+", g):
        return rng.choice([f"{g}.0", f"\\frac{{{2 * int(g)}}}{{2}}", f"x = {g}"])
    if re.fullmatch(r"-?\d+\.\d+", g):
        f = Fraction(g)
        return f"\\frac{{{f.numerator}}}{{{f.denominator}}}" if f.denominator != 1 else str(f.numerator)
    if "\\dfrac" in g:
        return g.replace("\\dfrac", "\\frac")
    if "\\frac" in g:
        return g.replace("\\frac", "\\dfrac")
    if "\\left" in g:
        return g.replace("\\left", "").replace("\\right", "")
    return "{" + g + "}"


def _perturbed(gold: str, rng: random.Random) -> str:
    """`gold` with one number changed (or "+ 1" appended when it has none): usually wrong."""
    nums = list(_NUM.finditer(gold))
    if not nums:
        return gold + " + 1"
    m = rng.choice(nums)
    return gold[:m.start()] + str(int(m.group()) + rng.randint(1, 9)) + gold[m.end():]


def _missing(gold: str, thinking: str, kind: int) -> str:
    if kind == 0:   # an answer, but never boxed
        return f"<think>\n{thinking}\n</think>\n\nThe answer is {gold}."
    if kind == 1:   # thinking cut off by the generation cap (its boxes do not count)
        return f"<think>\n{thinking[: max(1, len(thinking) // 2)]}"
    if kind == 2:   # an empty box
        return f"<think>\n{thinking}\n</think>\n\nThe answer is $\\boxed{{}}$."
    # the answer only inside thinking
    return f"<think>\n{thinking}\nSo it is \\boxed{{{gold}}}.\n</think>\n\nI am not sure."


def _sampled_problems(sample: dict[str, int], rng: random.Random):
    """(gold, source, reference solution or None, thinking text) of `n` random problems of each bundled
    benchmark in `sample`; the caller may draw from `rng` between problems (the order of draws is kept)."""
    from conciser.eval.benchmarks import BUNDLED, DATA_DIR, read_jsonl

    for name, n in sample.items():
        rows = read_jsonl(DATA_DIR / BUNDLED[name].file)
        for row in rng.sample(rows, min(n, len(rows))):
            sol = _solution_text(row)
            thinking = sol or f"Let me work through the problem step by step.\n{row['problem']}"
            yield str(row["answer"]).strip(), f"{name}/{row['id']}", sol, thinking


def build_items(quick: bool = False, seed: int = 0) -> list[Item]:
    """The bench's items, deterministic for a seed, grouped by problem (as a GRPO batch is)."""
    from conciser.rewards.grading import extract_answer

    rng = random.Random(seed)
    groups: list[list[Item]] = []
    for gold, src, sol, thinking in _sampled_problems(QUICK_SAMPLE if quick else FULL_SAMPLE, rng):
        final = (extract_answer(sol) if sol else None) or gold
        kind = len(groups) % 4
        groups.append([
            Item(gold, f"<think>\n{thinking}\n</think>\n\nThe final answer is $\\boxed{{{final}}}$.",
                 "reference", src),
            Item(gold, f"<think>\n{thinking}\n</think>\n\nSo $\\boxed{{{_equivalent(gold, rng)}}}$.",
                 "equivalent", src),
            Item(gold, f"<think>\n{thinking}\n</think>\n\nThe answer is $\\boxed{{{_perturbed(gold, rng)}}}$.",
                 "perturbed", src),
            Item(gold, _missing(gold, thinking, kind), "missing", src),
        ])
    # A few adversarial answers, each against several problems' golds, spread over the batch.
    exprs = QUICK_ADVERSARIAL if quick else FULL_ADVERSARIAL
    for expr, host in zip(exprs, rng.sample(range(len(groups)), len(exprs))):
        g = groups[host][0]
        groups[host].append(Item(g.gold, f"<think>\nLet me compute ({g.source}).\n</think>\n\n$\\boxed{{{expr}}}$",
                                 "adversarial", g.source))
    items = [it for grp in groups for it in grp]
    # Every (gold, completion) distinct: the batch grader's de-duplication must gain nothing.
    assert len({(it.gold, it.completion) for it in items}) == len(items)
    return items


# ---------------------------------------------------------------- the RL-shaped corpus

GROUP = 16
# Problems per bundled benchmark: 320 problems x 16 completions (full), 48 x 16 (quick).
RL_FULL_SAMPLE = {"math500": 120, "gsm8k": 80, "olympiadbench": 50, "minerva": 30, "amc23": 20,
                  "aime24": 10, "aime25": 10}
RL_QUICK_SAMPLE = {"math500": 24, "gsm8k": 16, "olympiadbench": 8}
# (share of problems, chance a completion is right): many groups are all right or all wrong.
DIFFICULTY = [(0.35, 0.9), (0.35, 0.55), (0.30, 0.12)]
TRUNCATED = 0.08       # completions cut off by the generation cap (no answer)
EQUIVALENT = 0.15      # right completions that write the gold differently
WRONG_WEIGHTS = [0.6, 0.3, 0.1]   # how often each of a problem's common wrong answers comes back
UNIQUE_WRONG = 0.15    # wrong completions with an answer of their own


def _difficulty(rng: random.Random) -> float:
    x = rng.random()
    for share, p_right in DIFFICULTY:
        if x < share:
            return p_right
        x -= share
    return DIFFICULTY[-1][1]


def _rl_group(gold: str, thinking: str, src: str, rng: random.Random) -> list[Item]:
    p_right = _difficulty(rng)
    wrong = []
    for _ in range(40):  # two or three distinct common wrong answers, none equal to the gold
        w = _perturbed(gold, rng)
        if w != gold and w not in wrong:
            wrong.append(w)
        if len(wrong) == 3:
            break
    group = []
    for k in range(GROUP):
        # Each completion thinks for its own length, so no two completions are the same text.
        cut = rng.randint(max(1, len(thinking) // 3), max(1, len(thinking)))
        think = f"<think>\nAttempt {k}. {thinking[:cut]}"
        if rng.random() < TRUNCATED:
            group.append(Item(gold, think, "truncated", src))
            continue
        if rng.random() < p_right:
            if rng.random() < EQUIVALENT:
                answer, cat = _equivalent(gold, rng), "equivalent"
            else:
                answer, cat = gold, "gold_string"
        elif rng.random() < UNIQUE_WRONG or not wrong:
            answer, cat = _perturbed(gold, rng), "wrong"
        else:
            answer, cat = rng.choices(wrong, WRONG_WEIGHTS[:len(wrong)])[0], "wrong"
        group.append(Item(gold, f"{think}\n</think>\n\nThe answer is $\\boxed{{{answer}}}$.", cat, src))
    return group


def build_rl_items(quick: bool = False, seed: int = 0) -> list[Item]:
    """The RL-shaped corpus: groups of 16 completions per problem, contiguous (as a GRPO batch is)."""
    rng = random.Random(seed)
    groups: list[list[Item]] = []
    for gold, src, _, thinking in _sampled_problems(RL_QUICK_SAMPLE if quick else RL_FULL_SAMPLE, rng):
        groups.append(_rl_group(gold, thinking, src, rng))
    # Adversarial answers replace a completion in some groups (a policy can emit anything).
    exprs = QUICK_ADVERSARIAL if quick else FULL_ADVERSARIAL
    for expr, host in zip(exprs, rng.sample(range(len(groups)), len(exprs))):
        g = groups[host]
        k = rng.randrange(GROUP)
        g[k] = Item(g[k].gold, f"<think>\nLet me compute ({g[k].source}).\n</think>\n\n$\\boxed{{{expr}}}$",
                    "adversarial", g[k].source)
    return [it for grp in groups for it in grp]
