"""A-DLP: adaptive direct length penalty (Su & Cardie, "Thinking Fast and Right: Balancing Accuracy and
Reasoning Length with Adaptive Rewards", arXiv 2505.18298; code JinyanSu1/A-DLP @ afbc411,
`verl/verl/trainer/main_ppo.py` (`constrained_reward_fn`), `verl/verl/trainer/ppo/ray_trainer.py`
(the lambda update), `scripts/train.sh`). The paper body was read through its abstract and a secondary
summary; the rules below are the code's.

What it rewards. A direct length penalty whose weight is a controller on accuracy:

    r_i = solved_i - lam_t * L_i                                   (L_i in tokens, EOS included)
    lam_{t+1} = max(0, lam_t + lr * (acc_t - A_ref))                after every generation batch

with acc_t the batch's solved fraction and A_ref the reference accuracy. While the policy is more
accurate than the reference the penalty grows (compress faster); once accuracy falls below it the
penalty shrinks, to 0 at the least (relax and recover). `reward(batch)` scores with lam_t, then
`observe(batch)` moves it, as the code computes the reward tensor before updating lambda.
`solved` is `RolloutBatch.solved` (correct, well formed, finished): the code's correctness is its
math reward > 0, which needs a final answer.

State: lam (and the number of batches seen), checkpointed as JSON with the trainer's reward state and
restored on resume (`stateful`), as HAPO's history.

Paper vs code, and this implementation:
  * The code's A_ref is a constant, `acc_init` = 0.62 in `scripts/train.sh` for DeepScaleR-1.5B-Preview
    (the code does not say how it was measured; the paper calls it the reference accuracy). Here it is
    `reference_accuracy` when set, otherwise the mean per-problem accuracy of the reference statistics
    (`rewards/reference.py`) over the training problems: the starting model's accuracy, measured by
    the eval harness on the problems being trained on.
  * The code's length is the raw response token count and its lambda_init = lr = 1e-3 at an 8k cap
    (responses of a few thousand tokens: lam * L starts at a few units, far above the correctness
    reward). Recipes with other lengths scale both (the toy recipe explains its scaling).
  * The code runs GRPO (`adv_estimator=grpo`); any estimator works here.

Config (default, the code's): lambda_init (1e-3), lr (1e-3, the controller's step size),
reference_accuracy (null: from reference_stats), reference_stats (null: the path of the reference
samples; one of the two is required).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from conciser.rewards.batch import RolloutBatch
from conciser.rewards.reference import ReferenceReward


class ADlp(ReferenceReward):
    """A-DLP: solved - lam * L, lam moved each batch by lr * (batch accuracy - reference accuracy)."""

    name = "a_dlp"
    stateful = True

    @dataclass(frozen=True)
    class Config:
        lambda_init: float = 1e-3
        lr: float = 1e-3
        reference_accuracy: float | None = None
        reference_stats: str | None = None

        def __post_init__(self) -> None:
            if self.lambda_init < 0:
                raise ValueError(f"a_dlp.lambda_init={self.lambda_init} must be >= 0 (the penalty per token)")
            if self.lr < 0:
                raise ValueError(f"a_dlp.lr={self.lr} must be >= 0 (the controller's step size)")
            if self.reference_accuracy is not None:
                if not 0 <= self.reference_accuracy <= 1:
                    raise ValueError(f"a_dlp.reference_accuracy={self.reference_accuracy} must be in [0, 1]")
                if self.reference_stats:
                    raise ValueError("a_dlp: set reference_accuracy or reference_stats, not both (the reference "
                                     "accuracy comes from one of them)")

    def __init__(self, config: Any = None, **overrides: Any) -> None:
        super().__init__(config, **overrides)
        self._lambda = float(self.config.lambda_init)
        self._batches = 0

    @property
    def penalty(self) -> float:
        """lam_t: the weight per token the next batch is scored with."""
        return self._lambda

    def reference_stats(self) -> str | None:
        return None if self.config.reference_accuracy is not None else super().reference_stats()

    @property
    def reference_accuracy(self) -> float:
        if self.config.reference_accuracy is not None:
            return float(self.config.reference_accuracy)
        return self.reference.mean_accuracy

    def reward(self, batch: RolloutBatch) -> list[float]:
        return [float(ok) - self._lambda * n for ok, n in zip(batch.solved, batch.lengths)]

    def observe(self, batch: RolloutBatch) -> None:
        accuracy = sum(batch.solved) / len(batch)
        self._lambda = max(0.0, self._lambda + self.config.lr * (accuracy - self.reference_accuracy))
        self._batches += 1

    def metrics(self, batch: RolloutBatch) -> dict[str, float]:
        accuracy = sum(batch.solved) / len(batch)
        return {"lambda": self._lambda, "accuracy": accuracy, "reference_accuracy": self.reference_accuracy,
                "gap": accuracy - self.reference_accuracy}

    def _state(self) -> dict[str, Any]:
        return {"lambda": self._lambda, "batches": self._batches}

    def _load_state(self, state: dict[str, Any]) -> None:
        self._lambda = float(state["lambda"])
        self._batches = int(state["batches"])
