"""Soft overlong punishment (Yu et al., "DAPO: An Open-Source LLM Reinforcement Learning System at
Scale", arXiv 2503.14476, Eq. 13; verl's DAPO reward manager ``overlong_buffer``; TRL
``get_soft_overlong_punishment``).

What it rewards. DAPO's rule-based outcome reward (+1 correct / -1 otherwise) plus a length penalty
that ramps in over the last ``cache_length`` tokens before L_max:

    R_length = 0                                   if L <= L_max - L_cache
             = ((L_max - L_cache) - L) / L_cache   if L_max - L_cache < L <= L_max
             = -1                                  if L > L_max
    total = R_correct + penalty_factor * R_length

``correct`` is ``correct and format_ok``; a truncated completion is graded on its text (usually
wrong) and, sitting at the cap, also pays the full length penalty. TRL's function returns only
R_length; set correct_reward = wrong_reward = 0 to get that.

Config (paper default): max_length L_max (None -> the batch's generation cap; the paper generates
20,480 = 16,384 + 4,096), cache_length L_cache (4096; must be < L_max), penalty_factor (1.0),
correct_reward (1.0), wrong_reward (-1.0).
"""

from __future__ import annotations

from dataclasses import dataclass

from conciser.rewards.base import LengthReward
from conciser.rewards.batch import RolloutBatch


class SoftOverlong(LengthReward):
    """DAPO soft overlong punishment added to a +/-1 correctness reward."""

    name = "soft_overlong"

    @dataclass(frozen=True)
    class Config:
        max_length: int | None = None
        cache_length: int = 4096
        penalty_factor: float = 1.0
        correct_reward: float = 1.0
        wrong_reward: float = -1.0

        def __post_init__(self) -> None:
            if self.cache_length < 1:
                raise ValueError(f"soft_overlong.cache_length={self.cache_length} must be >= 1")
            if self.max_length is not None and self.max_length <= self.cache_length:
                raise ValueError(f"soft_overlong.max_length={self.max_length} must exceed "
                                 f"cache_length={self.cache_length}")
            if self.penalty_factor < 0:
                raise ValueError(f"soft_overlong.penalty_factor={self.penalty_factor} must be >= 0")

    def length_penalty(self, length: int, max_length: int) -> float:
        start = max_length - self.config.cache_length
        if length <= start:
            return 0.0
        if length <= max_length:
            return (start - length) / self.config.cache_length
        return -1.0

    def reward(self, batch: RolloutBatch) -> list[float]:
        c = self.config
        cap = c.max_length or batch.max_length
        if cap <= c.cache_length:
            raise ValueError(f"soft_overlong.cache_length={c.cache_length} must be below the "
                             f"generation cap max_length={cap}; set a smaller cache_length")
        return [(c.correct_reward if ok else c.wrong_reward)
                + c.penalty_factor * self.length_penalty(n, cap)
                for ok, n in zip(batch.correct_formatted, batch.lengths)]
