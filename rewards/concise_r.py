"""ConciseR / L-GRPO, stage 2 (Song & Zheng, Tencent Hunyuan, "Walk Before You Run! Concise LLM
Reasoning via Reinforcement Learning", arXiv 2505.21178). No code is public (README only).

What it rewards. The ordinary 0/1 outcome reward, except in groups where *all* G rollouts are
correct, which get a length reward for the unused budget:

    all-correct group: r_i = 1 + beta * (L_max - L_i) / L_max
    otherwise:         r_i = I(correct)

(the most likely concrete form; the equation was not verified against the paper). Under
std-normalised GRPO any beta > 0 gives the same advantages, -z(L), in all-correct groups, so the
beta value matters only with Dr.GRPO-style or batch normalisation. Stage 2 must keep all-correct
groups through dynamic sampling or this term never acts. ``correct`` is ``correct and format_ok``;
truncated completions are scored like any other (an all-correct group rarely has one).

Config (default, source): beta (1.0, our assumption: unspecified), max_length L_max (None -> the
batch's generation cap).
"""

from __future__ import annotations

from dataclasses import dataclass

from conciser.rewards.base import LENGTH_SCOPES, LengthReward
from conciser.rewards.batch import RolloutBatch


class ConciseR(LengthReward):
    """ConciseR L-GRPO: length reward only inside all-correct groups."""

    name = "concise_r"
    length_scopes = LENGTH_SCOPES
    keep_all_correct = True  # stage 2 trains only on all-correct groups (methods-more §4)

    @dataclass(frozen=True)
    class Config:
        beta: float = 1.0
        max_length: int | None = None

        def __post_init__(self) -> None:
            if self.beta < 0:
                raise ValueError(f"concise_r.beta={self.beta} must be >= 0")
            if self.max_length is not None and self.max_length < 1:
                raise ValueError(f"concise_r.max_length={self.max_length} must be >= 1 or None")

    def reward(self, batch: RolloutBatch) -> list[float]:
        cap = self.config.max_length or batch.max_length
        right = batch.correct_formatted
        lengths = self.scoped_lengths(batch)
        out = [float(ok) for ok in right]
        for idx in batch.groups().values():
            if all(right[i] for i in idx):
                for i in idx:
                    out[i] = 1.0 + self.config.beta * (cap - lengths[i]) / cap
        return out
