"""Worker processes: start a function in a fresh interpreter with a pipe to it, and a pool of such
workers that runs tasks under a per-task deadline.

    proc, conn = spawn("conciser.rewards.grading:_worker_main", 3)   # _worker_main(conn, 3) runs there
    pool = DeadlinePool("conciser.rewards.grading:_judge_task", size=2)
    pool.run([("1", "1.0"), ("x", "y")], timeout=5.0)                 # one PoolResult per task

Why fresh interpreters (never ``fork``): the caller is often a training process with many threads
(torch, vLLM, tokenizers), and forking a threaded process can deadlock the child. Why not
multiprocessing's "spawn": it re-runs the caller's ``__main__`` in every child, which fails outright
in scripts without an ``if __name__ == "__main__"`` guard. So a child is ``python -c`` with the
caller's ``sys.path``, handed one end of a socket pair; only the child holds that end, so its death
shows up as EOF on ours. The grader's pool and the benches' child processes all start this way.

Why not ``concurrent.futures.ProcessPoolExecutor``: killing one of its workers breaks the whole
executor, and a task that never returns (a sympy computation can run for hours) has to be killed.
"""

from __future__ import annotations

import importlib
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import traceback
from collections import OrderedDict, deque
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import Callable, Sequence

logger = logging.getLogger(__name__)

# A worker must import its libraries before it can take work; on a loaded machine that can take a
# while, but a worker that never reports ready means a broken environment, not slowness.
STARTUP_TIMEOUT = 180.0
# A task in flight for this share of its deadline is suspect: the tasks queued behind it move to other
# workers. Half the deadline: an ordinary grading task takes milliseconds, a slow legitimate one a
# second or two.
SUSPECT_FRACTION = 0.5
SPARES = 1  # workers started and warm but given no work, so that a kill costs no slot
PREFETCH = 2  # tasks in flight per worker: the next one is there when the current one ends


def spawn(target: str, *args, new_session: bool = False, **popen_kwargs) -> tuple[subprocess.Popen, Connection]:
    """Start ``target(conn, *args)`` ("package.module:function") in a fresh interpreter.

    ``args`` must be Python literals (they travel as their ``repr``). ``new_session`` starts the
    child in its own session (its own CPU share under the kernel's autogroup scheduling).
    ``popen_kwargs`` go to :class:`subprocess.Popen` (``env``, ``stdout``, ``stderr``, ``cwd``).
    Returns the process and our end of the pipe.
    """
    module, _, func = target.partition(":")
    if not module or not func:
        raise ValueError(f"target must be 'package.module:function', got {target!r}")
    ours, theirs = socket.socketpair()
    fd = theirs.detach()
    # The child imports the target the way the caller would: same interpreter, same sys.path.
    boot = (f"import sys; sys.path[:] = {sys.path!r}; from conciser.rewards.workers import _child; "
            f"_child({module!r}, {func!r}, {fd}, {args!r})")
    try:
        proc = subprocess.Popen([sys.executable, "-c", boot], pass_fds=(fd,), stdin=subprocess.DEVNULL,
                                start_new_session=new_session, **popen_kwargs)
    finally:
        os.close(fd)  # only the child holds its end
    return proc, Connection(ours.detach())


def _child(module: str, func: str, fd: int, args: tuple) -> None:
    getattr(importlib.import_module(module), func)(Connection(fd), *args)


def serve(conn: Connection, handler: Callable, warm_up: Callable[[], None] | None = None) -> None:
    """A pool worker's loop: after ``warm_up()``, says ready, then answers each task ``[(index, *args)]``
    with ``(index, handler(*args))`` until told to stop (None) or the parent is gone."""
    # Ctrl-C reaches the whole process group; the parent decides when workers stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        if warm_up is not None:
            warm_up()
    except BaseException:
        conn.send(("fatal", traceback.format_exc()))
        return
    try:
        conn.send(("ready",))
        while (tasks := conn.recv()) is not None:
            for index, *args in tasks:
                conn.send((index, handler(*args)))
    except (EOFError, OSError):
        return  # the parent is gone


@dataclass(frozen=True, slots=True)
class PoolResult:
    """What became of one task: its handler's ``value``, or ``timed_out`` / ``crashed`` (value None)."""

    value: object = None
    timed_out: bool = False
    crashed: bool = False


class _Worker:
    __slots__ = ("proc", "conn", "ready", "spawned_at", "inflight", "item_started", "group")

    def __init__(self, proc: subprocess.Popen, conn: Connection):
        self.proc = proc
        self.conn = conn
        self.ready = False
        self.spawned_at = time.monotonic()
        self.inflight: deque[int] = deque()  # ids of the tasks sent, in the order the worker runs them
        self.item_started = 0.0               # when the worker started inflight[0] (as we saw it)
        self.group: object = None             # the group key of the last task it was given


class DeadlinePool:
    """Persistent workers running ``target`` (a function ``f(conn)`` that calls :func:`serve`), each
    with its own pipe, so that one task that overruns its deadline can be killed alone.

    Scheduling streams tasks: every worker holds at most ``PREFETCH`` tasks, so no worker waits for
    a batch's slowest task while work is left. Tasks that share a group key (the grader's: the gold
    answer, whose parse each worker caches) go to the same worker where possible. A task in flight
    for ``SUSPECT_FRACTION`` of its deadline is suspect: the tasks queued behind it go back to the
    queue. One that overruns its deadline has its worker killed, and a spare worker, started and
    warmed beforehand (``SPARES``), takes its place at once; a new spare starts in the background.
    (A spare started only when a task turns suspect would cost a start-up's CPU for every slow task
    that then finishes, which on a loaded machine slows everything else.)
    """

    new_sessions = False  # start workers in their own sessions (a bench diagnostic; see bench/grading)

    def __init__(self, target: str, size: int):
        self.target = target
        self.size = size
        self.pid = os.getpid()
        self._next_id = 0
        self.workers: list[_Worker] = [self._spawn() for _ in range(size)]
        self.spares: list[_Worker] = [self._spawn() for _ in range(SPARES)]

    def _spawn(self) -> _Worker:
        return _Worker(*spawn(self.target, new_session=self.new_sessions))

    @staticmethod
    def _stop(workers: list[_Worker]) -> None:
        # Workers hold no state worth a graceful exit, and a hung one would never see a polite request.
        for w in workers:
            w.proc.kill()
        for w in workers:
            w.proc.wait()
            w.conn.close()

    def resize(self, size: int) -> None:
        self.size = size
        self._fill()
        extra = len(self.workers) - size
        if extra > 0:  # stop idle workers first (those still starting before ready ones)
            idle = sorted((w for w in self.workers if not w.inflight), key=lambda w: w.ready)[:extra]
            self._stop(idle)
            self.workers = [w for w in self.workers if w not in idle]

    def _fill(self) -> None:
        """Back to ``size`` workers, spares first (they are warm), then ``SPARES`` spares again."""
        while len(self.workers) < self.size:
            self.workers.append(self.spares.pop(0) if self.spares else self._spawn())
        while len(self.spares) < SPARES:
            self.spares.append(self._spawn())

    def close(self) -> None:
        self._stop(self.workers + self.spares)
        self.workers, self.spares = [], []

    def ready(self) -> bool:
        return all(w.ready for w in self.workers + self.spares)

    def start(self) -> None:
        """Wait until every worker has started (imports, warm-up); ``run`` does not need this, but a
        caller that times ``run`` or wants its first call fast does."""
        t_end = time.monotonic() + STARTUP_TIMEOUT
        while not self.ready():
            waiting = [w for w in self.workers + self.spares if not w.ready]
            if not wait([w.conn for w in waiting], timeout=max(0.0, t_end - time.monotonic())):
                raise RuntimeError(f"a worker ({self.target}) did not start within {STARTUP_TIMEOUT:.0f} s; "
                                   "is the machine overloaded?")
            for w in waiting:
                if w.conn.poll():
                    try:
                        msg = w.conn.recv()
                    except (EOFError, OSError):
                        raise RuntimeError(f"a worker ({self.target}) died at start-up; its traceback is "
                                           "on stderr above") from None
                    if msg[0] == "fatal":
                        raise RuntimeError(f"a worker ({self.target}) failed to start:\n{msg[1]}")
                    w.ready = msg[0] == "ready"

    def run(self, tasks: Sequence[tuple], timeout: float, group: Callable[[tuple], object] | None = None,
            on_done: Callable[[int], None] | None = None) -> list[PoolResult]:
        """One :class:`PoolResult` per task, in order; each task gets ``timeout`` seconds of a worker."""
        results: list[PoolResult | None] = [None] * len(tasks)
        suspect_after = SUSPECT_FRACTION * timeout
        # Tasks travel under ids unique to the pool's life: a worker may still be busy with a task of
        # an earlier call (one requeued from it and answered by another worker), and its answer must
        # not be taken for this call's task of the same index.
        ids: dict[int, int] = {}  # task id -> index in `tasks`
        # The queue: group key -> its pending task indices, in first-seen order.
        pending: OrderedDict[object, deque[int]] = OrderedDict()
        for i, t in enumerate(tasks):
            pending.setdefault(group(t) if group else i, deque()).append(i)
        owner: dict[int, _Worker] = {}  # task index -> the worker responsible for it now
        remaining = len(tasks)
        failed_starts = 0
        suspects: set[_Worker] = set()

        def requeue(i: int) -> None:
            owner.pop(i, None)
            key = group(tasks[i]) if group else i
            pending.setdefault(key, deque()).appendleft(i)
            pending.move_to_end(key, last=False)

        def take(w: _Worker) -> int | None:
            """The next task for `w`: one of its own group if any is left, else the first group no other
            worker is on (each worker parses a gold once), else the first."""
            while pending:
                if w.group in pending:
                    key = w.group
                else:
                    busy = {x.group for x in self.workers if x is not w and x.inflight}
                    key = next((k for k in pending if k not in busy), next(iter(pending)))
                queue = pending[key]
                i = queue.popleft()
                if not queue:
                    del pending[key]
                if results[i] is None and i not in owner:
                    w.group = key
                    return i
            return None

        def finish(i: int, result: PoolResult) -> None:
            nonlocal remaining
            if results[i] is None:  # a task requeued from a suspect worker may come back twice
                results[i] = result
                remaining -= 1
                if on_done is not None:
                    on_done(1)
            owner.pop(i, None)

        def mine(w: _Worker, task_id: int) -> int | None:
            """The index of task `task_id` if it is this call's and `w` is responsible for it."""
            i = ids.get(task_id)
            return i if i is not None and owner.get(i) is w else None

        def lose(w: _Worker, result: PoolResult | None) -> None:
            # `w` is killed or dead: its current task gets `result`, the others go back to the queue.
            if w.inflight and result is not None and (i := mine(w, w.inflight[0])) is not None:
                finish(i, result)
                w.inflight.popleft()
            for task_id in w.inflight:
                if (i := mine(w, task_id)) is not None and results[i] is None:
                    requeue(i)
            w.inflight.clear()
            suspects.discard(w)
            self._stop([w])
            self.workers.remove(w)
            self._fill()

        while remaining:
            for w in list(self.workers):
                while w.ready and w not in suspects and len(w.inflight) < PREFETCH and (i := take(w)) is not None:
                    task_id = self._next_id
                    self._next_id += 1
                    try:
                        w.conn.send([(task_id, *tasks[i])])
                    except OSError:  # died while idle: the task never reached it
                        requeue(i)
                        lose(w, None)
                        break
                    if not w.inflight:
                        w.item_started = time.monotonic()
                    w.inflight.append(task_id)
                    ids[task_id] = i
                    owner[i] = w

            now = time.monotonic()
            busy = [w for w in self.workers if w.inflight]
            deadlines = [w.item_started + timeout for w in busy]
            deadlines += [w.item_started + suspect_after for w in busy if w not in suspects]
            deadlines += [w.spawned_at + STARTUP_TIMEOUT for w in self.workers + self.spares if not w.ready]
            wait_s = min(deadlines, default=now) - now
            for conn in wait([w.conn for w in self.workers + self.spares], timeout=max(0.0, wait_s)):
                w = next(w for w in self.workers + self.spares if w.conn is conn)
                try:
                    while w.conn.poll():
                        msg = w.conn.recv()
                        if msg[0] == "ready":
                            w.ready = True
                            failed_starts = 0
                        elif msg[0] == "fatal":
                            raise RuntimeError(f"a worker ({self.target}) failed to start:\n{msg[1]}")
                        else:
                            task_id, value = msg
                            assert w.inflight and w.inflight[0] == task_id, "worker out of order"
                            w.inflight.popleft()
                            w.item_started = time.monotonic()
                            suspects.discard(w)
                            if (i := ids.get(task_id)) is not None:  # else: an earlier call's, answered
                                finish(i, PoolResult(value))
                except (EOFError, OSError):
                    if not w.ready:
                        failed_starts += 1
                        if failed_starts > 3 * self.size:
                            raise RuntimeError(f"workers ({self.target}) keep dying at start-up; their "
                                               "traceback is on stderr above") from None
                    if w in self.spares:  # a spare died before any work: start another
                        self.spares.remove(w)
                        self._stop([w])
                        self._fill()
                    else:
                        lose(w, PoolResult(crashed=True))

            now = time.monotonic()
            for w in list(self.workers):
                if w.inflight and now - w.item_started >= timeout:
                    lose(w, PoolResult(timed_out=True))
                elif w.inflight and w not in suspects and now - w.item_started >= suspect_after:
                    suspects.add(w)
                    for task_id in list(w.inflight)[1:]:  # queued behind the suspect: let others take them
                        if (i := mine(w, task_id)) is not None:
                            requeue(i)
            for w in self.workers + self.spares:
                if not w.ready and now - w.spawned_at >= STARTUP_TIMEOUT:
                    raise RuntimeError(f"a worker ({self.target}) did not start within {STARTUP_TIMEOUT:.0f} s; "
                                       "is the machine overloaded?")
        return results  # type: ignore[return-value]


__all__ = ["DeadlinePool", "PoolResult", "serve", "spawn"]
