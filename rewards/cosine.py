"""Cosine length-scaled reward (Yeo et al., "Demystifying Long Chain-of-Thought Reasoning in LLMs",
arXiv 2502.03373; code eddycmu/demystify-long-cot @ e90cf9b, OpenRLHF).

What it rewards. CosFn(t, T, a, b) = a + (b - a)/2 * (1 + cos(pi * t / T)): b at t = 0, a at t = T,
with t = completion tokens and T = the generation cap (max_new_tokens), t/T clipped to [0, 1]:

    correct (``correct and format_ok``): a = +1 (at T), b = +2 (at 0)  -> shorter correct is better
    wrong or malformed:                  a =  0 (at T), b = -10 (at 0) -> short wrong is worst
    exceeding: t + 16 >= T (code), or ``truncated=True``  -> -10, correct or not

open-r1's port differs (characters, no exceed penalty, unclipped t/T wrapping around, defaults
that reverse the wrong-answer slope): not reproduced. The code's optional repetition penalties
(dense -0.05 on repeated 40-grams; sparse, wrong answers only) are off here.

Config (paper/code default): max_length T (None -> the batch's generation cap; paper runs 14,336),
correct_at_zero r_0^c (2.0), correct_at_max r_L^c (1.0), wrong_at_zero r_0^w (-10.0),
wrong_at_max r_L^w (0.0), exceed_penalty (-10.0), exceed_margin (16 tokens).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from conciser.rewards.base import LENGTH_SCOPES, LengthReward
from conciser.rewards.batch import RolloutBatch


def cos_fn(t: float, cap: float, at_max: float, at_zero: float) -> float:
    frac = min(1.0, max(0.0, t / cap))
    return at_max + 0.5 * (at_zero - at_max) * (1.0 + math.cos(math.pi * frac))


class Cosine(LengthReward):
    """Yeo et al. cosine reward: length-scaled correct/wrong rewards plus an exceed penalty."""

    name = "cosine"
    length_scopes = LENGTH_SCOPES

    @dataclass(frozen=True)
    class Config:
        max_length: int | None = None
        correct_at_zero: float = 2.0
        correct_at_max: float = 1.0
        wrong_at_zero: float = -10.0
        wrong_at_max: float = 0.0
        exceed_penalty: float = -10.0
        exceed_margin: int = 16

        def __post_init__(self) -> None:
            if self.max_length is not None and self.max_length < 1:
                raise ValueError(f"cosine.max_length={self.max_length} must be >= 1 or None")
            if self.wrong_at_zero > 0 or self.wrong_at_max > 0:
                raise ValueError(f"cosine.wrong_at_zero={self.wrong_at_zero} and wrong_at_max="
                                 f"{self.wrong_at_max} must be <= 0 (as the code requires)")
            if self.exceed_margin < 0:
                raise ValueError(f"cosine.exceed_margin={self.exceed_margin} must be >= 0")

    def reward(self, batch: RolloutBatch) -> list[float]:
        c = self.config
        cap = c.max_length or batch.max_length
        out = []
        # the exceed check is about the generation cap, so it always looks at the whole completion
        for ok, n, total, cut in zip(batch.correct_formatted, self.scoped_lengths(batch), batch.lengths,
                                     batch.truncated):
            if cut or total + c.exceed_margin >= cap:
                out.append(float(c.exceed_penalty))
            elif ok:
                out.append(cos_fn(n, cap, c.correct_at_max, c.correct_at_zero))
            else:
                out.append(cos_fn(n, cap, c.wrong_at_max, c.wrong_at_zero))
        return out
