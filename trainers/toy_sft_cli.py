"""`conciser toy-base`: build (or locate) the cached toy overthinking base and print its path."""

from __future__ import annotations

import argparse

from conciser.trainers.toy_sft import ToyBaseConfig, ensure_toy_base


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--force", action="store_true", help="rebuild even if cached")


def run(args: argparse.Namespace) -> int:
    print(ensure_toy_base(ToyBaseConfig(), force=args.force))
    return 0
