"""Time to concise (issue 12, P6): how many steps and how much wall time a method needs to first reach
<= 1.3x the minimal length at an accuracy at least the base's.

    python -m bench.time_to_concise --task toy-scan --methods thinkprune,openr1_len --seeds 0,1,2
    python -m bench.time_to_concise --quick        # two methods, 10 steps, 60 problems, seed 0

Each (method, seed) trains exactly as in the toy Pareto (bench/toy_pareto.py: its recipe, the task's
overrides, the same steps; the peer `openr1_len` with stock TRL), but keeps a checkpoint every `--every`
steps; then every checkpoint is evaluated on the Pareto's held-out problems (same sampling and cap).
A checkpoint's wall time is when its folder was written, counted from the start of the run (model
loading included). "never" means no checkpoint within the steps met both bars. Results:
bench/results/time_to_concise[_<task>].{md,json}.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

from bench._common import RESULTS, log, machine, md_table, stamp, write_results
from bench.toy_pareto import PEER, eval_template, train_method

TARGET = 1.3          # tokens / minimal to reach
QUICK = {"methods": ["laser", PEER], "steps": 10, "every": 5, "problems": 60, "seeds": [0]}
FULL = {"steps": 40, "every": 5, "problems": 250, "seeds": [0, 1, 2]}


def _evaluate(model: str, task: str, problems: int, method: str, out: Path) -> dict:
    from conciser.eval.run import evaluate

    s = evaluate(model, benchmark=task, n=1, limit=problems, out_dir=out, seed=0, template=eval_template(method),
                 print_table=False, progress=False)
    return {"accuracy": s["accuracy"], "mean_tokens": s["mean_tokens"], "tokens_over_minimal": s["tokens_over_minimal"]}


def run_one(method: str, seed: int, *, task: str, steps: int, every: int, problems: int, base_model: str,
            base_accuracy: float, work: Path) -> dict:
    """Train `method` with a checkpoint every `every` steps, evaluate each; the first that is concise enough."""
    out = work / f"{method}-seed{seed}"
    t0 = time.time()
    train_method(method, task, base_model, out / "model", steps, seed,
                 [f"trainer.save_steps={every}", f"trainer.save_total_limit={steps // every + 1}"])
    points = []
    for ckpt in sorted((out / "model").glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1])):
        step = int(ckpt.name.split("-")[1])
        wall = (ckpt / "trainer_state.json").stat().st_mtime - t0
        r = _evaluate(str(ckpt), task, problems, method, out / "eval" / ckpt.name)
        points.append({"step": step, "wall_s": round(wall, 1), **r})
        log(f"{method} seed {seed} step {step} ({wall:.0f} s): acc {r['accuracy']:.3f}, {r['tokens_over_minimal']:.2f}x minimal")
    return {"method": method, "seed": seed, "points": points, "reached": first_concise(points, base_accuracy)}


def first_concise(points: list[dict], base_accuracy: float) -> dict | None:
    """The first checkpoint (by step) at <= TARGET x minimal with accuracy >= the base's, else None."""
    return next((p for p in sorted(points, key=lambda p: p["step"])
                 if p["tokens_over_minimal"] <= TARGET and p["accuracy"] >= base_accuracy), None)


def to_markdown(r: dict) -> str:
    rows = []
    for m, runs in r["methods"].items():
        reached = [x["reached"] for x in runs]
        hits = [x for x in reached if x]
        steps = ", ".join(str(x["step"]) if x else "never" for x in reached)
        walls = ", ".join(f"{x['wall_s']:.0f} s" if x else "never" for x in reached)
        med = f"{statistics.median(x['wall_s'] for x in hits):.0f} s" if len(hits) == len(reached) else "-"
        rows.append([m, f"{len(hits)}/{len(reached)}", steps, walls, med])
    cfg = r["config"]
    return "\n".join([
        f"# Time to concise ({cfg['task']})", "",
        f"{r['date']} · {r['machine']['cpus']} CPUs · wall {r['wall_s'] / 60:.0f} min", "",
        f"First checkpoint (every {cfg['every']} of {cfg['steps']} steps) at ≤ {TARGET}× the minimal length with accuracy ≥ "
        f"the base's ({r['base']['accuracy']:.3f} on {cfg['problems']} held-out problems), per training seed "
        f"{', '.join(map(str, cfg['seeds']))}. One run at a time.", "",
        md_table(["method", "reached", "step (per seed)", "wall time (per seed)", "median wall time"], rows), "",
        "Every checkpoint: " + "; ".join(
            f"{m} seed {x['seed']}: " + " ".join(f"{p['step']}:{p['accuracy']:.2f}/{p['tokens_over_minimal']:.2f}×" for p in x["points"])
            for m, runs in r["methods"].items() for x in runs),
    ])


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(prog="python -m bench.time_to_concise", description=__doc__.split("\n")[0])
    ap.add_argument("--task", default="toy-scan")
    ap.add_argument("--methods", default="laser," + PEER, help="comma-separated (default: laser and the open-r1 peer)")
    ap.add_argument("--seeds", default=None, help="comma-separated training seeds (default 0,1,2)")
    ap.add_argument("--quick", action="store_true", help=f"{QUICK}")
    ap.add_argument("--out", default=None, help="results folder (default bench/results)")
    ap.add_argument("--keep", default=None, help="keep models and evaluations here (default: a temporary folder)")
    args = ap.parse_args(argv)
    import tempfile

    import torch

    from conciser.trainers.toy_sft import base_config, ensure_toy_base

    torch.set_num_threads(min(2, os.cpu_count() or 1))
    cfg = dict(QUICK if args.quick else FULL, task=args.task)
    if not args.quick:
        cfg["methods"] = args.methods.split(",")
    if args.seeds:
        cfg["seeds"] = [int(s) for s in args.seeds.split(",")]
    t0, mach = time.perf_counter(), machine()
    base_model = str(ensure_toy_base(base_config(args.task)))
    with tempfile.TemporaryDirectory(prefix="bench-ttc-") as tmp:
        work = Path(args.keep or tmp)
        base = _evaluate(base_model, args.task, cfg["problems"], "base", work / "base")
        log(f"base: acc {base['accuracy']:.3f}, {base['tokens_over_minimal']:.2f}x minimal")
        methods = {m: [run_one(m, s, task=args.task, steps=cfg["steps"], every=cfg["every"], problems=cfg["problems"],
                               base_model=base_model, base_accuracy=base["accuracy"], work=work) for s in cfg["seeds"]]
                   for m in cfg["methods"]}
    r = {"bench": "time_to_concise", "date": stamp(), "config": cfg, "machine": mach, "base": base,
         "wall_s": round(time.perf_counter() - t0, 1), "target_tokens_over_minimal": TARGET, "methods": methods}
    name = "time_to_concise" if args.task in ("toy", "toy-chain") else f"time_to_concise_{args.task.replace('-', '_')}"
    path = write_results(name, args.quick, r, to_markdown(r), Path(args.out) if args.out else RESULTS)
    print(to_markdown(r))
    log(f"wrote {path}")
    return r


if __name__ == "__main__":
    main()
