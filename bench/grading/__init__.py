"""Grading throughput: conciser's batch grader against open-r1's serial math-verify loop.

    python -m bench.grading             # both corpora, ~3,000 + ~5,100 completions (part of `make bench`)
    python -m bench.grading --quick     # ~400 + ~770 completions
    python -m bench.grading --profile DIR   # also write the cProfile files summarised in the report

Two corpora (`bench/grading/corpus.py`): the bench corpus (reference, equivalent, perturbed and
missing answers per problem plus adversarial ones, every (gold, completion) pair distinct) and the
RL-shaped corpus (a group of 16 completions per problem whose answers repeat as a GRPO step's do).

The baseline is how open-r1's accuracy reward calls math-verify: in the trainer's main thread,
one item after another, ``parse(gold)``, ``parse(answer)``, ``verify(gold, answer)``, bounded only
by math-verify's own signal timeouts (5 s per parse and per comparison). Both sides get identical
inputs: the same answer extraction (`conciser.rewards.grading` — last box after thinking) and the
same math-verify extraction configs, so a verdict difference is a grader difference and not a
parsing convention. (open-r1 also parses whole completions with its own LaTeX config; that
convention is not what is measured here.) An item on which the serial loop hit a math-verify
timeout counts as incorrect there, as a batch-grader timeout does.

Fairness, because the ratio is the point:
  * the batch grader's verdict cache is cleared before each corpus's timed pass; on the bench
    corpus no pair repeats, so its cache and de-duplication gain nothing there; a second,
    warm-cache pass is reported separately;
  * its worker pool is started (and its start-up timed, reported apart) before timing, as a trainer
    starts it once; the serial loop's imports are likewise not timed;
  * the batch grader's shortcuts (the gold string, plain numbers, hopeless answers) are its
    features; the report counts the items each settled and what they cost the serial loop;
  * the items are graded in training-sized blocks, serial and batch alternating which goes first,
    so load from other users of a shared machine falls on both.

A hang: a serial item that has not returned ``--hang-after`` seconds after it started (math-verify's
own worst case is a few of its 5 s timeouts in a row) is killed, counted, charged those seconds
and graded incorrect; a batch call that does not return within its worst case (items x deadline /
workers + a minute) is counted and ends the bench.

Results: ``bench/results/grading[.quick].{json,md}``: the bench corpus's figures at the top level
(``ratio``, ``verdicts``, ...), the RL-shaped corpus's under ``rl_shaped`` (its own ``ratio``,
``verdicts``, ...), and a cProfile summary of what is left under ``profile``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
from pathlib import Path

from bench._common import log, machine, write_results
from bench.grading.corpus import Item, build_items, build_rl_items
from bench.grading.report import profile_summary, summarize, to_markdown
from bench.grading.runner import DEADLINE, HANG_AFTER, _OwnSessions, profile_judge, run_corpus


def run(quick: bool = False, *, workers: int | None = None, block_size: int = 256, deadline: float = DEADLINE,
        hang_after: float = HANG_AFTER, items: list[Item] | None = None, rl_items: list[Item] | None = None,
        rl: bool | None = None, profile: str | Path | None = None, summarize_profile: bool = True,
        out_dir: Path | None = None, write: bool = True, own_sessions: bool = False, note: str | None = None) -> dict:
    """Run the bench; returns (and by default writes) the results dict.

    `items` / `rl_items` replace the corpora (tests); the RL-shaped corpus runs unless `rl` is False
    (default: it runs when `items` is not given, or when `rl_items` is).

    `own_sessions` (a diagnostic, off by default): every grading process (the serial one, each pool
    worker) starts in its own session. With the kernel's autogroup scheduling on, CPU time is shared
    per session, so a pool inside one session gets no more CPU than one process when other sessions
    are busy; this shows what the pool does when each process gets its own share.

    `profile`: a folder for cProfile files: batch_parent.prof (the grade_batch calls on the bench
    corpus) and worker_judge.prof (the workers' math-verify work, replayed in this process).
    `summarize_profile`: put the top functions of both in the results (on by default).
    """
    import cProfile

    from conciser.rewards import grading

    workers = workers or grading._default_workers()
    if rl is None:
        rl = rl_items is not None or items is None
    items = items if items is not None else build_items(quick)
    mach = machine()
    log(f"grading bench: {len(items)} items in blocks of {block_size}, {workers} workers, load {mach['load_avg_1m']}")
    prof = cProfile.Profile() if (profile or summarize_profile) else None
    cfg = dict(workers=workers, block_size=block_size, deadline=deadline, hang_after=hang_after, quick=quick)

    with contextlib.ExitStack() as stack:
        if own_sessions:
            stack.enter_context(_OwnSessions())
            grading.shutdown()  # workers already started belong to this session
        try:
            raw = run_corpus(items, workers=workers, block_size=block_size, deadline=deadline, hang_after=hang_after,
                             own_sessions=own_sessions, prof=prof)
            result = summarize(items, raw, corpus="bench", **cfg)
            if rl:
                rl_items = rl_items if rl_items is not None else build_rl_items(quick)
                log(f"RL-shaped corpus: {len(rl_items)} items")
                rl_raw = run_corpus(rl_items, workers=workers, block_size=block_size, deadline=deadline,
                                    hang_after=hang_after, own_sessions=own_sessions)
                result["rl_shaped"] = summarize(rl_items, rl_raw, corpus="rl_shaped", **cfg)
        finally:
            grading.shutdown()

    if prof is not None:
        if profile:
            Path(profile).mkdir(parents=True, exist_ok=True)
        judge = profile_judge(items, raw["batch_res"], Path(profile) / "worker_judge.prof" if profile else None)
        if profile:
            prof.dump_stats(str(Path(profile) / "batch_parent.prof"))
            log(f"cProfile files written to {profile}")
        result["profile"] = {"batch_parent": profile_summary(prof), "worker_judge": profile_summary(judge)}
    result["config"]["own_sessions"] = own_sessions
    result["machine"] = {**mach, "load_avg_1m_after": round(os.getloadavg()[0], 2)}
    if note:
        result["note"] = note
    if write:
        name = "grading-own-sessions" if own_sessions else "grading"
        path = write_results(name, quick, result, to_markdown(result), out_dir)
        log(f"wrote {path}")
    return result


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(prog="python -m bench.grading", description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="~1,200 items instead of ~8,000")
    ap.add_argument("--workers", type=int, default=None, help="batch grader workers (default: the CPUs available)")
    ap.add_argument("--block-size", type=int, default=256, help="items per grade_batch call (a training batch)")
    ap.add_argument("--no-rl", action="store_true", help="the bench corpus only (skip the RL-shaped corpus)")
    ap.add_argument("--profile", default=None, metavar="DIR", help="also write the cProfile files here")
    ap.add_argument("--out", default=None, help="results folder (default bench/results)")
    ap.add_argument("--note", default=None, help="a line for the report (e.g. the machine's load from other users)")
    ap.add_argument("--own-sessions", action="store_true",
                    help="diagnostic: each grading process in its own session (its own autogroup CPU share)")
    args = ap.parse_args(argv)
    r = run(args.quick, workers=args.workers, block_size=args.block_size, rl=not args.no_rl, profile=args.profile,
            out_dir=Path(args.out) if args.out else None, own_sessions=args.own_sessions, note=args.note)
    print(to_markdown(r))
    return r


__all__ = ["Item", "build_items", "build_rl_items", "main", "run"]
