"""`conciser demo` (and `make demo`): the whole method on a laptop, in minutes.

    1. build (or reuse) the toy "overthinking" base model     (conciser toy-base)
    2. GRPO with a length reward from a toy recipe            (conciser train toy/laser)
    3. evaluate base and trained on the same held-out problems (conciser eval --benchmark toy)
    4. print a table, save a Pareto plot and runs/demo/report.json

Outputs go to `--out` (default runs/demo), which is cleared first, except the cached base.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="runs/demo", help="output folder (cleared first)")
    parser.add_argument("--recipe", default="toy/laser", help="toy recipe to train (see `conciser recipes toy`)")
    parser.add_argument("--problems", type=int, default=250, help="held-out toy problems to evaluate")
    parser.add_argument("--n", type=int, default=1, help="samples per problem")
    parser.add_argument("overrides", nargs="*", help="recipe overrides, e.g. trainer.max_steps=20")


def _row(name: str, s: dict) -> dict:
    return {"accuracy": s["accuracy"], "mean_tokens": s["mean_tokens"],
            "mean_minimal_tokens": s["mean_minimal_tokens"], "tokens_over_minimal": s["tokens_over_minimal"],
            "truncation_rate": s["truncation_rate"], "by_level": s.get("by_level"), "name": name}


def print_table(rows: list[dict]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="toy benchmark: base vs trained (same held-out problems)")
    for col in ("model", "accuracy", "mean tokens", "tokens / minimal", "truncated"):
        table.add_column(col, justify="right")
    for r in rows:
        table.add_row(r["name"], f"{r['accuracy']:.3f}", f"{r['mean_tokens']:.1f}",
                      f"{r['tokens_over_minimal']:.2f}x", f"{r['truncation_rate']:.3f}")
    Console().print(table)
    levels = sorted((rows[0].get("by_level") or {}), key=int)
    if levels:
        lv = Table(title="per difficulty level: accuracy / mean tokens (minimal)")
        lv.add_column("model")
        for level in levels:
            lv.add_column(f"L{level}", justify="right")
        for r in rows:
            cells = [f"{r['by_level'][lvl]['accuracy']:.2f} / {r['by_level'][lvl]['mean_tokens']:.0f}"
                     f" ({r['by_level'][lvl].get('mean_minimal_tokens', 0):.0f})" for lvl in levels]
            lv.add_row(r["name"], *cells)
        Console().print(lv)


def run(args: argparse.Namespace) -> int:
    from conciser.eval.report import pareto_plot
    from conciser.eval.run import evaluate
    from conciser.reference_cli import ensure_toy_reference
    from conciser.trainers.toy_sft import ensure_toy_base
    from conciser.trainers.train import prepare, train

    t0 = time.time()
    out = Path(args.out)
    trained_dir = out / "trained"
    overrides = [f"trainer.output_dir={trained_dir}", *args.overrides]
    ensure_toy_reference(args.recipe, overrides)  # o1_pruner / adaptthink / a_dlp: the toy base's statistics
    prepare(args.recipe, overrides)  # fail on a bad recipe before minutes of work
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)

    print("[1/4] toy base model (built once, then cached)")
    base = ensure_toy_base()
    print(f"      {base}")
    print(f"[2/4] GRPO: conciser train {args.recipe} {' '.join(overrides)}")
    train(args.recipe, overrides)
    summaries = {}
    for i, (name, model) in enumerate((("base", base), ("trained", trained_dir))):
        print(f"[3/4] eval {name} on {args.problems} held-out toy problems" if i == 0 else f"      eval {name}")
        summaries[name] = evaluate(str(model), benchmark="toy", n=args.n, limit=args.problems,
                                   out_dir=out / f"eval-{name}", print_table=False)

    rows = [_row(name, s) for name, s in summaries.items()]
    print("[4/4] results")
    print_table(rows)
    plot = pareto_plot({"toy": [{"run": r["name"], **r} for r in rows]}, out / "pareto.png")
    base_row, trained_row = rows
    report = {
        "base": {k: base_row[k] for k in ("accuracy", "mean_tokens", "mean_minimal_tokens", "tokens_over_minimal")},
        "trained": {k: trained_row[k] for k in ("accuracy", "mean_tokens", "mean_minimal_tokens",
                                                "tokens_over_minimal")},
        "token_reduction": 1 - trained_row["mean_tokens"] / base_row["mean_tokens"],
        "accuracy_change": trained_row["accuracy"] - base_row["accuracy"],
        "n_problems": summaries["base"]["n_problems"],
        "samples_per_problem": args.n,
        "recipe": args.recipe,
        "overrides": args.overrides,
        "wall_seconds": round(time.time() - t0, 1),
    }
    (out / "report.json").write_text(json.dumps(report, indent=2))
    change = report["token_reduction"]
    print(f"{abs(change):.1%} {'fewer' if change >= 0 else 'more'} tokens, accuracy {report['accuracy_change']:+.3f}; "
          f"wall time {report['wall_seconds']:.0f} s")
    print(f"outputs: {out}/report.json, {plot}, trained model {trained_dir}, eval samples {out}/eval-*/toy/")
    return 0
