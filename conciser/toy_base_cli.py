"""`conciser toy-base`: build (or locate) the cached toy overthinking base and print its path.

    conciser toy-base [--task toy|toy-chain|toy-scan] [--force]
    conciser toy-base --task toy-scan --check [--n 400] [--model PATH] [--budgets 8,16,...]

`--check` measures a toy model (the base, or `--model`) against the toy's acceptance properties
(DESIGN §4; issue 12) and writes them to `<base>-check/properties.json`:
  P1  needed length found only by thinking: per level, the CV of the minimal length, and how well a
      ridge regression on the prompt's surface features predicts it (held-out MSE / the level mean's;
      ~1.0 means no better than the level mean);
  P2  budget forcing: accuracy when the thinking is cut at B tokens and the answer forced with
      "</think>\\boxed{" (one sampling run at the eval's defaults, then one batched greedy generate of
      the forced answers), per level, and how many distinct values each level's curve takes in (0.2, 0.9);
  P3  the shortcut: how often the hint is right (generator), and the model's accuracy when made to
      take it ("hmm, use the hint." forced);
  P4  overthinking: accuracy and length per level at an ample budget (6x the level's longest minimal
      length, T=1.0, the eval harness), and the share that overruns the default cap;
  P5  minimal length known: the minimal trace's token count equals `minimal_tokens` for every problem.
It lives in the CLI layer because `--check` uses the eval harness, and trainers never import eval
(tests/test_layering.py).
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from conciser import toy
from conciser.errors import UserError
from conciser.trainers.toy_sft import base_config, ensure_toy_base

# Thinking budgets of the P2 sweep: fine where concise models stop, coarse up to the base's lengths.
DEFAULT_BUDGETS = (8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 128, 160, 224, 320)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--task", default="toy", choices=toy.TASKS, help="which toy task's base (default toy)")
    parser.add_argument("--force", action="store_true", help="rebuild even if cached")
    parser.add_argument("--check", action="store_true",
                        help="then measure it: accuracy and length per level at temperature 1.0, budget 6x minimal; "
                             "for toy-scan also properties 1-5 of the toy (budget forcing, shortcut, length spread)")
    parser.add_argument("--n", type=int, default=400, help="problems per level for --check (default 400)")
    parser.add_argument("--model", default=None, help="--check this model folder instead of the base (e.g. a trained one)")
    parser.add_argument("--budgets", default=None,
                        help=f"comma-separated thinking budgets for the budget-forcing curve (default {','.join(map(str, DEFAULT_BUDGETS))})")


def run(args: argparse.Namespace) -> int:
    if args.model and not args.check:
        raise UserError("--model says which model to --check; add --check (or drop --model to build the base)")
    if args.check and args.n < 1:
        raise UserError(f"--n must be >= 1 (problems per level), got {args.n}")
    budgets = _parse_budgets(args.budgets)
    if args.model:
        model = Path(args.model)
        if not (model / "config.json").is_file():
            raise UserError(f"--model {model}: not a saved model folder (no config.json)")
    else:
        model = ensure_toy_base(base_config(args.task), force=args.force)
    print(model)
    if args.check:
        out_dir = model.with_name(model.name + "-check")
        table = check_toy_base(model, n=args.n, out_dir=out_dir, task=args.task)
        print(f"{'level':>5} {'accuracy':>9} {'tokens':>7} {'minimal':>8} {'x minimal':>10} {'truncated':>10} {'over cap':>9}")
        for level, r in table.items():
            print(f"{level:>5} {r['accuracy']:>9.3f} {r['mean_tokens']:>7.1f} {r['minimal_tokens']:>8.1f} "
                  f"{r['tokens_over_minimal']:>10.2f} {r['truncated_frac']:>10.3f} {r['over_cap_frac']:>9.3f}")
        weakest = min(table, key=lambda lv: table[lv]["accuracy"])
        print(f"weakest level: {weakest} ({table[weakest]['accuracy']:.3f}; the bar is 0.90 at every level)")
        if args.task == "toy-scan":
            from conciser.toy_scan_check import print_properties, properties

            props = properties(model, n=args.n, out_dir=out_dir, budgets=budgets, ample=table)
            (out_dir / "properties.json").write_text(json.dumps(props, indent=1))
            print_properties(props)
            print(f"all figures: {out_dir / 'properties.json'}")
    return 0


def _parse_budgets(text: str | None) -> tuple[int, ...]:
    if text is None:
        return DEFAULT_BUDGETS
    try:
        budgets = tuple(sorted({int(b) for b in text.split(",") if b.strip()}))
    except ValueError:
        raise UserError(f"--budgets: expected comma-separated integers, got {text!r}") from None
    if not budgets or budgets[0] < 1:
        raise UserError(f"--budgets: give positive token counts, e.g. 8,16,32; got {text!r}")
    return budgets


def check_toy_base(model: Path, n: int = 400, out_dir: Path | None = None, progress: bool = True,
                   task: str = "toy") -> dict[int, dict]:
    """Per level: accuracy and mean tokens of `n` fresh problems sampled at temperature 1.0 (top-p 1) with a
    budget of 6x the level's longest minimal length. Returns {level: {accuracy, mean_tokens, minimal_tokens
    (the level's mean), tokens_over_minimal, truncated_frac, over_cap_frac (samples longer than the task's
    default cap: truncated there)}}; the runs (summary.json + samples.jsonl) go to `out_dir`."""
    import tempfile

    from conciser.eval.run import evaluate

    t = toy.task(task)
    out_dir = Path(out_dir or tempfile.mkdtemp(prefix="toy-base-check-"))
    table = {}
    for level in t.LEVELS:
        problems = t.make_problems(n, seed=t.EVAL_SEED + level, levels=(level,))
        data = out_dir / f"level{level}.jsonl"
        data.parent.mkdir(parents=True, exist_ok=True)
        data.write_text("".join(json.dumps({"id": p.id, "problem": p.prompt, "answer": p.answer, "level": p.level,
                                            "minimal_tokens": p.minimal_tokens}) + "\n" for p in problems))
        minimal = statistics.fmean(p.minimal_tokens for p in problems)
        s = evaluate(str(model), str(data), out_dir=out_dir, template="plain", grader="toy", temperature=1.0,
                     top_p=1.0, max_new_tokens=6 * max(p.minimal_tokens for p in problems), seed=level,
                     progress=progress, print_table=False, overwrite=True)
        lengths = [json.loads(line)["tokens"] for line in (out_dir / f"level{level}" / "samples.jsonl").open()]
        table[level] = {"accuracy": s["accuracy"], "mean_tokens": s["mean_tokens"], "minimal_tokens": minimal,
                        "tokens_over_minimal": s["mean_tokens"] / minimal, "truncated_frac": s["truncation_rate"],
                        "over_cap_frac": sum(x > t.DEFAULT_MAX_COMPLETION for x in lengths) / len(lengths)}
    return table
