"""Correctness grading: the one function family that training rewards and evaluation both import.

    from conciser.rewards.grading import grade, grade_batch, get_grader
    grade(gold="\\frac{1}{2}", completion="<think>...</think> so \\boxed{0.5}")   # Grade(correct=True, ...)
    grade_batch(golds=golds, completions=completions)                          # one Grade per item

What counts as the answer: the content of the last ``\\boxed{}`` (or ``\\fbox{}``) after the end of
thinking. A completion that opens ``<think>`` and never closes it has no answer (its thinking was
cut off), and a box inside closed thinking is ignored, so a model is never credited for an answer
it only considered. If your chat template opens the think block in the *prompt* (R1-distilled
models do), prepend ``"<think>"`` to the completion so that an unfinished thought is recognised.

Gold first, keyword-only: math-verify's ``verify(gold, pred)`` is asymmetric (gold ``x>1`` accepts
the answer ``(1,\\infty)``, but gold ``(1,\\infty)`` rejects the answer ``x>1``), and reversed
arguments are a known bug in published reward code. Every public function here therefore takes
``gold=`` / ``golds=`` by keyword.

Why a process pool with deadlines: math-verify bounds its own work with ``signal.alarm``, which
only works on the main thread of the main interpreter (TRL reward threads, async workers and Ray
actors get "signal only works in main thread"), and a sympy computation can run for hours
(``2^{2^{2^{...}}}``). So parsing and verification run in a small persistent pool of worker
processes with math-verify's timeouts disabled; each item gets its own wall-clock deadline, and a
worker that overruns it is killed and replaced. A timeout is graded incorrect and reported
(``timed_out=True``), never hangs the caller. ``grade`` goes through the same pool, so a single
call and a batch give identical verdicts. The pool starts on first use (not at import), is shared
by all calls in the process and is shut down at exit.

Caching: identical (gold, answer) pairs are common (a GRPO group often repeats the same answer),
so each batch is de-duplicated, definite verdicts are kept in an LRU cache, and an answer that
equals the gold string (whitespace-normalised) is correct without asking math-verify at all; a
batch made only of such pairs never touches the pool. Timeouts are not cached: they can come from
a loaded machine rather than from the input.

The toy task's answers are single digits, graded by exact match (``grade_toy``, no sympy, no pool).
``GRADERS`` / ``get_grader(name)`` pick a batch grader by the name recipes use.
"""

from __future__ import annotations

import atexit
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
from collections import OrderedDict, deque
from dataclasses import dataclass
from functools import lru_cache
from multiprocessing.connection import Connection, wait
from typing import Callable, Sequence

from conciser.rewards.lenient import lenient_answer

logger = logging.getLogger(__name__)

# Values of Grade.error.
NO_ANSWER = "no_answer"                # empty completion, no box, or an empty box
UNCLOSED_THINK = "unclosed_think"      # <think> opened and never closed: thinking was cut off
PARSE_ERROR = "parse_error"            # math-verify found nothing to parse in the answer
GOLD_PARSE_ERROR = "gold_parse_error"  # ... or in the gold: a dataset problem, not the model's
TIMEOUT = "timeout"                    # the item overran its deadline; its worker was killed
WORKER_CRASHED = "worker_crashed"      # the worker process died on this item (e.g. out of memory)

THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
DEFAULT_TIMEOUT = 5.0
_MAX_DEFAULT_WORKERS = 8
_CACHE_SIZE = 200_000
# A worker must import sympy and math-verify before it can take work; on a loaded machine that can
# take a while, but a worker that never reports ready means a broken environment, not slowness.
_STARTUP_TIMEOUT = 180.0


@dataclass(frozen=True, slots=True)
class Grade:
    """The verdict on one completion.

    correct: the final answer matches the gold.
    extracted: the answer taken from the completion (last box after thinking), None if none.
    timed_out: grading overran its deadline (then ``correct`` is False).
    error: None for an ordinary verdict, else why there is no real one: ``no_answer``,
        ``unclosed_think``, ``parse_error``, ``gold_parse_error``, ``timeout``, ``worker_crashed``.
    """

    correct: bool
    extracted: str | None
    timed_out: bool = False
    error: str | None = None


# ---------------------------------------------------------------- answer extraction

_BOX_RE = re.compile(r"\\(?:boxed|fbox)\s*\{")


def closing_brace(text: str, start: int) -> int:
    """Index of the brace closing the group opened just before ``start``, or -1.

    Escaped braces (``\\{1,2\\}`` is a set) do not group, and ``\\\\`` is a line break whose second
    backslash must not escape the next character, so any backslash skips the character after it.
    """
    depth = 1
    i, n = start, len(text)
    while i < n:
        c = text[i]
        if c == "\\":
            i += 2
            continue
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    return -1


def _last_box(text: str) -> str | None:
    last = None
    pos = 0
    while (m := _BOX_RE.search(text, pos)) is not None:
        end = closing_brace(text, m.end())
        if end < 0:
            # Everything after an unclosed box is inside it: the final answer was cut off.
            return None
        last = text[m.end():end]
        # Continue after the box, so that a box nested inside it is not mistaken for the last one.
        pos = end + 1
    return last


EXTRACTIONS = ("boxed", "lenient")   # how an answer is read: see extract_answer


def _check_extraction(extraction: str) -> None:
    if extraction not in EXTRACTIONS:
        raise ValueError(f"unknown extraction {extraction!r}; valid: {', '.join(EXTRACTIONS)}")


def _extract(completion: str, extraction: str = "boxed") -> tuple[str | None, str | None]:
    """(answer, error): the answer as `extract_answer` defines it, or None and the reason."""
    _check_extraction(extraction)
    if THINK_CLOSE in completion:
        completion = completion.rsplit(THINK_CLOSE, 1)[1]
    elif THINK_OPEN in completion:
        return None, UNCLOSED_THINK
    answer = _last_box(completion)
    if answer is None and extraction == "lenient" and _BOX_RE.search(completion) is None:
        answer = lenient_answer(completion, DEFAULT_TIMEOUT)   # no box at all (a cut-off box is no answer)
    if answer is None or not answer.strip():
        return None, NO_ANSWER
    return answer.strip(), None


def extract_answer(completion: str, extraction: str = "boxed") -> str | None:
    """The content of the last ``\\boxed{}`` / ``\\fbox{}`` after the end of thinking.

    Nested braces are handled (``\\boxed{\\frac{1}{2}}`` -> ``\\frac{1}{2}``). Returns None when there
    is no (non-empty, closed) box, or when ``<think>`` is opened and never closed.
    ``extraction="lenient"``: with no box after thinking, what math-verify reads there (rewards/lenient.py).
    """
    return _extract(completion, extraction)[0]


# ---------------------------------------------------------------- math-verify (runs in workers)

_UNESCAPED_DOLLAR = re.compile(r"(?<!\\)\$")


def _normalize(s: str) -> str:
    # Runs of whitespace mean the same in LaTeX; collapsing them makes cache keys and the
    # string short-circuit agree with what math-verify is then given.
    return " ".join(s.split())


def _latex_input(s: str) -> str:
    """Text math-verify will read the answer ``s`` from.

    Plain answers ("0.5", "x=3", "[1,2)") are only parsed as LaTeX inside a math environment
    (``[1,2)`` bare yields nothing, ``x=3`` bare yields 3), so they are boxed. Dollar signs are
    dropped first: an answer is all math, and a stray ``$ $`` inside one (benchmark golds have
    them) would otherwise end the math environment early. Text that is already boxed is left as
    it is: math-verify takes its last box.
    """
    if _BOX_RE.search(s):
        return s
    return "\\boxed{" + _undecorate(_UNESCAPED_DOLLAR.sub("", s)) + "}"


_BOLD_RE = re.compile(r"\\(?:textbf|mathbf|boldsymbol)\s*\{")


def _undecorate(s: str) -> str:
    """``s`` without what only decorates it: a bold wrapper around the whole answer and a full stop.

    Models end a boxed answer with a sentence's full stop (``104.``) and AMC/AIME solutions bold
    the choice (``\\textbf{(073)}``); math-verify rejects both as written."""
    while True:
        s = s.strip()
        m = _BOLD_RE.match(s)
        if m and closing_brace(s, m.end()) == len(s) - 1:
            s = s[m.end():-1]
        elif s.endswith(".") and not s.endswith(".."):
            s = s[:-1]
        else:
            return s


@lru_cache(maxsize=4096)
def _parse(s: str) -> tuple:
    from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse

    # parsing_timeout=None: the signal-based timeout is off; the pool's deadline bounds us instead.
    return tuple(parse(_latex_input(s), [LatexExtractionConfig(), ExprExtractionConfig()],
                       parsing_timeout=None))


def _judge(gold: str, answer: str) -> tuple[bool, str | None]:
    """math-verify's verdict on whitespace-normalised strings: (correct, error). May run forever."""
    from math_verify import verify

    gold_parsed = _parse(gold)
    if not gold_parsed:
        return False, GOLD_PARSE_ERROR
    answer_parsed = _parse(answer)
    if not answer_parsed:
        return False, PARSE_ERROR
    return bool(verify(list(gold_parsed), list(answer_parsed), timeout_seconds=None)), None


def _worker_entry(fd: int) -> None:
    _worker_main(Connection(fd))


def _worker_main(conn: Connection) -> None:
    """A pool worker: receives chunks of (index, gold, answer), sends back (index, correct, error)."""
    # Ctrl-C reaches the whole process group; the parent decides when workers stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        # The once-per-process "timeout is disabled" warning is expected here: we enforce deadlines.
        logging.getLogger("math_verify").setLevel(logging.ERROR)
        # Warm up (imports, regex compilation, the LaTeX parser) so the first real item's deadline
        # is not spent on one-off start-up work.
        _judge("1", "1")
    except BaseException:
        conn.send(("fatal", traceback.format_exc()))
        return
    try:
        conn.send(("ready",))
        while (chunk := conn.recv()) is not None:
            for index, gold, answer in chunk:
                try:
                    correct, error = _judge(gold, answer)
                except Exception:  # math-verify swallows its own errors; this is a bug elsewhere
                    logger.exception("grading %r against %r", answer, gold)
                    correct, error = False, PARSE_ERROR
                conn.send((index, correct, error))
    except (EOFError, OSError):
        return  # the parent is gone


# ---------------------------------------------------------------- the worker pool

class _Worker:
    __slots__ = ("proc", "conn", "ready", "spawned_at", "inflight", "item_started")

    def __init__(self, proc: subprocess.Popen, conn: Connection):
        self.proc = proc
        self.conn = conn
        self.ready = False
        self.spawned_at = time.monotonic()
        self.inflight: deque[int] = deque()  # task indices sent, in the order the worker runs them
        self.item_started = 0.0               # when the worker started inflight[0] (as we saw it)


class _Pool:
    """Persistent worker processes, each with its own pipe, so one hung item can be killed alone.

    ``concurrent.futures.ProcessPoolExecutor`` cannot do that: killing one of its workers breaks
    the whole executor. Workers are fresh interpreters (never forks: the training process has many
    threads, torch and vLLM among them, and forking a threaded process can deadlock the child),
    started with ``python -c`` rather than multiprocessing's "spawn", which re-runs the caller's
    main script in every worker and fails outright in scripts without an ``if __name__ ==
    "__main__"`` guard.
    """

    def __init__(self, size: int):
        self.pid = os.getpid()
        self.workers: list[_Worker] = [self._spawn() for _ in range(size)]

    @staticmethod
    def _spawn() -> _Worker:
        ours, theirs = socket.socketpair()
        fd = theirs.detach()
        # The worker imports this module the way the caller did: same interpreter, same sys.path.
        boot = (f"import sys; sys.path[:] = {sys.path!r}; "
                f"from conciser.rewards.grading import _worker_entry; _worker_entry({fd})")
        try:
            proc = subprocess.Popen([sys.executable, "-c", boot], pass_fds=(fd,),
                                    stdin=subprocess.DEVNULL)
        finally:
            os.close(fd)  # only the worker holds its end, so its death shows up as EOF on ours
        return _Worker(proc, Connection(ours.detach()))

    @staticmethod
    def _stop(workers: list[_Worker]) -> None:
        # Workers hold no state worth a graceful exit, and a hung one would never see a polite
        # request anyway.
        for w in workers:
            w.proc.kill()
        for w in workers:
            w.proc.wait()
            w.conn.close()

    def resize(self, size: int) -> None:
        while len(self.workers) < size:
            self.workers.append(self._spawn())
        if len(self.workers) > size:
            self._stop(self.workers[size:])
            del self.workers[size:]

    def close(self) -> None:
        self._stop(self.workers)
        self.workers = []

    def _replace(self, worker: _Worker) -> None:
        self._stop([worker])
        self.workers[self.workers.index(worker)] = self._spawn()

    def run(self, tasks: Sequence[tuple[str, str]], timeout: float,
            on_done: Callable[[int], None] | None = None) -> list[tuple[bool, str | None, bool]]:
        """(correct, error, timed_out) per task; each task gets ``timeout`` seconds of a worker."""
        results: list[tuple[bool, str | None, bool] | None] = [None] * len(tasks)
        pending = deque(range(len(tasks)))
        remaining = len(tasks)
        failed_starts = 0

        def finish(worker: _Worker, result: tuple[bool, str | None, bool]) -> None:
            nonlocal remaining
            results[worker.inflight.popleft()] = result
            worker.item_started = time.monotonic()
            remaining -= 1
            if on_done is not None:
                on_done(1)

        def lose(worker: _Worker, result: tuple[bool, str | None, bool] | None) -> None:
            # The worker is killed or dead: its current item gets `result`, the rest go back.
            if worker.inflight and result is not None:
                finish(worker, result)
            pending.extendleft(reversed(worker.inflight))
            worker.inflight.clear()
            self._replace(worker)

        while remaining:
            # Several items per message keeps a worker busy while the parent handles its results;
            # small chunks keep the load balanced and what a kill sends back to the queue short.
            chunk = max(1, min(16, len(pending) // (4 * len(self.workers))))
            for w in list(self.workers):
                if w.ready and not w.inflight and pending:
                    w.inflight.extend(pending.popleft() for _ in range(min(chunk, len(pending))))
                    try:
                        w.conn.send([(i, *tasks[i]) for i in w.inflight])
                    except OSError:  # died while idle: nothing of this chunk ran
                        lose(w, None)
                        continue
                    w.item_started = time.monotonic()

            now = time.monotonic()
            busy = [w for w in self.workers if w.inflight]
            if busy:
                wait_s = min(w.item_started + timeout for w in busy) - now
            else:  # waiting for workers to start
                wait_s = min((w.spawned_at + _STARTUP_TIMEOUT for w in self.workers if not w.ready),
                             default=0.0) - now
            for conn in wait([w.conn for w in self.workers], timeout=max(0.0, wait_s)):
                w = next(w for w in self.workers if w.conn is conn)
                try:
                    while w.conn.poll():
                        msg = w.conn.recv()
                        if msg[0] == "ready":
                            w.ready = True
                            failed_starts = 0
                        elif msg[0] == "fatal":
                            raise RuntimeError(f"a grading worker failed to start:\n{msg[1]}")
                        else:
                            index, correct, error = msg
                            assert w.inflight and w.inflight[0] == index, "worker out of order"
                            finish(w, (correct, error, False))
                except (EOFError, OSError):
                    if not w.ready:
                        failed_starts += 1
                        if failed_starts > 3 * len(self.workers):
                            raise RuntimeError("grading workers keep dying at start-up; their "
                                               "traceback is on stderr above")
                    lose(w, (False, WORKER_CRASHED, False))

            now = time.monotonic()
            for w in list(self.workers):
                if w.inflight and now - w.item_started >= timeout:
                    lose(w, (False, TIMEOUT, True))
                elif not w.ready and now - w.spawned_at >= _STARTUP_TIMEOUT:
                    raise RuntimeError(
                        f"a grading worker did not start within {_STARTUP_TIMEOUT:.0f} s "
                        "(importing sympy and math-verify); is the machine overloaded?")
        return results  # type: ignore[return-value]


_POOL: _Pool | None = None
_CACHE: OrderedDict[tuple[str, str], tuple[bool, str | None]] = OrderedDict()
_LOCK = threading.Lock()


def _default_workers() -> int:
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    return max(1, min(_MAX_DEFAULT_WORKERS, cpus))


@lru_cache(maxsize=None)
def _register_shutdown() -> None:
    atexit.register(shutdown)  # once per process, however often the pool is rebuilt


def _get_pool(workers: int | None, n_tasks: int) -> _Pool:
    """The shared pool: sized `workers` if given, else grown (never shrunk) to what the batch needs."""
    global _POOL
    if _POOL is None:
        size = workers if workers is not None else min(_default_workers(), n_tasks)
        _POOL = _Pool(size)
        _register_shutdown()
    elif workers is not None:
        _POOL.resize(workers)
    elif len(_POOL.workers) < min(_default_workers(), n_tasks):
        _POOL.resize(min(_default_workers(), n_tasks))
    return _POOL


def _discard_pool() -> None:
    global _POOL
    if _POOL is not None and _POOL.pid == os.getpid():
        _POOL.close()
    _POOL = None


def shutdown() -> None:
    """Stop the grading workers (done at exit; a later call starts a fresh pool)."""
    with _LOCK:
        _discard_pool()


def clear_cache() -> None:
    """Forget cached verdicts (tests use it to grade the same pairs afresh)."""
    with _LOCK:
        _CACHE.clear()


def _after_fork_in_child() -> None:
    # A forked child inherits the parent's pool object, whose workers belong to the parent, and
    # maybe a lock held by another parent thread: start over with neither.
    global _POOL, _LOCK
    _POOL = None
    _LOCK = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


# ---------------------------------------------------------------- public graders

def _check_timeout(timeout: float) -> None:
    if not timeout or timeout <= 0:
        raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")


def grade_batch(*, golds: list[str], completions: list[str], timeout: float = DEFAULT_TIMEOUT,
                workers: int | None = None, progress: bool = False, extraction: str = "boxed") -> list[Grade]:
    """Grade ``completions[i]`` against ``golds[i]`` with math-verify; one Grade per item, in order.

    Each distinct (gold, answer) pair gets at most ``timeout`` seconds of a worker process; one that
    runs over is graded incorrect with ``timed_out=True`` and its worker is replaced. ``workers``
    sets the size of the shared pool (default: up to 8, at most the CPUs available, grown on demand).
    Verdicts are identical to calling :func:`grade` on each item. ``extraction``: see :func:`extract_answer`.
    """
    if len(golds) != len(completions):
        raise ValueError(f"golds and completions differ in length: {len(golds)} vs {len(completions)}")
    _check_timeout(timeout)
    if workers is not None and workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")

    grades: list[Grade | None] = [None] * len(golds)
    todo: dict[tuple[str, str], list[int]] = {}  # distinct pair -> the items that share it
    answers: list[str | None] = []
    for i, (gold, completion) in enumerate(zip(golds, completions)):
        answer, error = _extract(completion, extraction)
        answers.append(answer)
        if answer is None:
            grades[i] = Grade(correct=False, extracted=None, error=error)
        else:
            todo.setdefault((_normalize(gold), _normalize(answer)), []).append(i)

    def fill(key: tuple[str, str], correct: bool, error: str | None, timed_out: bool = False) -> None:
        for i in todo[key]:
            grades[i] = Grade(correct=correct, extracted=answers[i], timed_out=timed_out, error=error)

    with _LOCK:
        unknown: list[tuple[str, str]] = []
        for key in todo:
            if key in _CACHE:
                _CACHE.move_to_end(key)
                fill(key, *_CACHE[key])
            elif key[0] == key[1] and key[0]:
                fill(key, True, None)  # the gold string itself: correct without asking sympy
            else:
                unknown.append(key)
        if unknown:
            bar = None
            if progress:
                from tqdm.auto import tqdm

                bar = tqdm(total=len(unknown), desc="grading", unit="answer")
            try:
                pool = _get_pool(workers, len(unknown))
                results = pool.run(unknown, timeout, on_done=bar.update if bar else None)
            except BaseException:
                # Interrupted (Ctrl-C) or broken mid-run: workers may still hold items from this
                # call, so the pool cannot be reused; the next call starts a fresh one.
                _discard_pool()
                raise
            finally:
                if bar is not None:
                    bar.close()
            for key, (correct, error, timed_out) in zip(unknown, results):
                fill(key, correct, error, timed_out)
                if not timed_out and error != WORKER_CRASHED:
                    _CACHE[key] = (correct, error)
            while len(_CACHE) > _CACHE_SIZE:
                _CACHE.popitem(last=False)
    return grades  # type: ignore[return-value]


def grade(*, gold: str, completion: str, timeout: float = DEFAULT_TIMEOUT, extraction: str = "boxed") -> Grade:
    """Grade one completion against its gold answer (gold first; see the module docstring).

    Runs in the shared worker pool under a ``timeout``-second deadline, exactly as
    :func:`grade_batch` does, so it is safe from any thread.
    """
    return grade_batch(golds=[gold], completions=[completion], timeout=timeout, extraction=extraction)[0]


def grade_toy(*, gold: str, completion: str, extraction: str = "boxed") -> Grade:
    """The toy task's grader: exact match of the boxed digit after thinking (no sympy, no pool)."""
    answer, error = _extract(completion, extraction)
    if answer is None:
        return Grade(correct=False, extracted=None, error=error)
    return Grade(correct=answer == gold.strip(), extracted=answer)


def grade_toy_batch(*, golds: list[str], completions: list[str], timeout: float = DEFAULT_TIMEOUT,
                    workers: int | None = None, progress: bool = False, extraction: str = "boxed") -> list[Grade]:
    """:func:`grade_toy` per item. ``timeout``, ``workers`` and ``progress`` are accepted and unused,
    so that every grader in ``GRADERS`` can be called the same way."""
    if len(golds) != len(completions):
        raise ValueError(f"golds and completions differ in length: {len(golds)} vs {len(completions)}")
    return [grade_toy(gold=g, completion=c, extraction=extraction) for g, c in zip(golds, completions)]


GRADERS: dict[str, Callable[..., list[Grade]]] = {
    "math": grade_batch,
    "toy": grade_toy_batch,
}


def get_grader(name: str) -> Callable[..., list[Grade]]:
    """The batch grader registered as ``name`` (see ``GRADERS``)."""
    if name not in GRADERS:
        raise ValueError(f"unknown grader {name!r}; valid names: {', '.join(sorted(GRADERS))}")
    return GRADERS[name]


def _balanced(s: str) -> bool:
    """Every unescaped ``{`` closed, in order (``\\frac{1}{`` is not)."""
    depth = 0
    for i, ch in enumerate(s):
        if ch in "{}" and (i == 0 or s[i - 1] != "\\"):
            depth += 1 if ch == "{" else -1
            if depth < 0:
                return False
    return depth == 0


def unparseable_golds(golds: Sequence[str], *, timeout: float = DEFAULT_TIMEOUT, workers: int | None = None) -> list[int]:
    """Indices of the golds the grader cannot parse: blank, with unbalanced braces (math-verify would fall back
    to comparing the broken text as a string), or ``GOLD_PARSE_ERROR``. Every answer to them would be graded
    wrong. Each is graded against "0"; the verdict path parses the gold first."""
    golds = [str(g) for g in golds]
    grades = grade_batch(golds=golds, completions=["\\boxed{0}"] * len(golds), timeout=timeout, workers=workers)
    return [i for i, (g, r) in enumerate(zip(golds, grades))
            if not g.strip() or not _balanced(g) or r.error == GOLD_PARSE_ERROR]


__all__ = [
    "EXTRACTIONS", "GRADERS", "Grade", "extract_answer", "get_grader", "grade", "grade_batch", "grade_toy",
    "grade_toy_batch", "shutdown", "clear_cache", "unparseable_golds",
]
