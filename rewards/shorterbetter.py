"""ShorterBetter (Yi, Wang & Li, "ShorterBetter: Guiding Reasoning Models to Find Optimal Inference
Length for Efficient Reasoning", arXiv 2504.21370; code JingyangYi/ShorterBetter @ 6399366).

What it rewards. Correctness and closeness to the group's "sample optimal length" (SOL):

    r_i = alpha * I(correct_i) - beta * |L_i - SOL|
    SOL = length of the shortest correct response in the group; if none is correct, the group's
          mean length.

Wrong answers are pulled toward SOL as well. ``correct`` is ``correct and format_ok`` (the code's
last-boxed equivalence check); truncated completions are scored like any other. Lengths are
completion tokens (the code's valid response tokens).

Config (code default): alpha (2.0), beta (0.001).
"""

from __future__ import annotations

from dataclasses import dataclass

from conciser.rewards._stats import mean
from conciser.rewards.base import LENGTH_SCOPES, LengthReward
from conciser.rewards.batch import RolloutBatch


class ShorterBetter(LengthReward):
    """ShorterBetter: alpha * correct - beta * |L - shortest correct length of the group|."""

    name = "shorterbetter"
    length_scopes = LENGTH_SCOPES

    @dataclass(frozen=True)
    class Config:
        alpha: float = 2.0
        beta: float = 0.001

        def __post_init__(self) -> None:
            if self.beta < 0:
                raise ValueError(f"shorterbetter.beta={self.beta} must be >= 0")

    def optimal_lengths(self, batch: RolloutBatch) -> list[float]:
        """SOL for each completion's group."""
        right = batch.correct_formatted
        lengths = self.scoped_lengths(batch)
        out = [0.0] * len(batch)
        for idx in batch.groups().values():
            good = [lengths[i] for i in idx if right[i]]
            sol = float(min(good)) if good else mean([lengths[i] for i in idx])
            for i in idx:
                out[i] = sol
        return out

    def reward(self, batch: RolloutBatch) -> list[float]:
        c = self.config
        return [c.alpha * ok - c.beta * abs(n - sol) for ok, n, sol in
                zip(batch.correct_formatted, self.scoped_lengths(batch), self.optimal_lengths(batch))]
