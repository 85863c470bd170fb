"""`conciser train RECIPE [key=value ...]`: GRPO with a length reward, from a recipe.

    conciser train toy/laser                          # bundled recipe, CPU, minutes
    conciser train recipes/toy/laser.yaml trainer.max_steps=20 rewards.params.target_length=64
    conciser train toy/laser --resume                 # continue from the last checkpoint
    conciser train r1-distill-qwen-1.5b/dler --accelerate zero2   # under accelerate launch

The work itself is `conciser.trainers.train.train`; this module is its command line. A toy recipe whose
reward scores against reference statistics (o1_pruner, adaptthink, a_dlp) gets them built first
(`conciser.reference_cli.ensure_toy_reference`).
"""

from __future__ import annotations

import argparse

from conciser.launch import add_launch_arguments, maybe_relaunch


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("recipe", help="recipe file, or bundled name such as toy/laser (see `conciser recipes`)")
    parser.add_argument("overrides", nargs="*", help="dotted key=value overrides, e.g. trainer.max_steps=10")
    parser.add_argument("--resume", nargs="?", const="last", default=None, metavar="CHECKPOINT",
                        help="resume from CHECKPOINT, or from the last checkpoint in the output dir")
    parser.add_argument("--wandb", action="store_true", help="log to Weights & Biases (off by default)")
    add_launch_arguments(parser)  # --accelerate NAME|PATH and friends


def run(args: argparse.Namespace) -> int:
    from conciser.reference_cli import ensure_toy_reference

    ensure_toy_reference(args.recipe, args.overrides)  # a toy recipe's reference statistics, once, before any launch
    rc = maybe_relaunch(args)  # with --accelerate: re-run this command under `accelerate launch`
    if rc is not None:
        return rc
    from conciser.trainers.train import train

    train(args.recipe, args.overrides, resume=args.resume, wandb=args.wandb)
    return 0
