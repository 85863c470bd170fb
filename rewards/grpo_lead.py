"""GRPO-LEAD (Zhang & Zuo, "GRPO-LEAD: A Difficulty-Aware Reinforcement Learning Approach for Concise
Mathematical Reasoning in Language Models", arXiv 2504.09696, EMNLP 2025; code aeroplanepaper/GRPO-LEAD
@ 9344bef, ``verl/verl/trainer/main_ppo.py`` (reward) and ``verl/verl/trainer/ppo/core_algos.py``
(advantage)).

Three changes to GRPO: a Length-dependent accuracy reward, an Explicit penalty for wrong answers, and
Advantage reweighting by Difficulty. The first two are this reward; the third is the ``grpo_lead``
advantage estimator (``trainers/advantages.py``), which this reward names as its
``preferred_estimator`` (recipes set ``advantage.estimator: grpo_lead``).

    correct (``correct and format_ok``):  r = correct_reward * exp(-alpha * z),
                                          z = (L - mean_c) / (std_c + std_eps)
    wrong, an answer extracted:           r = wrong_reward   (-1: the explicit penalty)
    no answer (``format_ok=False``):      r = format_reward  (0 in the code)

mean_c and std_c are the mean and the sample standard deviation (n - 1) of the lengths of the group's
correct answers; with fewer than two correct answers std_c = 1 (code), so a single correct answer has
z = 0 and r = correct_reward. Shorter-than-average correct answers score above 1, longer ones below.
L is counted in the reward's ``length_scope`` (default ``total``: completion tokens).

Where the code and the paper differ (the code is followed; the options restore the paper):
* Length gate (code only): the length term acts only in groups whose three shortest completions
  (correct or not) average more than ``length_gate`` tokens (4000); elsewhere a correct answer gets
  correct_reward. A group of fewer than three completions always passes (the code's missing minima
  are infinite). ``length_gate=0``: always on, as the paper describes.
* Format errors (code): the DeepScaleR scorer's -1 for a response without ``</think>`` or without an
  extractable answer is mapped to 0, and only a graded-wrong answer gets -1; the paper says every
  incorrect response gets -1 (``format_reward=-1``).
* The code's stage-2 repetition penalty (-2 when an n-gram repeats 10+ times; the paper says -1.5)
  is not reproduced.

Config (code default): alpha (0.05), correct_reward (1.0), wrong_reward (-1.0), format_reward (0.0),
std_eps (1e-6), length_gate (4000 tokens; 0 = the paper's always-on length term).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from conciser.rewards._stats import mean, std
from conciser.rewards.base import LENGTH_SCOPES, LengthReward
from conciser.rewards.batch import RolloutBatch


class GrpoLead(LengthReward):
    """GRPO-LEAD's reward: exp(-alpha z) for correct answers (z among the group's correct), -1 for wrong."""

    name = "grpo_lead"
    length_scopes = LENGTH_SCOPES
    preferred_estimator = "grpo_lead"  # the difficulty-aware advantage reweighting

    @dataclass(frozen=True)
    class Config:
        alpha: float = 0.05
        correct_reward: float = 1.0
        wrong_reward: float = -1.0
        format_reward: float = 0.0
        std_eps: float = 1e-6
        length_gate: int = 4000

        def __post_init__(self) -> None:
            if self.alpha < 0:
                raise ValueError(f"grpo_lead.alpha={self.alpha} must be >= 0 (0: no length term)")
            if not self.std_eps > 0:
                raise ValueError(f"grpo_lead.std_eps={self.std_eps} must be > 0")
            if self.length_gate < 0:
                raise ValueError(f"grpo_lead.length_gate={self.length_gate} must be >= 0 tokens (0: always on)")

    def gated(self, lengths: list[int]) -> bool:
        """The length term acts in a group with these lengths (its three shortest average > the gate)."""
        if len(lengths) < 3:
            return True
        return mean(sorted(lengths)[:3]) > self.config.length_gate

    def reward(self, batch: RolloutBatch) -> list[float]:
        c = self.config
        right, lengths = batch.correct_formatted, self.scoped_lengths(batch)
        out = [c.correct_reward if ok else (c.wrong_reward if f else c.format_reward)
               for ok, f in zip(right, batch.format_ok)]
        for idx in batch.groups().values():
            good = [lengths[i] for i in idx if right[i]]
            if not good or not self.gated([lengths[i] for i in idx]):
                continue
            mu = mean(good)
            s = std(good, ddof=1) if len(good) > 1 else 1.0
            for i in idx:
                if right[i]:
                    z = (lengths[i] - mu) / (s + c.std_eps)  # |z| < sqrt(n): no overflow unless alpha is huge
                    out[i] = c.correct_reward * math.exp(min(50.0, -c.alpha * z))
        return out

    def metrics(self, batch: RolloutBatch) -> dict[str, float]:
        lengths = self.scoped_lengths(batch)
        groups = list(batch.groups().values())
        return {"gated_group_frac": sum(self.gated([lengths[i] for i in idx]) for idx in groups) / len(groups)}
