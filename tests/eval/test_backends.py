"""Sampling, token counting and the Dynasor-CoT rule: .venv/bin/pytest tests/eval/test_backends.py"""

import math

import pytest
import torch

from conciser.eval.backends import Generation, Request, _RowSampler, cut_at_eos
from conciser.eval.dynasor import dynasor_generate, is_certain, probe_answer, should_exit


def test_cut_at_eos_counts_the_eos():
    assert cut_at_eos([4, 5, 9, 2, 0, 0], eos=[2], max_tokens=10) == ([4, 5, 9, 2], "stop")
    assert cut_at_eos([4, 5, 9, 7], eos=[2], max_tokens=4) == ([4, 5, 9, 7], "length")
    assert cut_at_eos([4, 5, 9, 2], eos=[2], max_tokens=3) == ([4, 5, 9], "length")   # EOS past the cap
    assert cut_at_eos([3, 8], eos=[2, 8], max_tokens=5) == ([3, 8], "stop")           # any of several EOS ids


def _draws(temperature, top_p, n=4000):
    logits = torch.log(torch.tensor([[0.05, 0.5, 0.15, 0.3]]))
    sampler = _RowSampler([123], temperature, top_p)
    picks = [int(sampler(None, logits.clone()).argmax()) for _ in range(n)]
    return [picks.count(i) / n for i in range(4)]


def test_row_sampler_matches_top_p_distribution():
    # top-p 0.8 keeps the smallest set with mass >= 0.8: {0.5, 0.3} -> renormalised 0.625 / 0.375
    freq = _draws(1.0, 0.8)
    assert freq[0] == 0 and freq[2] == 0
    assert freq[1] == pytest.approx(0.625, abs=0.03) and freq[3] == pytest.approx(0.375, abs=0.03)
    # no truncation, temperature 0.5: p_i^2 normalised
    p = [0.05 ** 2, 0.5 ** 2, 0.15 ** 2, 0.3 ** 2]
    freq = _draws(0.5, 1.0)
    assert freq == pytest.approx([x / sum(p) for x in p], abs=0.03)
    # temperature 0 is greedy
    assert _draws(0.0, 0.95, n=20) == [0, 1, 0, 0]


def test_row_sampler_rows_are_independent_of_batch_composition():
    torch.manual_seed(0)
    logits = torch.randn(3, 50)
    together = _RowSampler([1, 2, 3], 0.6, 0.95)
    alone = _RowSampler([2], 0.6, 0.95)
    for _ in range(20):
        a = together(None, logits.clone()).argmax(-1)
        b = alone(None, logits[1:2].clone()).argmax(-1)
        assert int(a[1]) == int(b[0])


@pytest.mark.parametrize("text,answer", [
    ("42 } \\]", "42"), ("\\frac{1}{2}} so", "\\frac{1}{2}"), ("x^{2}+1}", "x^{2}+1"), ("no closing brace", ""),
    ("\\{1,2\\}}", "\\{1,2\\}"),
])
def test_probe_answer(text, answer):
    assert probe_answer(text) == answer


def test_hedge_words_are_a_substring_test():
    assert is_certain("42 } \\]")
    assert not is_certain("42 } wait")
    assert not is_certain("I know it")      # "know" contains "no": Dynasor's known crudeness, kept


def _eq(a, b):
    return a.replace(" ", "") == b.replace(" ", "")


def test_exit_rule_is_the_intended_one():
    assert not should_exit([("3", True)], 2, _eq)                           # fewer than w probes
    assert not should_exit([("3", True), ("4", True)], 2, _eq)              # disagree (the buggy server code exits here)
    assert not should_exit([("3", True), ("3", False)], 2, _eq)             # hedged
    assert not should_exit([("", True), ("", True)], 2, _eq)                # empty answers
    assert should_exit([("7", False), ("3", True), ("3 ", True)], 2, _eq)   # only the last w count
    assert not should_exit([("3", True), ("4", True), ("3", True)], 3, _eq)


class FakeBackend:
    """Writes the toy's correct steps one token at a time (never EOS); a probe answers `answer}`."""

    def __init__(self, tokenizer, probe_ids, trace_ids, answer_ids):
        self.eos = [tokenizer.eos_token_id]
        self.probe_ids, self.trace_ids, self.answer_ids = probe_ids, trace_ids, answer_ids
        self.calls = []

    def generate(self, requests, *, temperature, top_p, **_):
        out = []
        for r in requests:
            self.calls.append(r)
            if r.prompt_ids[-len(self.probe_ids):] == self.probe_ids:
                out.append(Generation(r.key, list(self.answer_ids), "stop"))
            else:
                n = len(r.prompt_ids) - self.prompt_len
                ids = [self.trace_ids[(n + i) % len(self.trace_ids)] for i in range(r.max_tokens)]
                out.append(Generation(r.key, ids, "length"))
        return out


def test_dynasor_loop_exits_after_w_agreeing_probes_and_counts_tokens_apart():
    from conciser import toy
    from conciser.eval.benchmarks import load_benchmark

    tok = toy.build_tokenizer()
    bench = load_benchmark("toy")
    p = bench.problems[0]
    enc = lambda s: list(tok(s, add_special_tokens=False).input_ids)  # noqa: E731
    probe_ids = enc(bench.probe)
    backend = FakeBackend(tok, probe_ids, enc("a:1+1=2. "), enc(p.answer + "}") + [tok.eos_token_id])
    prompt = [1, 2, 3]
    backend.prompt_len = len(prompt)
    done = []
    equal = lambda pairs: [a == b for a, b in pairs]  # noqa: E731
    [s] = dynasor_generate(backend, [Request("k", prompt, 100, seed=5)], tokenizer=tok, bench=bench, prefill="",
                           window=3, chunk=8, probe_tokens=20, temperature=0.6, top_p=0.95, equal=equal,
                           on_done=done.append)
    assert done == [s] and s.finish_reason == "early_exit"
    assert len(s.probes) == 3 and all(pr == [p.answer, True] for pr in s.probes)
    suffix = enc(bench.exit_suffix.format(answer=p.answer))
    assert len(s.token_ids) == 3 * 8 + len(suffix)                 # 3 chunks + the appended answer
    assert s.probe_tokens == 3 * len(backend.answer_ids)           # probes counted apart
    from conciser.rewards.grading import grade_toy
    assert grade_toy(gold=p.answer, completion="<think>" + tok.decode(s.token_ids, skip_special_tokens=True)).correct
    # the main trajectory never sees a probe: every main request continues from the main tokens only
    mains = [r for r in backend.calls if r.prompt_ids[-len(probe_ids):] != probe_ids]
    assert [len(r.prompt_ids) for r in mains] == [3, 11, 19]


def test_dynasor_stops_at_the_cap_without_agreement():
    from conciser import toy
    from conciser.eval.benchmarks import load_benchmark

    tok = toy.build_tokenizer()
    bench = load_benchmark("toy")
    enc = lambda s: list(tok(s, add_special_tokens=False).input_ids)  # noqa: E731
    backend = FakeBackend(tok, enc(bench.probe), enc("a:1+1=2. "), enc("wait}"))
    backend.prompt_len = 1
    [s] = dynasor_generate(backend, [Request("k", [1], 20, seed=5)], tokenizer=tok, bench=bench, prefill="",
                           window=2, chunk=8, probe_tokens=20, temperature=0.6, top_p=0.95,
                           equal=lambda pairs: [True] * len(pairs))
    assert s.finish_reason == "length" and len(s.token_ids) == 20 and len(s.probes) == math.ceil(20 / 8) - 1
