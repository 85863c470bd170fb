"""ThinkPrune: iterative length pruning (Hou et al., "ThinkPrune: Pruning Long Chain-of-Thought of
LLMs via Reinforcement Learning", arXiv 2504.01296; code UCSB-NLP-Chang/ThinkPrune @ 0f7449b).

What it rewards. Plain 0/1 correctness under a hard generation cap L: an unfinished output has no
extractable answer and gets 0 ("discarded -> zero reward"). So the reward is 1 iff the completion
is correct, well formed, finished (not truncated) and L <= cap(step). The cap is lowered in stages:
4000 -> 3000 -> 2000; the paper runs each stage as a separate RL run from the previous stage's
merged checkpoint, and the system prompt says "The output of the assistant should be within L
tokens." ``budget_at(step)`` gives the cap the trainer must generate with (and ``budget_prompt``).

Config (paper default):
    caps          stage caps in tokens ((4000, 3000, 2000)).
    stage_starts  first step of each stage, one per cap, starting at 0; None (default) = the
                  paper's protocol of one stage per run: this run uses ``caps[0]`` throughout
                  (chain runs with caps=[3000], caps=[2000] to continue).
    prompt_template  ("The output of the assistant should be within {budget} tokens.")
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass

from conciser.rewards._stats import as_tuple
from conciser.rewards.base import LengthReward
from conciser.rewards.batch import RolloutBatch


class ThinkPrune(LengthReward):
    """ThinkPrune: 0/1 correctness with a staged hard cap."""

    name = "thinkprune"
    budget_kind = "step"

    @dataclass(frozen=True)
    class Config:
        caps: tuple[int, ...] = (4000, 3000, 2000)
        stage_starts: tuple[int, ...] | None = None
        prompt_template: str = "The output of the assistant should be within {budget} tokens."

        def __post_init__(self) -> None:
            as_tuple(self, "caps")
            if not self.caps or any(c < 1 for c in self.caps):
                raise ValueError(f"thinkprune.caps={list(self.caps)} needs at least one cap >= 1")
            if self.stage_starts is not None:
                as_tuple(self, "stage_starts")
                s = list(self.stage_starts)
                if len(s) != len(self.caps) or s[0] != 0 or s != sorted(set(s)):
                    raise ValueError(f"thinkprune.stage_starts={s} must start at 0, be strictly "
                                     f"increasing and have one entry per cap ({len(self.caps)})")

    def budget_at(self, step: int) -> int:
        if self.config.stage_starts is None:
            return self.config.caps[0]
        return self.config.caps[bisect.bisect_right(self.config.stage_starts, step) - 1]

    def budget_prompt(self, step: int) -> str:
        return self.config.prompt_template.format(budget=self.budget_at(step))

    def reward(self, batch: RolloutBatch) -> list[float]:
        cap = self.budget_at(batch.step)
        return [1.0 if ok and n <= cap else 0.0 for ok, n in zip(batch.solved, batch.lengths)]
