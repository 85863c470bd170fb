"""Curriculum GRPO (Hammoud et al., "Train Long, Think Short: Curriculum Learning for Efficient
Reasoning", arXiv 2508.08940 v1). No code is available; everything follows the paper, and the
constants it leaves UNSPECIFIED are marked as our assumptions.

Budget schedule B(t) (``budget_at(step)``), with S0 = start_budget, Sf = end_budget, n decays over
T_total steps, interval I = T_total / (n + 1), k = min(n, floor(t / I)):
    "exponential" (paper main run): B = S0 * d^k, d = (Sf / S0)^(1/n)  -> 256, 179, 125, 87
    "linear": B = S0 - k (S0 - Sf) / n  (equal drops, ~56 tokens each for 256 -> 87)
    "constant": B = S0
rounded to the nearest token (the paper's printed budgets; ``rounding="floor"`` gives 178, 124),
and never below 1 (the paper's max(1, B0 gamma^floor(t/T))). The budget also goes into the prompt:
``budget_prompt(step)`` gives "IMPORTANT: You should use exactly {budget} tokens in your response."

Reward (paper eq.): r = lambda_c R_cor c + lambda_l R_len(l) + lambda_f R_fmt, with L = B(t):
    R_len "triangular" (paper main): R_max l/L for l <= L; R_max (1 - (l - L)/L) for L < l <= 2L;
                                     0 beyond 2L
    R_len "band" (the ablated flat-then-decay): R_max for l <= L, then the same linear decay
    R_fmt = alpha_think I(one well-formed <think>...</think>) + alpha_answer I(one <answer>...</answer>)
The length term is not gated on correctness (paper). l = total completion tokens (the paper's
§3.3 reading; its Fig. 1 caption says "thinking trace"). c is the grader's verdict
(``correct and format_ok``); truncated completions are scored like any other (their l > 2L
usually already zeroes the length term). The format term needs ``batch.texts``.

Config (paper value, or our assumption where the paper is silent):
    schedule ("exponential"), start_budget S0 (256), end_budget Sf (87), num_decays n (3),
    total_steps T_total (600), rounding "nearest" | "floor" ("nearest"),
    length_shape "triangular" | "band" ("triangular"),
    correctness_weight lambda_c (0.45, assumption), length_weight lambda_l (0.45, assumption),
    format_weight lambda_f (0.1, assumption; the ablations use 0.6/0.3 and 0.3/0.6),
    correct_reward R_cor (1.0, assumption), max_length_reward R_max (1.0, assumption),
    think_reward alpha_think (0.5, assumption), answer_reward alpha_answer (0.5, assumption),
    prompt_template ("IMPORTANT: You should use exactly {budget} tokens in your response.").
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Literal

from conciser.rewards.base import LENGTH_SCOPES, LengthReward
from conciser.rewards.batch import RolloutBatch

_THINK = re.compile(r"<think>(.*?)</think>", re.DOTALL)
_ANSWER = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)


def well_formed(text: str, pattern: re.Pattern, open_tag: str, close_tag: str) -> bool:
    """Exactly one open and one close tag, in order, with non-blank content."""
    if text.count(open_tag) != 1 or text.count(close_tag) != 1:
        return False
    match = pattern.search(text)
    return bool(match and match.group(1).strip())


class Curriculum(LengthReward):
    """Curriculum GRPO: correctness + triangular length term around a decaying budget + format."""

    name = "curriculum"
    length_scopes = LENGTH_SCOPES
    budget_kind = "step"

    @dataclass(frozen=True)
    class Config:
        schedule: Literal["exponential", "linear", "constant"] = "exponential"
        start_budget: int = 256
        end_budget: int = 87
        num_decays: int = 3
        total_steps: int = 600
        rounding: Literal["nearest", "floor"] = "nearest"
        length_shape: Literal["triangular", "band"] = "triangular"
        correctness_weight: float = 0.45
        length_weight: float = 0.45
        format_weight: float = 0.1
        correct_reward: float = 1.0
        max_length_reward: float = 1.0
        think_reward: float = 0.5
        answer_reward: float = 0.5
        prompt_template: str = "IMPORTANT: You should use exactly {budget} tokens in your response."

        def __post_init__(self) -> None:
            for field, options in (("schedule", ("constant", "exponential", "linear")),
                                   ("rounding", ("floor", "nearest")),
                                   ("length_shape", ("band", "triangular"))):
                if getattr(self, field) not in options:
                    raise ValueError(f"curriculum.{field}={getattr(self, field)!r} is not one of "
                                     f"{list(options)}")
            for field in ("start_budget", "end_budget", "num_decays", "total_steps"):
                if getattr(self, field) < 1:
                    raise ValueError(f"curriculum.{field}={getattr(self, field)} must be >= 1")
            if "{budget}" not in self.prompt_template:
                raise ValueError("curriculum.prompt_template must contain '{budget}'")

    def budget_at(self, step: int) -> int:
        """B(t): the completion budget at optimizer step ``step``."""
        c = self.config
        if c.schedule == "constant":
            return c.start_budget
        k = min(c.num_decays, math.floor(step * (c.num_decays + 1) / c.total_steps))
        if c.schedule == "exponential":
            value = c.start_budget * (c.end_budget / c.start_budget) ** (k / c.num_decays)
        else:
            value = c.start_budget - k * (c.start_budget - c.end_budget) / c.num_decays
        value = math.floor(value + 0.5) if c.rounding == "nearest" else math.floor(value + 1e-9)
        return max(1, value)

    def needs(self) -> frozenset[str]:
        return super().needs() | ({"texts"} if self.config.format_weight else set())

    def budget_prompt(self, step: int) -> str:
        return self.config.prompt_template.format(budget=self.budget_at(step))

    def length_reward(self, length: int, budget: int) -> float:
        """R_len(l) around budget L."""
        r_max = self.config.max_length_reward
        if length <= budget:
            return r_max if self.config.length_shape == "band" else r_max * length / budget
        if length <= 2 * budget:
            return r_max * (1 - (length - budget) / budget)
        return 0.0

    def format_reward(self, text: str) -> float:
        c = self.config
        return (c.think_reward * well_formed(text, _THINK, "<think>", "</think>")
                + c.answer_reward * well_formed(text, _ANSWER, "<answer>", "</answer>"))

    def reward(self, batch: RolloutBatch) -> list[float]:
        c = self.config
        budget = self.budget_at(batch.step)
        texts = (batch.require("texts", self.name, "set format_weight=0")
                 if c.format_weight else [""] * len(batch))
        return [c.correctness_weight * c.correct_reward * float(ok and f)
                + c.length_weight * self.length_reward(n, budget)
                + c.format_weight * self.format_reward(text)
                for ok, f, n, text in zip(batch.correct, batch.format_ok, self.scoped_lengths(batch), texts)]
