"""L1 / LCPO: length-controlled policy optimisation (Aggarwal & Welleck, "L1: Controlling How Long a
Reasoning Model Thinks with Reinforcement Learning", arXiv 2503.04697; code cmu-l3/l1 @ 93dd330).

What it rewards. Hitting a per-prompt token budget n_gold given in the prompt ("Think for N
tokens." / "Think for maximum N tokens.", N ~ U{100..4000} in training): ``batch.target_lengths``.
n_y = completion tokens; correctness is ``correct and format_ok`` (a format error counts as 0).

    l1_exact: r = I(correct) - alpha * |n_gold - n_y|           (alpha = 0.0003; wrong answers pay
                                                                 the deviation too; unclipped)
    l1_max:   r = I(correct) * clip(slope * (n_gold - n_y) + delta, 0, 1),   delta = 0.5

For l1_max the code computes slope = alpha / 2 (``slope="code"``, default) while the paper writes
slope = alpha (``slope="paper"``). The paper does not restate alpha for Max; the code's YAML default
is alpha = 0.01 (the checked-in Max script sets no reward flags at all, i.e. bare correctness; the
LASER paper's L1-Max runs also use 0.01), so l1_max defaults to alpha = 0.01.

Config (paper / code default):
    l1_exact: alpha (0.0003), correct_reward (1.0).
    l1_max:   alpha (0.01, code YAML), delta (0.5), slope "code" (alpha/2) | "paper" (alpha).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from conciser.rewards.base import LENGTH_SCOPES, LengthReward
from conciser.rewards.batch import RolloutBatch


class L1Exact(LengthReward):
    """L1-Exact: correctness minus alpha per token of deviation from the prompt's budget."""

    name = "l1_exact"
    length_scopes = LENGTH_SCOPES
    # what the trainer appends to a prompt whose budget it draws (data.target_lengths), as in L1's data
    target_prompt = "Think for {n} tokens."

    @dataclass(frozen=True)
    class Config:
        alpha: float = 0.0003
        correct_reward: float = 1.0

        def __post_init__(self) -> None:
            if self.alpha < 0:
                raise ValueError(f"l1_exact.alpha={self.alpha} must be >= 0")

    def reward(self, batch: RolloutBatch) -> list[float]:
        gold = batch.require("target_lengths", self.name)
        c = self.config
        return [c.correct_reward * ok - c.alpha * abs(g - n)
                for ok, g, n in zip(batch.correct_formatted, gold, self.scoped_lengths(batch))]


class L1Max(LengthReward):
    """L1-Max: correctness times a clipped linear score that falls past the budget."""

    name = "l1_max"
    length_scopes = LENGTH_SCOPES
    target_prompt = "Think for maximum {n} tokens."

    @dataclass(frozen=True)
    class Config:
        alpha: float = 0.01
        delta: float = 0.5
        slope: Literal["code", "paper"] = "code"

        def __post_init__(self) -> None:
            if self.alpha < 0:
                raise ValueError(f"l1_max.alpha={self.alpha} must be >= 0")
            if self.slope not in ("code", "paper"):
                raise ValueError(f"l1_max.slope={self.slope!r} is not 'code' (alpha/2) or "
                                 f"'paper' (alpha)")

    def reward(self, batch: RolloutBatch) -> list[float]:
        gold = batch.require("target_lengths", self.name)
        c = self.config
        k = c.alpha / 2 if c.slope == "code" else c.alpha
        return [float(ok) * min(1.0, max(0.0, k * (g - n) + c.delta))
                for ok, g, n in zip(batch.correct_formatted, gold, self.scoped_lengths(batch))]
