"""LASER-D and LASER-DE: dynamic, difficulty-aware LASER (Liu et al., arXiv 2505.15612 v1 §4-5,
App. D; code hkust-nlp/Laser @ c9e7c4e).

What it rewards. LASER's base score (+1 correct / -0.5 wrong / -1 format fail or truncated) plus a
step bonus alpha for correct answers within an *adaptive* target L_A(d) that depends on the
prompt's difficulty bucket d:

* Bucket (training side, from the current group): acc = #(base score == +1) / K;
  acc >= 2/3 -> "easy" (code: high), 1/3 <= acc < 2/3 -> "medium", acc < 1/3 -> "hard" (low).
* Coverage statistics: prompts of a coverage set (a fixed monitor set, sampled K times with the
  training settings) are bucketed with the monitor-side split (acc <= 1/3 hard, (1/3, 2/3]
  medium, > 2/3 easy); P_{l,d} = fraction of ALL responses (correct or not) of bucket-d prompts
  with length <= l, for each l of a grid.
* Grid (code ``get_length_threshold``): L_T, L_T + I, ... while below cap + I (so the last point
  covers the cap); when L_T < I the grid is {L_T, I, 2I, ...}. I = ``grid_step`` (1024 in the
  paper; configurable because the toy's lengths are tiny).
* Expected correct responses: with C_d = the minimum number of correct responses of bucket d,
  ``rounding="floor"`` (code default): C = floor(2K/3), floor(K/3), 1 and the test
  floor(P * C_d) >= 1; ``rounding="ceil"`` (the paper's reading): C = ceil(2K/3), ceil(K/3), 1 and
  P * C_d >= 1. L_A(d) = the smallest qualifying grid value, but never above the longest response
  of the current training batch, which is also the fallback when nothing qualifies (code).
  Before any coverage statistics exist, every bucket uses L_T (code).
* Coverage refresh: ``coverage_source="monitor"`` (paper/code): the trainer samples the monitor
  set before step 1 and whenever ``monitor_due(step)`` (every ``refresh_every`` steps) and passes
  that batch to ``update_coverage(batch)``. ``coverage_source="training"`` (an option, no extra
  rollouts): ``observe(batch)`` collects the training batches and rebuilds the statistics from
  the batches seen since the last refresh once ``refresh_every`` steps have passed (and at the
  first observe).
* LASER-DE adds exploration: an incorrect but well-formed response (base -0.5) longer than L_A(d)
  gets +alpha (-> 0.0), unless it is degenerate repetition (code-only filter, on by default; runs
  on ``token_ids`` when given, else on whitespace tokens of ``texts``). Format failures never get
  it. DE always uses the "reward" mode (as in the code).

Config (paper / code default):
    target_length    L_T: grid lower bound and the target before statistics exist (4096).
    alpha            bonus scale (0.5).
    mode             laser_d only: "reward" | "penalty" | "hybrid" ("reward").
    correct_reward / wrong_reward / format_reward   base scores (+1.0 / -0.5 / -1.0).
    grid_step        I, grid spacing in tokens (1024).
    grid_max         grid upper bound; None -> the coverage batch's ``max_length`` (16,384).
    rounding         "floor" (code default, C = 5/2/1 for K = 8) | "ceil" (paper, C = 6/3/1).
    expected_correct ECR threshold (1).
    coverage_source  "monitor" (code: 500-prompt monitor set, K = 8) | "training".
    refresh_every    N, steps between coverage refreshes (20).
    group_size       K used for C_d; None -> the (uniform) group size of the coverage data (8).
    repetition_filter  laser_de only: withhold the exploration bonus from repetitive answers
                     (True, code-only; the paper has no filter).
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, ClassVar, Hashable, Literal, Sequence

from conciser.rewards.base import LENGTH_SCOPES, LengthReward, check_targets
from conciser.rewards.batch import RolloutBatch
from conciser.rewards.laser import base_scores, check_laser_fields, step_bonus

BUCKETS = ("easy", "medium", "hard")


def training_bucket(n_solved: int, k: int) -> str:
    """Training-side split (code): acc >= 2/3 easy, 1/3 <= acc < 2/3 medium, else hard."""
    acc = Fraction(n_solved, k)
    return "easy" if acc >= Fraction(2, 3) else "medium" if acc >= Fraction(1, 3) else "hard"


def monitor_bucket(n_solved: int, k: int) -> str:
    """Monitor-side split (code): acc <= 1/3 hard, 1/3 < acc <= 2/3 medium, else easy."""
    acc = Fraction(n_solved, k)
    return "hard" if acc <= Fraction(1, 3) else "medium" if acc <= Fraction(2, 3) else "easy"


def length_grid(lower: int, upper: int, step: int) -> list[int]:
    """Candidate targets: ``lower`` then multiples of ``step`` (or lower + k*step) past ``upper``."""
    if lower < step:
        return [lower] + list(range(step, upper + step, step))
    return list(range(lower, upper + step, step))


def min_correct(bucket: str, k: int, rounding: str) -> int:
    """C_d: the fewest correct responses a bucket-d prompt has (K samples)."""
    if bucket == "hard":
        return 1
    frac = Fraction(2 * k, 3) if bucket == "easy" else Fraction(k, 3)
    return math.floor(frac) if rounding == "floor" else math.ceil(frac)


def is_repetitive(tokens: Sequence[Hashable], n: int = 4) -> bool:
    """The LASER code's backward n-gram repetition detector, restated.

    Sequences of length <= 2n are never repetitive. The n-gram size adapts to the length (2 below
    30 tokens, 3 below 100, else n) and so does the occurrence threshold (2 below 200, else 3).
    Repetitive if some n-gram (ignoring n-grams of one repeated token when n > 2) occurs at least
    threshold times with two consecutive occurrences closer than len // 3, or (for length >= 4n)
    if some 2n-gram occurs twice.
    """
    size = len(tokens)
    if size <= 2 * n:
        return False
    n = 2 if size < 30 else 3 if size < 100 else min(4, n)
    threshold = 2 if size < 200 else 3
    positions: dict[tuple, list[int]] = defaultdict(list)
    for i in range(size - n + 1):
        gram = tuple(tokens[i:i + n])
        if n > 2 and len(set(gram)) == 1:
            continue
        positions[gram].append(i)
    for pos in positions.values():
        if len(pos) >= threshold and any(b - a < size // 3 for a, b in zip(pos, pos[1:])):
            return True
    if size >= 4 * n:
        seen = set()
        for i in range(size - 2 * n + 1):
            gram = tuple(tokens[i:i + 2 * n])
            if gram in seen:
                return True
            seen.add(gram)
    return False


class LaserD(LengthReward):
    """LASER-D: step bonus with per-difficulty targets L_A(d) from coverage statistics."""

    name = "laser_d"
    length_scopes = LENGTH_SCOPES
    stateful = True

    @dataclass(frozen=True)
    class Config:
        reward_name: ClassVar[str] = "laser_d"
        target_length: int = 4096
        alpha: float = 0.5
        mode: Literal["reward", "penalty", "hybrid"] = "reward"
        correct_reward: float = 1.0
        wrong_reward: float = -0.5
        format_reward: float = -1.0
        grid_step: int = 1024
        grid_max: int | None = None
        rounding: Literal["floor", "ceil"] = "floor"
        expected_correct: int = 1
        coverage_source: Literal["monitor", "training"] = "monitor"
        refresh_every: int = 20
        group_size: int | None = None

        def __post_init__(self) -> None:
            name = self.reward_name
            check_laser_fields(name, self.alpha, self.mode)
            for field in ("target_length", "grid_step", "expected_correct", "refresh_every"):
                if getattr(self, field) < 1:
                    raise ValueError(f"{name}.{field}={getattr(self, field)} must be >= 1")
            for field in ("grid_max", "group_size"):
                if getattr(self, field) is not None and getattr(self, field) < 1:
                    raise ValueError(f"{name}.{field}={getattr(self, field)} must be >= 1 or None")
            if self.rounding not in ("floor", "ceil"):
                raise ValueError(f"{name}.rounding={self.rounding!r} is not 'floor' or 'ceil'")
            if self.coverage_source not in ("monitor", "training"):
                raise ValueError(f"{name}.coverage_source={self.coverage_source!r} is not "
                                 f"'monitor' or 'training'")

    def __init__(self, config: Any = None, **overrides: Any) -> None:
        super().__init__(config, **overrides)
        self._coverage: dict[str, Any] | None = None  # grid, covered counts, totals, K, step
        self._window: list[list[Any]] = []  # training source: [n_solved, [lengths]] per group

    # ----- what the trainer calls -------------------------------------------------------------
    def reward(self, batch: RolloutBatch) -> list[float]:
        c = self.config
        base = base_scores(batch, c.correct_reward, c.wrong_reward, c.format_reward)
        targets = self.targets(batch)
        return [float(b + step_bonus(c.mode, c.alpha, n, t)) if ok else float(b)
                for b, ok, n, t in zip(base, batch.solved, self.scoped_lengths(batch), targets)]

    def targets(self, batch: RolloutBatch) -> list[int]:
        """L_A(d) for each completion (its group's training-side bucket)."""
        per_bucket = self.bucket_targets(max(self.scoped_lengths(batch)))
        out = [0] * len(batch)
        solved = batch.solved
        for idx in batch.groups().values():
            bucket = training_bucket(sum(solved[i] for i in idx), len(idx))
            for i in idx:
                out[i] = per_bucket[bucket]
        return out

    def bucket_targets(self, batch_max_length: int) -> dict[str, int]:
        """{bucket: L_A}; L_T for all before statistics exist; capped by the batch's longest."""
        cov = self._coverage
        if cov is None:
            return {b: self.config.target_length for b in BUCKETS}
        out = {}
        for b in BUCKETS:
            need = min_correct(b, cov["group_size"], self.config.rounding)
            out[b] = batch_max_length
            total = cov["total"][b]
            for length, covered in zip(cov["grid"], cov["covered"][b]):
                p = Fraction(covered, total) if total else Fraction(0)
                ecr = math.floor(p * need) if self.config.rounding == "floor" else p * need
                if ecr >= self.config.expected_correct and length < out[b]:
                    out[b] = length
        return out

    def check_cap(self, cap: int) -> None:
        check_targets(self.name, {"target_length": self.config.target_length}, cap)

    def refresh_due(self, step: int) -> bool:
        """The coverage statistics are due at ``step``: none yet, or ``refresh_every`` steps old."""
        cov = self._coverage
        return cov is None or step - cov["step"] >= self.config.refresh_every

    def monitor_due(self, step: int) -> bool:
        """Monitor source: sample the monitor set now (before step 1, then every N steps)."""
        return self.config.coverage_source == "monitor" and self.refresh_due(step)

    def metrics(self, batch: RolloutBatch) -> dict[str, float]:
        longest = max(self.scoped_lengths(batch))
        return {f"target_{bucket}": float(t) for bucket, t in self.bucket_targets(longest).items()}

    def update_coverage(self, batch: RolloutBatch) -> None:
        """Replace the coverage statistics with those of ``batch`` (K samples per monitor prompt,
        ``batch.step`` = the training step it was sampled at). Works with either source."""
        solved, lengths = batch.solved, self.scoped_lengths(batch)
        groups = [[sum(solved[i] for i in idx), [lengths[i] for i in idx]]
                  for idx in batch.groups().values()]
        cap = self.config.grid_max or batch.max_length
        self._coverage = self._statistics(groups, cap, batch.step)

    def observe(self, batch: RolloutBatch) -> None:
        if self.config.coverage_source != "training":
            return
        solved, lengths = batch.solved, self.scoped_lengths(batch)
        self._window += [[sum(solved[i] for i in idx), [lengths[i] for i in idx]]
                         for idx in batch.groups().values()]
        if self.refresh_due(batch.step):
            cap = self.config.grid_max or batch.max_length
            self._coverage = self._statistics(self._window, cap, batch.step)
            self._window = []

    # ----- internals --------------------------------------------------------------------------
    def _statistics(self, groups: list[list[Any]], cap: int, step: int) -> dict[str, Any]:
        sizes = {len(lengths) for _, lengths in groups}
        k = self.config.group_size
        if k is None:
            if len(sizes) != 1:
                raise ValueError(f"{self.name}: coverage data has group sizes {sorted(sizes)}; "
                                 f"C_d needs one K: sample the same number per prompt or set "
                                 f"{self.name}.group_size")
            k = sizes.pop()
        if self.config.target_length > cap:
            raise ValueError(f"{self.name}.target_length={self.config.target_length} (the grid's "
                             f"lower bound) exceeds the coverage cap {cap}; set target_length "
                             f"below the generation cap (and grid_step to suit)")
        grid = length_grid(self.config.target_length, cap, self.config.grid_step)
        lengths_by_bucket: dict[str, list[int]] = {b: [] for b in BUCKETS}
        for n_solved, lengths in groups:
            lengths_by_bucket[monitor_bucket(n_solved, len(lengths))] += lengths
        return {
            "grid": grid, "group_size": k, "step": step,
            "total": {b: len(v) for b, v in lengths_by_bucket.items()},
            "covered": {b: [sum(n <= g for n in v) for g in grid]
                        for b, v in lengths_by_bucket.items()},
        }

    def _state(self) -> dict[str, Any]:
        return {"coverage": self._coverage, "window": self._window}

    def _load_state(self, state: dict[str, Any]) -> None:
        self._coverage = state["coverage"]
        self._window = [list(g) for g in state["window"]]


class LaserDE(LaserD):
    """LASER-DE: LASER-D plus +alpha for wrong, well-formed, non-repetitive answers above L_A."""

    name = "laser_de"

    @dataclass(frozen=True)
    class Config(LaserD.Config):
        reward_name: ClassVar[str] = "laser_de"
        repetition_filter: bool = True

        def __post_init__(self) -> None:
            super().__post_init__()
            if self.mode != "reward":
                raise ValueError(f"laser_de.mode={self.mode!r}: LASER-DE defines only the "
                                 f"'reward' mode; use laser_d for 'penalty' or 'hybrid'")

    def needs(self) -> frozenset[str]:
        return super().needs() | ({"token_ids"} if self.config.repetition_filter else set())

    def reward(self, batch: RolloutBatch) -> list[float]:
        c = self.config
        out = super().reward(batch)
        targets = self.targets(batch)
        tokens = self._tokens(batch) if c.repetition_filter else None
        for i, (wrong_ok, n, t) in enumerate(zip(_wrong_well_formed(batch), self.scoped_lengths(batch),
                                                  targets)):
            if wrong_ok and n > t and not (tokens is not None and is_repetitive(tokens[i])):
                out[i] += c.alpha
        return out

    def _tokens(self, batch: RolloutBatch) -> list[Sequence[Hashable]]:
        if batch.token_ids is not None:
            return batch.token_ids
        texts = batch.require("texts", self.name, "token_ids, or set repetition_filter=False")
        return [text.split() for text in texts]


def _wrong_well_formed(batch: RolloutBatch) -> list[bool]:
    return [not c and f and not t
            for c, f, t in zip(batch.correct, batch.format_ok, batch.truncated)]
