"""The bench entry points in tiny modes: real runs, small inputs, properties that must hold.

Timings are not asserted (machines are shared and noisy); what the benches report is.
"""

import json

import pytest


def test_grading_bench_agrees_with_open_r1_loop_and_counts_timeouts(tmp_path):
    from bench.grading import build_items, run

    items = build_items(quick=True)
    ordinary = [it for it in items if it.category != "adversarial"][:48]
    tower = next(it for it in items if it.category == "adversarial" and "9^{9^{9^{9}}}" in it.completion)
    r = run(items=[*ordinary, tower], block_size=25, out_dir=tmp_path, quick=True)

    assert r["items"]["graded"] == 49
    assert r["verdicts"]["disagree"] == 0, r["verdicts"]["mismatches"]
    assert r["serial"]["hangs"] == 0 and r["batch"]["hangs"] == 0
    # the power tower runs out math-verify's own timeout in the serial loop and the deadline in the pool
    assert r["by_category"]["adversarial"] == {**r["by_category"]["adversarial"], "serial_timeouts": 1,
                                               "batch_timeouts": 1, "serial_correct": 0, "batch_correct": 0}
    assert r["by_category"]["reference"]["batch_correct"] > 0  # real verdicts, not all False
    assert len(r["blocks"]) == 2 and [b["first"] for b in r["blocks"]] == ["serial", "batch"]
    assert r["ratio"] == pytest.approx(r["serial"]["seconds"] / r["batch"]["seconds"], rel=1e-2)
    saved = json.loads((tmp_path / "grading.quick.json").read_text())
    assert saved["verdicts"]["agree"] == 49
    assert "items/s ratio" in (tmp_path / "grading.quick.md").read_text()


def test_grading_items_are_distinct_and_cover_every_category():
    from bench.grading import build_items

    items = build_items(quick=True)
    assert len(items) >= 400
    assert {it.category for it in items} == {"reference", "equivalent", "perturbed", "missing", "adversarial"}
    assert len({(it.gold, it.completion) for it in items}) == len(items)
    assert build_items(quick=True) == items  # deterministic
    assert len(build_items()) >= 2000
