"""The grading bench's machinery: the serial open-r1 loop in its own process, the batch grader under
a watchdog, CPU accounting, and the block-by-block run of one corpus (see `bench.grading`)."""

from __future__ import annotations

import cProfile
import logging
import threading
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Callable

from bench._common import log
from bench.grading.corpus import Item
from conciser.rewards.workers import DeadlinePool, spawn

DEADLINE = 5.0        # the batch grader's per-item deadline = math-verify's default per-operation timeout
HANG_AFTER = 60.0     # a serial item still running after this long is a hang


# ---------------------------------------------------------------- the serial baseline (open-r1's way)

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
        t0 = time.perf_counter()
        self.proc, self.conn = spawn("bench.grading.runner:_serial_child", new_session=self.own_session)
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
    """grade_batch did not return within its worst case: the bench records a hang instead of a ratio."""


def _worker_pids() -> list[int]:
    from conciser.rewards import grading

    pool = grading._POOL  # the bench reaches into the private pool to account its CPU time
    return [w.proc.pid for w in pool.workers + pool.spares] if pool is not None else []


def _start_pool(workers: int) -> float:
    """A fresh pool of `workers`, every one started; returns the start-up seconds."""
    from conciser.rewards import grading

    grading.shutdown()
    grading.clear_cache()
    t0 = time.perf_counter()
    grading.start(workers)
    return time.perf_counter() - t0


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


def profile_judge(items: list[Item], grades: dict[int, object], path: Path | None = None) -> cProfile.Profile:
    """cProfile of what is left for the workers: `_judge` on every distinct pair that no shortcut
    settles and that did not time out (those would run forever here), replayed in this process."""
    from conciser.rewards.grading import _extract, _judge, _normalize, _parse, _shortcut

    pairs = {}
    for i, it in enumerate(items):
        answer, _ = _extract(it.completion)
        g = grades.get(i)
        if answer is None or g is None or g.timed_out:
            continue
        key = (_normalize(it.gold), _normalize(answer))
        if _shortcut(*key) is None:
            pairs[key] = None
    logging.getLogger("math_verify").setLevel(logging.ERROR)
    _judge("1", "1")
    _parse.cache_clear()
    prof = cProfile.Profile()
    prof.enable()
    for gold, answer in pairs:
        _judge(gold, answer)
    prof.disable()
    if path is not None:
        prof.dump_stats(str(path))
    return prof


class _OwnSessions:
    """Diagnostic: start the grader's workers each in its own session (Linux autogroup = its own
    CPU share), as the serial process is under `own_session`, for the duration of the bench."""

    def __enter__(self):
        DeadlinePool.new_sessions = True
        return self

    def __exit__(self, *exc):
        DeadlinePool.new_sessions = False


def run_corpus(items: list[Item], *, workers: int, block_size: int, deadline: float, hang_after: float,
               own_sessions: bool = False, prof: cProfile.Profile | None = None) -> dict:
    """Grade `items` in blocks of `block_size`, serial and batch alternating which goes first.

    Returns the raw measurements: per-item results of both sides, per-block timings, the pool's
    start-up, the warm-cache pass, the serial process's start-ups and a batch hang if any.
    """
    n = len(items)
    blocks = [list(range(i, min(i + block_size, n))) for i in range(0, n, block_size)]
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
            log(f"block {b + 1}/{len(blocks)}: serial {row['serial']:.1f} s, batch {row['batch']:.2f} s, "
                f"ratio {row['ratio']:.2f}")
    except BatchHang as exc:
        batch_hang = str(exc)
        log(f"HANG: {exc}")
    finally:
        serial.close()

    # Warm cache: every item graded once more, its verdict now cached (the cold pass filled the
    # cache: it is cleared once before that pass). Timeouts are never cached, so the items that
    # timed out would only cost their deadline again: they are left out.
    warm_seconds, warm_items = None, 0
    if batch_hang is None:
        warm_seconds = 0.0
        for idx in blocks:
            idx = [i for i in idx if not batch_res[i].timed_out]
            warm_items += len(idx)
            warm_seconds += _batch_call([items[i].gold for i in idx], [items[i].completion for i in idx],
                                        workers, deadline)[1]
    return {"serial_res": serial_res, "batch_res": batch_res, "rows": rows, "startup": startup,
            "warm": (warm_items, warm_seconds), "serial_startups": serial.startups, "batch_hang": batch_hang}
