"""Worker processes: the start-up helper every child process uses, and the deadline pool's scheduling.

Run: .venv/bin/pytest tests/rewards/test_workers.py
"""

import time

import pytest

from conciser.rewards import workers
from conciser.rewards.workers import DeadlinePool, spawn


def test_spawn_runs_the_target_with_its_arguments():
    proc, conn = spawn("pool_tasks:echo", 1, "a", {"k": [1.5, None]})
    try:
        assert conn.poll(60) and conn.recv() == (1, "a", {"k": [1.5, None]})
        assert proc.wait(60) == 0
    finally:
        proc.kill()
        conn.close()
    with pytest.raises(ValueError, match="package.module:function"):
        spawn("pool_tasks.echo")


@pytest.fixture
def pool():
    p = DeadlinePool("pool_tasks:napper", 2)
    p.start()
    assert p.ready()
    yield p
    p.close()


def test_results_in_order_and_groups_stay_on_one_worker(pool):
    tasks = [(0.01, f"{g}{k}") for g in "ABCD" for k in range(4)]
    got = pool.run(tasks, timeout=30.0, group=lambda t: t[1][0])
    assert [r.value[0] for r in got] == [t[1] for t in tasks]
    for g in "ABCD":  # each gold's parse would be cached by one worker only
        assert len({r.value[1] for r, t in zip(got, tasks) if t[1][0] == g}) == 1
    assert len({r.value[1] for r in got}) == 2  # both workers worked


def test_a_hung_task_holds_back_nothing_and_a_warm_spare_takes_its_place(pool, monkeypatch):
    spawned = []
    spawn_ = DeadlinePool._spawn
    monkeypatch.setattr(DeadlinePool, "_spawn", lambda self: spawned.append(time.monotonic()) or spawn_(self))
    spare = pool.spares[0].proc.pid

    tasks = [(600.0, "hung")] + [(0.3, f"q{k}") for k in range(8)]
    t0 = time.monotonic()
    got = pool.run(tasks, timeout=6.0, group=lambda t: "one gold")
    elapsed = time.monotonic() - t0
    assert got[0].timed_out and got[0].value is None
    assert [r.value[0] for r in got[1:]] == [t[1] for t in tasks[1:]]
    assert elapsed < 6.0 + 20
    # the spare, started and warm before, took the killed worker's place; one new spare started after the kill
    assert spare in {w.proc.pid for w in pool.workers} and len(pool.workers) == 2
    assert len(spawned) == 1 and spawned[0] - t0 >= 6.0 and pool.spares[0].proc.pid != spare


def test_a_task_that_turns_out_slow_but_finishes_costs_no_start(pool, monkeypatch):
    spawned = []
    monkeypatch.setattr(DeadlinePool, "_spawn", lambda self: spawned.append(1))
    monkeypatch.setattr(workers, "SUSPECT_FRACTION", 0.01)  # suspect after 0.3 s
    got = pool.run([(1.0, "slow"), (0.05, "a"), (0.05, "b")], timeout=30.0)
    assert [r.value[0] for r in got] == ["slow", "a", "b"] and not any(r.timed_out for r in got)
    assert not spawned and len(pool.workers) == 2


def test_a_late_answer_from_an_earlier_call_is_not_taken_for_this_calls_task(pool, monkeypatch):
    """A task queued behind a suspect is requeued and answered by another worker; the suspect's worker
    then runs its copy anyway, after the call has returned. Its answer must not go to the next call's
    task of the same index (it once did: a bench verdict came from another item)."""
    monkeypatch.setattr(workers, "SUSPECT_FRACTION", 0.05)  # suspect after 0.5 s
    # one group: both tasks go to one worker, "behind" queued behind "slow"; the other worker is idle
    first = pool.run([(4.0, "slow"), (1.5, "behind")], timeout=10.0, group=lambda t: "g")
    assert [r.value[0] for r in first] == ["slow", "behind"]
    assert first[0].value[1] != first[1].value[1]  # "behind" was answered by the other worker
    assert any(w.inflight for w in pool.workers), "the slow task's worker should still run its copy"
    second = pool.run([(0.0, "new0"), (3.0, "new1")], timeout=10.0)  # the late answer comes first
    assert [r.value[0] for r in second] == ["new0", "new1"]
