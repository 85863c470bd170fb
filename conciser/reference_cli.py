"""`conciser reference-stats RECIPE [key=value ...]`: the starting model's reference statistics for a recipe
whose reward scores against them (o1_pruner, adaptthink, a_dlp; `rewards/reference.py`).

    conciser reference-stats toy/o1_pruner                        # writes rewards.params.reference_stats
    conciser reference-stats my_recipe.yaml --n 16 --backend vllm
    conciser reference-stats my_recipe.yaml data.n_train=512 --out runs/ref

It writes the recipe's training problems -- ids, answers and the user message exactly as the trainer
renders it -- to `REF/<name>.jsonl` and samples the recipe's model on them with the eval harness, at the
recipe's generation cap, temperature and top-p, with the recipe's grader:

    conciser eval --model MODEL --benchmark REF/<name>.jsonl --n 16 --out REF --template plain \\
        --grader GRADER --max-new-tokens CAP --temperature T --top-p P [--system-prompt S]

which writes `REF/<name>/samples.jsonl` (+ run.json naming the model). The target is the recipe's
`rewards.params.reference_stats` (a `.../<name>/samples.jsonl` path, or a folder REF: name "train"),
or `--out`. Re-running resumes, as `conciser eval` does.

The toy needs no extra command: `conciser train` builds a toy recipe's statistics when they are
missing or were written for another toy base (`ensure_toy_reference`, `TOY_SAMPLES` samples per
problem, about 1.5 min of CPU time); for any other model `conciser train` stops before loading it and
names this command.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from pathlib import Path

from conciser import toy
from conciser.errors import UserError

log = logging.getLogger(__name__)

DEFAULT_SAMPLES = 16   # K of AdaptThink (16) and O1-Pruner's code default (--K 16)
TOY_SAMPLES = 8        # the toy's automatic build: 512 problems x 8, ~85 s of CPU time (one core)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("recipe", help="recipe file, or bundled name such as toy/o1_pruner")
    parser.add_argument("overrides", nargs="*", help="the same dotted key=value overrides as for conciser train")
    parser.add_argument("--n", type=int, default=DEFAULT_SAMPLES, help=f"samples per problem (default {DEFAULT_SAMPLES})")
    parser.add_argument("--out", default=None, help="where to write (default: the recipe's rewards.params.reference_stats)")
    parser.add_argument("--backend", default="transformers", choices=["transformers", "vllm"])
    parser.add_argument("--batch-size", type=int, default=64, help="transformers backend: sequences per generate call")
    parser.add_argument("--overwrite", action="store_true", help="discard samples of a different run at the target")
    parser.add_argument("--no-progress", action="store_true")


def run(args: argparse.Namespace) -> int:
    path = build_reference_stats(args.recipe, args.overrides, n=args.n, out=args.out, backend=args.backend,
                                 batch_size=args.batch_size, overwrite=args.overwrite, progress=not args.no_progress)
    print(path)
    return 0


def stats_target(path: str | Path) -> tuple[Path, str]:
    """(eval output folder, benchmark name) for a reference_stats path: `.../<name>/samples.jsonl` or a folder."""
    p = Path(path).expanduser()
    if p.suffix == ".jsonl":
        return p.parent.parent, p.parent.name
    return p, "train"


def _user_and_system(rows: list[dict]) -> tuple[list[str], str | None]:
    """Each row's user message and the one system prompt they share (the eval harness takes one)."""
    users, systems = [], set()
    for i, row in enumerate(rows):
        messages = row["prompt"]
        roles = [m.get("role") for m in messages]
        if roles not in (["user"], ["system", "user"]):
            raise UserError(f"training row {i} ({row['problem_id']!r}) has messages {roles}; reference statistics "
                            f"need one user message (after an optional system message) per prompt")
        systems.add(messages[0]["content"] if roles[0] == "system" else None)
        users.append(messages[-1]["content"])
    if len(systems) > 1:
        raise UserError("the training prompts have different system messages; the eval harness that writes "
                        "reference statistics takes one system prompt")
    return users, systems.pop()


def build_reference_stats(recipe_name: str, overrides: list[str] | None = None, *, n: int = DEFAULT_SAMPLES,
                          out: str | Path | None = None, backend: str = "transformers", batch_size: int = 64,
                          overwrite: bool = False, progress: bool = True) -> Path:
    """Sample the recipe's model `n` times on its training problems (see the module docstring); returns
    the samples.jsonl written."""
    from conciser.config import load_recipe
    from conciser.eval.run import evaluate
    from conciser.rewards import build_reward
    from conciser.trainers.data import attach_target_lengths, load_rows
    from conciser.trainers.train import resolve_model_path

    overrides = list(overrides or [])
    if n < 1:
        raise UserError(f"--n must be >= 1 (samples per problem), got {n}")
    recipe = load_recipe(recipe_name, overrides)
    reward = build_reward(recipe.rewards.method, **recipe.rewards.params)
    target = out if out is not None else reward.reference_stats()
    if not target:
        raise UserError(f"{recipe_name}: rewards.params.reference_stats is not set (the {reward.name!r} reward "
                        f"{'uses none' if target is None else 'needs it'}); pass --out to say where to write")
    args = recipe.grpo_config()
    rows = attach_target_lengths(load_rows(recipe.data), recipe.data, reward, args.max_completion_length)
    users, system = _user_and_system(rows)
    out_dir, name = stats_target(target)
    out_dir.mkdir(parents=True, exist_ok=True)
    data = out_dir / f"{name}.jsonl"
    data.write_text("".join(json.dumps({"id": str(r["problem_id"]), "problem": u, "answer": str(r["answer"])}) + "\n"
                            for r, u in zip(rows, users)))
    model = resolve_model_path(recipe.model.name_or_path)
    log.info("reference statistics: %s samples %d x %d training problems -> %s", model, n, len(rows), out_dir / name)
    evaluate(model, str(data), n=n, out_dir=out_dir, backend=backend, template="plain", grader=recipe.data.grader,
             system_prompt=system, max_new_tokens=args.max_completion_length, temperature=args.temperature,
             top_p=args.top_p, seed=args.seed, batch_size=batch_size, overwrite=overwrite, progress=progress,
             print_table=False)
    return out_dir / name / "samples.jsonl"


def ensure_toy_reference(recipe_name: str, overrides: list[str] | None = None, n: int = TOY_SAMPLES) -> Path | None:
    """Before `conciser train`: when the recipe's reward scores against reference statistics and its model is a
    toy base, build them if they are missing, stale (another toy base) or miss training problems. Anything
    else is left to the trainer, which checks the statistics and names `conciser reference-stats` if
    they do not fit. Returns the statistics built, else None."""
    from conciser.config import load_recipe
    from conciser.rewards import build_reward
    from conciser.rewards.reference import load_reference_stats
    from conciser.trainers.data import load_rows
    from conciser.trainers.train import model_identity

    overrides = list(overrides or [])
    recipe = load_recipe(recipe_name, overrides)
    reward = build_reward(recipe.rewards.method, **recipe.rewards.params)
    path = reward.reference_stats()
    if not path:
        return None
    model = model_identity(recipe.model.name_or_path)
    # a toy base: a task's cached one, or any folder `conciser toy-base` built (the quick benches' shorter build)
    toy_base = model in {model_identity(task) for task in toy.TASKS} or (Path(model) / "toy_base.json").is_file()
    if not toy_base or int(os.environ.get("WORLD_SIZE", "1")) > 1:
        return None
    try:
        load_reference_stats(path).check(model=model, problem_ids=[r["problem_id"] for r in load_rows(recipe.data)],
                                         fix="")
        return None
    except UserError as exc:
        log.info("building the toy reference statistics (%s)", exc)
    return build_reference_stats(recipe_name, overrides, n=n, overwrite=True)
