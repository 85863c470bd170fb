"""Graded completions as the trainer gathers them, and the reward's view of them (`RolloutBatch`).

One `Row` per completion is built on the rank that generated it (grading runs locally), gathered from
every rank with `gather_object`, and turned into a `RolloutBatch`. What a row carries beyond the
basics (text, token ids, think/answer lengths and entropies) is filled only when the reward declares
it in `LengthReward.needs()`: texts cross ranks, entropies cost a forward pass.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Sequence

from conciser.rewards import RolloutBatch
from conciser.rewards.batch import TRAINER_FIELDS

PHASE_LENGTHS = frozenset({"think_lengths", "answer_lengths"})
PHASE_ENTROPIES = frozenset({"think_entropies", "answer_entropies"})


def check_needs(needs: frozenset[str], reward_name: str) -> frozenset[str]:
    """The reward's declared fields, validated against what the trainer can fill."""
    unknown = sorted(set(needs) - set(TRAINER_FIELDS))
    if unknown:
        raise ValueError(f"reward {reward_name!r} needs {unknown}, which the trainer does not fill; "
                         f"needs() may name: {', '.join(TRAINER_FIELDS)}")
    return frozenset(needs)


def completion_text(completion) -> str:
    """TRL passes conversational completions as a message list; plain ones as a string."""
    if isinstance(completion, list):
        return "".join(m.get("content", "") for m in completion if isinstance(m, dict))
    return completion


@dataclass
class Row:
    """One graded completion, as gathered from its rank. Optional fields are None unless needed."""

    problem_id: str
    length: int
    correct: bool
    truncated: bool
    format_ok: bool
    timed_out: bool
    text: str | None = None
    token_ids: list[int] | None = None
    target_length: int | None = None   # the prompt's token budget (L1), from the row's target_length
    think_length: int | None = None
    answer_length: int | None = None
    think_entropy: float | None = None
    answer_entropy: float | None = None


def think_length(ids: Sequence[int], tag: Sequence[int]) -> int:
    """Tokens up to and including the last occurrence of the end-of-thinking tag `tag` (its token ids);
    the whole completion when the tag never appears (the thinking was never closed). The grader splits
    the text at the last tag too."""
    n, k = len(ids), len(tag)
    if k == 0:
        return n
    for start in range(n - k, -1, -1):
        if list(ids[start:start + k]) == list(tag):
            return start + k
    return n


def phase_fields(ids: Sequence[int], tag: Sequence[int], entropies: Sequence[float] | None,
                 needs: frozenset[str]) -> dict:
    """The Row fields for think/answer lengths and mean entropies of one completion (as needed)."""
    out: dict = {}
    if not needs & (PHASE_LENGTHS | PHASE_ENTROPIES):
        return out
    think = think_length(ids, tag)
    if needs & PHASE_LENGTHS:
        out.update(think_length=think, answer_length=len(ids) - think)
    if needs & PHASE_ENTROPIES:
        if entropies is None:
            raise ValueError("phase entropies were asked for but not computed")
        ent = list(entropies[:len(ids)])
        out.update(think_entropy=statistics.fmean(ent[:think]) if think else None,
                   answer_entropy=statistics.fmean(ent[think:]) if len(ids) > think else None)
    return out


def rollout_batch(rows: Sequence[Row], needs: frozenset[str], max_length: int, step: int,
                  problem_ids: Sequence[str] | None = None) -> RolloutBatch:
    """The reward's view of `rows` (`problem_ids` replaces the rows' own, e.g. positional group ids)."""
    phases, entropies = bool(needs & PHASE_LENGTHS), bool(needs & PHASE_ENTROPIES)
    return RolloutBatch(
        problem_ids=list(problem_ids) if problem_ids is not None else [r.problem_id for r in rows],
        lengths=[r.length for r in rows], correct=[r.correct for r in rows],
        truncated=[r.truncated for r in rows], format_ok=[r.format_ok for r in rows],
        texts=[r.text for r in rows] if "texts" in needs else None,
        token_ids=[r.token_ids for r in rows] if "token_ids" in needs else None,
        think_lengths=[r.think_length for r in rows] if phases else None,
        answer_lengths=[r.answer_length for r in rows] if phases else None,
        think_entropies=[r.think_entropy for r in rows] if entropies else None,
        answer_entropies=[r.answer_entropy for r in rows] if entropies else None,
        target_lengths=([r.target_length for r in rows]
                        if rows and all(r.target_length is not None for r in rows) else None),
        step=step, max_length=max_length,
    )
