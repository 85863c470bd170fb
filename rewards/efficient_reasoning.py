"""Efficient reasoning (Arora & Zanette, "Training Language Models to Reason Efficiently",
arXiv 2502.04463; code Zanette-Labs/efficient-reasoning @ e3611e4, ``reward_server/math_server.py``
with ``run_rloo_1.5B.sh`` / ``run_rloo_7B.sh``).

What it rewards. Correct answers, more for the shorter ones relative to the *other correct answers to
the same prompt*; wrong answers get nothing:

    correct:  r = 1 - alpha * sigmoid(z),   z = (L - mean_c) / (std_c + std_eps)
    wrong:    r = 0

mean_c and std_c are the mean and the population standard deviation (numpy's ``np.std``, ddof 0) of
the lengths of the group's correct answers. A single correct answer, or correct answers of equal
length, have z = 0 and score 1 - alpha / 2. Because the penalty is a sigmoid of a z-score it lies in
(0, alpha) whatever the lengths' scale, so a correct answer always beats a wrong one.

``correct`` is ``solved`` (correct, well formed and finished): the server's ``--check_eos`` (on in the
released scripts) scores a completion without EOS 0, and its length does not enter the statistics.
L is counted in the reward's ``length_scope`` (default ``total``: completion tokens; the server
re-tokenises the decoded response, which drops special tokens).

Where this differs from the code. The authors train with RLOO (OpenRLHF ``--advantage_estimator
rloo``: each sample's baseline is the mean of the *other* samples of its prompt), i.e.
G / (G - 1) * (r - group mean) -- GRPO's group advantage without the std division, up to a constant
factor; the toy recipe sets ``trainer.scale_rewards: none`` for that. The paper presents the
objective with alpha in [0, 1) as the knob that trades accuracy for length (a family of models, one
per alpha).

Config (code default): alpha (0.1, the released run scripts; the reward server's CLI default is 1),
std_eps (1e-7).
"""

from __future__ import annotations

from dataclasses import dataclass

from conciser.rewards._stats import mean, sigmoid, std
from conciser.rewards.base import LENGTH_SCOPES, LengthReward
from conciser.rewards.batch import RolloutBatch


class EfficientReasoning(LengthReward):
    """Arora & Zanette: 1 - alpha * sigmoid(z-scored length among the group's correct answers)."""

    name = "efficient_reasoning"
    length_scopes = LENGTH_SCOPES

    @dataclass(frozen=True)
    class Config:
        alpha: float = 0.1
        std_eps: float = 1e-7

        def __post_init__(self) -> None:
            if not 0 <= self.alpha < 1:
                raise ValueError(f"efficient_reasoning.alpha={self.alpha} must be in [0, 1) (a correct answer "
                                 f"must keep a positive reward)")
            if not self.std_eps > 0:
                raise ValueError(f"efficient_reasoning.std_eps={self.std_eps} must be > 0")

    def reward(self, batch: RolloutBatch) -> list[float]:
        c = self.config
        solved, lengths = batch.solved, self.scoped_lengths(batch)
        out = [0.0] * len(batch)
        for idx in batch.groups().values():
            good = [lengths[i] for i in idx if solved[i]]
            if not good:
                continue
            mu, s = mean(good), std(good)
            for i in idx:
                if solved[i]:
                    out[i] = 1.0 - c.alpha * sigmoid((lengths[i] - mu) / (s + c.std_eps))
        return out
