"""DRPO: decoupled reward policy optimisation (Li et al., TAMU, "Efficient Reasoning via Decoupled
Reward Policy Optimization", arXiv 2510.04474; code Optimization-AI/DRPO @ 405f702).

What it rewards. DRPO is an objective, not an additive reward: samples are split into positives
(correct) and negatives by a binary reward, and length only re-weights the *positives* of a group,
so a correct-but-long answer can lose weight but never gets a negative learning signal.

* ``reward(batch)``: the binary reward r in {0, 1}; 1 = correct, well formed and finished
  (truncated or unparseable = 0, as in the code).
* ``length_rewards(batch)``: r_l(o) = 1 - |o| / C (linear, default); ablations "concave"
  1 - (|o|/C)^2 and "cosine" 0.5 + 0.5 cos(pi |o| / C). C = the padded response width, i.e. the
  generation cap (8192 in the code).
* ``positive_weights(batch)``: w_i = softmax over the group's positives of r_l / lambda (sums to 1
  per group; lambda = None means infinity = uniform = DisCO). Negatives get 0. All-correct and
  all-wrong groups contribute no loss (code and paper agree), so all their weights are 0; they still
  count in the batch average's denominator (``group_mask`` tells which groups are live).
* ``negative_weights(batch, scores)``: -softmax over a live group's negatives of s_j / tau, where
  s_j is the length-normalised log-likelihood; the gradient view of tau * LSE(s / tau).

Config (paper / code default):
    lam            lambda, KL temperature of the positive re-weighting (0.1 released checkpoints;
                   paper sweeps 0.1 / 0.2 / 0.5 / inf; None = inf).
    tau            negative-term temperature (10 in the script; the YAML default is 1).
    delta, beta    trust region: penalty stopgrad(max(beta (KL - delta), 0)) * KL; (1e-4, 1e3).
                   Read by the trainer's DRPO loss, not used here.
    length_reward  "linear" (default) | "concave" | "cosine".
    max_length     C; None -> the batch's generation cap (the code's padded width).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, Sequence

from conciser.rewards._stats import softmax
from conciser.rewards.base import LENGTH_SCOPES, LengthReward
from conciser.rewards.batch import RolloutBatch


class Drpo(LengthReward):
    """DRPO ingredients: binary reward, positive length weights, negative LSE weights."""

    name = "drpo"
    length_scopes = LENGTH_SCOPES
    preferred_estimator = "drpo"  # its length weights feed DRPO's decoupled objective

    @dataclass(frozen=True)
    class Config:
        lam: float | None = 0.1
        tau: float = 10.0
        delta: float = 1e-4
        beta: float = 1e3
        length_reward: Literal["linear", "concave", "cosine"] = "linear"
        max_length: int | None = None

        def __post_init__(self) -> None:
            if self.lam is not None and not self.lam > 0:
                raise ValueError(f"drpo.lam={self.lam} must be > 0 (None = infinity = DisCO)")
            if not self.tau > 0:
                raise ValueError(f"drpo.tau={self.tau} must be > 0")
            if self.length_reward not in ("linear", "concave", "cosine"):
                raise ValueError(f"drpo.length_reward={self.length_reward!r} is not one of "
                                 f"['concave', 'cosine', 'linear']")
            if self.max_length is not None and self.max_length < 1:
                raise ValueError(f"drpo.max_length={self.max_length} must be >= 1 or None")

    def reward(self, batch: RolloutBatch) -> list[float]:
        return [1.0 if ok else 0.0 for ok in batch.solved]

    def length_rewards(self, batch: RolloutBatch) -> list[float]:
        cap = self.config.max_length or batch.max_length
        out = []
        for n in self.scoped_lengths(batch):
            x = n / cap
            if self.config.length_reward == "linear":
                out.append(1.0 - x)
            elif self.config.length_reward == "concave":
                out.append(1.0 - x * x)
            else:
                out.append(0.5 + 0.5 * math.cos(math.pi * x))
        return out

    def group_mask(self, batch: RolloutBatch) -> list[bool]:
        """True for completions whose group has both positives and negatives (live groups)."""
        solved = batch.solved
        out = [False] * len(batch)
        for idx in batch.groups().values():
            live = 0 < sum(solved[i] for i in idx) < len(idx)
            for i in idx:
                out[i] = live
        return out

    def positive_weights(self, batch: RolloutBatch) -> list[float]:
        solved, live, r_l = batch.solved, self.group_mask(batch), self.length_rewards(batch)
        out = [0.0] * len(batch)
        for idx in batch.groups().values():
            pos = [i for i in idx if solved[i] and live[i]]
            if not pos:
                continue
            lam = self.config.lam
            logits = [0.0 if lam is None else r_l[i] / lam for i in pos]
            for i, w in zip(pos, softmax(logits)):
                out[i] = w
        return out

    def negative_weights(self, batch: RolloutBatch, scores: Sequence[float]) -> list[float]:
        """-softmax_N(s / tau) over each live group's negatives; 0 elsewhere."""
        if len(scores) != len(batch):
            raise ValueError(f"drpo.negative_weights: scores has {len(scores)} entries, the batch "
                             f"{len(batch)}")
        solved, live = batch.solved, self.group_mask(batch)
        out = [0.0] * len(batch)
        for idx in batch.groups().values():
            neg = [i for i in idx if not solved[i] and live[i]]
            if not neg:
                continue
            for i, w in zip(neg, softmax([scores[i] / self.config.tau for i in neg])):
                out[i] = -w
        return out
