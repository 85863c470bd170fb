"""Forced completion prefixes: the text a reward makes a rollout start with (`LengthReward.completion_prefixes`,
AdaptThink's forced empty thinking), for `ConciseGRPOTrainer`'s generation.

A prefix's tokens are appended to the prompt for generation and then open the completion: they are graded,
counted in lengths and trained like the sampled tokens after them, because the choice they stand for is
what the policy must learn to make unforced. They were not sampled from the policy, though: their
behaviour probability is the share of the group forced to the same prefix, written as the old log-prob
of the prefix's last token (0 for its earlier tokens), which TRL's clipped loss divides by. With
`importance_sampling_level: token` that ratio is clipped like any token's; with `sequence` it is
averaged over the completion (AdaptThink's code).
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from typing import Sequence

import torch


@dataclass(frozen=True)
class Forced:
    """The prefix forced at one place of a group: its token ids ([] when that rollout is sampled freely)
    and the log of the share of the group forced to it."""

    ids: list[int]
    log_share: float = 0.0


def forced_prefixes(reward, group: int, tokenizer) -> list[Forced] | None:
    """The reward's prefixes by place in a group of `group`, tokenized; None when nothing is forced."""
    prefixes = reward.completion_prefixes(group)
    if prefixes is None:
        return None
    if len(prefixes) != group or any(p is not None and not isinstance(p, str) for p in prefixes):
        raise ValueError(f"reward {reward.name!r}: completion_prefixes({group}) must give one text or None per "
                         f"rollout of a group, got {prefixes!r}")
    ids = [tokenizer.encode(p, add_special_tokens=False) if p else [] for p in prefixes]
    if not any(ids):
        return None
    counts = Counter(tuple(i) for i in ids)
    return [Forced(i, math.log(counts[tuple(i)] / group)) for i in ids]


def rows_forced(forced: list[Forced] | None, start: int, n: int) -> list[Forced] | None:
    """The prefixes of `n` rows starting at global row `start` (groups are contiguous blocks); None: none."""
    return None if forced is None else [forced[(start + i) % len(forced)] for i in range(n)]


def with_prefixes(forced: list[Forced], completion_ids: Sequence[Sequence[int]], logprobs, cap: int):
    """Completions opened by their prefixes and cut to the cap; the prefix tokens' sampling log-probs are
    NaN (not sampled; TRL's vLLM correction gives NaN tokens the ratio 1)."""
    ids = [(f.ids + list(c))[:cap] for f, c in zip(forced, completion_ids, strict=True)]
    if logprobs is not None:
        logprobs = [([math.nan] * len(f.ids) + list(lp))[:cap] for f, lp in zip(forced, logprobs, strict=True)]
    return ids, logprobs


def behaviour_logps(old: torch.Tensor, forced: list[Forced]) -> torch.Tensor:
    """`old` (the generating policy's per-token log-probs, B x T) with the forced tokens' behaviour log-probs."""
    old = old.clone()
    for i, f in enumerate(forced):
        k = min(len(f.ids), old.size(1))
        if k:
            old[i, :k] = 0.0
            if k == len(f.ids):
                old[i, k - 1] = f.log_share
    return old
