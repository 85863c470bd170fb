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


def test_trainer_overhead_bench_gives_a_ratio_per_configuration(tmp_path):
    from bench.trainer_overhead import CONFIGS, Setup, run, tiny_model

    setup = Setup(model=tiny_model(tmp_path / "tiny"), steps=2, rounds=1, batch=8, generations=4,
                  max_completion_length=64, n_train=16)
    r = run(setup=setup, out_dir=tmp_path)

    assert list(r["configs"]) == list(CONFIGS)
    assert r["configs"]["stock"]["ratio"] == 1.0
    for name, c in r["configs"].items():
        assert c["steps"] == 1  # 2 steps, the first dropped
        assert c["median_step_s"] > 0 and c["ratio"] == pytest.approx(
            c["median_step_s"] / r["configs"]["stock"]["median_step_s"])
    # learning rate 0 and one seed: stock TRL and conciser's correctness-only run sample the same completions
    assert r["configs"]["correctness"]["mean_completion_length"] == r["configs"]["stock"]["mean_completion_length"]
    assert {x["config"] for x in r["runs"]} == set(CONFIGS)
    md = (tmp_path / "trainer_overhead.md").read_text()
    assert "(b) conciser, LASER-D + batch advantages" in md and "ratio to stock" in md
