"""GRPO with a length reward, from a recipe: what `conciser train` runs (`conciser/train_cli.py`).

    from conciser.trainers.train import train
    train("toy/laser", ["trainer.max_steps=20"])      # returns the output dir with the final model

Order of work: read and validate the recipe, the data and the reward (errors here cost nothing),
write the resolved recipe to the output dir, then load the model and train.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from conciser import trainer_fields
from conciser.errors import MissingInput

log = logging.getLogger(__name__)

# Defaults applied under the recipe's trainer block (the recipe wins). Checkpoints follow TRL's defaults
# (every save_steps, 500) unless the recipe says otherwise: a run must be resumable.
TRAINER_DEFAULTS = {"report_to": "none", "logging_steps": 1}


def resolve_model_path(name_or_path: str) -> str:
    """A toy task name (`toy`, `toy-chain`, `toy-scan`) means that task's cached base, built if missing."""
    from conciser import toy

    if name_or_path in toy.TASKS:
        from conciser.trainers.toy_sft import base_config, ensure_toy_base

        return str(ensure_toy_base(base_config(name_or_path)))
    return name_or_path


def _has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def prepare(recipe_name: str, overrides: list[str], wandb: bool = False, resume: str | None = None):
    """Validate everything that can be validated without a model, cheapest first: the recipe (no TRL
    import), the data rows, the reward, how the blocks fit together, the gold answers, `--resume`; then
    TRL's own config. Returns (recipe, rows, reward, grpo_args); `resume_checkpoint` says where --resume
    starts."""
    from conciser.config import RecipeError, check_trainer_block, load_recipe
    from conciser.rewards import build_reward
    from conciser.trainers.checks import check_training_blocks
    from conciser.trainers.data import attach_target_lengths, check_golds, load_rows

    recipe = load_recipe(recipe_name, overrides)
    trainer_block = {**TRAINER_DEFAULTS, **recipe.trainer}
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not _has_cuda():
        # several CPU processes (torchrun): accelerate forms the gloo group only with use_cpu
        trainer_block.setdefault("use_cpu", True)
    if wandb:
        trainer_block["report_to"] = "wandb"
    recipe.trainer = check_trainer_block(trainer_block)
    settings = trainer_fields.resolved(recipe.trainer)  # the trainer block over TRL's defaults, no TRL import
    resume_checkpoint(resume, Path(settings.output_dir or "trainer_output"))
    rows = load_rows(recipe.data)
    reward = build_reward(recipe.rewards.method, **recipe.rewards.params)
    rows = attach_target_lengths(rows, recipe.data, reward, settings.max_completion_length)
    try:
        check_training_blocks(reward, recipe.advantage, recipe.sampling, recipe.budget, settings)
    except ValueError as exc:
        raise RecipeError(str(exc)) from None
    rows = check_golds(rows, recipe.data)
    bind_reference(reward, recipe, rows, reference_command(recipe_name, overrides))
    args = recipe.grpo_config()  # imports TRL: only now, and TRL's own checks run
    return recipe, rows, reward, args


def resume_checkpoint(resume: str | None, output_dir: Path) -> str | None:
    """The checkpoint `--resume` means: the last complete one in the output dir (`last`), or the folder
    given, which must be complete. Decided before any model loads."""
    from conciser.trainers.checkpoints import incomplete_reason, last_complete_checkpoint

    if resume is None:
        earlier = last_complete_checkpoint(output_dir, notice=False)
        if earlier is not None:
            log.warning("%s already holds %s from an earlier run; this run starts from step 0 and its checkpoints "
                        "replace those. Pass --resume to continue that run instead.", output_dir, earlier.name)
        return None
    if resume == "last":
        found = last_complete_checkpoint(output_dir)
        if found is None:
            raise MissingInput(f"--resume: no complete checkpoint-* folder in {output_dir}; train first (checkpoints "
                               f"are written every trainer.save_steps) or pass a checkpoint folder")
        return str(found)
    reason = incomplete_reason(resume)
    if reason is not None:
        last = last_complete_checkpoint(Path(resume).parent, notice=False)
        hint = f"; the last complete one there is {last}" if last else ""
        raise MissingInput(f"--resume {resume}: not a complete checkpoint ({reason}){hint}")
    return str(resume)


def model_identity(name_or_path: str) -> str:
    """The model as the eval harness records it in run.json (a resolved local path, or the hub id);
    a toy task's name (`toy`, `toy-chain`, `toy-scan`) is its cached base's folder, built or not."""
    from conciser import toy
    from conciser.trainers.toy_sft import base_config, toy_base_dir

    if name_or_path in toy.TASKS:
        return str(toy_base_dir(base_config(name_or_path)).resolve())
    p = Path(name_or_path).expanduser()
    return str(p.resolve()) if p.exists() else name_or_path


def reference_command(recipe_name: str, overrides: list[str]) -> str:
    """The command that writes a recipe's reference statistics (`conciser/reference_cli.py`)."""
    import shlex

    return shlex.join(["conciser", "reference-stats", str(recipe_name), *overrides])


def bind_reference(reward, recipe, rows: list[dict], command: str) -> None:
    """Load the reference statistics the reward declares (`LengthReward.reference_stats`), check them
    against the recipe's model and training problems, and give the training problems' share to the
    reward; a UserError names the file and the command that writes it. No-op for other rewards."""
    from conciser.config import RecipeError
    from conciser.rewards.reference import load_reference_stats

    path = reward.reference_stats()
    if path is None:
        return
    fix = f"Write them with `{command}` (the eval harness samples the recipe's model on its training problems)."
    if not path.strip():
        raise RecipeError(f"rewards.params.reference_stats: the {reward.name!r} reward scores against the starting "
                          f"model's reference statistics; set it to their path. {fix}")
    try:
        stats = load_reference_stats(path)
    except MissingInput as exc:
        raise MissingInput(f"rewards.params.reference_stats: {exc}. {fix}") from None
    ids = [str(r["problem_id"]) for r in rows]
    stats.check(model=model_identity(recipe.model.name_or_path), problem_ids=ids, fix=fix)
    reward.use_reference(stats.subset(ids))
    log.info("%s: reference statistics of %d training problems from %s", reward.name, len(set(ids)), stats.source)


def train(recipe_name: str, overrides: list[str] | None = None, resume: str | None = None,
          wandb: bool = False) -> Path:
    """Run a recipe end to end; returns the output dir holding the final model."""
    recipe, rows, reward, args = prepare(recipe_name, overrides or [], wandb, resume)
    out = Path(args.output_dir)
    checkpoint = resume_checkpoint(resume, out)  # checked in prepare; the same answer, with TRL's output_dir

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from conciser.config import write_resolved
    from conciser.trainers.data import to_dataset
    from conciser.trainers.grpo import ConciseGRPOTrainer

    write_resolved(recipe, out)
    log.info("recipe %s: %d prompts, reward %s, output %s%s", recipe.source, len(rows), reward.name, out,
             f", resuming from {checkpoint}" if checkpoint else "")
    model_path = resolve_model_path(recipe.model.name_or_path)
    dtype = "auto" if recipe.model.dtype == "auto" else getattr(torch, recipe.model.dtype)
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=dtype)
    trainer = ConciseGRPOTrainer(
        model=model, processing_class=tokenizer, args=args, train_dataset=to_dataset(rows),
        length_reward=reward, grader=recipe.data.grader, allow_fresh_state=recipe.rewards.allow_fresh_state,
        advantage=recipe.advantage, sampling=recipe.sampling, budget=recipe.budget,
    )
    trainer.train(resume_from_checkpoint=checkpoint)
    trainer.save_model(str(out))
    trainer.save_state()  # trainer_state.json with the log history, next to the model
    tokenizer.save_pretrained(str(out))
    log.info("trained model saved to %s", out)
    return out
