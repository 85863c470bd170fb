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
processes with math-verify's timeouts disabled (`conciser.rewards.workers`); each item gets its own
wall-clock deadline, and a worker that overruns it is killed and replaced. Items stream to the
workers (no batch waits for a block's slowest item while work is left; items queued behind one
running past half its deadline move to other workers), and a spare worker is kept started and warm,
so a kill costs no slot. A timeout is graded incorrect and reported (``timed_out=True``), never hangs
the caller. ``grade`` goes through
the same pool, so a single call and a batch give identical verdicts. The pool starts on first use (not at import), is
shared by all calls in the process and is shut down at exit.

Work not done twice, nor at all where the verdict is certain: identical (gold, answer) pairs are
common (a GRPO group often repeats the same answer), so each batch is de-duplicated and definite
verdicts are kept in an LRU cache keyed on (gold, extracted answer). Three shortcuts answer without
the pool, each giving exactly math-verify's verdict (`conciser.rewards.shortcuts`, tested against
math-verify): an answer equal to the gold string (whitespace-normalised) is correct; two plain
numbers are compared by value under math-verify's rules; and an answer math-verify cannot finish
comparing with a gold of ordinary size (``9^{9^{9^{9}}}``, ``(10^{6})!``) is incorrect and timed out at
once, as the deadline would have made it. A batch made only of such pairs never touches the pool. Timeouts
from the deadline are not cached: they can come from a loaded machine rather than from the input.

The toy task's answers are single digits, graded by exact match (``grade_toy``, no sympy, no pool).
``GRADERS`` / ``get_grader(name)`` pick a batch grader by the name recipes use.
"""

from __future__ import annotations

import atexit
import logging
import os
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass
from functools import lru_cache
from typing import Callable, Sequence

from conciser.rewards.shortcuts import hopeless, numeric_verdict
from conciser.rewards.workers import DeadlinePool, serve

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


def _math_text(s: str) -> str | None:
    """The math math-verify will read from the answer ``s`` once boxed (see `_latex_input`), or None
    when ``s`` holds a box of its own (then math-verify reads that box)."""
    if _BOX_RE.search(s):
        return None
    return _undecorate(_UNESCAPED_DOLLAR.sub("", s))


def _latex_input(s: str) -> str:
    """Text math-verify will read the answer ``s`` from.

    Plain answers ("0.5", "x=3", "[1,2)") are only parsed as LaTeX inside a math environment
    (``[1,2)`` bare yields nothing, ``x=3`` bare yields 3), so they are boxed. Dollar signs are
    dropped first: an answer is all math, and a stray ``$ $`` inside one (benchmark golds have
    them) would otherwise end the math environment early. Text that is already boxed is left as
    it is: math-verify takes its last box.
    """
    math = _math_text(s)
    return s if math is None else "\\boxed{" + math + "}"


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


def _judge_task(gold: str, answer: str) -> tuple[bool, str | None]:
    """A pool worker's task: `_judge`, with a bug elsewhere graded as a parse error (logged)."""
    try:
        return _judge(gold, answer)
    except Exception:  # math-verify swallows its own errors; this is a bug elsewhere
        logger.exception("grading %r against %r", answer, gold)
        return False, PARSE_ERROR


# Typical answers: a new worker (a replacement, a spare) meets its first items with warm caches.
_WARM_UP = [("1", "1"), ("\\frac{1}{2}", "0.5"), ("x=3", "3"), ("(1,2]", "[1, 2)"), ("2\\sqrt{5}", "\\sqrt{20}")]


def _warm_up() -> None:
    # The once-per-process "timeout is disabled" warning is expected here: we enforce deadlines.
    logging.getLogger("math_verify").setLevel(logging.ERROR)
    for gold, answer in _WARM_UP:  # imports, regex compilation, the LaTeX parser
        _judge(gold, answer)


def _worker_main(conn) -> None:
    """A pool worker (started by `workers.spawn`): answers (gold, answer) tasks with `_judge_task`."""
    serve(conn, _judge_task, warm_up=_warm_up)


# ---------------------------------------------------------------- the worker pool

_POOL: DeadlinePool | None = None
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


def _get_pool(workers: int | None, n_tasks: int) -> DeadlinePool:
    """The shared pool: sized `workers` if given, else grown (never shrunk) to what the batch needs."""
    global _POOL
    if _POOL is None:
        size = workers if workers is not None else min(_default_workers(), n_tasks)
        _POOL = DeadlinePool("conciser.rewards.grading:_worker_main", size)
        _register_shutdown()
    elif workers is not None:
        _POOL.resize(workers)
    elif _POOL.size < min(_default_workers(), n_tasks):
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


def start(workers: int | None = None) -> None:
    """Start the grading workers now and wait until they are ready (a trainer or a bench can call
    this before its first batch, so that the first batch does not pay the start-up)."""
    with _LOCK:
        _get_pool(workers, workers or _default_workers()).start()


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

def _shortcut(gold: str, answer: str) -> tuple[bool, str | None, bool] | None:
    """(correct, error, timed_out) without the pool when it is certain to be math-verify's, else None:
    the gold string itself, plain numbers, hopeless answers (see `conciser.rewards.shortcuts`)."""
    if gold == answer and gold:
        return True, None, False
    g, a = _math_text(gold), _math_text(answer)
    if g is None or a is None:
        return None
    if (correct := numeric_verdict(g, a)) is not None:
        return correct, None, False
    if hopeless(g, a):
        return False, TIMEOUT, True  # as the deadline would have, without spending it
    return None


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
            elif (verdict := _shortcut(*key)) is not None:
                fill(key, *verdict)
            else:
                unknown.append(key)
        if unknown:
            bar = None
            if progress:
                from tqdm.auto import tqdm

                bar = tqdm(total=len(unknown), desc="grading", unit="answer")
            try:
                pool = _get_pool(workers, len(unknown))
                # Grouped by gold: each worker caches the golds it has parsed.
                results = pool.run(unknown, timeout, group=lambda key: key[0],
                                   on_done=bar.update if bar else None)
            except BaseException:
                # Interrupted (Ctrl-C) or broken mid-run: workers may still hold items from this
                # call, so the pool cannot be reused; the next call starts a fresh one.
                _discard_pool()
                raise
            finally:
                if bar is not None:
                    bar.close()
            for key, r in zip(unknown, results):
                if r.timed_out:
                    fill(key, False, TIMEOUT, True)
                elif r.crashed:
                    fill(key, False, WORKER_CRASHED)
                else:
                    fill(key, *r.value)
                    _CACHE[key] = r.value
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
