"""GRPO-lambda (Dai, Liu & Si, "Stable Reinforcement Learning for Efficient Reasoning",
arXiv 2505.18086). No official code; the rule below is from the paper's abstract and consistent
second-hand write-ups.

What it rewards. Per batch, groups are ranked by their correctness ratio rho_k = #correct / G
(stable: ties keep first-seen order). The top ``top_fraction`` of groups (ceil(lambda * B), at least
one) are "efficiency" groups and get the Arora & Zanette length-penalised reward; all other groups
get plain 0/1 correctness:

    efficiency group, correct:   1 - alpha * sigmoid((L - mu) / s)   mu, s = mean and sample std
                                                                     (n-1) of the group's correct
                                                                     lengths; s -> std_eps when
                                                                     undefined (1 correct) or 0
    efficiency group, incorrect: 0      (the public reproduction wrongly penalises these)
    accuracy group:              I(correct)

``selection="threshold"`` is the absolute variant some reimplementations use (efficiency iff
rho_k >= ``threshold``); it is not the paper's rule. ``correct`` is ``correct and format_ok``;
truncated completions are scored like any other.

Config (default, source): top_fraction lambda (0.2, the paper's worked example), alpha (0.6, a
third-party reproduction; Arora & Zanette use 0.1-0.2), selection "top_fraction" | "threshold"
("top_fraction"), threshold (1.0, threshold variant only), std_eps (1e-4, the reproduction's).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from conciser.rewards._stats import mean, std
from conciser.rewards.base import LENGTH_SCOPES, LengthReward
from conciser.rewards.batch import RolloutBatch


class GrpoLambda(LengthReward):
    """GRPO-lambda: length penalty only in the top-lambda groups ranked by correctness ratio."""

    name = "grpo_lambda"
    length_scopes = LENGTH_SCOPES

    @dataclass(frozen=True)
    class Config:
        top_fraction: float = 0.2
        alpha: float = 0.6
        selection: Literal["top_fraction", "threshold"] = "top_fraction"
        threshold: float = 1.0
        std_eps: float = 1e-4

        def __post_init__(self) -> None:
            if not 0 < self.top_fraction <= 1:
                raise ValueError(f"grpo_lambda.top_fraction={self.top_fraction} must be in (0, 1]")
            if not 0 <= self.alpha <= 1:
                raise ValueError(f"grpo_lambda.alpha={self.alpha} must be in [0, 1]")
            if self.selection not in ("top_fraction", "threshold"):
                raise ValueError(f"grpo_lambda.selection={self.selection!r} is not "
                                 f"'top_fraction' or 'threshold'")
            if not self.std_eps > 0:
                raise ValueError(f"grpo_lambda.std_eps={self.std_eps} must be > 0")

    def efficiency_groups(self, batch: RolloutBatch) -> list[str]:
        """Problem ids of the efficiency-prioritised groups, best rho first."""
        right = batch.correct_formatted
        rho = {pid: sum(right[i] for i in idx) / len(idx) for pid, idx in batch.groups().items()}
        if self.config.selection == "threshold":
            return [pid for pid, r in rho.items() if r >= self.config.threshold]
        ranked = sorted(rho, key=lambda pid: -rho[pid])  # sorted() is stable
        count = max(1, math.ceil(self.config.top_fraction * len(ranked) - 1e-9))
        return ranked[:count]

    def reward(self, batch: RolloutBatch) -> list[float]:
        right = batch.correct_formatted
        out = [float(ok) for ok in right]
        groups = batch.groups()
        lengths = self.scoped_lengths(batch)
        for pid in self.efficiency_groups(batch):
            good = [lengths[i] for i in groups[pid] if right[i]]
            if not good:
                continue
            mu, s = mean(good), std(good, ddof=1)
            s = s if s > 0 else self.config.std_eps
            for i in groups[pid]:
                if right[i]:
                    z = (lengths[i] - mu) / s
                    out[i] = 1.0 - self.config.alpha / (1.0 + math.exp(-max(-60.0, min(60.0, z))))
        return out
