"""Budget schedules: the generation cap (completion tokens) at optimizer step t.

    constant     trainer.max_completion_length throughout.
    reward       the reward's own budget (`LengthReward.budget_kind`): `budget_at(step)` (curriculum's
                 step-wise exponential or linear decay, thinkprune's stages), or per-question budgets
                 (palu's `budget_for`).
    exponential  | linear   standalone curriculum schedules (params as the curriculum reward's:
                 start_budget, end_budget, num_decays, total_steps, rounding), for any reward.
    stages       standalone ThinkPrune stages (params: caps, stage_starts).

The schedule only says *what* the cap is; `set_generation_cap` says *where*: TRL 1.16 copies
`max_completion_length` at init into `self.max_completion_length` (also the dr_grpo normaliser),
`self.generation_config.max_new_tokens` and `self.generation_kwargs["max_new_tokens"]` (the
transformers path), and `self.vllm_generation.max_completion_length` (vLLM's `max_tokens`), so all
of them change together (reference/ecosystem.md §2.3).

Per-question budgets (palu) cannot be one `max_tokens`: the trainer generates with the largest
budget of the batch and cuts each completion at its own question's budget. Sampling is
autoregressive, so the first L tokens of a longer sample are distributed exactly as a sample capped
at L: the cut is the per-question cap, not an approximation (and a cut completion has no EOS, so it
counts as truncated, as it would have been).
"""

from __future__ import annotations

from typing import Any, Sequence

from conciser.config import SCHEDULES  # one source: the recipe's budget block

CURRICULUM_PARAMS = ("start_budget", "end_budget", "num_decays", "total_steps", "rounding")
STAGE_PARAMS = ("caps", "stage_starts")


class BudgetSchedule:
    """A cap per step (`budget_at`), or per question when `per_prompt` (`budgets_for`)."""

    name = "constant"
    per_prompt = False

    def __init__(self, cap: int) -> None:
        self.cap = cap

    def budget_at(self, step: int) -> int:
        return self.cap

    def budgets_for(self, problem_ids: Sequence[str], step: int) -> list[int]:
        return [self.budget_at(step)] * len(problem_ids)

    def smallest_cap(self, max_steps: int) -> int:
        """The smallest cap over steps 0..max_steps (per-question budgets: the overall cap, an upper bound)."""
        if self.per_prompt:
            return self.cap
        return min(self.budget_at(s) for s in range(max(max_steps, 0) + 1))


class StepBudget(BudgetSchedule):
    """A cap from an object with `budget_at(step)` (a curriculum / thinkprune reward or config)."""

    def __init__(self, cap: int, source: Any, name: str) -> None:
        super().__init__(cap)
        self.source, self.name = source, name

    def budget_at(self, step: int) -> int:
        return int(self.source.budget_at(step))


class QuestionBudget(BudgetSchedule):
    """Per-question caps from a reward with `budget_for(problem_id, max_length)` (palu)."""

    name = "reward"
    per_prompt = True

    def __init__(self, cap: int, reward: Any) -> None:
        super().__init__(cap)
        self.reward = reward

    def budgets_for(self, problem_ids: Sequence[str], step: int) -> list[int]:
        return [min(int(self.reward.budget_for(pid, self.cap)), self.cap) for pid in problem_ids]


def build_budget(schedule: str, params: dict[str, Any], reward: Any, cap: int, max_steps: int) -> BudgetSchedule:
    """The schedule for a recipe's `budget` block; ValueError (naming the field) when it cannot work."""
    from conciser.rewards.curriculum import Curriculum
    from conciser.rewards.thinkprune import ThinkPrune

    params = dict(params or {})
    if schedule not in SCHEDULES:
        raise ValueError(f"budget.schedule: unknown schedule {schedule!r}; valid: {', '.join(SCHEDULES)}")
    if schedule in ("constant", "reward") and params:
        raise ValueError(f"budget.params: the {schedule!r} schedule takes no params (got {sorted(params)})")
    if schedule == "constant":
        return BudgetSchedule(cap)
    if schedule == "reward":
        if reward.budget_kind == "step":
            out: BudgetSchedule = StepBudget(cap, reward, "reward")
        elif reward.budget_kind == "question":
            return QuestionBudget(cap, reward)
        else:
            raise ValueError(f"budget.schedule=reward: the {reward.name!r} reward has no budget "
                             f"(curriculum, thinkprune and palu do); use constant, exponential, linear or stages")
    else:
        valid = STAGE_PARAMS if schedule == "stages" else CURRICULUM_PARAMS
        unknown = sorted(set(params) - set(valid))
        if unknown:
            raise ValueError(f"budget.params: unknown key(s) {unknown} for the {schedule!r} schedule; "
                             f"valid: {', '.join(valid)}")
        try:
            source = ThinkPrune(**params) if schedule == "stages" else Curriculum(schedule=schedule, **params)
        except (TypeError, ValueError) as exc:
            message = str(exc).replace("reward 'thinkprune': ", "").replace("reward 'curriculum': ", "")
            raise ValueError(f"budget.params ({schedule}): " + message.replace("thinkprune.", "")
                             .replace("curriculum.", "")) from None
        out = StepBudget(cap, source, schedule)
    steps = range(max(max_steps, 0) + 1)
    highest = max(out.budget_at(s) for s in steps)
    if highest > cap:
        raise ValueError(f"budget: the {schedule} schedule reaches {highest} tokens but "
                         f"trainer.max_completion_length is {cap}; raise trainer.max_completion_length to "
                         f">= {highest} (vLLM and TRL size buffers by it) or lower the budgets")
    return out


def set_generation_cap(trainer, cap: int) -> None:
    """Point every copy of the generation cap TRL 1.16 keeps at `cap` (see the module docstring)."""
    trainer.max_completion_length = cap
    if trainer.use_vllm:
        trainer.vllm_generation.max_completion_length = cap
    else:
        trainer.generation_config.max_new_tokens = cap
        trainer.generation_kwargs["max_new_tokens"] = cap


def generation_caps(trainer) -> dict[str, int]:
    """Every copy of the cap, for tests and logs."""
    caps = {"max_completion_length": trainer.max_completion_length}
    if trainer.use_vllm:
        caps["vllm_generation.max_completion_length"] = trainer.vllm_generation.max_completion_length
    else:
        caps["generation_config.max_new_tokens"] = trainer.generation_config.max_new_tokens
        caps["generation_kwargs.max_new_tokens"] = trainer.generation_kwargs["max_new_tokens"]
    return caps
