"""End to end on a random-init toy model with the transformers backend: .venv/bin/pytest tests/eval/test_run.py"""

import json
import shutil

import pytest

from conciser.eval import run as run_mod
from conciser.eval.run import VOLATILE_KEYS, evaluate

FAST = dict(progress=False, print_table=False, limit=10)


def _stable(summary):
    return {k: v for k, v in summary.items() if k not in VOLATILE_KEYS}


def _lines(path):
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


@pytest.fixture(scope="module")
def base_run(tiny_toy_model, tmp_path_factory):
    out = tmp_path_factory.mktemp("base_run")
    summary = evaluate(str(tiny_toy_model), "toy", n=2, out_dir=out, batch_size=64, **FAST)
    return out, summary


def test_toy_end_to_end(tiny_toy_model, base_run):
    from conciser import toy

    out, s = base_run
    for key in ("accuracy", "mean_tokens", "mean_minimal_tokens", "n_problems", "n_samples", "by_level",
                "pass@1", "pass@2", "maj@2", "truncation_rate", "tokens_over_minimal", "p90_tokens_incorrect"):
        assert key in s, key
    assert s["n_problems"] == 10 and s["n_samples"] == 20 and s["n"] == 2
    assert s["temperature"] == 0.6 and s["top_p"] == 0.95 and s["max_new_tokens"] == toy.DEFAULT_MAX_COMPLETION
    assert set(s["by_level"]) == {"1", "2", "3", "4", "5"}
    assert set(s["by_level"]["3"]) >= {"accuracy", "mean_tokens", "mean_minimal_tokens"}
    assert s["by_level"]["3"]["mean_minimal_tokens"] == toy.minimal_tokens(toy.LEVELS[3])
    assert json.loads((out / "toy" / "summary.json").read_text()) == s      # returned == saved
    samples = _lines(out / "toy" / "samples.jsonl")
    assert len(samples) == 20 and len({(r["problem_id"], r["sample"]) for r in samples}) == 20
    for r in samples:
        assert {"problem_id", "sample", "seed", "text", "tokens", "finish_reason", "correct", "extracted", "answer"} <= set(r)
        assert 1 <= r["tokens"] <= toy.DEFAULT_MAX_COMPLETION
        assert r["finish_reason"] in ("stop", "length")
        if r["tokens"] < toy.DEFAULT_MAX_COMPLETION:
            assert r["finish_reason"] == "stop"   # an EOS ended it (counted in tokens)
    assert s["truncation_rate"] == pytest.approx(sum(r["finish_reason"] == "length" for r in samples) / 20)
    assert s["mean_tokens"] == pytest.approx(sum(r["tokens"] for r in samples) / 20)


def test_rerun_generates_nothing_and_batch_size_does_not_matter(tiny_toy_model, base_run, tmp_path):
    out, s = base_run
    again = evaluate(str(tiny_toy_model), "toy", n=2, out_dir=out, **FAST)
    assert again["samples_generated"] == 0 and _stable(again) == _stable(s)
    # per-sample seeds: another batch size (other batch compositions) gives the same samples
    other = evaluate(str(tiny_toy_model), "toy", n=2, out_dir=tmp_path, batch_size=3, **FAST)
    assert _stable(other) == _stable(s)
    texts = lambda d: [(r["problem_id"], r["sample"], r["text"]) for r in _lines(d / "toy" / "samples.jsonl")]  # noqa: E731
    assert texts(tmp_path) == texts(out)


def test_killed_and_resumed_run_gives_the_same_summary(tiny_toy_model, base_run, tmp_path):
    out, s = base_run
    # A crash after 7 of 20 samples were appended, in the middle of writing the 8th, before grading.
    lines = (out / "toy" / "samples.jsonl").read_text().splitlines()
    ungraded = [json.dumps({k: v for k, v in json.loads(x).items() if k not in ("correct", "extracted", "timed_out", "grade_error")})
                for x in lines[:8]]
    (tmp_path / "toy").mkdir()
    (tmp_path / "toy" / "samples.jsonl").write_text("\n".join(ungraded[:7]) + "\n" + ungraded[7][: len(ungraded[7]) // 2])
    shutil.copy(out / "toy" / "run.json", tmp_path / "toy" / "run.json")
    resumed = evaluate(str(tiny_toy_model), "toy", n=2, out_dir=tmp_path, batch_size=64, **FAST)
    assert resumed["samples_generated"] == 13
    assert _stable(resumed) == _stable(s)
    assert _lines(tmp_path / "toy" / "samples.jsonl") == _lines(out / "toy" / "samples.jsonl")


def test_more_samples_later_and_rescore(tiny_toy_model, base_run, tmp_path):
    from conciser import toy

    out, _ = base_run
    shutil.copytree(out, tmp_path, dirs_exist_ok=True)
    s3 = evaluate(str(tiny_toy_model), "toy", n=3, out_dir=tmp_path, **FAST)
    assert s3["samples_generated"] == 10 and s3["n_samples"] == 30 and "pass@3" in s3
    # rescore: replace one saved sample by a correct minimal trace; no generation happens
    path = tmp_path / "toy" / "samples.jsonl"
    recs = _lines(path)
    p = next(q for q in toy.eval_problems(10) if q.id == recs[0]["problem_id"])
    recs[0]["text"] = toy.minimal_trace(p)
    path.write_text("".join(json.dumps(r) + "\n" for r in recs))
    rescored = evaluate(str(tiny_toy_model), "toy", n=3, out_dir=tmp_path, rescore=True, **FAST)
    assert rescored["samples_generated"] == 0
    assert rescored["accuracy"] == pytest.approx(s3["accuracy"] + (0 if recs[0]["correct"] else 1 / 30), abs=1e-5)
    assert _lines(path)[0]["correct"] is True


def test_settings_mismatch_is_refused(tiny_toy_model, base_run):
    out, _ = base_run
    with pytest.raises(ValueError, match="temperature: 0.6 there, 1.0 now.*--out"):
        evaluate(str(tiny_toy_model), "toy", n=2, out_dir=out, temperature=1.0, **FAST)


@pytest.fixture
def no_generation(monkeypatch):
    def refuse(*a, **k):
        raise AssertionError("the tokenizer or the model was loaded before the input was checked")
    monkeypatch.setattr(run_mod, "backend_factory", refuse)
    monkeypatch.setattr(run_mod, "load_tokenizer", refuse)


def test_bad_input_fails_before_generation(tiny_toy_model, tmp_path, no_generation):
    model = str(tiny_toy_model)
    with pytest.raises(ValueError, match="unknown benchmark 'aime2024'; known: toy, toy-chain, toy-scan, math500, aime24"):
        evaluate(model, "aime2024", out_dir=tmp_path, **FAST)
    with pytest.raises(ValueError, match="--model: path /nonexistent/model does not exist"):
        evaluate("/nonexistent/model", "toy", out_dir=tmp_path, **FAST)
    data = tmp_path / "qs.jsonl"
    data.write_text(json.dumps({"problem": "1+1?", "solution": "2"}) + "\n")
    with pytest.raises(ValueError, match=r"column\(s\) \['answer'\] not found"):
        evaluate(model, str(data), out_dir=tmp_path, **FAST)
    with pytest.raises(ValueError, match=r"k=\[4\] needs n >= k.*n=2"):
        evaluate(model, "toy", n=2, ks=[1, 4], out_dir=tmp_path, **FAST)
    with pytest.raises(ValueError, match="unknown option.*tempreature; did you mean 'temperature'"):
        evaluate(model, "toy", tempreature=0.1, out_dir=tmp_path, **FAST)
    with pytest.raises(ValueError, match="--rescore: no samples.jsonl"):
        evaluate(model, "toy", out_dir=tmp_path / "empty", rescore=True, **FAST)
    assert not list(tmp_path.glob("**/samples.jsonl"))


def test_cli_errors_exit_2_with_the_fix(tiny_toy_model, tmp_path, capsys, no_generation):
    from conciser.cli import main

    assert main(["eval", "--model", str(tiny_toy_model), "--benchmark", "nope", "--out", str(tmp_path)]) == 2
    assert "unknown benchmark 'nope'; known: toy, toy-chain, toy-scan, math500" in capsys.readouterr().err
    assert main(["eval", "--model", str(tiny_toy_model), "--n", "2", "--k", "8", "--out", str(tmp_path)]) == 2
    assert "raise --n to 8" in capsys.readouterr().err
    assert main(["eval", "--model", str(tmp_path / "nope")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_user_jsonl_toy_grader_aes_compare_and_pareto(tiny_toy_model, base_run, tmp_path, capsys):
    from conciser import toy
    from conciser.cli import main

    out, s = base_run
    data = tmp_path / "mine.jsonl"
    data.write_text("".join(json.dumps({"q": p.prompt, "gold": p.answer, "key": p.id}) + "\n" for p in toy.eval_problems(4)))
    baseline = tmp_path / "baseline.json"
    baseline.write_text(json.dumps({"benchmark": "mine", "accuracy": 0.5, "mean_tokens": 200.0}))
    mine = evaluate(str(tiny_toy_model), str(data), n=1, out_dir=tmp_path / "run_b", columns={"question": "q", "answer": "gold", "id": "key"},
                    grader="toy", template="plain", max_new_tokens=16, baseline=str(baseline), wandb=True, **FAST)
    assert mine["benchmark"] == "mine" and mine["n_problems"] == 4 and mine["max_new_tokens"] == 16
    assert mine["max_tokens_seen"] <= 16
    # random model: accuracy 0 < 0.5 and fewer tokens -> AES = alpha * dL - gamma * 1
    assert mine["aes_alpha"] == 1 and mine["aes_beta"] == 3 and mine["aes_gamma"] == 5
    assert mine["aes"] == pytest.approx((200 - mine["mean_tokens"]) / 200 - 5 * (0.5 - mine["accuracy"]) / 0.5, abs=1e-5)
    png = tmp_path / "pareto.png"
    assert main(["eval", "compare", f"base={out}", str(tmp_path / "run_b"), "--plot", str(png)]) == 0
    printed = capsys.readouterr().out
    assert "base" in printed and "run_b" in printed and "toy" in printed and "mine" in printed
    assert png.stat().st_size > 1000 and png.read_bytes()[:4] == b"\x89PNG"


def test_dynasor_toy_end_to_end(tiny_toy_model, tmp_path):
    s = evaluate(str(tiny_toy_model), "toy", n=1, out_dir=tmp_path, early_exit="dynasor", dynasor_window=2,
                 dynasor_chunk=16, temperature=1.0, **{**FAST, "limit": 4})
    assert s["early_exit"] == "dynasor" and s["dynasor_window"] == 2 and s["dynasor_chunk"] == 16
    assert {"mean_probe_tokens", "mean_total_tokens", "early_exit_rate"} <= set(s)
    samples = _lines(tmp_path / "toy" / "samples.jsonl")
    for r in samples:
        assert r["finish_reason"] in ("stop", "length", "early_exit")
        assert r["probe_tokens"] <= 20 * len(r["probes"])
    assert s["mean_total_tokens"] == pytest.approx(s["mean_tokens"] + s["mean_probe_tokens"], abs=1e-4)


def test_cli_runs_several_benchmarks_and_resumes(tiny_toy_model, tmp_path, capsys):
    from conciser import toy
    from conciser.cli import main

    data = tmp_path / "mine.jsonl"
    data.write_text("".join(json.dumps({"problem": p.prompt, "answer": p.answer, "id": p.id}) + "\n" for p in toy.eval_problems(3)))
    args = ["eval", "--model", str(tiny_toy_model), "--benchmarks", f"toy,{data}", "--grader", "toy", "--template", "plain",
            "--n", "2", "--k", "1,2", "--limit", "3", "--max-new-tokens", "24", "--out", str(tmp_path / "run"), "--no-progress"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "toy" in printed and "mine" in printed and "pass@2" in printed
    first = {b: json.loads((tmp_path / "run" / b / "summary.json").read_text()) for b in ("toy", "mine")}
    assert first["toy"]["n_samples"] == 6 and first["mine"]["max_new_tokens"] == 24
    assert main(args) == 0                                                    # the same command again resumes
    again = json.loads((tmp_path / "run" / "toy" / "summary.json").read_text())
    assert again["samples_generated"] == 0 and _stable(again) == _stable(first["toy"])


def test_kill_9_mid_run_then_resume(tiny_toy_model, base_run, tmp_path):
    """A real crash: the CLI is killed (SIGKILL) while appending samples; the same command resumes."""
    import os
    import signal
    import subprocess
    import sys
    import time

    out, s = base_run
    cmd = [sys.executable, "-m", "conciser.cli", "eval", "--model", str(tiny_toy_model), "--benchmark", "toy", "--n", "2",
           "--limit", "10", "--batch-size", "1", "--out", str(tmp_path), "--no-progress"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    samples = tmp_path / "toy" / "samples.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if samples.exists() and samples.read_text().count("\n") >= 3:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the run finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    n_saved = samples.read_text().count("\n")
    assert 3 <= n_saved < 20 and not (tmp_path / "toy" / "summary.json").exists()
    # resume (the batch size is free to change: every sample has its own seed)
    cmd[cmd.index("--batch-size") + 1] = "64"
    assert subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE).returncode == 0
    resumed = json.loads((tmp_path / "toy" / "summary.json").read_text())
    assert resumed["samples_generated"] == 20 - n_saved
    assert _stable(resumed) == _stable(s)


def test_think_prefill_is_detected_forced_and_graded():
    from conciser import toy
    from conciser.eval.benchmarks import load_benchmark
    from conciser.eval.generate import render_prompts
    from conciser.eval.scoring import grade_records

    tok = toy.build_tokenizer()
    bench = load_benchmark("toy")
    probs = bench.problems[:2]
    plain = render_prompts(tok, bench, probs, system_prompt=None, chat_template="auto", think="auto")
    assert plain.think_prefill == "" and plain.chat_template
    forced = render_prompts(tok, bench, probs, system_prompt=None, chat_template="auto", think="force")
    assert forced.think_prefill == "<think>\n"
    assert forced.ids[0][: len(plain.ids[0])] == plain.ids[0] and len(forced.ids[0]) > len(plain.ids[0])
    tok.chat_template = toy.CHAT_TEMPLATE.replace("<|assistant|>{% endif %}", "<|assistant|><think>\n{% endif %}")
    r1_style = render_prompts(tok, bench, probs, system_prompt=None, chat_template="auto", think="auto")
    assert r1_style.think_prefill == "<think>\n" and r1_style.ids == forced.ids
    assert render_prompts(tok, bench, probs, system_prompt=None, chat_template="auto", think="off").think_prefill == ""
    raw = render_prompts(tok, bench, probs, system_prompt="be brief", chat_template="none", think="auto")
    assert not raw.chat_template and tok.decode(raw.ids[0]).startswith("be brief")
    # The completion of a pre-filled prompt never opens <think>: a box inside thinking cut off by the
    # cap must not be credited, and a finished one must be.
    p = probs[0]
    cut = {"answer": p.answer, "text": f"a:8+2=0. so maybe \\boxed{{{p.answer}}} b:0+4"}
    done = {"answer": p.answer, "text": f"a:8+2=0.</think>\\boxed{{{p.answer}}}"}
    grade_records([cut, done], "toy", prefill=r1_style.think_prefill, timeout=5, workers=None, progress=False)
    assert (cut["correct"], cut["grade_error"], done["correct"]) == (False, "unclosed_think", True)
    grade_records([cut], "toy", prefill="", timeout=5, workers=None, progress=False)
    assert cut["correct"] is True      # what a harness that ignores the pre-fill would wrongly report


def test_rescore_with_lenient_extraction(tiny_toy_model, base_run, tmp_path):
    out, s = base_run
    shutil.copytree(out, tmp_path, dirs_exist_ok=True)
    path = tmp_path / "toy" / "samples.jsonl"
    recs = _lines(path)
    recs[0]["text"] = f"<think> a: 1 + 2 = 3 . </think> so it is {recs[0]['answer']} <|end|>"   # right, unboxed
    path.write_text("".join(json.dumps(r) + "\n" for r in recs))
    boxed = evaluate(str(tiny_toy_model), "toy", n=2, out_dir=tmp_path, rescore=True, **FAST)
    lenient = evaluate(str(tiny_toy_model), "toy", n=2, out_dir=tmp_path, rescore=True, extraction="lenient", **FAST)
    assert (boxed["extraction"], lenient["extraction"]) == ("boxed", "lenient")
    assert _lines(path)[0]["correct"] is True and _lines(path)[0]["extracted"] == recs[0]["answer"]
    # lenient reads more answers and never drops a boxed one
    assert lenient["accuracy"] == pytest.approx(boxed["accuracy"] + 1 / 20, abs=1e-6)
