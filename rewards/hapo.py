"""HAPO: history-aware policy optimisation (Huang et al., Cornell, "Training LMs to Reason Concisely
via History-Aware Policy Optimization", arXiv 2505.11225; code HCY123902/HAPO @ c91ae3b). The
paper body was not consulted: the rules below are the authors' code.

What it rewards. Correctness plus a length term measured against a per-problem history h_i, the
shortest correct length seen for problem i in earlier batches (a running mean in "mean" mode):

    total = I(correct) + w * r_len          (the code's optional n-gram repetition penalty is off
                                             by default and not implemented here)
    h_i null (no correct answer yet)  -> r_len = 0 for every response
    cosine (default), x = L / h_i:  f = cos(pi/2 * x) if L < 2 h_i else -1
        correct: max(-floor, f)      incorrect: min(0, f)
    linear (tolerance t = 0.1):
        correct:   1 - L/h if L < h;  0 if h <= L < (1+t) h;  else max(-floor, -(L - (1+t) h) / h)
        incorrect: 0 if L < (1+t) h;  else max(-1, -(L - (1+t) h) / h)

So with w <= 1 any correct answer ([1 - 0.7w, 1 + w]) beats any wrong one ([-w, 0]).
``correct`` is the grader's verdict alone (the code grades the whole completion with math_verify;
``format_ok`` is not consulted, and a truncated completion is graded on whatever text it has, then
usually gets -w for being long once h exists). A history h <= 0 counts as null (as in the code).

State: ``reward(batch)`` scores against the history *before* the batch (a group's responses never
see each other); ``observe(batch)`` then updates h_i with the batch's correct lengths:
"min" h_i <- min(h_i, min correct length) (default), "mean" count-weighted running mean of every
correct length. No correct response -> no update. The code re-tokenises the decoded text to count
length; here lengths are the completion token counts.

Config (code default): weight w (1.0; keep in [0, 1] for the ordering guarantee), length_reward
"cosine" | "linear" ("cosine"), history "min" | "mean" ("min"), floor (0.7), tolerance (0.1,
linear only).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

from conciser.rewards._stats import mean
from conciser.rewards.base import LENGTH_SCOPES, LengthReward
from conciser.rewards.batch import RolloutBatch


class Hapo(LengthReward):
    """HAPO: cosine/linear length term against each problem's best correct length so far."""

    name = "hapo"
    length_scopes = LENGTH_SCOPES
    stateful = True

    @dataclass(frozen=True)
    class Config:
        weight: float = 1.0
        length_reward: Literal["cosine", "linear"] = "cosine"
        history: Literal["min", "mean"] = "min"
        floor: float = 0.7
        tolerance: float = 0.1

        def __post_init__(self) -> None:
            if self.weight < 0:
                raise ValueError(f"hapo.weight={self.weight} must be >= 0 (<= 1 keeps every "
                                 f"correct answer above every wrong one)")
            if self.length_reward not in ("cosine", "linear"):
                raise ValueError(f"hapo.length_reward={self.length_reward!r} is not 'cosine' "
                                 f"or 'linear'")
            if self.history not in ("min", "mean"):
                raise ValueError(f"hapo.history={self.history!r} is not 'min' or 'mean'")
            if not 0 <= self.floor <= 1:
                raise ValueError(f"hapo.floor={self.floor} must be in [0, 1]")
            if self.tolerance < 0:
                raise ValueError(f"hapo.tolerance={self.tolerance} must be >= 0")

    def __init__(self, config: Any = None, **overrides: Any) -> None:
        super().__init__(config, **overrides)
        self._history: dict[str, list[float]] = {}  # problem id -> [h, number of correct seen]

    def history_of(self, problem_id: str) -> float | None:
        """h_i, or None while problem ``problem_id`` has no correct answer yet."""
        entry = self._history.get(problem_id)
        return entry[0] if entry and entry[0] > 0 else None

    def metrics(self, batch: RolloutBatch) -> dict[str, float]:
        ids = set(batch.problem_ids)
        known = [h for h in (self.history_of(pid) for pid in ids) if h is not None]
        out = {"history_known_frac": len(known) / len(ids)}
        if known:
            out["history_mean"] = mean(known)
        return out

    def length_term(self, length: int, correct: bool, h: float | None) -> float:
        """r_len before the weight."""
        if h is None:
            return 0.0
        if self.config.length_reward == "cosine":
            f = math.cos(math.pi / 2 * length / h) if length < 2 * h else -1.0
            return max(-self.config.floor, f) if correct else min(0.0, f)
        edge = (1 + self.config.tolerance) * h
        if correct and length < h:
            return 1.0 - length / h
        if length < edge:
            return 0.0
        return max(-self.config.floor if correct else -1.0, -(length - edge) / h)

    def reward(self, batch: RolloutBatch) -> list[float]:
        return [float(c) + self.config.weight * self.length_term(n, c, self.history_of(pid))
                for pid, n, c in zip(batch.problem_ids, self.scoped_lengths(batch), batch.correct)]

    def observe(self, batch: RolloutBatch) -> None:
        lengths = self.scoped_lengths(batch)
        for pid, idx in batch.groups().items():
            right = [lengths[i] for i in idx if batch.correct[i]]
            if not right:
                continue
            h, count = self._history.get(pid, [None, 0])
            if self.config.history == "min":
                new = min(right) if h is None else min(h, min(right))
            else:
                new = ((h or 0) * count + sum(right)) / (count + len(right))
            self._history[pid] = [new, count + len(right)]

    def _state(self) -> dict[str, Any]:
        return {"history": {pid: list(v) for pid, v in self._history.items()}}

    def _load_state(self, state: dict[str, Any]) -> None:
        self._history = {pid: list(v) for pid, v in state["history"].items()}
