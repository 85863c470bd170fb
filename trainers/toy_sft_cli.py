"""`conciser toy-base`: build (or locate) the cached toy overthinking base and print its path."""

from __future__ import annotations

import argparse

from conciser.trainers.toy_sft import ToyBaseConfig, check_toy_base, ensure_toy_base


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
            raise SystemExit(f"--n must be >= 1 (problems per level), got {args.n}")
        table = check_toy_base(path, n=args.n, out_dir=path.with_name(path.name + "-check"))
        print(f"{'level':>5} {'accuracy':>9} {'tokens':>7} {'minimal':>8} {'x minimal':>10} {'truncated':>10}")
        for level, r in table.items():
            print(f"{level:>5} {r['accuracy']:>9.3f} {r['mean_tokens']:>7.1f} {r['minimal_tokens']:>8} "
                  f"{r['tokens_over_minimal']:>10.2f} {r['truncated_frac']:>10.3f}")
        weakest = min(table, key=lambda lv: table[lv]["accuracy"])
        print(f"weakest level: {weakest} ({table[weakest]['accuracy']:.3f}; the bar is 0.90 at every level)")
    return 0
