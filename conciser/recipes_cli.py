"""`conciser recipes`: list the bundled recipes with the launch line each one opens with."""

from __future__ import annotations

import argparse

from conciser.config import list_recipes, resolve_recipe_path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("prefix", nargs="?", default="", help="only recipes under this folder, e.g. toy")


def run(args: argparse.Namespace) -> int:
    for name in list_recipes():
        if name.startswith(args.prefix):
            first = resolve_recipe_path(name).read_text().splitlines()[:1]
            launch = first[0].lstrip("# ").strip() if first and first[0].startswith("#") else ""
            print(f"{name:40s} {launch}")
    return 0
