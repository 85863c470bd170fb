"""Grading throughput: conciser's batch grader against open-r1's serial math-verify loop.

    python -m bench.grading             # ~2,900 completions (full: part of `make bench`)
    python -m bench.grading --quick     # ~400 completions
    python -m bench.grading --profile bench/results/grading.prof   # cProfile of the batch side

The items are completions built from the bundled benchmark text (`eval/data/*.jsonl`): for each
sampled problem, its reference solution as thinking with the final answer boxed after it, an
equivalent rewrite of the gold (``\\dfrac``, ``x = 5``, ``0.25`` as ``\\frac{1}{4}`` ...), a
perturbed answer (one number changed), a missing answer (no box, thinking cut off, empty box, box
only inside thinking), and, for a few problems, an adversarial answer (power towers such as
``9^{9^{9^{9}}}``, ``(10^{6})!``, ``(1+x)^{10000}``, a 3,000-term sum) that sympy cannot finish.

The baseline is how open-r1's accuracy reward calls math-verify: in the trainer's main thread,
one item after another, ``parse(gold)``, ``parse(answer)``, ``verify(gold, answer)``, bounded only
by math-verify's own signal timeouts (5 s per parse and per comparison). Both sides get identical
inputs: the same answer extraction (`conciser.rewards.grading` — last box after thinking) and the
same math-verify extraction configs, so a verdict difference is a grader difference and not a
parsing convention. (open-r1 also parses whole completions with its own LaTeX config; that
convention is not what is measured here.) An item on which the serial loop hit a math-verify
timeout counts as incorrect there, as a batch-grader timeout does.

Fairness, because the ratio is the point:
  * the batch grader's verdict cache is cleared before the timed pass, and every (gold, answer)
    pair is distinct, so neither its cache nor its in-batch de-duplication gains anything; a
    second, warm-cache pass is reported separately;
  * its worker pool is started (and its start-up timed, reported apart) before timing, as a trainer
    starts it once; the serial loop's imports are likewise not timed;
  * the batch grader answers an answer equal to the gold string without sympy (one of its
    features); the table says how many items that is and what they cost the serial loop;
  * the items are graded in training-sized blocks, serial and batch alternating which goes first,
    so load from other users of a shared machine falls on both.

A hang: a serial item that has not returned ``--hang-after`` seconds after it started (math-verify's
own worst case is a few of its 5 s timeouts in a row) is killed, counted, charged those seconds
and graded incorrect; a batch call that does not return within its worst case (items x deadline /
workers + a minute) is counted and ends the bench.
"""

from __future__ import annotations

import argparse
import logging
import os
import random
import re
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from fractions import Fraction
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Callable

from bench._common import log, machine, md_table, stamp, write_results

DEADLINE = 5.0        # the batch grader's per-item deadline = math-verify's default per-operation timeout
HANG_AFTER = 60.0     # a serial item still running after this long is a hang

# Problems sampled per bundled benchmark (full mode); each yields 4 items (+ adversarial ones).
FULL_SAMPLE = {"math500": 250, "minerva": 100, "olympiadbench": 150, "gsm8k": 150,
               "aime24": 30, "aime25": 30, "amc23": 40}
QUICK_SAMPLE = {"math500": 40, "minerva": 15, "olympiadbench": 20, "gsm8k": 20,
                "aime24": 5, "aime25": 0, "amc23": 0}

# Answers no grader can finish on: each is paired with several golds (so every pair is distinct).
ADVERSARIAL = [
    "10^{10^{10}}",
    "9^{9^{9^{9}}}",
    "2^{2^{40}}",
    "(10^{6})!",
    "(1+x)^{10000}",
    "\\sqrt{2}^{10^{10}}",
    "10^{10^{10}}-10^{10^{10}}+1",
    " + ".join(["1"] * 3000),
]
FULL_ADVERSARIAL_PER_EXPR, QUICK_ADVERSARIAL_PER_EXPR = 3, 1


@dataclass(frozen=True)
class Item:
    gold: str
    completion: str
    category: str      # reference | equivalent | perturbed | missing | adversarial
    source: str        # benchmark/problem id


# ---------------------------------------------------------------- items from real benchmark text

_NUM = re.compile(r"\d+")


def _solution_text(row: dict) -> str | None:
    sol = row.get("solution")
    if not isinstance(sol, str) or sol.strip() in ("", "None"):
        return None
    if "####" in sol:  # gsm8k: drop the "#### 18" line and the <<calculator>> annotations
        sol = re.sub(r"<<[^>]*>>", "", sol.rsplit("####", 1)[0]).strip()
    return sol


def _equivalent(gold: str, rng: random.Random) -> str:
    """An answer math-verify should accept for `gold`, written differently."""
    g = gold.strip()
    if re.fullmatch(r"-?\d+", g):
        return rng.choice([f"{g}.0", f"\\frac{{{2 * int(g)}}}{{2}}", f"x = {g}"])
    if re.fullmatch(r"-?\d+\.\d+", g):
        f = Fraction(g)
        return f"\\frac{{{f.numerator}}}{{{f.denominator}}}" if f.denominator != 1 else str(f.numerator)
    if "\\dfrac" in g:
        return g.replace("\\dfrac", "\\frac")
    if "\\frac" in g:
        return g.replace("\\frac", "\\dfrac")
    if "\\left" in g:
        return g.replace("\\left", "").replace("\\right", "")
    return "{" + g + "}"


def _perturbed(gold: str, rng: random.Random) -> str:
    """`gold` with one number changed (or "+ 1" appended when it has none): usually wrong."""
    nums = list(_NUM.finditer(gold))
    if not nums:
        return gold + " + 1"
    m = rng.choice(nums)
    return gold[:m.start()] + str(int(m.group()) + rng.randint(1, 9)) + gold[m.end():]


def _missing(gold: str, thinking: str, kind: int) -> str:
    if kind == 0:   # an answer, but never boxed
        return f"<think>\n{thinking}\n</think>\n\nThe answer is {gold}."
    if kind == 1:   # thinking cut off by the generation cap (its boxes do not count)
        return f"<think>\n{thinking[: max(1, len(thinking) // 2)]}"
    if kind == 2:   # an empty box
        return f"<think>\n{thinking}\n</think>\n\nThe answer is $\\boxed{{}}$."
    # the answer only inside thinking
    return f"<think>\n{thinking}\nSo it is \\boxed{{{gold}}}.\n</think>\n\nI am not sure."


def build_items(quick: bool = False, seed: int = 0) -> list[Item]:
    """The bench's items, deterministic for a seed, grouped by problem (as a GRPO batch is)."""
    from conciser.eval.benchmarks import BUNDLED, DATA_DIR, read_jsonl
    from conciser.rewards.grading import extract_answer

    rng = random.Random(seed)
    sample = QUICK_SAMPLE if quick else FULL_SAMPLE
    groups: list[list[Item]] = []
    for name, n in sample.items():
        rows = read_jsonl(DATA_DIR / BUNDLED[name].file)
        for row in rng.sample(rows, min(n, len(rows))):
            gold, src = str(row["answer"]).strip(), f"{name}/{row['id']}"
            sol = _solution_text(row)
            thinking = sol or f"Let me work through the problem step by step.\n{row['problem']}"
            final = (extract_answer(sol) if sol else None) or gold
            kind = len(groups) % 4
            groups.append([
                Item(gold, f"<think>\n{thinking}\n</think>\n\nThe final answer is $\\boxed{{{final}}}$.",
                     "reference", src),
                Item(gold, f"<think>\n{thinking}\n</think>\n\nSo $\\boxed{{{_equivalent(gold, rng)}}}$.",
                     "equivalent", src),
                Item(gold, f"<think>\n{thinking}\n</think>\n\nThe answer is $\\boxed{{{_perturbed(gold, rng)}}}$.",
                     "perturbed", src),
                Item(gold, _missing(gold, thinking, kind), "missing", src),
            ])
    # A few adversarial answers, each against several problems' golds, spread over the batch.
    per_expr = QUICK_ADVERSARIAL_PER_EXPR if quick else FULL_ADVERSARIAL_PER_EXPR
    hosts = rng.sample(range(len(groups)), len(ADVERSARIAL) * per_expr)
    for j, host in enumerate(hosts):
        expr, g = ADVERSARIAL[j % len(ADVERSARIAL)], groups[host][0]
        groups[host].append(Item(g.gold, f"<think>\nLet me compute ({g.source}).\n</think>\n\n$\\boxed{{{expr}}}$",
                                 "adversarial", g.source))
    items = [it for grp in groups for it in grp]
    # Every (gold, completion) distinct: the batch grader's de-duplication must gain nothing.
    assert len({(it.gold, it.completion) for it in items}) == len(items)
    return items


# ---------------------------------------------------------------- the serial baseline (open-r1's way)

def _serial_entry(fd: int) -> None:
    _serial_child(Connection(fd))


def _serial_child(conn: Connection) -> None:
    """Grades items sent over `conn` one by one in this process's main thread, open-r1 style."""
    from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse, verify

    from conciser.rewards.grading import _extract, _latex_input, _normalize

    timeouts = [0]

    class _Count(logging.Handler):  # math-verify reports its timeouts only as log warnings
        def emit(self, record):
            if record.getMessage().startswith("Timeout"):
                timeouts[0] += 1

    mv_log = logging.getLogger("math_verify")
    mv_log.addHandler(_Count())
    mv_log.setLevel(logging.WARNING)
    mv_log.propagate = False
    configs = [LatexExtractionConfig(), ExprExtractionConfig()]

    def one(gold: str, completion: str) -> bool:
        answer, _ = _extract(completion)
        if answer is None:
            return False
        gold_parsed = parse(_latex_input(_normalize(gold)), configs)
        if not gold_parsed:
            return False
        answer_parsed = parse(_latex_input(_normalize(answer)), configs)
        if not answer_parsed:
            return False
        return bool(verify(gold_parsed, answer_parsed))

    one("1", "\\boxed{1}")  # imports and first-use work, as the batch workers' warm-up does
    conn.send(("ready",))
    try:
        while (block := conn.recv()) is not None:
            for index, gold, completion in block:
                timeouts[0] = 0
                t0 = time.perf_counter()
                correct = one(gold, completion)
                conn.send((index, correct, timeouts[0], time.perf_counter() - t0))
    except (EOFError, OSError):
        return  # the bench is gone


class SerialRunner:
    """A child process running `_serial_child`, restarted after a hang (its start-up is not timed)."""

    def __init__(self, hang_after: float = HANG_AFTER, own_session: bool = False):
        self.hang_after = hang_after
        self.own_session = own_session
        self.proc = None
        self.conn = None
        self.startups: list[float] = []

    def _start(self) -> None:
        # A fresh interpreter (as the grader's workers are), not multiprocessing's "spawn", which
        # re-runs the caller's main script and so fails in scripts without a __main__ guard.
        t0 = time.perf_counter()
        ours, theirs = socket.socketpair()
        fd = theirs.detach()
        boot = (f"import sys; sys.path[:] = {sys.path!r}; "
                f"from bench.grading import _serial_entry; _serial_entry({fd})")
        try:
            self.proc = subprocess.Popen([sys.executable, "-c", boot], pass_fds=(fd,), stdin=subprocess.DEVNULL,
                                         start_new_session=self.own_session)
        finally:
            os.close(fd)
        self.conn = Connection(ours.detach())
        if not self.conn.poll(180) or self.conn.recv() != ("ready",):
            raise RuntimeError("the serial math-verify process did not start within 180 s")
        self.startups.append(time.perf_counter() - t0)

    def close(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.conn.close()
            self.proc = None

    def run(self, block: list[tuple[int, str, str]]) -> tuple[dict[int, dict], float]:
        """Results {index: {correct, timeouts, seconds, hang}} and the seconds spent (hangs included)."""
        if self.proc is None:
            self._start()
        results: dict[int, dict] = {}
        todo = list(block)
        spent = 0.0
        while todo:
            t0 = time.perf_counter()
            self.conn.send(todo)
            done = 0
            while done < len(todo):
                if not self.conn.poll(self.hang_after):
                    break
                index, correct, n_timeouts, seconds = self.conn.recv()
                results[index] = {"correct": correct, "timeouts": n_timeouts, "seconds": seconds, "hang": False}
                done += 1
            spent += time.perf_counter() - t0
            if done == len(todo):
                break
            # The item after the last answered one has run for hang_after seconds: a hang.
            hung = todo[done][0]
            results[hung] = {"correct": False, "timeouts": 0, "seconds": self.hang_after, "hang": True}
            log(f"serial loop: item {hung} still running after {self.hang_after:.0f} s; killed (a hang)")
            self.close()
            self._start()
            todo = todo[done + 1:]
        return results, spent


# ---------------------------------------------------------------- CPU accounting

def _schedstat(pid: int) -> tuple[float, float] | None:
    """(seconds on a CPU, seconds runnable but waiting for one) of a process's main thread (Linux)."""
    try:
        with open(f"/proc/{pid}/schedstat") as f:
            run_ns, wait_ns, _ = f.read().split()
        return int(run_ns) / 1e9, int(wait_ns) / 1e9
    except (OSError, ValueError):
        return None


class CpuMeter:
    """Sums on-CPU and run-queue-wait seconds of a changing set of processes while it runs.

    The grader replaces a worker it kills, so the set is polled; a killed worker's last 0.2 s can be
    missed. On a shared machine the run-queue wait is the time other users' work took from ours.
    """

    def __init__(self, pids: Callable[[], list[int]], every: float = 0.2):
        self.pids, self.every = pids, every
        self.first: dict[int, tuple[float, float]] = {}
        self.last: dict[int, tuple[float, float]] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _poll(self) -> None:
        for pid in self.pids():
            if (st := _schedstat(pid)) is not None:
                self.first.setdefault(pid, st)
                self.last[pid] = st

    def _loop(self) -> None:
        while not self._stop.wait(self.every):
            self._poll()

    def __enter__(self) -> "CpuMeter":
        self._poll()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self._poll()

    @property
    def run_s(self) -> float:
        return sum(self.last[p][0] - self.first[p][0] for p in self.first)

    @property
    def wait_s(self) -> float:
        return sum(self.last[p][1] - self.first[p][1] for p in self.first)


# ---------------------------------------------------------------- the batch grader

class BatchHang(RuntimeError):
    pass


def _worker_pids() -> list[int]:
    from conciser.rewards import grading

    pool = grading._POOL  # the bench reaches into the private pool to account its CPU time
    return [w.proc.pid for w in pool.workers] if pool is not None else []


def _start_pool(workers: int) -> float:
    """A fresh pool of `workers`, every one started; returns the start-up seconds."""
    from conciser.rewards import grading

    grading.shutdown()
    grading.clear_cache()
    t0 = time.perf_counter()
    k = 0
    # The pool reads its workers' "ready" messages only while grading, so grade trivial, distinct
    # pairs until all have reported.
    while True:
        grading.grade_batch(golds=[f"{k}"], completions=[f"\\boxed{{{k + 1}}}"], workers=workers)
        if all(w.ready for w in grading._POOL.workers):
            break
        k += 1
        time.sleep(0.05)
    seconds = time.perf_counter() - t0
    grading.clear_cache()
    return seconds


def _batch_call(golds: list[str], completions: list[str], workers: int, deadline: float,
                prof=None) -> tuple[list, float]:
    """grade_batch under a watchdog: (grades, seconds), or BatchHang if it overruns its worst case."""
    from conciser.rewards.grading import grade_batch

    out: dict = {}

    def target():
        if prof is not None:
            prof.enable()
        try:
            out["grades"] = grade_batch(golds=golds, completions=completions, timeout=deadline, workers=workers)
        except BaseException as exc:  # re-raised in the caller
            out["error"] = exc
        finally:
            if prof is not None:
                prof.disable()

    limit = deadline * len(golds) / workers + 60.0
    t0 = time.perf_counter()
    th = threading.Thread(target=target, daemon=True)
    th.start()
    th.join(limit)
    seconds = time.perf_counter() - t0
    if th.is_alive():
        raise BatchHang(f"grade_batch on {len(golds)} items did not return within {limit:.0f} s")
    if "error" in out:
        raise out["error"]
    return out["grades"], seconds


def _profile_judge(items: list[Item], path: Path) -> None:
    """cProfile of the workers' job (`_judge` on every distinct pair), run in this process."""
    import cProfile

    from conciser.rewards.grading import _extract, _judge, _normalize, _parse

    pairs = []
    for it in items:
        answer, _ = _extract(it.completion)
        if answer is not None and it.category != "adversarial":  # those would run forever here
            pairs.append((_normalize(it.gold), _normalize(answer)))
    logging.getLogger("math_verify").setLevel(logging.ERROR)
    _judge("1", "1")
    _parse.cache_clear()
    prof = cProfile.Profile()
    prof.enable()
    for gold, answer in pairs:
        if gold != answer:
            _judge(gold, answer)
    prof.disable()
    prof.dump_stats(str(path))


class _OwnSessions:
    """Diagnostic: start the grader's workers each in its own session (Linux autogroup = its own
    CPU share), as the serial process is under `own_session`. Patches the grader module's
    `subprocess` name only, for the duration of the bench."""

    def __enter__(self):
        import types
        from functools import partial

        from conciser.rewards import grading

        self.saved = grading.subprocess
        grading.subprocess = types.SimpleNamespace(
            Popen=partial(subprocess.Popen, start_new_session=True), DEVNULL=subprocess.DEVNULL)
        return self

    def __exit__(self, *exc):
        from conciser.rewards import grading

        grading.subprocess = self.saved


# ---------------------------------------------------------------- the bench

def run(quick: bool = False, *, workers: int | None = None, block_size: int = 256, deadline: float = DEADLINE,
        hang_after: float = HANG_AFTER, items: list[Item] | None = None, profile: str | Path | None = None,
        out_dir: Path | None = None, write: bool = True, own_sessions: bool = False) -> dict:
    """Run the bench; returns (and by default writes) the results dict.

    `own_sessions` (a diagnostic, off by default): every grading process (the serial one, each pool
    worker) starts in its own session. With the kernel's autogroup scheduling on, CPU time is shared
    per session, so a pool inside one session gets no more CPU than one process when other sessions
    are busy; this shows what the pool does when each process gets its own share.

    `profile`: a folder for cProfile files: batch_parent.prof (the grade_batch calls) and
    worker_judge.prof (the workers' math-verify work, replayed in this process).
    """
    from conciser.rewards import grading

    workers = workers or grading._default_workers()
    items = items if items is not None else build_items(quick)
    n = len(items)
    blocks = [list(range(i, min(i + block_size, n))) for i in range(0, n, block_size)]
    mach = machine()
    log(f"grading bench: {n} items in {len(blocks)} blocks of {block_size}, {workers} workers, "
        f"load {mach['load_avg_1m']}")
    prof = None
    if profile:
        import cProfile

        Path(profile).mkdir(parents=True, exist_ok=True)
        prof = cProfile.Profile()

    if own_sessions:
        import contextlib

        stack = contextlib.ExitStack()
        stack.enter_context(_OwnSessions())
        grading.shutdown()  # workers already started belong to this session
    serial = SerialRunner(hang_after, own_session=own_sessions)
    serial_res: dict[int, dict] = {}
    batch_res: dict[int, object] = {}
    rows = []
    startup = _start_pool(workers)  # also clears the verdict cache
    batch_hang = None
    try:
        for b, idx in enumerate(blocks):
            block = [(i, items[i].gold, items[i].completion) for i in idx]
            order = ("serial", "batch") if b % 2 == 0 else ("batch", "serial")
            row: dict = {"block": b, "items": len(idx), "first": order[0]}
            for side in order:
                if side == "serial":
                    if serial.proc is None:
                        serial._start()
                    with CpuMeter(lambda: [serial.proc.pid] if serial.proc else []) as cpu:
                        res, row["serial"] = serial.run(block)
                    serial_res.update(res)
                else:
                    with CpuMeter(_worker_pids) as cpu:
                        grades, row["batch"] = _batch_call([items[i].gold for i in idx],
                                                           [items[i].completion for i in idx], workers, deadline, prof)
                    batch_res.update(zip(idx, grades))
                row[f"{side}_cpu"], row[f"{side}_wait"] = cpu.run_s, cpu.wait_s
            row["ratio"] = row["serial"] / row["batch"]
            rows.append(row)
            log(f"block {b + 1}/{len(blocks)}: serial {row['serial']:.1f} s, batch {row['batch']:.1f} s, "
                f"ratio {row['ratio']:.2f}")
    except BatchHang as exc:
        batch_hang = str(exc)
        log(f"HANG: {exc}")
    finally:
        serial.close()

    # Warm cache: every item graded once more, its verdict now cached (the cold pass filled the
    # cache: it is cleared once before that pass, and no pair repeats). Timeouts are never cached,
    # so the items that timed out would only cost their deadline again: they are left out.
    warm_seconds, warm_items = None, 0
    if batch_hang is None:
        warm_seconds = 0.0
        for idx in blocks:
            idx = [i for i in idx if not batch_res[i].timed_out]
            warm_items += len(idx)
            warm_seconds += _batch_call([items[i].gold for i in idx], [items[i].completion for i in idx],
                                        workers, deadline)[1]
    grading.shutdown()
    if own_sessions:
        stack.close()
    if prof is not None:
        prof.dump_stats(str(Path(profile) / "batch_parent.prof"))
        _profile_judge(items, Path(profile) / "worker_judge.prof")
        log(f"cProfile files written to {profile}")

    result = summarize(items, serial_res, batch_res, rows, startup=startup, warm=(warm_items, warm_seconds),
                       workers=workers, block_size=block_size, deadline=deadline, hang_after=hang_after,
                       serial_startups=serial.startups, batch_hang=batch_hang, quick=quick)
    result["config"]["own_sessions"] = own_sessions
    result["machine"] = {**mach, "load_avg_1m_after": round(os.getloadavg()[0], 2)}
    if write:
        name = "grading-own-sessions" if own_sessions else "grading"
        path = write_results(name, quick, result, to_markdown(result), out_dir)
        log(f"wrote {path}")
    return result


def _is_gold_string(it: Item) -> bool:
    from conciser.rewards.grading import _extract, _normalize

    answer, _ = _extract(it.completion)
    return answer is not None and bool(_normalize(it.gold)) and _normalize(answer) == _normalize(it.gold)


def summarize(items: list[Item], serial_res: dict[int, dict], batch_res: dict[int, object], rows: list[dict],
              *, startup: float, warm: tuple[int, float | None], workers: int, block_size: int, deadline: float,
              hang_after: float, serial_startups: list[float], batch_hang: str | None, quick: bool) -> dict:
    """The results dict: totals, per-category counts, verdict comparison, per-block timings."""
    from conciser.rewards.grading import extract_answer

    graded = sorted(set(serial_res) & set(batch_res))
    cats: dict[str, dict] = {}
    mismatches = []
    for i in graded:
        it, s, g = items[i], serial_res[i], batch_res[i]
        # A math-verify timeout makes the serial verdict "incorrect", as a deadline does the batch one.
        s_correct = s["correct"] and s["timeouts"] == 0 and not s["hang"]
        c = cats.setdefault(it.category, {"items": 0, "serial_correct": 0, "batch_correct": 0, "serial_timeouts": 0,
                                          "batch_timeouts": 0, "serial_hangs": 0, "serial_seconds": 0.0,
                                          "answer_is_gold_string": 0, "verdicts_differ": 0})
        c["items"] += 1
        c["serial_correct"] += s_correct
        c["batch_correct"] += g.correct
        c["serial_timeouts"] += s["timeouts"] > 0
        c["batch_timeouts"] += g.timed_out
        c["serial_hangs"] += s["hang"]
        c["serial_seconds"] += s["seconds"]
        c["answer_is_gold_string"] += _is_gold_string(it)
        if s_correct != g.correct:
            c["verdicts_differ"] += 1
            mismatches.append({"index": i, "category": it.category, "source": it.source, "gold": it.gold,
                               "answer": extract_answer(it.completion), "serial_correct": s_correct,
                               "serial_timeouts": s["timeouts"], "serial_hang": s["hang"],
                               "batch_correct": g.correct, "batch_error": g.error, "batch_timed_out": g.timed_out})
    for c in cats.values():
        c["serial_seconds"] = round(c["serial_seconds"], 3)

    def total(key: str) -> float:
        return sum(r.get(key, 0.0) for r in rows)

    n = sum(r["items"] for r in rows)
    serial_s, batch_s = total("serial"), total("batch")
    # What each side would take with the CPUs to itself: its wall time minus the time its processes
    # sat runnable waiting for a CPU other users held (for the batch side, averaged over workers).
    serial_free = serial_s - total("serial_wait")
    batch_free = batch_s - total("batch_wait") / workers
    rnd = lambda x, k=3: round(x, k) if x is not None else None  # noqa: E731
    return {
        "bench": "grading", "date": stamp(), "mode": "quick" if quick else "full",
        "config": {"workers": workers, "block_size": block_size, "deadline_s": deadline, "hang_after_s": hang_after,
                   "serial_timeouts": "math-verify defaults: parse 5 s, verify 5 s per comparison"},
        "items": {"total": len(items), "graded": len(graded),
                  "answer_is_gold_string": sum(c["answer_is_gold_string"] for c in cats.values())},
        "by_category": cats,
        "serial": {"seconds": rnd(serial_s), "items_per_s": rnd(n / serial_s, 2) if serial_s else None,
                   "cpu_s": rnd(total("serial_cpu")), "runqueue_wait_s": rnd(total("serial_wait")),
                   "items_with_timeout": sum(c["serial_timeouts"] for c in cats.values()),
                   "hangs": sum(c["serial_hangs"] for c in cats.values()),
                   "max_item_s": rnd(max((r["seconds"] for r in serial_res.values()), default=0.0)),
                   "seconds_on_gold_string_items": rnd(sum(serial_res[i]["seconds"] for i in graded
                                                           if _is_gold_string(items[i]))),
                   "startup_s": [round(x, 2) for x in serial_startups]},
        "batch": {"seconds": rnd(batch_s), "items_per_s": rnd(n / batch_s, 2) if batch_s else None,
                  "cpu_s": rnd(total("batch_cpu")), "runqueue_wait_s": rnd(total("batch_wait")),
                  "timeouts": sum(c["batch_timeouts"] for c in cats.values()),
                  "hangs": int(batch_hang is not None), "hang": batch_hang,
                  "pool_startup_s": rnd(startup), "max_block_s": rnd(max((r["batch"] for r in rows), default=0.0)),
                  "warm_cache_items": warm[0], "warm_cache_seconds": rnd(warm[1]),
                  "warm_cache_items_per_s": rnd(warm[0] / warm[1], 1) if warm[1] else None},
        "ratio": rnd(serial_s / batch_s) if batch_s else None,
        "ratio_with_pool_startup": rnd(serial_s / (batch_s + startup)) if batch_s else None,
        "ratio_without_runqueue_wait": rnd(serial_free / batch_free) if batch_free > 0 else None,
        "blocks": [{k: (round(v, 3) if isinstance(v, float) else v) for k, v in r.items()} for r in rows],
        "verdicts": {"agree": len(graded) - len(mismatches), "disagree": len(mismatches), "mismatches": mismatches},
    }


def _cores(side: dict) -> str:
    return f"{side['cpu_s'] / side['seconds']:.2f}" if side.get("cpu_s") and side.get("seconds") else "-"


def to_markdown(r: dict) -> str:
    s, b, v, m = r["serial"], r["batch"], r["verdicts"], r["machine"]
    cfg = r["config"]
    lines = [
        f"# Grading throughput ({r['mode']}" + (", diagnostic: every grading process in its own session)"
                                                if cfg.get("own_sessions") else ")"),
        "",
        f"{r['date']} · {m['cpus']} CPUs, load average {m['load_avg_1m']} before / {m.get('load_avg_1m_after')} after "
        f"· scheduler autogroup {m.get('sched_autogroup', '?')} · math-verify {m.get('math-verify')}, sympy "
        f"{m.get('sympy')}, Python {m['python']}",
        "",
        f"{r['items']['graded']} completions built from the bundled benchmarks, graded in blocks of "
        f"{cfg['block_size']} (serial and batch alternating which goes first). Batch grader: {cfg['workers']} worker "
        f"processes, {cfg['deadline_s']:g} s deadline per item, verdict cache cleared before the pass (no pair repeats). "
        "Serial: "
        "open-r1's loop (`parse`, `parse`, `verify` in the main thread, math-verify's own 5 s timeouts).",
        "",
        md_table(["", "serial (open-r1 loop)", "batch grader"], [
            ["seconds", f"{s['seconds']:.1f}", f"{b['seconds']:.1f}"],
            ["items/s", s["items_per_s"], b["items_per_s"]],
            ["items timed out", s["items_with_timeout"], b["timeouts"]],
            ["hangs", s["hangs"], b["hangs"]],
            ["longest item (serial) / block (batch), s", s["max_item_s"], b["max_block_s"]],
            ["CPU seconds (graders' processes)", s["cpu_s"], b["cpu_s"]],
            ["seconds runnable but waiting for a CPU", s["runqueue_wait_s"], b["runqueue_wait_s"]],
            ["CPU cores the side got (CPU seconds / seconds)", _cores(s), _cores(b)],
        ]),
        "",
        f"**items/s ratio (batch / serial): {r['ratio']:.2f}×** "
        f"({r['ratio_with_pool_startup']:.2f}× counting the pool's one-off start-up of {b['pool_startup_s']:.1f} s). "
        f"Verdicts: {v['agree']} agree, {v['disagree']} differ. Hangs: serial {s['hangs']}, batch {b['hangs']}.",
        "",
        "Per block: " + ", ".join(f"{x['ratio']:.2f}" for x in r["blocks"]) + ".",
        "",
        f"Without the time other users' processes held the CPUs (each side's wall time minus its run-queue wait; "
        f"an estimate for an otherwise idle machine): {r['ratio_without_runqueue_wait']}×.",
        "",
    ]
    if b.get("warm_cache_items_per_s"):
        lines += [f"Warm cache ({b['warm_cache_items']} items graded again with their verdicts cached; the items that "
                  f"timed out are left out, since timeouts are never cached): {b['warm_cache_items_per_s']} items/s.", ""]
    lines += [
        f"{r['items']['answer_is_gold_string']} items have an answer equal to the gold string, which the batch grader "
        f"settles without sympy; they cost the serial loop {s['seconds_on_gold_string_items']:.1f} s.",
        "",
        md_table(["category", "items", "correct (serial / batch)", "timeouts (serial / batch)", "serial hangs",
                  "serial s", "answer = gold string", "verdicts differ"],
                 [[k, c["items"], f"{c['serial_correct']} / {c['batch_correct']}",
                   f"{c['serial_timeouts']} / {c['batch_timeouts']}", c["serial_hangs"], f"{c['serial_seconds']:.1f}",
                   c["answer_is_gold_string"], c["verdicts_differ"]] for k, c in r["by_category"].items()]),
    ]
    if v["mismatches"]:
        lines += ["", "Verdict differences:", "",
                  md_table(["category", "source", "gold", "answer", "serial", "batch"],
                           [[x["category"], x["source"], f"`{x['gold']}`", f"`{(x['answer'] or '')[:60]}`",
                             f"{x['serial_correct']} (timeouts {x['serial_timeouts']})",
                             f"{x['batch_correct']} ({x['batch_error']})"] for x in v["mismatches"][:40]])]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(prog="python -m bench.grading", description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="~400 items instead of ~3,000")
    ap.add_argument("--workers", type=int, default=None, help="batch grader workers (default: the CPUs available)")
    ap.add_argument("--block-size", type=int, default=256, help="items per grade_batch call (a training batch)")
    ap.add_argument("--profile", default=None, metavar="DIR", help="write cProfile files of both sides' work here")
    ap.add_argument("--out", default=None, help="results folder (default bench/results)")
    ap.add_argument("--own-sessions", action="store_true",
                    help="diagnostic: each grading process in its own session (its own autogroup CPU share)")
    args = ap.parse_args(argv)
    r = run(args.quick, workers=args.workers, block_size=args.block_size, profile=args.profile,
            out_dir=Path(args.out) if args.out else None, own_sessions=args.own_sessions)
    print(to_markdown(r))
    return r


if __name__ == "__main__":
    main()
