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


def test_quick_grading_corpora_keep_the_full_ones_share_and_mix_of_adversarial_answers():
    from bench.grading import build_items
    from bench.grading.corpus import build_rl_items
    from conciser.rewards.grading import extract_answer
    from conciser.rewards.shortcuts import hopeless

    for build in (build_items, build_rl_items):
        quick, full = build(quick=True), build()
        shares = [sum(it.category == "adversarial" for it in c) / len(c) for c in (quick, full)]
        assert shares[0] == pytest.approx(shares[1], abs=0.003), shares   # 1.0% vs 0.8%; 0.5% vs 0.5%
        # settled by the batch grader's shortcut or sent to math-verify: 3 to 1 in both
        mixes = [sorted(hopeless(it.gold, extract_answer(it.completion)) for it in c if it.category == "adversarial")
                 for c in (quick, full)]
        assert mixes[0].count(True) == 3 * mixes[0].count(False) and mixes[1].count(True) == 3 * mixes[1].count(False)


def test_trainer_overhead_bench_gives_a_ratio_per_configuration(tmp_path):
    from bench.trainer_overhead import Setup, run, tiny_model

    # Two of the four configurations (each is a training process; four would double the test's time).
    setup = Setup(model=tiny_model(tmp_path / "tiny"), steps=3, rounds=1, batch=8, generations=4,
                  max_completion_length=64, n_train=16)
    r = run(setup=setup, configs=["stock", "correctness"], out_dir=tmp_path)

    assert list(r["configs"]) == ["stock", "correctness"]
    stock, ours = r["configs"]["stock"], r["configs"]["correctness"]
    assert stock["ratio"] == 1.0 and ours["ratio"] == pytest.approx(ours["median_step_s"] / stock["median_step_s"])
    for c in (stock, ours):
        assert c["steps"] == 1 and c["median_step_s"] > 0  # 3 steps: the first and the last not counted
        assert c["median_trl_step_time_s"] <= c["median_step_s"]  # TRL's step_time excludes the optimizer step
    # learning rate 0 and one seed: stock TRL and conciser's correctness-only run sample the same completions
    assert ours["mean_completion_length"] == stock["mean_completion_length"]
    md = (tmp_path / "trainer_overhead.md").read_text()
    assert "(a) conciser, correctness only" in md and "ratio to stock" in md


def test_trainer_overhead_trains_on_the_toy_scan_task_by_default_and_on_the_chain_task_when_asked(tmp_path):
    """One base for `make bench`: overhead uses the task (data, cap) the toy Pareto uses."""
    from bench.trainer_overhead import Setup
    from conciser import toy_scan

    scan = Setup(model="m").overrides("toy/laser", tmp_path)
    assert "data.dataset=toy-scan" in scan
    assert f"trainer.max_completion_length={toy_scan.DEFAULT_MAX_COMPLETION}" in scan
    chain = Setup(model="m", task="toy").overrides("toy/laser", tmp_path)
    assert not any(o.startswith("data.dataset=") for o in chain)
    assert "trainer.max_completion_length=160" in chain
    assert Setup(model="m", max_completion_length=64).max_completion_length == 64


def _fake_summary(acc, tokens, minimal=40.0):
    levels = {str(lv): {"n_problems": 10, "accuracy": acc, "mean_tokens": tokens + lv, "truncation_rate": 0.0,
                        "mean_minimal_tokens": minimal + lv} for lv in (1, 2)}
    return {"n_problems": 20, "accuracy": acc, "mean_tokens": tokens, "mean_minimal_tokens": minimal,
            "tokens_over_minimal": tokens / minimal, "truncation_rate": 0.1, "by_level": levels, "max_new_tokens": 160}


def test_toy_pareto_table_and_plot_from_fake_summaries(tmp_path):
    from bench.toy_pareto import write

    records = [
        {"method": "base", "seed": 0, "summary": _fake_summary(0.60, 120.0)},
        {"method": "laser", "seed": 0, "summary": _fake_summary(0.70, 60.0)},
        {"method": "laser", "seed": 1, "summary": _fake_summary(0.80, 80.0)},
        {"method": "kimi", "seed": 0, "summary": _fake_summary(0.50, 44.0)},
        {"method": "l1_exact", "seed": 0, "error": "ValueError: needs RolloutBatch.target_lengths"},
    ]
    config = {"methods": ["laser", "kimi", "l1_exact"], "seeds": [0, 1], "steps": 3, "problems": 20,
              "base": "/x/toy-base-abc", "base_sft_steps": 1200, "eval_seed": 0, "jobs": 2}
    r = write(records, config=config, quick=True, wall_s=60.0, mach={"cpus": 2}, out_dir=tmp_path)

    laser = r["methods"]["laser"]
    assert laser["accuracy"] == pytest.approx(0.75) and laser["mean_tokens"] == pytest.approx(70.0)
    assert laser["accuracy_std"] == pytest.approx(0.0707, abs=1e-3) and laser["seeds"] == [0, 1]
    assert laser["by_level"]["2"]["mean_tokens"] == pytest.approx(72.0)
    assert r["methods"]["l1_exact"]["accuracy"] is None and r["methods"]["l1_exact"]["errors"]
    md = (tmp_path / "toy_pareto.quick.md").read_text()
    lines = [ln for ln in md.splitlines() if ln.startswith("| ")]
    names = [ln.split("|")[1].strip() for ln in lines[2:]]
    assert names == ["base", "kimi (other)", "laser (card)", "l1_exact"]  # base, then by mean tokens, failures last
    laser_row = next(ln for ln in lines if ln.startswith("| laser"))
    assert "0.750 ± 0.071" in laser_row and "+15.0" in laser_row and "-42%" in laser_row and "1.75×" in laser_row
    # 95% t-interval of two seeds: 0.75 ± 12.706 * 0.0707 / sqrt(2) = 0.75 ± 0.635, shown clipped to [0, 1]
    assert laser["accuracy_ci95"] == pytest.approx(0.635, abs=1e-3) and "[0.11, 1.00]" in laser_row
    assert "failed: ValueError" in next(ln for ln in lines if ln.startswith("| l1_exact"))
    assert "hint taken by odds" not in md   # toy-chain summaries have no hint
    assert "from the toy base `toy-base-abc` (1200 SFT steps; training" in md
    assert (tmp_path / "toy_pareto.quick.png").stat().st_size > 10_000
    assert json.loads((tmp_path / "toy_pareto.quick.json").read_text())["plot"] == "toy_pareto.quick.png"


def test_toy_pareto_trains_every_method_from_its_own_recipe():
    from bench.toy_pareto import GRPO, PEER, all_methods, eval_template, recipe_for
    from conciser.rewards import REWARDS

    assert set(all_methods()) == set(REWARDS) | {GRPO, PEER}
    assert [recipe_for(m) for m in all_methods()] == [f"toy/{GRPO if m == PEER else m}" for m in all_methods()]
    assert eval_template("l1_exact") == "{problem} Think for 64 tokens."
    assert eval_template("laser") is None and eval_template(GRPO) is None and eval_template("base") is None


def test_toy_pareto_fits_run_long_schedules_to_the_bench_steps():
    from bench.toy_pareto import _schedule_over, recipe_for

    assert _schedule_over(recipe_for("curriculum"), 40) == ["rewards.params.total_steps=40"]
    assert _schedule_over(recipe_for("curriculum"), 60) == []  # the recipe's own length
    assert _schedule_over(recipe_for("laser"), 40) == []


def test_toy_pareto_update_reruns_only_the_named_methods(tmp_path, monkeypatch, tiny_toy_model):
    import bench.toy_pareto as tp

    model = str(tiny_toy_model)
    records = [{"method": "base", "seed": 0, "steps": 0, "summary": _fake_summary(0.60, 120.0)},
               {"method": "laser", "seed": 0, "steps": 3, "summary": _fake_summary(0.70, 60.0)},
               {"method": "kimi", "seed": 0, "steps": 3, "summary": _fake_summary(0.50, 44.0)}]
    config = {"methods": ["laser", "kimi"], "seeds": [0], "steps": 3, "problems": 20, "base": model,
              "eval_seed": 0, "jobs": 2, "extra_overrides": []}
    tp.write(records, config=config, quick=True, wall_s=60.0, mach={"cpus": 2}, out_dir=tmp_path)
    ran = []

    def fake_run_specs(specs, jobs, queue, timeout=None):  # training is not what this test is about
        ran.extend(specs)
        return [{"method": s.method, "seed": s.seed, "steps": s.steps, "summary": _fake_summary(0.9, 50.0)} for s in specs]

    monkeypatch.setattr(tp, "run_specs", fake_run_specs)
    r = tp.run(True, methods=["kimi"], seeds=[0], steps=3, problems=20, model=model, out_dir=tmp_path, update=True)
    assert [(s.method, s.seed, s.steps) for s in ran] == [("kimi", 0, 3)]  # the base is not evaluated again
    assert r["methods"]["kimi"]["accuracy"] == 0.9 and r["methods"]["laser"]["accuracy"] == 0.70
    assert r["methods"]["base"]["accuracy"] == 0.60 and r["wall_s"] == 60.0
    assert [u["methods"] for u in r["config"]["updates"]] == [["kimi"]]
    assert "Re-run since (`--update`): kimi" in (tmp_path / "toy_pareto.quick.md").read_text()
    with pytest.raises(ValueError, match=r"run with steps=3, this run has 4"):
        tp.run(True, methods=["kimi"], seeds=[0], steps=4, problems=20, model=model, out_dir=tmp_path, update=True)
    with pytest.raises(ValueError, match="needs --methods"):
        tp.run(True, out_dir=tmp_path, update=True)
    with pytest.raises(FileNotFoundError, match="no results to update"):
        tp.run(True, methods=["kimi"], seeds=[0], steps=3, problems=20, model=model, out_dir=tmp_path / "none",
               update=True)


def test_toy_pareto_cli_passes_recipe_overrides_to_every_method_and_refuses_bad_ones(tmp_path, monkeypatch):
    import bench.toy_pareto as tp

    seen = {}

    def fake_run(quick, **kw):  # what the command line hands to run(); training is not what this test is about
        seen.update(kw)
        return {}

    monkeypatch.setattr(tp, "run", fake_run)
    monkeypatch.setattr(tp, "to_markdown", lambda r: "")
    tp.main(["--task", "toy-scan", "--methods", "laser", "--out", str(tmp_path), "trainer.learning_rate=2e-4"])
    assert seen["extra"] == ["trainer.learning_rate=2e-4"] and seen["out_dir"] == tmp_path
    seen.clear()
    tp.main(["--methods", "laser", "--out", str(tmp_path)])
    assert seen["extra"] is None  # no overrides: the recipes as committed
    # overrides would otherwise land in bench/results, read as the recipes' own settings
    with pytest.raises(SystemExit, match="give --out DIR"):
        tp.main(["--task", "toy-scan", "trainer.learning_rate=2e-4"])
    # a misspelt key fails before any base is built, naming the field and the fix
    with pytest.raises(SystemExit, match="trainer.lerning_rate: not a trl.GRPOConfig field; did you mean 'learning_rate'"):
        tp.main(["--out", str(tmp_path), "trainer.lerning_rate=2e-4"])
    with pytest.raises(SystemExit, match="is not key=value"):
        tp.main(["--out", str(tmp_path), "learning_rate"])


def test_toy_pareto_runs_resume_from_kept_folders(tmp_path, tiny_toy_model):
    """With a kept work folder, a finished run is reused, a stale result of another spec is not, and a
    crashed run's queue claims do not confuse the next one (real worker processes, base evaluations)."""
    from bench.toy_pareto import Spec, run_specs

    a = Spec("base", 0, 0, 4, str(tiny_toy_model), str(tmp_path / "a"))
    b = Spec("base", 1, 0, 4, str(tiny_toy_model), str(tmp_path / "b"))
    first = run_specs([a], 1, tmp_path / "queue")
    assert first[0]["summary"]["n_problems"] == 4
    kept = (tmp_path / "a" / "result.json").stat().st_mtime_ns
    (tmp_path / "queue" / "claimed" / "0001.999999.json").write_text("{}")   # a crashed run's claim
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "result.json").write_text(json.dumps({"method": "base", "seed": 1, "steps": 0,
                                                            "summary": {"accuracy": 123.0}}))  # not b's own
    both = run_specs([a, b], 2, tmp_path / "queue")
    assert both[0] == first[0] and (tmp_path / "a" / "result.json").stat().st_mtime_ns == kept
    assert both[1]["seed"] == 1 and both[1]["summary"]["accuracy"] != 123.0
    assert both[1]["summary"]["n_problems"] == 4


def test_toy_pareto_collect_writes_the_finished_runs_of_a_stopped_bench(tmp_path, tiny_toy_model):
    """--collect trains nothing: the finished runs in the kept folder are the results, the rest are listed
    as not run, and a stale result of another spec does not count."""
    from dataclasses import asdict
    from pathlib import Path

    from bench.toy_pareto import Spec, run

    work, model = tmp_path / "work", str(tiny_toy_model)
    finished = {"base": (Spec("base", 0, 0, 4, model, str(work / "base"), task="toy"), _fake_summary(0.6, 120.0)),
                "laser": (Spec("laser", 0, 2, 4, model, str(work / "laser-seed0"), task="toy"), _fake_summary(0.9, 50.0))}
    for name, (spec, summary) in finished.items():
        Path(spec.out).mkdir(parents=True)
        (Path(spec.out) / "spec.json").write_text(json.dumps(asdict(spec)))
        (Path(spec.out) / "result.json").write_text(json.dumps({"method": name, "seed": 0, "steps": spec.steps,
                                                                "summary": summary}))
    from conciser import toy

    # figures derived from the kept samples are recomputed from them (by the code that collects)
    (work / "laser-seed0" / "eval" / "toy").mkdir(parents=True)
    (work / "laser-seed0" / "eval" / "toy" / "samples.jsonl").write_text("".join(
        json.dumps({"problem_id": p.id, "correct": i < 2, "tokens": 30 + i, "text": ""}) + "\n"
        for i, p in enumerate(toy.eval_problems(250)[:8])))
    (work / "laser-seed1").mkdir()   # a result written by another spec (other steps): not this run's
    (work / "laser-seed1" / "result.json").write_text(json.dumps({"method": "laser", "seed": 1, "summary": {}}))
    r = run(methods=["laser"], seeds=[0, 1], steps=2, problems=4, model=model, out_dir=tmp_path / "out",
            work_dir=work, task="toy", collect=True)
    assert r["methods"]["laser"]["seeds"] == [0] and r["methods"]["laser"]["accuracy"] == pytest.approx(0.9)
    assert r["config"]["collected"]["finished"] == 2 and r["config"]["collected"]["of"] == 3
    laser = next(x for x in r["runs"] if x["method"] == "laser" and "summary" in x)
    assert sum(q["problems"] for q in laser["summary"]["by_need_quartile"].values()) == 8
    md = (tmp_path / "out" / "toy_pareto.md").read_text()
    assert "2 of 3 runs finished" in md and "not run: laser seed 1." in md
    assert not (work / "laser-seed1" / "model").exists()   # nothing was trained
    with pytest.raises(ValueError, match="--collect reads the finished runs"):
        run(methods=["laser"], model=model, collect=True)


def test_pareto_labels_never_overlap_and_error_bars_stay_in_0_1():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from bench.pareto_plot import _overlaps, clipped_yerr, place_labels, zoom_region

    # twelve methods crowded at the concise, accurate corner (as on the first toy), and a few elsewhere
    points = {f"method_{i}": (35 + (i % 4) * 0.6, 0.99 + (i // 4) * 0.004) for i in range(12)}
    points |= {"base": (124.0, 0.73), "l1_exact": (96.0, 0.69), "grpo": (80.6, 1.0)}
    fig, ax = plt.subplots(figsize=(8, 5.5))
    ax.scatter(*zip(*points.values()))
    ax.set_xlim(30, 130)
    ax.set_ylim(0.6, 1.02)
    texts = place_labels(ax, points)
    renderer = fig.canvas.get_renderer()
    boxes = [t.get_window_extent(renderer) for t in texts]
    assert [t.get_text() for t in texts] and sorted(t.get_text() for t in texts) == sorted(points)
    assert not [(a, b) for i, a in enumerate(boxes) for b in boxes[i + 1:] if _overlaps(a, b)]
    plt.close(fig)

    assert clipped_yerr(0.99, 0.05) == [[0.05], [pytest.approx(0.01)]]
    assert clipped_yerr(0.02, 0.05) == [[0.02], [0.05]]
    assert clipped_yerr(0.5, None) == [[0.0], [0.0]]
    x0, x1, y0, y1 = zoom_region(points)
    assert x0 < 35 and 36.8 < x1 < 40 and y0 < 0.99 and y1 > 0.998
    assert zoom_region({"base": (124.0, 0.7), "a": (40.0, 0.9), "b": (90.0, 0.95)}) is None


def test_hint_by_sure_counts_answers_from_the_hint_at_each_printed_odds(tmp_path):
    """Three held-out toy-scan problems by hand: the hint taken on both sure-9 problems, not on the scanned one."""
    from bench.toy_pareto import aggregate, hint_by_sure
    from conciser import toy_scan

    ps = toy_scan.eval_problems(250)
    nine = [p for p in ps if p.sure == 9][:2]
    five, five_b = [p for p in ps if p.sure == 5 and p.hint == p.answer][:2]
    rows = [{"problem_id": nine[0].id, "text": toy_scan.hint_trace(nine[0])},
            # the hint's digit without the phrase (a policy that learned to drop it) counts too
            {"problem_id": nine[1].id, "text": " again.</think>\\boxed{" + nine[1].hint + "}<|end|>"},
            # a full scan does not, even where the hint's digit is the answer
            {"problem_id": five.id, "text": toy_scan.minimal_trace(five)},
            # nor one whose stop step has lost its period (a concise policy drops it)
            {"problem_id": five_b.id, "text": toy_scan.minimal_trace(five_b).replace(" stop.", " stop")}]
    path = tmp_path / "samples.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert hint_by_sure(path, "toy-scan") == {5: 0.0, 9: 1.0}
    assert hint_by_sure(path, "toy") == {}
    # over seeds: a mean per odds, whether the keys came back from JSON as strings or not
    summary = {**_fake_summary(0.7, 30.0), "hint_by_sure": {"5": 0.0, "9": 1.0}}
    agg = aggregate([{"method": "kimi", "seed": 0, "summary": summary},
                     {"method": "kimi", "seed": 1, "summary": {**summary, "hint_by_sure": {5: 0.5, 9: 0.5}}}])
    assert agg["kimi"]["hint_by_sure"] == {5: 0.25, 9: 0.75}
    assert agg["kimi"]["hint_share_by_seed"] == [0.5, 0.5]
    from bench.toy_pareto import write

    config = {"methods": ["kimi"], "seeds": [0, 1], "steps": 3, "problems": 20, "base": "/x/b", "eval_seed": 0, "jobs": 2}
    write([{"method": "base", "seed": 0, "summary": {**_fake_summary(0.9, 90.0), "hint_by_sure": {5: 0.0, 9: 0.1}}},
           {"method": "kimi", "seed": 0, "summary": summary}], config=config, quick=True, wall_s=1.0, mach={"cpus": 2},
          out_dir=tmp_path)
    md = (tmp_path / "toy_pareto.quick.md").read_text()
    assert "hint taken by odds" in md and "sure 5, 9" in md
    assert next(ln for ln in md.splitlines() if ln.startswith("| kimi")).rstrip(" |").endswith("0.00 1.00 | 0.50 | -")
    assert "Seeds split between the shortcut and scanning" in md


def test_false_stops_are_counted_per_seed_and_shown_beside_the_hint(tmp_path):
    """A made-up stop at step 1 counts, a scan and the hint do not; the table shows the mean and each seed's
    share, "-" for results written before the figure was kept, and reads odds keys from JSON (strings)
    and from the aggregate (ints) alike."""
    from bench.toy_pareto import aggregate, false_stop_rate, to_markdown
    from conciser import toy_scan

    ps = [p for p in toy_scan.eval_problems(250) if p.stop > 1][:3]
    name, v, prev, _ = toy_scan._steps(ps[0])[0]
    rows = [{"problem_id": ps[0].id, "text": toy_scan._completion([f"{name}{v}:{prev} stop."], str(prev))},
            {"problem_id": ps[1].id, "text": toy_scan.minimal_trace(ps[1])},
            {"problem_id": ps[2].id, "text": toy_scan.hint_trace(ps[2])}]
    path = tmp_path / "samples.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert false_stop_rate(path, "toy-scan") == pytest.approx(1 / 3)
    assert false_stop_rate(path, "toy") is None

    def rec(method, seed, stops, hints):
        return {"method": method, "seed": seed, "summary": {**_fake_summary(0.8, 30.0), "hint_by_sure": hints,
                                                          **({} if stops is None else {"false_stop_rate": stops})}}

    agg = aggregate([rec("base", 0, 0.0, {5: 0.0, 9: 0.5}), rec("lc_r1", 0, 0.3, {5: 0.0, 9: 0.0}),
                     rec("lc_r1", 1, 0.1, {5: 0.0, 9: 0.0}), rec("kimi", 0, None, {"5": 1.0, "9": 1.0})])
    assert agg["lc_r1"]["false_stop_rate"] == pytest.approx(0.2) and agg["lc_r1"]["false_stop_by_seed"] == [0.3, 0.1]
    assert agg["kimi"]["false_stop_rate"] is None
    agg["kimi"]["hint_by_sure"] = {"5": 1.0, "9": 1.0}   # as read back from the JSON, beside int keys
    result = {"methods": agg, "machine": {"cpus": 2}, "config": {"steps": 3, "seeds": [0, 1], "base": "/x/b",
              "problems": 20, "eval_seed": 0}, "runs": [], "mode": "quick", "date": "d", "wall_s": 1.0,
              "plot": "p.png", "front": None, "split": []}
    md = to_markdown(result)
    def line(method):
        return next(ln for ln in md.splitlines() if ln.startswith(f"| {method} ")).rstrip(" |")

    assert line("lc_r1").endswith("| 0.20 (0.30 0.10)")
    assert line("kimi").endswith("| 1.00 1.00 | 1.00 | -")
    assert "False stops: the share of answers whose thinking claims a stop it never reached" in md


def test_split_methods_are_those_whose_seeds_end_on_and_off_the_shortcut():
    """A method whose seeds answer from the hint 0.99 and 0.02 of the time is split; 0.6 and 0.8 or 0.45 and
    0.55 (a partial policy, the same on every seed) or 0.0 and 0.3 are not; the base and seeds with no
    figure never count."""
    from bench.toy_pareto import aggregate, split_methods, to_markdown

    def rec(method, seed, shares):
        return {"method": method, "seed": seed, "summary": {**_fake_summary(0.8, 30.0), "hint_by_sure": shares}}

    agg = aggregate([rec("base", 0, {5: 0.0, 9: 1.0}),
                     rec("laser_d", 0, {5: 1.0, 9: 0.98}), rec("laser_d", 1, {5: 0.0, 9: 0.04}),
                     rec("dler_da", 0, {5: 0.5, 9: 0.7}), rec("dler_da", 1, {5: 0.7, 9: 0.9}),
                     rec("grpo", 0, {5: 0.0, 9: 0.0}), rec("grpo", 1, {5: 0.2, 9: 0.4}),
                     rec("dler", 0, {5: 0.4, 9: 0.5}), rec("dler", 1, {5: 0.5, 9: 0.6}),
                     rec("kimi", 0, {}), rec("kimi", 1, {5: 1.0, 9: 1.0})])
    assert agg["laser_d"]["hint_share_by_seed"] == [pytest.approx(0.99), pytest.approx(0.02)]
    assert split_methods(agg) == ["laser_d"]
    front = {"front": ["laser_d", "grpo"], "pairs": [], "longest_separated_chain": ["laser_d"]}
    result = {"methods": agg, "machine": {"cpus": 2}, "config": {"steps": 3, "seeds": [0, 1], "base": "/x/b",
              "problems": 20, "eval_seed": 0}, "runs": [], "mode": "quick", "date": "d", "wall_s": 1.0,
              "plot": "p.png", "front": front, "split": split_methods(agg)}
    md = to_markdown(result)
    assert "0.5 or more apart): laser_d; on the front: laser_d." in md
    assert "Longest chain over the whole front" not in md   # written before it was kept: no sentence
    front["longest_separated_tiers"] = ["laser_d", "grpo"]
    assert "tie with one of its members): laser_d → grpo (2 methods)." in to_markdown(result)


def test_toy_pareto_trains_and_evaluates_on_the_task_asked(tmp_path, monkeypatch):
    """--task toy-scan: every method trains on toy-scan data and is evaluated on the toy-scan benchmark,
    and the results go to their own files (the toy-chain results stay as they are)."""
    import conciser.trainers.train as train_mod
    from bench.toy_pareto import Spec, results_name, run_one
    from toy_models import save_random_toy_model

    model = str(save_random_toy_model(tmp_path / "scan-model", task="toy-scan"))
    seen = []

    def fake_train(recipe, overrides):  # the training step is not what this test is about
        seen.append(overrides)
        return model

    monkeypatch.setattr(train_mod, "train", fake_train)
    rec = run_one(Spec("laser", 0, 2, 5, model, str(tmp_path / "laser"), task="toy-scan"))
    assert "data.dataset=toy-scan" in seen[0] and f"model.name_or_path={model}" in seen[0]
    assert rec["summary"]["n_problems"] == 5, rec.get("error")
    ids = [json.loads(line)["problem_id"] for line in (tmp_path / "laser" / "eval" / "toy-scan" / "samples.jsonl").open()]
    assert len(ids) == 5 and all(i.startswith("scan-") for i in ids)
    assert results_name("toy-scan") == "toy_pareto_toy_scan" and results_name("toy") == "toy_pareto"
    # reference statistics are sampled from the task's own base, so they live apart from toy-chain's
    from bench.toy_pareto import task_overrides

    assert "rewards.params.reference_stats=runs/toy-scan/reference/train/samples.jsonl" in task_overrides("toy-scan", "toy/o1_pruner")
    assert not any("reference_stats" in o for o in task_overrides("toy-scan", "toy/laser"))
    assert task_overrides("toy", "toy/o1_pruner") == []
    chain = run_one(Spec("laser", 0, 2, 3, model, str(tmp_path / "chain")))
    assert "data.dataset=toy-scan" not in seen[1]
    assert chain["summary"]["n_problems"] == 3


def test_openr1_len_reward_matches_its_documented_formula():
    """open-r1's len_reward by hand: character lengths, min/max over the call's batch (not per group),
    lambda = 0.5 - (len - min) / (max - min); correct -> lambda, wrong -> min(0, lambda); equal lengths -> 0."""
    from bench.openr1_peer import accuracy_reward, len_reward

    def msg(text):
        return [{"role": "assistant", "content": text}]

    right, wrong = "</think>\\boxed{4}", "</think>\\boxed{5}"          # 17 characters each
    comps = [msg(right), msg("x" * 24 + right), msg("x" * 8 + wrong), msg("x" * 24 + wrong), msg("x" * 48 + right)]
    # lengths 17, 41, 25, 41, 65: min 17, max 65 (span 48)
    assert accuracy_reward(comps, ["4"] * 5) == [1.0, 1.0, 0.0, 0.0, 1.0]
    got = len_reward(comps, ["4"] * 5)
    want = [0.5, 0.5 - 24 / 48, min(0.0, 0.5 - 8 / 48), min(0.0, 0.5 - 24 / 48), 0.5 - 1.0]
    assert got == pytest.approx(want)
    assert got == pytest.approx([0.5, 0.0, 0.0, 0.0, -0.5])
    assert len_reward([msg(right), msg(wrong)], ["4", "4"]) == [0.0, 0.0]   # all the same length
    assert len_reward([right, "x" + right], ["4", "4"]) == pytest.approx([0.5, -0.5])  # plain-text completions too


def test_openr1_peer_trains_with_stock_trl(tmp_path, tiny_toy_model):
    """One real training step of the peer: stock trl.GRPOTrainer, not conciser's trainer, and a saved model."""
    import trl

    import conciser.trainers.grpo as grpo
    from bench.openr1_peer import train_peer

    built = []
    real_init = trl.GRPOTrainer.__init__

    def spy(self, *args, **kwargs):
        built.append((type(self), [f.__name__ for f in kwargs["reward_funcs"]]))
        real_init(self, *args, **kwargs)

    trl.GRPOTrainer.__init__ = spy
    try:
        out = train_peer("toy/grpo", [f"model.name_or_path={tiny_toy_model}", f"trainer.output_dir={tmp_path / 'm'}",
                                      "trainer.max_steps=1", "trainer.per_device_train_batch_size=8",
                                      "trainer.num_generations=4", "trainer.max_completion_length=16",
                                      "data.n_train=16", "trainer.save_steps=100"])
    finally:
        trl.GRPOTrainer.__init__ = real_init
    assert built == [(trl.GRPOTrainer, ["accuracy_reward", "len_reward"])]
    assert not issubclass(built[0][0], grpo.ConciseGRPOTrainer)
    assert (out / "model.safetensors").is_file()
    assert json.loads((out / "trainer_state.json").read_text())["global_step"] == 1


def test_separated_front_by_hand():
    """Front = methods no other beats on both axes; neighbours separated when the longer one is more
    accurate and longer by > 2x the pooled seed std (floors 0.01 accuracy, 0.02 x minimal)."""
    from bench.toy_pareto import separated_front

    def m(acc, tom, acc_std=None, tom_std=None):
        return {"accuracy": acc, "tokens_over_minimal": tom, "accuracy_std": acc_std, "tokens_over_minimal_std": tom_std}

    agg = {"base": m(0.6, 3.0),
           "a": m(0.60, 0.5, 0.02, 0.05),    # shortest
           "b": m(0.70, 1.0, 0.02, 0.05),    # +0.10 > 2 * 0.02, +0.5 > 2 * 0.05: separated from a
           "c": m(0.72, 1.5, 0.03, 0.05),    # +0.02 < 2 * sqrt((0.02^2 + 0.03^2) / 2) = 0.051: a tie with b
           "d": m(0.90, 2.0, 0.01, 0.01),    # +0.18 > 0.067, +0.5: separated from c
           "e": m(0.65, 1.2),                # dominated by b (more accurate and shorter)
           "f": {"accuracy": None}}          # failed: not on the front
    r = separated_front(agg)
    assert r["front"] == ["a", "b", "c", "d"]
    assert [p["separated"] for p in r["pairs"]] == [True, False, True]
    assert r["pairs"][1]["d_accuracy"] == pytest.approx(0.02)
    assert r["longest_separated_chain"] == ["a", "b"]
    # over the whole front, skipping c (a tie with b): b -> d is +0.20 > 2 * 0.016 and +1.0 > 2 * 0.036
    assert r["longest_separated_tiers"] == ["a", "b", "d"]
    # the floors: with no seed std at all, 0.015 accuracy is not more than 2 * 0.01
    assert separated_front({"x": m(0.5, 1.0), "y": m(0.515, 1.5)})["pairs"][0]["separated"] is False
    assert separated_front({"x": m(0.5, 1.0), "y": m(0.53, 1.05)})["pairs"][0]["separated"] is True


def test_best_method_is_the_shortest_at_least_as_accurate_as_the_base():
    from bench.toy_pareto import best_method

    agg = {"base": {"accuracy": 0.80, "tokens_over_minimal": 3.0},
           "long": {"accuracy": 0.95, "tokens_over_minimal": 2.0},
           "short": {"accuracy": 0.81, "tokens_over_minimal": 1.1},
           "shortcut": {"accuracy": 0.60, "tokens_over_minimal": 0.3},
           "failed": {"accuracy": None}}
    assert best_method(agg) == "short"
    # none as accurate as the base: the most accurate
    assert best_method({**agg, "base": {"accuracy": 0.99}}) == "long"
    assert best_method({"base": {"accuracy": 0.5}}) is None


def test_budget_curves_have_a_point_per_budget_and_level(tmp_path):
    from bench.toy_pareto import CURVE_BUDGETS, budget_curves
    from toy_models import save_random_toy_model

    model = save_random_toy_model(tmp_path / "m", task="toy-scan")
    curves = budget_curves({"random": model}, "toy-scan", problems=10)
    pts = curves["random"]
    assert [p["budget"] for p in pts] == list(CURVE_BUDGETS)
    assert all(0.0 <= p["accuracy"] <= 1.0 and set(p["by_level"]) == {"1", "2", "3", "4", "5"} for p in pts)
    assert all(p["mean_tokens"] > 0 for p in pts)


def test_time_to_concise_takes_the_first_checkpoint_meeting_both_bars(tmp_path):
    from bench.time_to_concise import first_concise, to_markdown

    pts = [{"step": 10, "wall_s": 20.0, "accuracy": 0.95, "tokens_over_minimal": 1.31},   # not short enough
           {"step": 5, "wall_s": 10.0, "accuracy": 0.80, "tokens_over_minimal": 1.10},    # below the base
           {"step": 15, "wall_s": 30.0, "accuracy": 0.90, "tokens_over_minimal": 1.30},   # both: the first
           {"step": 20, "wall_s": 40.0, "accuracy": 0.99, "tokens_over_minimal": 1.00}]
    assert first_concise(pts, base_accuracy=0.90)["step"] == 15
    assert first_concise(pts, base_accuracy=0.995) is None
    r = {"config": {"task": "toy-scan", "every": 5, "steps": 20, "problems": 60, "seeds": [0, 1]}, "date": "d",
         "machine": {"cpus": 2}, "wall_s": 60, "base": {"accuracy": 0.9},
         "methods": {"laser": [{"seed": 0, "points": pts, "reached": pts[2]}, {"seed": 1, "points": pts, "reached": None}]}}
    row = next(ln for ln in to_markdown(r).splitlines() if ln.startswith("| laser"))
    assert "1/2" in row and "15, never" in row and "30 s, never" in row


def test_serve_ltr_resamples_ranker_data_taken_with_another_cap(tmp_path, monkeypatch):
    """The ranker must learn the lengths the server will produce: data sampled with another cap is redone."""
    import argparse

    from bench import serve_ltr

    calls = []

    def fake_run(cmd, log, env=None):
        calls.append(cmd[3:])
        if cmd[3] == "ranker":
            out = tmp_path / "ranker-base"
            out.mkdir(exist_ok=True)
            (out / "ranker.json").write_text(json.dumps({k: 0.5 for k in (
                "kendall_tau", "pair_accuracy", "kendall_tau_prompt_chars", "pair_accuracy_prompt_chars",
                "n_train", "n_heldout", "train_seconds")}))

    monkeypatch.setattr(serve_ltr, "_run", fake_run)
    train_file = tmp_path / "toy_train.jsonl"
    data = tmp_path / "eval-base" / "toy_train"
    data.mkdir(parents=True)
    (data / "samples.jsonl").write_text("".join(json.dumps({"tokens": 100 + i % 60}) + "\n"
                                                for i in range(2 * serve_ltr.TRAIN_PROBLEMS)))
    (data / "run.json").write_text(json.dumps({"max_new_tokens": 160}))

    info = serve_ltr._ranker("base", tmp_path / "model", tmp_path, train_file, argparse.Namespace(max_tokens=256), [])
    assert [c[0] for c in calls] == ["eval", "ranker"]
    assert calls[0][calls[0].index("--max-new-tokens") + 1] == "256"
    assert info["samples_max_tokens"] == 159

    (data / "run.json").write_text(json.dumps({"max_new_tokens": 256}))   # same cap: both reused
    calls.clear()
    serve_ltr._ranker("base", tmp_path / "model", tmp_path, train_file, argparse.Namespace(max_tokens=256), [])
    assert calls == []


def test_serve_ltr_rejects_a_cap_below_one_before_any_work(tmp_path):
    from bench import serve_ltr

    with pytest.raises(SystemExit) as e:
        serve_ltr.main(["--max-tokens", "0", "--keep", str(tmp_path / "keep")])
    assert e.value.code == 2 and not (tmp_path / "keep").exists()


def test_serve_ltr_replay_by_hand():
    """One slot, jobs (arrival, tokens) A (0, 5), B (1, 4), C (2, 1), one second a token.
    FCFS: A 0-5, B 5-9, C 9-10: latencies 5, 8, 8 (mean 7), waits 0, 4, 7.
    Shortest first: A 0-5 (alone at 0), then C 5-6, B 6-10: latencies 5, 9, 4 (mean 6), waits 0, 5, 3."""
    from bench.serve_ltr import replay

    jobs = [(0.0, 5), (1.0, 4), (2.0, 1)]
    assert replay([(a, a, t) for a, t in jobs], 1, 1.0) == pytest.approx((7.0, 7.0))
    assert replay([(a, t, t) for a, t in jobs], 1, 1.0) == pytest.approx((6.0, 5.0))
    # two slots, one idle until a late arrival: nobody waits; half a second a token
    assert replay([(0.0, 0.0, 6), (10.0, 10.0, 2)], 2, 0.5) == pytest.approx((2.0, 0.0))


def test_serve_ltr_window_sweep_recovers_the_quantiles_it_replays(tmp_path):
    """Priorities written as a + W q are replayed as a + x W q: x = 1 gives the arm's own order back."""
    from bench.serve_ltr import REPLAY_WINDOWS, replay, window_sweep

    W, slots = 10.0, 1
    reqs = [(0.0, 5, 0.9), (1.0, 4, 0.6), (2.0, 1, 0.1), (2.5, 3, 0.4)]   # arrival, tokens, quantile
    def write(arm, prio):
        rows = [{"ok": True, "round": 0, "arrival": a, "completion_tokens": t, "priority": prio(a, q)} for a, t, q in reqs]
        (tmp_path / f"requests-m-{arm}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    write("fcfs", lambda a, q: None)
    write("ltr", lambda a, q: round(1000 * (a + W * q)))
    write("oracle", lambda a, q: round(1000 * (a + W * q)))
    (tmp_path / "summary.json").write_text(json.dumps({"models": {"m": {"arms": {
        "fcfs": {"metrics": {"output_tokens_per_s": 1.0, "latency_mean": 7.5}}}}}}))

    sw = window_sweep(tmp_path, "m", W, slots)
    fcfs = replay([(a, a, t) for a, t, _ in reqs], slots, 1.0)
    own = replay([(a, a + W * q, t) for a, t, q in reqs], slots, 1.0)
    pure = replay([(a, q, t) for a, t, q in reqs], slots, 1.0)
    assert sw["fcfs_replay_mean_s"] == pytest.approx(fcfs[0]) and sw["fcfs_measured_mean_s"] == 7.5
    by_x = {w["window_x"]: w for w in sw["windows"]}
    assert set(by_x) == set(REPLAY_WINDOWS)
    assert by_x[1.0]["ltr"]["mean_latency_ratio"] == pytest.approx(own[0] / fcfs[0], rel=1e-3)
    assert by_x[float("inf")]["oracle"]["mean_latency_ratio"] == pytest.approx(pure[0] / fcfs[0])
    assert by_x[float("inf")]["oracle"]["mean_latency_ratio"] < 1.0        # shortest first helps this stream
    assert window_sweep(tmp_path, "m", 0.0, slots) is None


def test_shortcut_front_give_up_by_hand():
    """k = 2, stop at step 1 or 2 with 1/2 each, hint right 60% in 13 tokens, 7 a step, minimal 7h + 6:
    j = 0: 0.6, 13; j = 1: 0.5 + 0.5 x 0.6 = 0.8, 0.5 x 13 + 0.5 x (7 + 13) = 16.5; j = 2: 1.0, 0.5 x 13 + 0.5 x 20 = 16.5."""
    from bench.shortcut_front import give_up, stop_probs

    kw = dict(hint_accuracy=0.6, step_tokens=7, hint_tokens=13, minimal=lambda h: 7 * h + 6)
    assert give_up([0.5, 0.5], 0, **kw) == pytest.approx((0.6, 13.0))
    assert give_up([0.5, 0.5], 1, **kw) == pytest.approx((0.8, 16.5))
    assert give_up([0.5, 0.5], 2, **kw) == pytest.approx((1.0, 16.5))
    assert stop_probs(2, 1.0) == pytest.approx([2 / 3, 1 / 3]) and stop_probs(3, 0.0) == pytest.approx([1 / 3] * 3)


def test_shortcut_front_runs_from_the_minimal_trace_to_the_hint():
    from bench.shortcut_front import front
    from conciser import toy_scan

    r = front((0.0, 0.02, 1.0))
    free, mid, dear = r["rows"]
    assert free["accuracy"] == pytest.approx(1.0) and free["tokens_over_minimal"] == pytest.approx(1.0)
    assert all(set(by.values()) == {toy_scan.LEVELS[lv].k} for lv, by in free["steps_before_hint"].items())
    mean_odds = sum(toy_scan.SURE) / len(toy_scan.SURE) / 10
    assert dear["accuracy"] == pytest.approx(mean_odds) and all(set(by.values()) == {0} for by in dear["steps_before_hint"].values())
    assert dear["accuracy"] < mid["accuracy"] < free["accuracy"]
    # in between, the surer hints go first: where a level gives up at some odds, it gives up at every surer one
    for by in mid["steps_before_hint"].values():
        given = [j == 0 for _, j in sorted(by.items())]
        assert given == sorted(given)
    assert r["hint_tokens"] == toy_scan.minimal_tokens(1) and r["step_tokens"] == 7


def test_a_worker_whose_bench_was_killed_claims_nothing_more(tmp_path, monkeypatch):
    """Killing the bench's process (not its group) re-parents its workers; they must stop claiming specs
    rather than train the rest of the queue unseen (orphans once trained on for an hour beside a new run)."""
    from bench import toy_pareto

    todo = tmp_path / "todo"
    todo.mkdir()
    (tmp_path / "claimed").mkdir()
    (todo / "0000.json").write_text("{}")
    parents = iter([100, 1])   # started under pid 100, then re-parented to init
    monkeypatch.setattr(toy_pareto.os, "getppid", lambda: next(parents))
    toy_pareto._worker_loop(str(tmp_path))
    assert (todo / "0000.json").exists() and not any((tmp_path / "claimed").iterdir())


def test_toy_pareto_records_the_sft_steps_of_its_base(tmp_path):
    from bench.toy_pareto import base_sft_steps

    (tmp_path / "toy_base.json").write_text(json.dumps({"task": "toy-scan", "config": {"steps": 1200}}))
    assert base_sft_steps(str(tmp_path)) == 1200
    assert base_sft_steps(str(tmp_path / "not-a-toy-base")) is None   # any other model: nothing to report
