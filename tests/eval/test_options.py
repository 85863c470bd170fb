"""EvalConfig is the one source of the eval options: the CLI is generated from it, and every bad
value is refused before any tokenizer or model loads. Run: .venv/bin/pytest tests/eval/test_options.py"""

import argparse
import dataclasses
import json

import pytest

from conciser.errors import UserError
from conciser.eval import cli as eval_cli
from conciser.eval import run as run_mod
from conciser.eval.config import EvalConfig, validate


def _parser():
    p = argparse.ArgumentParser(prog="conciser eval")
    eval_cli.add_arguments(p)
    return p


def test_every_field_is_documented_and_has_a_flag():
    parser = _parser()
    dests = {a.dest for a in parser._actions}
    for f in dataclasses.fields(EvalConfig):
        assert f.metadata.get("help") and f.metadata.get("group"), f.name
        assert f.name in dests, f"EvalConfig.{f.name} has no command-line flag"
    text = parser.format_help()
    for name in ("--budgets", "--early-stop", "--tau", "--round", "--tau-sweep", "--extraction", "--lfvote-bins",
                 "--target-lengths", "--drop-unparseable-golds", "--no-progress", "--no-prefix-caching", "--vllm-arg"):
        assert name in text, name
    # choices come from the registries
    from conciser.eval.backends import BACKENDS
    from conciser.rewards.grading import EXTRACTIONS, GRADERS

    choices = {a.dest: a.choices for a in parser._actions}
    assert tuple(choices["grader"]) == tuple(GRADERS) and tuple(choices["extraction"]) == EXTRACTIONS
    assert tuple(choices["backend"]) == tuple(BACKENDS)


def test_no_second_copy_of_the_defaults():
    args = _parser().parse_args(["--model", "m"])
    assert vars(args) == {"action": None, "runs": [], "model": "m", "plot": None, "curves": None}
    cfg = EvalConfig(**{k: v for k, v in vars(args).items() if k in {f.name for f in dataclasses.fields(EvalConfig)}})
    assert cfg == EvalConfig(model="m")


def test_values_are_parsed_to_the_field_types():
    args = _parser().parse_args([
        "--model", "m", "--benchmark", "toy,aime24", "--n", "16", "--k", "1,4", "--budgets", "16,32", "--tau-sweep",
        "--early-stop", "certaindex", "--tau", "0.7", "--round", "4", "--columns", "question=q,answer=a",
        "--vllm-arg", "max_num_seqs=8", "--vllm-arg", "enforce_eager=true", "--no-progress", "--no-prefix-caching",
        "--extraction", "lenient", "--target-lengths", "32,64", "--tp", "2"])
    cfg = EvalConfig(**{k: v for k, v in vars(args).items() if k not in ("action", "runs", "plot", "curves")})
    assert cfg.benchmarks == ["toy", "aime24"] and cfg.n == 16 and cfg.ks == [1, 4] and cfg.budgets == [16, 32]
    assert cfg.tau_sweep == [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0] and cfg.tau == 0.7 and cfg.round_size == 4
    assert cfg.columns == {"question": "q", "answer": "a"} and cfg.vllm_args == {"max_num_seqs": 8, "enforce_eager": True}
    assert cfg.progress is False and cfg.enable_prefix_caching is False and cfg.extraction == "lenient"
    assert cfg.target_lengths == [32, 64] and cfg.tensor_parallel_size == 2
    assert _parser().parse_args(["--tau-sweep", "0.5,0.9"]).tau_sweep == [0.5, 0.9]


@pytest.fixture
def nothing_loads(monkeypatch):
    def refuse(*a, **k):
        raise AssertionError("the tokenizer or the model was loaded before the options were checked")
    monkeypatch.setattr(run_mod, "load_tokenizer", refuse)
    monkeypatch.setattr(run_mod, "backend_factory", refuse)


# (extra CLI arguments, message on stderr). Every one exits 2 with one line, before anything loads.
BAD_OPTIONS = [
    (["--batch-size", "0"], "--batch-size: must be >= 1, got 0"),
    (["--n", "0"], "--n: must be >= 1, got 0"),
    (["--limit", "-1"], "--limit: must be >= 1"),
    (["--max-new-tokens", "0"], "--max-new-tokens: must be >= 1"),
    (["--temperature", "-0.5"], "--temperature: must be >= 0.0"),
    (["--top-p", "0"], "--top-p: must be > 0.0 and <= 1.0"),
    (["--top-p", "1.5"], "--top-p: must be <= 1.0"),
    (["--grading-timeout", "0"], "--grading-timeout: must be > 0.0"),
    (["--dynasor-window", "0"], "--dynasor-window: must be >= 1"),
    (["--budgets", "0,16"], "--budgets: must be >= 1, got 0"),
    (["--budgets", "16,x"], "expected comma-separated integers"),
    (["--budgets", "16,32", "--max-new-tokens", "64"], "--max-new-tokens 64 and --budgets disagree"),
    (["--budgets", "16", "--early-exit", "dynasor"], "--budgets cannot be combined with --early-exit"),
    (["--early-stop", "certaindex", "--tau", "0"], "--tau: must be > 0.0 and <= 1.0, got 0.0"),
    (["--early-stop", "certaindex", "--tau", "1.5"], "--tau: must be <= 1.0, got 1.5"),
    (["--tau", "0.5"], "add --early-stop certaindex"),
    (["--round", "4"], "add --early-stop certaindex or --tau-sweep"),
    (["--tau-sweep", "--n", "4", "--round", "8"], "rounds of K=8 samples need n >= K, but n=4"),
    (["--early-stop", "certaindex", "--n", "4", "--round", "8"], "rounds of K=8 samples need n >= K, but n=4"),
    (["--early-stop", "certaindex", "--benchmark", "toy", "--round", "8"], "toy runs n=1"),
    (["--tau-sweep", "0,0.5"], "--tau-sweep: must be > 0.0"),
    (["--early-stop", "maybe"], "invalid choice: 'maybe'"),
    (["--extraction", "loose"], "invalid choice: 'loose'"),
    (["--lfvote-keep", "5"], "--lfvote-keep: 5 bins cannot be kept out of --lfvote-bins 4"),
    (["--target-lengths", "10", "--target-prompt", "be brief"], "--target-prompt: 'be brief' has no {n}"),
    (["--n", "2", "--k", "8"], "raise --n to 8"),
    (["--benchmark", "aime24", "--k", "32"], "aime24 runs n=16"),
    (["--rescore", "--overwrite"], "use one"),
    (["--benchmark", "toy,toy"], "listed twice"),
]


@pytest.mark.parametrize("extra,message", BAD_OPTIONS, ids=[" ".join(e) for e, _ in BAD_OPTIONS])
def test_bad_options_exit_2_before_anything_loads(tiny_toy_model, tmp_path, capsys, nothing_loads, extra, message):
    from conciser.cli import main

    try:
        code = main(["eval", "--model", str(tiny_toy_model), "--out", str(tmp_path), *extra])
    except SystemExit as exc:   # argparse's own type / choice errors
        code = exc.code
    err = capsys.readouterr().err
    assert code == 2 and message in err, err
    assert "Traceback" not in err and not list(tmp_path.iterdir())


@pytest.mark.parametrize("options,message", [
    ({"extraction": "lenent"}, "--extraction: unknown value 'lenent'; did you mean 'lenient'?"),
    ({"extraction": "loose"}, "--extraction: unknown value 'loose'; valid: boxed, lenient"),
    ({"n": "4"}, "--n: expected an integer, got '4'"),
    ({"n": True}, "--n: expected an integer"),
    ({"budgets": []}, "--budgets: give at least one value"),
    ({"budgets": [16, 2.5]}, "--budgets: expected integers"),
    ({"progress": 1}, "--progress: expected true or false"),
    ({"tau_sweep": [0.5, 2]}, "--tau-sweep: must be <= 1.0, got 2"),
    ({"benchmarks": "toy"}, "--benchmarks: expected a list"),
])
def test_python_api_checks_types_too(tiny_toy_model, options, message):
    with pytest.raises(UserError, match=message.replace("(", r"\(").replace("?", r"\?")):
        validate(EvalConfig(model=str(tiny_toy_model), **options))


def test_unparseable_golds_stop_the_run_or_are_dropped(tiny_toy_model, tmp_path, nothing_loads, capsys):
    from conciser.cli import main

    data = tmp_path / "golds.jsonl"
    rows = [{"id": f"q{i}", "problem": f"{i}+{i}?", "answer": str(2 * i)} for i in range(6)]
    rows[1]["answer"], rows[4]["answer"] = "}{", "   "
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert main(["eval", "--model", str(tiny_toy_model), "--benchmark", str(data), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "golds: 2 of 6 gold answers cannot be parsed" in err and "line 2: '}{'" in err and "line 5" in err
    assert "--drop-unparseable-golds" in err and not (tmp_path / "o").exists()
    # with the option the check passes and the run goes on (to the tokenizer, refused here)
    with pytest.raises(AssertionError, match="loaded before"):
        main(["eval", "--model", str(tiny_toy_model), "--benchmark", str(data), "--out", str(tmp_path / "o"),
              "--drop-unparseable-golds"])
