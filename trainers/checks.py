"""How a recipe's blocks fit together: checks that need the reward and the trainer settings but no model.

`conciser train` runs them before TRL is imported (on the trainer block over TRL's defaults) and the
trainer runs them again on its real `trl.GRPOConfig`; each error names the field and what to set.
"""

from __future__ import annotations

import logging
from typing import Any

from conciser.config import ON_EXHAUSTED, SAMPLING_METRICS, AdvantageConfig, BudgetConfig, SamplingConfig
from conciser.rewards import LengthReward
from conciser.trainers.budget import build_budget
from conciser.trainers.rollouts import check_needs

log = logging.getLogger(__name__)


def check_training_blocks(reward: LengthReward, advantage: AdvantageConfig, sampling: SamplingConfig,
                          budget: BudgetConfig, args: Any) -> None:
    """Cross-block checks that need no model; ValueError names the field and what to set instead.

    `args` is a `trl.GRPOConfig`, or before one exists `conciser.trainer_fields.resolved(trainer_block)`:
    only plain fields are read (max_completion_length, max_steps, beta, generation_kwargs)."""
    check_needs(reward.needs(), reward.name)
    if sampling.metric not in SAMPLING_METRICS:
        raise ValueError(f"sampling.metric: unknown metric {sampling.metric!r}; valid: {', '.join(SAMPLING_METRICS)}")
    if sampling.max_gen_batches < 1:
        raise ValueError("sampling.max_gen_batches: must be >= 1 (generation batches per step)")
    if sampling.on_exhausted not in ON_EXHAUSTED:
        raise ValueError(f"sampling.on_exhausted: unknown value {sampling.on_exhausted!r}; valid: "
                         f"{', '.join(ON_EXHAUSTED)}")
    if sampling.monitor_prompts < 1:
        raise ValueError("sampling.monitor_prompts: must be >= 1")
    schedule = build_budget(budget.schedule, budget.params, reward, args.max_completion_length, args.max_steps)
    reward.check_cap(schedule.smallest_cap(args.max_steps))
    if budget.prompt and reward.budget_prompt(0) is None:
        raise ValueError(f"budget.prompt=true: the {reward.name!r} reward has no budget prompt "
                         f"(curriculum and thinkprune do); set budget.prompt=false")
    gen = args.generation_kwargs or {}
    if budget.schedule != "constant" and ({"max_tokens", "max_new_tokens"} & set(gen)):
        raise ValueError("trainer.generation_kwargs sets max_tokens/max_new_tokens, which would override the "
                         f"budget schedule {budget.schedule!r}; remove it (the budget sets the cap)")
    if budget.schedule == "constant" and reward.budget_kind is not None:
        log.warning("the %s reward has a budget but budget.schedule=constant generates with "
                    "trainer.max_completion_length; set budget.schedule=reward to generate with it", reward.name)
    # last: the estimators' module imports torch, and every check above can fail without it
    from conciser.trainers.advantages import build_estimator

    build_estimator(advantage.estimator, advantage.params).setup(reward, args)
