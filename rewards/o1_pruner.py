"""O1-Pruner: length-harmonizing fine-tuning (Luo et al., "O1-Pruner: Length-Harmonizing Fine-Tuning for
O1-Like Reasoning Pruning", arXiv 2501.12570; code StarDewXXX/O1-Pruner @ 04c0863,
`o1_scripts/construct_dataset.py` and `examples/math/*.yaml`).

What it rewards. Each completion against the *reference* (starting) model's statistics on its problem,
pre-sampled K times (`rewards/reference.py`: L_ref the mean length of all K samples, A_ref the fraction
solved):

    R = clip( L_ref / L - 1 + lam * (solved - A_ref),  clip_low, clip_high )

Shorter than the reference's average scores above 0, longer below; a solved completion earns
lam * (1 - A_ref), so solving a problem the reference rarely solves is worth more than solving an easy
one. L is the completion's token count (EOS included, at least 1); `solved` is `RolloutBatch.solved`
(correct, well formed, finished). Reward is pure; nothing is learned between batches.

Paper vs code, and this implementation:
  * The paper optimises E[R] off-policy with a PPO-style clipped objective on samples of the
    reference model, with the plain R (no clipping; lam = 2 was best among {0, 1, 2, 5}).
  * The code turns R into per-sample weights for weighted SFT ("wsft", 2 of the K samples per
    problem): `weight = (avg_length - length) / length + alpha * (correct - avg_acc)` -- the same R --
    then clips it to [-2, 4] (`if weight <= -2: -2; if weight > 4: 4`) and z-scores the weights over
    the whole dataset. alpha = 2 for Marco-o1 (K = 16), 5 for QwQ-32B (K = 12). Its length counts
    the solution text's tokens; its averages include the sample being weighted.
  * Here R is the reward of on-policy GRPO rollouts, clipped as in the code (set clip_low/clip_high
    to null for the paper's unclipped R). The code's dataset z-scoring is
    `advantage.estimator: raw` with `whiten: true` (the toy recipe's choice): the reference terms are
    the baseline, as in the paper. Under GRPO's `group` estimator the constants -1 and -lam * A_ref
    cancel within a group and only L_ref / L + lam * solved remains.
  * The reference statistics are of the eval harness's samples (its `correct` and finish reason),
    not re-graded here.

Config (default): lam (2.0, the paper's best; the code's alpha), clip_low (-2.0) and clip_high (4.0)
(the code's clip; null = unclipped), reference_stats (null; required: the path of the reference samples,
see `rewards/reference.py`).
"""

from __future__ import annotations

from dataclasses import dataclass

from conciser.rewards._stats import mean
from conciser.rewards.batch import RolloutBatch
from conciser.rewards.reference import ReferenceReward


class O1Pruner(ReferenceReward):
    """O1-Pruner: L_ref / L - 1 + lam * (solved - A_ref), clipped, against the starting model's statistics."""

    name = "o1_pruner"
    preferred_estimator = "raw"

    @dataclass(frozen=True)
    class Config:
        lam: float = 2.0
        clip_low: float | None = -2.0
        clip_high: float | None = 4.0
        reference_stats: str | None = None

        def __post_init__(self) -> None:
            if self.lam < 0:
                raise ValueError(f"o1_pruner.lam={self.lam} must be >= 0 (the weight of solving vs the reference)")
            if self.clip_low is not None and self.clip_high is not None and self.clip_low >= self.clip_high:
                raise ValueError(f"o1_pruner.clip_low={self.clip_low} must be below clip_high={self.clip_high}")

    def score(self, length: int, solved: bool, ref_length: float, ref_accuracy: float) -> float:
        """R for one completion."""
        r = ref_length / max(length, 1) - 1.0 + self.config.lam * (float(solved) - ref_accuracy)
        if self.config.clip_low is not None:
            r = max(r, self.config.clip_low)
        if self.config.clip_high is not None:
            r = min(r, self.config.clip_high)
        return r

    def reward(self, batch: RolloutBatch) -> list[float]:
        ref = self.reference
        return [self.score(n, ok, ref[pid].mean_length, ref[pid].accuracy)
                for pid, n, ok in zip(batch.problem_ids, batch.lengths, batch.solved)]

    def metrics(self, batch: RolloutBatch) -> dict[str, float]:
        ref = self.reference
        return {"ref_length_mean": mean([ref[pid].mean_length for pid in batch.problem_ids]),
                "ref_accuracy_mean": mean([ref[pid].accuracy for pid in batch.problem_ids]),
                "length_ratio_mean": mean([ref[pid].mean_length / max(n, 1)
                                           for pid, n in zip(batch.problem_ids, batch.lengths)])}
