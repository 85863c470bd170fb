"""LASER: length-based step reward shaping (Liu et al., "Learn to Reason Efficiently with Adaptive
Length-based Reward Shaping", arXiv 2505.15612 v1; code hkust-nlp/Laser @ c9e7c4e).

What it rewards. A base correctness score plus a step bonus for correct answers that fit a target
length L_T (paper eq. ``C(y) + I(R) * alpha * I(L <= L_T)``):

    format fail (``format_ok=False`` or ``truncated=True``)   -> -1.0   (no bonus, ever)
    incorrect, well formed                                    -> -0.5
    correct, L <= L_T (inclusive, as in the code)             -> +1.0 + alpha = 1.5
    correct, L >  L_T                                         -> +1.0

The code reads the answer after the closing think tag and calls a response "invalid format" when
that part has no boxed answer or a think tag is missing, so a response truncated before it closes
its thinking scores -1 rather than -0.5; here every ``truncated=True`` completion is a format
failure. The bonus applies only when the base score is exactly +1.

Config (paper / code default):
    target_length  L_T in tokens (4096; the paper runs 2048 / 4096 / 8192 with a 16,384 cap).
    alpha          bonus scale (0.5, never tuned).
    mode           "reward" (code default: +alpha for correct & short), "penalty" (-alpha for
                   correct & long), "hybrid" (+alpha short, -alpha long). Code-only variants.
    correct_reward / wrong_reward / format_reward   base scores (+1.0 / -0.5 / -1.0).

LASER-D and LASER-DE (difficulty-aware adaptive targets) live in ``laser_d.py``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from conciser.rewards.base import LENGTH_SCOPES, LengthReward, check_targets
from conciser.rewards.batch import RolloutBatch

MODES = ("reward", "penalty", "hybrid")


def check_laser_fields(name: str, alpha: float, mode: str) -> None:
    if mode not in MODES:
        raise ValueError(f"{name}.mode={mode!r} is not one of {list(MODES)}")
    if alpha < 0:
        raise ValueError(f"{name}.alpha={alpha} must be >= 0 (the mode picks the sign)")


def base_scores(batch: RolloutBatch, correct_reward: float, wrong_reward: float,
                format_reward: float) -> list[float]:
    """LASER's base score per completion: format fail (incl. truncated) / correct / wrong."""
    return [format_reward if (not f or t) else (correct_reward if c else wrong_reward)
            for c, f, t in zip(batch.correct, batch.format_ok, batch.truncated)]


def step_bonus(mode: str, alpha: float, length: int, target: float) -> float:
    """The length term for a correct, well-formed completion (``L <= target`` is inclusive)."""
    short = length <= target
    if mode == "reward":
        return alpha if short else 0.0
    if mode == "penalty":
        return 0.0 if short else -alpha
    return alpha if short else -alpha


class Laser(LengthReward):
    """LASER: +alpha step bonus for correct answers within a fixed target length L_T."""

    name = "laser"
    length_scopes = LENGTH_SCOPES

    @dataclass(frozen=True)
    class Config:
        target_length: int = 4096
        alpha: float = 0.5
        mode: Literal["reward", "penalty", "hybrid"] = "reward"
        correct_reward: float = 1.0
        wrong_reward: float = -0.5
        format_reward: float = -1.0

        def __post_init__(self) -> None:
            if self.target_length < 1:
                raise ValueError(f"laser.target_length={self.target_length} must be >= 1 token")
            check_laser_fields("laser", self.alpha, self.mode)

    def check_cap(self, cap: int) -> None:
        if self.config.alpha:  # without a bonus the target plays no part (plain GRPO: toy/grpo)
            check_targets(self.name, {"target_length": self.config.target_length}, cap)

    def reward(self, batch: RolloutBatch) -> list[float]:
        c = self.config
        base = base_scores(batch, c.correct_reward, c.wrong_reward, c.format_reward)
        return [float(b + step_bonus(c.mode, c.alpha, length, c.target_length) if ok else b)
                for b, ok, length in zip(base, batch.solved, self.scoped_lengths(batch))]
