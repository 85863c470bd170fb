"""All three benches in one run: `make bench` (full) and `make bench-quick` (--quick).

    python -m bench.run_all [--quick] [--only grading,overhead,pareto]

Order: grading (needs only the grader), then the toy-scan base (built and cached if missing: about 5
minutes on 2 cores; --quick: its 1200-step build, about 2.7), then trainer overhead and the toy Pareto, both
on the toy-scan task and that base
(the toy-chain task stays runnable bench by bench: `--task toy-chain` on either). A bench that fails is
reported and the others still run; the exit status is non-zero if any failed. Results: bench/results/*.md|json|png
(`*.quick.*` for --quick); a summary of this run: bench/results/run_all[.quick].json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import traceback

from bench._common import RESULTS, log, machine, stamp

BENCHES = ("grading", "overhead", "pareto")
TASK = "toy-scan"   # the toy task (and base) that overhead and the Pareto train on


def _grading(quick: bool) -> dict:
    from bench import grading

    r = grading.run(quick)
    rl = r["rl_shaped"]
    return {"ratio": r["ratio"], "verdicts_differ": r["verdicts"]["disagree"], "timeouts": r["batch"]["timeouts"],
            "hangs": r["batch"]["hangs"] + r["serial"]["hangs"],
            "rl_shaped": {"ratio": rl["ratio"], "verdicts_differ": rl["verdicts"]["disagree"],
                          "hangs": rl["batch"]["hangs"] + rl["serial"]["hangs"]}}


def _overhead(quick: bool) -> dict:
    from bench import trainer_overhead

    r = trainer_overhead.run(quick, task=TASK)
    return {name: round(c["ratio"], 3) for name, c in r["configs"].items()}


def _pareto(quick: bool) -> dict:
    from bench import toy_pareto

    # the toy-scan task: the one whose Pareto tells methods apart (issue 12); toy-chain's stays runnable
    # with `python -m bench.toy_pareto`
    r = toy_pareto.run(quick, task=TASK, curves_too=not quick)
    return {k: {"accuracy": v.get("accuracy"), "mean_tokens": v.get("mean_tokens"),
                "tokens_over_minimal": v.get("tokens_over_minimal"), "errors": v.get("errors")}
            for k, v in r["methods"].items()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.run_all", description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="smaller inputs (about 10 minutes on 2 cores)")
    ap.add_argument("--only", default=",".join(BENCHES), help=f"comma-separated subset of {', '.join(BENCHES)}")
    args = ap.parse_args(argv)
    only = args.only.split(",")
    bad = sorted(set(only) - set(BENCHES))
    if bad:
        ap.error(f"unknown bench(es) {bad}; choose from {', '.join(BENCHES)}")

    t0 = time.perf_counter()
    summary: dict = {"date": stamp(), "mode": "quick" if args.quick else "full", "machine": machine(), "benches": {}}
    failed = []
    steps = [("grading", _grading)]
    if {"overhead", "pareto"} & set(only):
        steps.append(("toy base", None))
    steps += [("overhead", _overhead), ("pareto", _pareto)]
    for name, fn in steps:
        if name != "toy base" and name not in only:
            continue
        t = time.perf_counter()
        log(f"=== {name}")
        try:
            if fn is None:  # timed on its own: a fresh machine builds it once (then it is cached)
                from conciser.trainers.toy_sft import base_config, ensure_toy_base

                out = {"path": str(ensure_toy_base(base_config(TASK, quick=args.quick)))}
            else:
                out = fn(args.quick)
            summary["benches"][name] = {"seconds": round(time.perf_counter() - t, 1), **out}
        except Exception as exc:
            failed.append(name)
            summary["benches"][name] = {"seconds": round(time.perf_counter() - t, 1),
                                        "error": f"{type(exc).__name__}: {exc}"}
            log(f"{name} FAILED:\n{traceback.format_exc()}")
        log(f"=== {name}: {time.perf_counter() - t:.0f} s")
    summary["seconds"] = round(time.perf_counter() - t0, 1)
    path = RESULTS / ("run_all.quick.json" if args.quick else "run_all.json")
    RESULTS.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(summary, indent=2) + "\n")
    log(f"all done in {summary['seconds'] / 60:.1f} min; summary {path}" + (f"; FAILED: {failed}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
