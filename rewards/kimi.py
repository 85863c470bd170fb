"""Kimi k1.5 length reward (Kimi Team, "Kimi k1.5: Scaling Reinforcement Learning with LLMs",
arXiv 2501.12599 §2.3.3).

What it rewards. Within each prompt's group (min/max over *all* of the group's samples, in tokens):

    lambda_i = 0.5 - (len_i - min_len) / (max_len - min_len)        in [-0.5, 0.5]
    len_reward_i = lambda_i if correct else min(0, lambda_i)        (0 for all if max == min)
    total = correct_reward * I(correct) + weight * len_reward        (after warm-up)

So the shortest correct sample gets +0.5, the longest -0.5; wrong samples never gain and long wrong
ones are penalised. During the first ``warmup_steps`` steps the length reward is off (the paper
trains without it first, then keeps a constant weight; neither number is given). open-r1's
``len_reward`` differs (characters, batch-wide min/max): not reproduced. ``correct`` is the
grader's verdict (``correct and format_ok``); truncated completions are scored like any other.

Config (paper default where given): weight (not given; 1.0 as open-r1 registers it),
warmup_steps (not given; 0), correct_reward (1.0).
"""

from __future__ import annotations

from dataclasses import dataclass

from conciser.rewards.base import LENGTH_SCOPES, LengthReward
from conciser.rewards.batch import RolloutBatch


class Kimi(LengthReward):
    """Kimi k1.5: per-group min-max length reward, full for correct, non-positive for wrong."""

    name = "kimi"
    length_scopes = LENGTH_SCOPES

    @dataclass(frozen=True)
    class Config:
        weight: float = 1.0
        warmup_steps: int = 0
        correct_reward: float = 1.0

        def __post_init__(self) -> None:
            if self.weight < 0:
                raise ValueError(f"kimi.weight={self.weight} must be >= 0")
            if self.warmup_steps < 0:
                raise ValueError(f"kimi.warmup_steps={self.warmup_steps} must be >= 0")

    def length_rewards(self, batch: RolloutBatch) -> list[float]:
        right = batch.correct_formatted
        out = [0.0] * len(batch)
        scoped = self.scoped_lengths(batch)
        for idx in batch.groups().values():
            lengths = [scoped[i] for i in idx]
            lo, hi = min(lengths), max(lengths)
            if hi == lo:
                continue
            for i in idx:
                lam = 0.5 - (scoped[i] - lo) / (hi - lo)
                out[i] = lam if right[i] else min(0.0, lam)
        return out

    def reward(self, batch: RolloutBatch) -> list[float]:
        c = self.config
        weight = c.weight if batch.step >= c.warmup_steps else 0.0
        return [c.correct_reward * ok + weight * r
                for ok, r in zip(batch.correct_formatted, self.length_rewards(batch))]
