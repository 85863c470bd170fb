"""Budget sweeps, certaindex early stopping and target lengths, end to end on tiny toy models, and
their resumption after a crash. Run: .venv/bin/pytest tests/eval/test_sweeps.py"""

import json
import shutil

import pytest

from conciser import toy
from conciser.eval.backends import Generation
from conciser.eval.budget import BudgetSweep, budget_auc
from conciser.eval.generate import Prompts
from conciser.eval.run import VOLATILE_KEYS, evaluate

FAST = dict(progress=False, print_table=False)


def _stable(summary):
    return {k: v for k, v in summary.items() if k not in VOLATILE_KEYS}


def _lines(path):
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


def _ungraded(line: str) -> str:
    return json.dumps({k: v for k, v in json.loads(line).items() if k not in ("correct", "extracted", "timed_out", "grade_error")})


# ---------------------------------------------------------------- the cutting rules


class AnswerBackend:
    """Answers every forced request with `answer}` + EOS (what a model that obeys the probe writes)."""

    def __init__(self, tok, answer):
        self.ids = list(tok(answer + "}" + toy.EOS, add_special_tokens=False).input_ids)
        self.requests = []

    def generate(self, requests, *, temperature, top_p, on_done=None, progress=False, desc=""):
        out = []
        for r in requests:
            self.requests.append(r)
            g = Generation(r.key, self.ids[: r.max_tokens], "stop")
            out.append(g)
            if on_done:
                on_done(g)
        return out


def test_budget_cuts_only_unfinished_thinking(tmp_path):
    tok = toy.build_tokenizer()
    bench_p = toy.eval_problems(1)[0]
    from conciser.eval.benchmarks import load_benchmark

    bench = load_benchmark("toy")
    done_ids = list(tok(toy.minimal_trace(bench_p), add_special_tokens=False).input_ids)
    close = next(t for t in range(1, len(done_ids) + 1) if toy.THINK_CLOSE in tok.decode(done_ids[:t]))
    open_ids = list(tok(toy.THINK_OPEN + " a2:8=0. wait, check a2:8=0. ok. b4:0=4. hmm", add_special_tokens=False).input_ids)
    cap = len(open_ids)
    records = [
        {"problem_id": bench_p.id, "sample": 0, "answer": bench_p.answer, "token_ids": done_ids, "tokens": len(done_ids),
         "finish_reason": "stop", "correct": True, "level": 1},
        {"problem_id": bench_p.id, "sample": 1, "answer": bench_p.answer, "token_ids": open_ids, "tokens": cap,
         "finish_reason": "length", "correct": False, "level": 1},
    ]
    prompts = Prompts(ids=[[1, 2, 3]], think_prefill="", chat_template=True)
    budgets = [close - 1, close, cap]
    sweep = BudgetSweep(tmp_path, bench, budgets, prompts, {bench_p.id: 0}, tok, seed=0, answer_tokens=8)
    assert [sweep.forced(records[0], b) for b in budgets] == [True, False, False]   # closed at `close` tokens
    assert [sweep.forced(records[1], b) for b in budgets] == [True, True, True]     # truncated: forced even at the cap
    backend = AnswerBackend(tok, bench_p.answer)
    assert sweep.generate(backend, records, temperature=0.6, top_p=0.95, progress=False) == 4
    probe = list(tok(bench.probe, add_special_tokens=False).input_ids)
    r0 = next(r for r in backend.requests if r.key.endswith(f"\t0\t{close - 1}"))
    assert r0.prompt_ids == [1, 2, 3] + done_ids[: close - 1] + probe and r0.max_tokens == 8

    def grade(rows, texts):
        from conciser.eval.scoring import grade_records

        grade_records(rows, "toy", prefill="", timeout=5, workers=None, progress=False, texts=texts)

    sweep.grade(records, grade, rescore=False)
    assert all(w["correct"] for w in sweep.rows)       # the forced answer closes the thinking and boxes the digit
    curve = sweep.curve(records)
    forced_tokens = lambda b: b + len(probe) + len(backend.ids)  # noqa: E731
    assert [c["accuracy"] for c in curve] == [1.0, 1.0, 1.0]
    assert curve[1]["mean_tokens"] == (len(done_ids) + forced_tokens(close)) / 2
    assert curve[0]["forced_rate"] == 1.0 and curve[1]["forced_rate"] == 0.5
    assert curve[0]["by_level"]["1"]["accuracy"] == 1.0
    # nothing is generated twice: the rows are saved as they finish
    assert sweep.generate(backend, records, temperature=0.6, top_p=0.95, progress=False) == 0
    again = BudgetSweep(tmp_path, bench, budgets, prompts, {bench_p.id: 0}, tok, seed=0, answer_tokens=8)
    assert again.todo(records) == [] and again.curve(records) == curve


def test_budget_auc():
    assert budget_auc([{"budget": 16, "accuracy": 0.2}, {"budget": 64, "accuracy": 0.6}]) == pytest.approx(0.4)
    # trapezoids in log2(budget): 16->32 (width 1) and 32->128 (width 2)
    curve = [{"budget": 32, "accuracy": 0.5}, {"budget": 16, "accuracy": 0.0}, {"budget": 128, "accuracy": 1.0}]
    assert budget_auc(curve) == pytest.approx((1 * 0.25 + 2 * 0.75) / 3)
    assert budget_auc([{"budget": 8, "accuracy": 0.3}]) == 0.3 and budget_auc([]) is None


# ---------------------------------------------------------------- end to end, and resumption

BUDGETS = [8, 16, 24, 48]


@pytest.fixture(scope="module")
def sweep_run(tiny_sft_toy_model, tmp_path_factory):
    out = tmp_path_factory.mktemp("sweep")
    s = evaluate(str(tiny_sft_toy_model), "toy", n=2, limit=8, budgets=BUDGETS, out_dir=out, **FAST)
    return out, s


def test_budget_sweep_end_to_end(sweep_run):
    out, s = sweep_run
    curve = json.loads((out / "toy" / "budget_curve.json").read_text())
    assert [c["budget"] for c in curve] == BUDGETS and s["budgets"] == BUDGETS
    assert s["budget_auc"] == budget_auc(curve) and s["max_new_tokens"] == max(BUDGETS)
    assert s["protocol"]["max_new_tokens"] == "budgets"
    assert all(set(c) >= {"accuracy", "mean_tokens", "forced_rate", "by_level"} for c in curve)
    # at the cap the sweep only adds forced answers to samples the plain eval found truncated
    assert curve[-1]["accuracy"] >= s["accuracy"]
    for c in curve:
        assert c["mean_tokens"] <= c["budget"] + len(toy.build_tokenizer()(toy.THINK_CLOSE + "\\boxed{").input_ids) + 20
    samples = _lines(out / "toy" / "samples.jsonl")
    assert all(len(r["token_ids"]) == r["tokens"] for r in samples)
    rows = _lines(out / "toy" / "budget_samples.jsonl")
    assert rows and all(r["tokens"] == r["budget"] + len(r["ids"]) for r in rows)


def test_killed_budget_sweep_resumes_to_the_same_summary(tiny_sft_toy_model, sweep_run, tmp_path):
    out, s = sweep_run
    # killed during the forced pass: all samples saved and graded, 5 forced rows and half of a 6th
    rows = (out / "toy" / "budget_samples.jsonl").read_text().splitlines()
    assert len(rows) > 6
    (tmp_path / "a" / "toy").mkdir(parents=True)
    for f in ("run.json", "samples.jsonl"):
        shutil.copy(out / "toy" / f, tmp_path / "a" / "toy" / f)
    (tmp_path / "a" / "toy" / "budget_samples.jsonl").write_text(
        "\n".join(_ungraded(x) for x in rows[:5]) + "\n" + rows[5][: len(rows[5]) // 2])
    resumed = evaluate(str(tiny_sft_toy_model), "toy", n=2, limit=8, budgets=BUDGETS, out_dir=tmp_path / "a", **FAST)
    assert resumed["samples_generated"] == len(rows) - 5
    assert _stable(resumed) == _stable(s)
    assert (tmp_path / "a" / "toy" / "budget_curve.json").read_text() == (out / "toy" / "budget_curve.json").read_text()
    # killed during generation: 5 samples saved, the 6th cut, nothing graded, no forced row yet
    lines = (out / "toy" / "samples.jsonl").read_text().splitlines()
    (tmp_path / "b" / "toy").mkdir(parents=True)
    shutil.copy(out / "toy" / "run.json", tmp_path / "b" / "toy" / "run.json")
    (tmp_path / "b" / "toy" / "samples.jsonl").write_text(
        "\n".join(_ungraded(x) for x in lines[:5]) + "\n" + lines[5][:40])
    resumed = evaluate(str(tiny_sft_toy_model), "toy", n=2, limit=8, budgets=BUDGETS, out_dir=tmp_path / "b", **FAST)
    assert resumed["samples_generated"] == len(lines) - 5 + len(rows)
    assert _stable(resumed) == _stable(s)


def test_a_plain_run_is_extended_into_a_sweep(tiny_sft_toy_model, sweep_run, tmp_path):
    out, s = sweep_run
    plain = evaluate(str(tiny_sft_toy_model), "toy", n=2, limit=8, max_new_tokens=max(BUDGETS), out_dir=tmp_path, **FAST)
    assert plain["accuracy"] == s["accuracy"] and "budget_auc" not in plain
    swept = evaluate(str(tiny_sft_toy_model), "toy", n=2, limit=8, budgets=BUDGETS, out_dir=tmp_path, **FAST)
    assert _stable(swept) == _stable(s)   # its samples had no token ids: regenerated, identical (per-sample seeds)


def test_compare_draws_budget_curves_where_its_help_says(sweep_run, tmp_path, capsys):
    from conciser.cli import main

    out, _ = sweep_run
    run_a, run_b = tmp_path / "base", tmp_path / "trained"
    shutil.copytree(out, run_a)
    shutil.copytree(out, run_b)
    (tmp_path / "pareto.png").write_text("the user's own file")
    assert main(["eval", "compare", str(run_a), f"trained={run_b}"]) == 0
    printed = capsys.readouterr().out
    assert (run_a / "pareto.png").read_bytes()[:4] == b"\x89PNG" and (run_a / "budget_curves.png").stat().st_size > 1000
    assert (tmp_path / "pareto.png").read_text() == "the user's own file" and "budget_auc" in printed
    assert main(["eval", "compare", str(run_a), f"trained={run_b}"]) == 0
    assert "replacing the existing" in capsys.readouterr().out


# ---------------------------------------------------------------- certaindex early stopping

ES = dict(n=8, limit=8, early_stop="certaindex", tau=0.6, round_size=4, temperature=1.0, **FAST)


@pytest.fixture(scope="module")
def early_run(tiny_sft_toy_model, tmp_path_factory):
    out = tmp_path_factory.mktemp("early")
    return out, evaluate(str(tiny_sft_toy_model), "toy", out_dir=out, **ES)


def test_certaindex_early_stop_end_to_end(tiny_sft_toy_model, early_run, tmp_path):
    out, s = early_run
    samples = _lines(out / "toy" / "samples.jsonl")
    per_problem = {}
    for r in samples:
        per_problem[r["problem_id"]] = per_problem.get(r["problem_id"], 0) + 1
    assert set(per_problem.values()) <= {4, 8} and len(per_problem) == 8     # whole rounds of 4, at most n
    assert s["samples_generated"] == len(samples) and s["samples_used"] == len(samples) / 8
    assert s["certaindex_tau"] == 0.6 and s["certaindex_round"] == 4 and "early_stop_accuracy" in s
    assert s["tokens_used"] == pytest.approx(sum(r["tokens"] for r in samples) / 8, abs=1e-5)
    # the full run extends the same samples (a prefix), and then both come from one generation
    shutil.copytree(out, tmp_path / "full")
    full = evaluate(str(tiny_sft_toy_model), "toy", out_dir=tmp_path / "full", n=8, limit=8, temperature=1.0, **FAST)
    assert full["samples_generated"] == 64 - len(samples) and "maj@8" in full
    again = evaluate(str(tiny_sft_toy_model), "toy", out_dir=tmp_path / "full", **ES)
    assert again["samples_generated"] == 0
    for key in ("early_stop_accuracy", "samples_used", "tokens_used"):
        assert again[key] == s[key]
    assert again["maj@8"] == full["maj@8"] and again["full_tokens"] == pytest.approx(full["mean_tokens"] * 8, abs=1e-4)
    assert again["tokens_used_fraction"] == pytest.approx(again["tokens_used"] / again["full_tokens"], abs=1e-5)
    sweep = evaluate(str(tiny_sft_toy_model), "toy", out_dir=tmp_path / "full", tau_sweep=[0.3, 0.6, 1.0], **ES)
    at = {row["tau"]: row for row in sweep["certaindex_sweep"]}
    assert at[0.6]["accuracy"] == s["early_stop_accuracy"] and at[0.6]["samples_used"] == s["samples_used"]
    assert at[0.3]["samples_used"] <= at[0.6]["samples_used"] <= at[1.0]["samples_used"] <= 8


def test_killed_early_stop_run_resumes_to_the_same_summary(tiny_sft_toy_model, early_run, tmp_path):
    out, s = early_run
    lines = (out / "toy" / "samples.jsonl").read_text().splitlines()
    (tmp_path / "toy").mkdir()
    shutil.copy(out / "toy" / "run.json", tmp_path / "toy" / "run.json")
    # killed in the middle of a round: 6 samples saved (some graded, one round incomplete), the 7th cut
    kept = [x if i < 3 else _ungraded(x) for i, x in enumerate(lines[:6])]
    (tmp_path / "toy" / "samples.jsonl").write_text("\n".join(kept) + "\n" + lines[6][:30])
    resumed = evaluate(str(tiny_sft_toy_model), "toy", out_dir=tmp_path, **ES)
    assert resumed["samples_generated"] == len(lines) - 6
    assert _stable(resumed) == _stable(s)


# ---------------------------------------------------------------- target lengths


def test_target_lengths_are_asked_and_scored(tiny_toy_model, tmp_path):
    from conciser.eval.metrics import length_score

    s = evaluate(str(tiny_toy_model), "toy", limit=3, target_lengths=[16, 32], max_new_tokens=40, out_dir=tmp_path, **FAST)
    samples = _lines(tmp_path / "toy" / "samples.jsonl")
    assert s["n_problems"] == 6 and {r["problem_id"].rsplit("@", 1)[1] for r in samples} == {"16", "32"}
    assert set(s["length_by_target"]) == {"16", "32"}
    want = [length_score(r["tokens"], int(r["problem_id"].rsplit("@", 1)[1])) for r in samples]
    assert s["length_score"] == pytest.approx(sum(want) / len(want), abs=1e-5)
    assert s["length_by_target"]["16"]["n_samples"] == 3
