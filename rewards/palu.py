"""PALU: per-question budgets from a Lagrangian view (Gao et al., "Concise Reasoning in the Lens of
Lagrangian Optimization", arXiv 2510.10168). No public code; the rule is the paper's three
approximations (abstract + reviews), the enforcement is our reading.

What it rewards. Each question q has a token budget L_q, used as its generation cap, and the reward
is plain 0/1: 1 iff the completion is correct, well formed, finished and L <= L_q (a response that
hits its budget loses its final answer and scores 0). After the question's rollouts
(``observe``), with R_q = the fraction of its rollouts that scored 1:

    R_q >= C (constraint met):  L_q <- L_q - alpha_tau,  alpha_tau = Q_1.0 - Q_{1-tau} of the
                                 lengths of q's correct responses (linear-interpolated quantiles)
    otherwise:                  L_q <- L_max (the training cap)

The new budget applies the next time q is sampled (the paper's off-policy estimate from the previous
epoch). An unseen question has budget L_max. Budgets are whole tokens (rounded down), at least
``min_budget``. ``budget_for(problem_id, max_length)`` / ``budgets(batch)`` give the caps the trainer
must generate with.

Edge cases (ours, flagged in the paper's reviews): a single correct response gives alpha = 0 and the
budget stalls (``min_step`` forces progress); an outlier-long correct response makes alpha large
(``max_step`` clips it). Both are off by default.

Config (default, source): threshold C (0.8), tau (0.5; ablation 0.1), min_step (0), max_step (None),
min_budget (1), max_length L_max (None -> the batch's generation cap).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from conciser.rewards._stats import mean, quantile
from conciser.rewards.base import LengthReward
from conciser.rewards.batch import RolloutBatch


class Palu(LengthReward):
    """PALU: 0/1 reward under per-question budgets that shrink while the pass rate is >= C."""

    name = "palu"
    budget_kind = "question"
    stateful = True

    @dataclass(frozen=True)
    class Config:
        threshold: float = 0.8
        tau: float = 0.5
        min_step: int = 0
        max_step: int | None = None
        min_budget: int = 1
        max_length: int | None = None

        def __post_init__(self) -> None:
            if not 0 < self.threshold <= 1:
                raise ValueError(f"palu.threshold={self.threshold} must be in (0, 1]")
            if not 0 < self.tau <= 1:
                raise ValueError(f"palu.tau={self.tau} must be in (0, 1]")
            if self.min_step < 0 or (self.max_step is not None and self.max_step < self.min_step):
                raise ValueError(f"palu.min_step={self.min_step} / max_step={self.max_step}: need "
                                 f"0 <= min_step <= max_step")
            if self.min_budget < 1:
                raise ValueError(f"palu.min_budget={self.min_budget} must be >= 1")
            if self.max_length is not None and self.max_length < 1:
                raise ValueError(f"palu.max_length={self.max_length} must be >= 1 or None")

    def __init__(self, config: Any = None, **overrides: Any) -> None:
        super().__init__(config, **overrides)
        self._budgets: dict[str, int] = {}
        self._pass_rates: dict[str, float] = {}

    def budget_for(self, problem_id: str, max_length: int) -> int:
        cap = self.config.max_length or max_length
        return min(self._budgets.get(problem_id, cap), cap)

    def budgets(self, batch: RolloutBatch) -> list[int]:
        return [self.budget_for(pid, batch.max_length) for pid in batch.problem_ids]

    def metrics(self, batch: RolloutBatch) -> dict[str, float]:
        return {"budget_mean": mean(self.budgets(batch))}

    def reward(self, batch: RolloutBatch) -> list[float]:
        return [1.0 if ok and n <= b else 0.0
                for ok, n, b in zip(batch.solved, batch.lengths, self.budgets(batch))]

    def observe(self, batch: RolloutBatch) -> None:
        c = self.config
        scores = self.reward(batch)
        cap = c.max_length or batch.max_length
        for pid, idx in batch.groups().items():
            rate = sum(scores[i] for i in idx) / len(idx)
            self._pass_rates[pid] = rate
            if rate >= c.threshold:
                good = [batch.lengths[i] for i in idx if scores[i] > 0]
                step = quantile(good, 1.0) - quantile(good, 1.0 - c.tau)
                step = max(c.min_step, step if c.max_step is None else min(c.max_step, step))
                self._budgets[pid] = max(c.min_budget,
                                         math.floor(self.budget_for(pid, cap) - step))
            else:
                self._budgets[pid] = cap

    def _state(self) -> dict[str, Any]:
        return {"budgets": dict(self._budgets), "pass_rates": dict(self._pass_rates)}

    def _load_state(self, state: dict[str, Any]) -> None:
        self._budgets = {k: int(v) for k, v in state["budgets"].items()}
        self._pass_rates = {k: float(v) for k, v in state["pass_rates"].items()}
