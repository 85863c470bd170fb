"""`conciser toy-base`: build (or locate) the cached toy overthinking base and print its path.

It lives in the CLI layer because `--check` measures the base with the eval harness, and trainers
never import eval (tests/test_layering.py).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from conciser import toy
from conciser.errors import UserError
from conciser.trainers.toy_sft import ToyBaseConfig, ensure_toy_base


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--force", action="store_true", help="rebuild even if cached")
    parser.add_argument("--check", action="store_true",
                        help="then measure it: accuracy and length per level at temperature 1.0, budget 6x minimal")
    parser.add_argument("--n", type=int, default=400, help="problems per level for --check (default 400)")


def run(args: argparse.Namespace) -> int:
    path = ensure_toy_base(ToyBaseConfig(), force=args.force)
    print(path)
    if args.check:
        if args.n < 1:
            raise UserError(f"--n must be >= 1 (problems per level), got {args.n}")
        table = check_toy_base(path, n=args.n, out_dir=path.with_name(path.name + "-check"))
        print(f"{'level':>5} {'accuracy':>9} {'tokens':>7} {'minimal':>8} {'x minimal':>10} {'truncated':>10}")
        for level, r in table.items():
            print(f"{level:>5} {r['accuracy']:>9.3f} {r['mean_tokens']:>7.1f} {r['minimal_tokens']:>8} "
                  f"{r['tokens_over_minimal']:>10.2f} {r['truncated_frac']:>10.3f}")
        weakest = min(table, key=lambda lv: table[lv]["accuracy"])
        print(f"weakest level: {weakest} ({table[weakest]['accuracy']:.3f}; the bar is 0.90 at every level)")
    return 0


def check_toy_base(model: Path, n: int = 400, out_dir: Path | None = None, progress: bool = True) -> dict[int, dict]:
    """Per level: accuracy and mean tokens of `n` fresh problems sampled at temperature 1.0 (top-p 1) with a
    budget of 6x the level's minimal length. Returns {level: {accuracy, mean_tokens, minimal_tokens,
    tokens_over_minimal, truncated_frac}}; the runs (summary.json + samples.jsonl) go to `out_dir`."""
    import tempfile

    from conciser.eval.run import evaluate

    out_dir = Path(out_dir or tempfile.mkdtemp(prefix="toy-base-check-"))
    table = {}
    for level, k in toy.LEVELS.items():
        problems = toy.make_problems(n, seed=toy.EVAL_SEED + level, levels=(level,))
        data = out_dir / f"level{level}.jsonl"
        data.parent.mkdir(parents=True, exist_ok=True)
        data.write_text("".join(json.dumps({"id": p.id, "problem": p.prompt, "answer": p.answer}) + "\n"
                                for p in problems))
        minimal = toy.minimal_tokens(k)
        s = evaluate(str(model), str(data), out_dir=out_dir, template="plain", grader="toy", temperature=1.0,
                     top_p=1.0, max_new_tokens=6 * minimal, seed=level, progress=progress, print_table=False,
                     overwrite=True)
        table[level] = {"accuracy": s["accuracy"], "mean_tokens": s["mean_tokens"], "minimal_tokens": minimal,
                        "tokens_over_minimal": s["mean_tokens"] / minimal, "truncated_frac": s["truncation_rate"]}
    return table
