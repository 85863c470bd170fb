"""DLER and DA-DLER: truncation penalty done right (Liu et al., NVIDIA, "DLER: Doing Length pEnalty
Right", arXiv 2510.15110 v1; code NVlabs/DLER @ ea7d4f7).

What it rewards. The simplest length penalty, truncation: R' = R (1 correct / 0 otherwise) if the
response finishes within the target length L_T, else 0. DLER's gains come from the optimisation
around it (batch-wise advantage whitening, clip-higher, dynamic sampling: see trainers/), not from
the reward shape.

* correct means ``correct and format_ok`` (the DeepScaleR-style verifier needs the closing think
  tag and a boxed answer after it).
* ``L > L_T`` -> 0 (the paper's truncation; in the code the generation cap *is* L_T).
* ``truncated=True`` (no EOS before the cap): the code multiplies the score by
  ``stop_penalty_coef`` = 0.1 (the "stop-properly" penalty of the released DAPO recipe), so a
  cut-off response that already holds a correct answer scores 0.1; the paper's reading is 0
  (set ``stop_penalty_coef=0``). Dynamic sampling looks at the unmodified score:
  ``sampling_scores(batch)``.

DA-DLER (paper §5; not in the released code): per prompt, the group's correctness ratio p
(unmodified scores of the current group, generated under the large limit) picks a truncation length;
reported setting: one threshold 0.5, lengths 2000 (p >= 0.5, the boundary goes to the easy side) and
4000 (p < 0.5). Responses longer than their prompt's length are re-scored 0. ``targets(batch)``
gives each completion's truncation length.

Config (paper / code default):
    dler:    target_length L_T (4000; 6000 for Nemotron-Nano-8B), stop_penalty_coef (0.1 code,
             0 paper), correct_reward (1.0).
    dler_da: ratio_thresholds ascending (0.5,), truncation_lengths from hardest to easiest
             (4000, 2000), stop_penalty_coef (0.1), correct_reward (1.0).
"""

from __future__ import annotations

from dataclasses import dataclass

from conciser.rewards._stats import as_tuple, mean
from conciser.rewards.base import LENGTH_SCOPES, LengthReward, check_targets
from conciser.rewards.batch import RolloutBatch


def _check_coef(name: str, coef: float) -> None:
    if not 0.0 <= coef <= 1.0:
        raise ValueError(f"{name}.stop_penalty_coef={coef} must be in [0, 1] (0 = paper, 0.1 = code)")


class Dler(LengthReward):
    """DLER truncation reward: correctness if L <= L_T, else 0; x0.1 when cut off (code)."""

    name = "dler"
    length_scopes = LENGTH_SCOPES

    @dataclass(frozen=True)
    class Config:
        target_length: int = 4000
        stop_penalty_coef: float = 0.1
        correct_reward: float = 1.0

        def __post_init__(self) -> None:
            if self.target_length < 1:
                raise ValueError(f"dler.target_length={self.target_length} must be >= 1 token")
            _check_coef("dler", self.stop_penalty_coef)

    def targets(self, batch: RolloutBatch) -> list[int]:
        return [self.config.target_length] * len(batch)

    def check_cap(self, cap: int) -> None:
        check_targets(self.name, {"target_length": self.config.target_length}, cap)

    def scores(self, batch: RolloutBatch) -> list[float]:
        """The unmodified score (before the truncation penalty and the stop-properly multiplier)."""
        return [self.config.correct_reward if c and f else 0.0
                for c, f in zip(batch.correct, batch.format_ok)]

    def sampling_scores(self, batch: RolloutBatch, rewards: list[float]) -> list[float]:
        """Dynamic sampling filters on the unmodified score, as the code does."""
        return self.scores(batch)

    def metrics(self, batch: RolloutBatch) -> dict[str, float]:
        return {"target_mean": mean(self.targets(batch))}

    def reward(self, batch: RolloutBatch) -> list[float]:
        out = []
        for score, n, t, cut in zip(self.scores(batch), self.scoped_lengths(batch),
                                    self.targets(batch), batch.truncated):
            if n > t:
                score = 0.0
            elif cut:
                score *= self.config.stop_penalty_coef
            out.append(float(score))
        return out


class DlerDA(Dler):
    """DA-DLER: per-prompt truncation length chosen by the group's correctness ratio."""

    name = "dler_da"

    @dataclass(frozen=True)
    class Config:
        ratio_thresholds: tuple[float, ...] = (0.5,)
        truncation_lengths: tuple[int, ...] = (4000, 2000)
        stop_penalty_coef: float = 0.1
        correct_reward: float = 1.0

        def __post_init__(self) -> None:
            as_tuple(self, "ratio_thresholds")
            as_tuple(self, "truncation_lengths")
            th, ls = self.ratio_thresholds, self.truncation_lengths
            if len(ls) != len(th) + 1:
                raise ValueError(f"dler_da.truncation_lengths has {len(ls)} values; it needs one "
                                 f"more than ratio_thresholds ({len(th)}): hardest level first")
            if any(not 0 < x <= 1 for x in th) or list(th) != sorted(set(th)):
                raise ValueError(f"dler_da.ratio_thresholds={list(th)} must be strictly "
                                 f"increasing values in (0, 1]")
            if any(n < 1 for n in ls):
                raise ValueError(f"dler_da.truncation_lengths={list(ls)} must be >= 1 token")
            _check_coef("dler_da", self.stop_penalty_coef)

    def check_cap(self, cap: int) -> None:
        check_targets(self.name, {"truncation_lengths": max(self.config.truncation_lengths)}, cap)

    def targets(self, batch: RolloutBatch) -> list[int]:
        """Each completion's truncation length: level = number of thresholds p reaches."""
        right = [c and f for c, f in zip(batch.correct, batch.format_ok)]
        out = [0] * len(batch)
        for idx in batch.groups().values():
            p = sum(right[i] for i in idx) / len(idx)
            level = sum(p >= th for th in self.config.ratio_thresholds)
            for i in idx:
                out[i] = self.config.truncation_lengths[level]
        return out
