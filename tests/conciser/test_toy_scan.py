"""The toy-scan task (conciser/toy_scan.py): deterministic problems whose needed length varies inside a
level and cannot be read off the prompt, a hint that is right about 70% of the time, minimal traces of
exactly `minimal_tokens` tokens, verbose traces that overthink, and the task registry."""

import random
import re
import statistics

import pytest
from transformers import AutoTokenizer, Qwen2Config

from conciser import toy, toy_scan
from conciser.errors import UserError
from conciser.rewards.grading import extract_answer, grade_toy


@pytest.fixture(scope="module")
def tokenizer():
    return toy_scan.build_tokenizer()


def _solve(prompt: str) -> tuple[str, int]:
    """Solve a prompt from its text alone, by the rule: (answer, stop step)."""
    start, ops = re.fullmatch(r"hint:\d sure:\d\. start=(\d); (.*)\.", prompt).groups()
    total = int(start)
    for i, op in enumerate(ops.split("; ")):
        v = int(op[1:])
        if v == total:
            return str(total), i + 1
        total = (total + v) % 10
    raise AssertionError(f"no stop in {prompt}")


def test_problems_are_deterministic_and_the_answer_follows_the_rule():
    a, b = toy_scan.make_problems(200, seed=3), toy_scan.make_problems(200, seed=3)
    assert a == b
    assert toy_scan.make_problems(200, seed=4) != a
    for p in a:
        assert _solve(p.prompt) == (p.answer, p.stop)
        assert len(p.operands) == toy_scan.LEVELS[p.level].k and 1 <= p.stop <= len(p.operands)


@pytest.mark.parametrize("level", sorted(toy_scan.LEVELS))
def test_every_prompt_of_a_level_has_the_same_shape(tokenizer, level):
    ps = toy_scan.make_problems(50, seed=level, levels=(level,))
    assert {len(tokenizer(p.prompt, add_special_tokens=False).input_ids) for p in ps} == {3 * toy_scan.LEVELS[level].k + 11}


@pytest.mark.parametrize("level", sorted(toy_scan.LEVELS))
def test_needed_length_varies_inside_every_level_and_the_hint_is_right_about_70_percent(level):
    ps = toy_scan.make_problems(1000, seed=10 + level, levels=(level,))
    lengths = [p.minimal_tokens for p in ps]
    assert statistics.pstdev(lengths) / statistics.fmean(lengths) >= 0.4
    assert {p.stop for p in ps} == set(range(1, toy_scan.LEVELS[level].k + 1))
    assert 0.6 <= statistics.fmean(p.hint == p.answer for p in ps) <= 0.8


def test_the_hint_is_right_as_often_as_its_printed_odds_and_the_base_takes_surer_hints_more():
    ps = toy_scan.make_problems(5000, seed=3)
    rng = random.Random(4)
    for sure in toy_scan.SURE:
        mine = [p for p in ps if p.sure == sure]
        assert len(mine) > 0.15 * len(ps)
        assert abs(statistics.fmean(p.hint == p.answer for p in mine) - sure / 10) < 0.04
    taken = {s: statistics.fmean(toy_scan.HINT_PHRASE in toy_scan.verbose_trace(p, rng) for p in ps if p.sure == s)
             for s in toy_scan.SURE}
    # the base's traces take the hint by its odds: never below sure:8, a quarter at 8, half at 9
    assert taken[5] == taken[6] == taken[7] == 0
    assert abs(taken[8] - 0.25) < 0.05 and abs(taken[9] - 0.5) < 0.05


def test_harder_levels_need_longer_traces_on_average():
    means = [statistics.fmean(p.minimal_tokens for p in toy_scan.make_problems(500, seed=1, levels=(lv,)))
             for lv in sorted(toy_scan.LEVELS)]
    assert means == sorted(means) and means[-1] > 1.7 * means[0]


def test_training_problems_never_overlap_the_held_out_benchmark():
    held_out = {p.id for p in toy_scan.eval_problems(1000)}
    assert not held_out & {p.id for p in toy_scan.train_problems(3000)}


def test_minimal_tokens_is_the_token_count_of_the_minimal_trace(tokenizer):
    for p in toy_scan.make_problems(200, seed=5):
        ids = tokenizer(toy_scan.minimal_trace(p), add_special_tokens=False).input_ids
        assert len(ids) == p.minimal_tokens == 7 * p.stop + 6
        assert ids[-1] == tokenizer.eos_token_id
        assert grade_toy(gold=p.answer, completion=toy_scan.minimal_trace(p)).correct


def test_every_toy_word_is_one_token(tokenizer):
    p = next(p for p in toy_scan.make_problems(20, seed=0, levels=(3,)) if p.stop >= 2)
    pieces = tokenizer.convert_ids_to_tokens(tokenizer(toy_scan.minimal_trace(p), add_special_tokens=False).input_ids)
    assert pieces[:8] == ["<think>", "Ġa", str(p.operands[0]), ":", str(p.start), "=", pieces[6], "."]
    name = toy_scan.NAMES[p.stop - 1]
    assert pieces[-12:] == [f"Ġ{name}", p.answer, ":", p.answer, "Ġstop", ".", "</think>", "\\boxed", "{", p.answer, "}", "<|end|>"]
    prompt = tokenizer.convert_ids_to_tokens(tokenizer(p.prompt, add_special_tokens=False).input_ids)
    assert prompt[:11] == ["hint", ":", p.hint, "Ġsure", ":", str(p.sure), ".", "Ġstart", "=", str(p.start), ";"]


def test_tokenizer_reloads_identically_through_autotokenizer(tokenizer, tmp_path):
    tokenizer.save_pretrained(tmp_path)
    Qwen2Config(vocab_size=len(tokenizer)).save_pretrained(tmp_path)
    again = AutoTokenizer.from_pretrained(tmp_path)
    rng = random.Random(3)
    for p in toy_scan.make_problems(30, seed=5):
        prompt = tokenizer.apply_chat_template(p.to_row()["prompt"], tokenize=False, add_generation_prompt=True)
        for text in (prompt, toy_scan.verbose_trace(p, rng), toy_scan.hint_trace(p)):
            ids = tokenizer(text, add_special_tokens=False).input_ids
            assert again(text, add_special_tokens=False).input_ids == ids
            assert again.decode(ids) == text


def test_verbose_traces_overthink_and_are_correct_unless_they_take_the_hint(tokenizer):
    rng = random.Random(0)
    ratios, hinted = [], 0
    for p in toy_scan.make_problems(500, seed=1):
        text = toy_scan.verbose_trace(p, rng)
        if toy_scan.HINT_PHRASE in text:
            # giving up part-way: some plain steps (fewer than the scan needs), then the hint
            hinted += 1
            assert text in {toy_scan.hint_trace(p, after=k) for k in range(p.stop)}
            assert extract_answer(text) == p.hint
        else:
            assert grade_toy(gold=p.answer, completion=text).correct
            ratios.append(len(tokenizer(text, add_special_tokens=False).input_ids) / p.minimal_tokens)
    assert statistics.fmean(ratios) >= 3.0
    assert 0.1 * 500 < hinted < 0.2 * 500   # (0.25 + 0.5) / 5 of the problems on average


def test_slips_are_always_followed_by_a_fixing_check():
    p = max(toy_scan.make_problems(50, seed=0, levels=(5,)), key=lambda p: p.stop)
    text = toy_scan.verbose_trace(p, random.Random(1), toy_scan.Verbosity(p_slip=1.0, hint_by_sure={}))
    assert text.count("fix.") == p.stop - 1  # every step but the stop has a result to slip on
    assert grade_toy(gold=p.answer, completion=text).correct


def test_late_stops_overrun_the_default_cap_and_fit_six_times_minimal(tokenizer):
    rng = random.Random(2)
    ps = toy_scan.make_problems(300, seed=9, levels=(5,))
    lengths = {p.id: len(tokenizer(toy_scan.verbose_trace(p, rng), add_special_tokens=False).input_ids) for p in ps}
    latest = sorted(ps, key=lambda p: p.minimal_tokens)[-75:]
    assert statistics.fmean(lengths[p.id] > toy_scan.DEFAULT_MAX_COMPLETION for p in latest) > 0.5
    assert max(lengths.values()) <= 6 * max(p.minimal_tokens for p in ps)
    # over every level, only the late stops overrun: about a tenth of the traces, none of the earlier half
    # (when a third overran, answering from the hint beat thinking and GRPO collapsed onto it)
    every = sorted(toy_scan.make_problems(500, seed=9), key=lambda p: p.minimal_tokens)
    over = [len(tokenizer(toy_scan.verbose_trace(p, rng), add_special_tokens=False).input_ids) > toy_scan.DEFAULT_MAX_COMPLETION
            for p in every]
    assert 0.05 < statistics.fmean(over) < 0.15 and not any(over[:250])


def test_the_hint_trace_is_the_shortcut():
    p = next(p for p in toy_scan.make_problems(50, seed=2) if p.hint != p.answer)
    assert not grade_toy(gold=p.answer, completion=toy_scan.hint_trace(p)).correct
    assert grade_toy(gold=p.hint, completion=toy_scan.hint_trace(p)).correct


def test_task_registry_names_every_task():
    assert toy.task("toy") is toy and toy.task("toy-chain") is toy
    assert toy.task("toy-scan") is toy_scan
    with pytest.raises(UserError, match="did you mean 'toy-scan'"):
        toy.task("toy_scan")


def test_toy_scan_is_a_dataset_and_a_benchmark():
    from conciser.config import DataConfig
    from conciser.eval.benchmarks import known_benchmarks, load_benchmark
    from conciser.trainers.data import load_rows

    rows = load_rows(DataConfig(dataset="toy-scan", n_train=20))
    assert len(rows) == 20 and all(r["problem_id"].startswith("scan-") for r in rows)
    assert "toy-scan" in known_benchmarks()
    bench = load_benchmark("toy-scan")
    assert bench.name == "toy-scan" and bench.max_new_tokens == toy_scan.DEFAULT_MAX_COMPLETION
    assert {p.meta["level"] for p in bench.problems} == set(toy_scan.LEVELS)
    assert not {p.id for p in bench.problems} & {r["problem_id"] for r in rows}
    assert bench.probe == "</think>\\boxed{"


def test_false_stop_is_a_claimed_stop_the_scan_never_reached():
    p = max(toy_scan.make_problems(50, seed=6, levels=(5,)), key=lambda p: p.stop)
    assert p.stop > 1
    name, v, prev, _ = toy_scan._steps(p)[0]
    made_up = toy_scan._completion([f"{name}{v}:{prev} stop."], str(prev))   # "a3:8 stop." at step 1: a made-up total
    assert toy_scan.false_stop(p, made_up)
    # a misread operand that meets the stop rule ("a8:8 stop.") is one too: a scan error, not the hint
    misread = toy_scan._completion([f"{name}{prev}:{prev} stop."], str(prev))
    assert toy_scan.false_stop(p, misread)
    assert not toy_scan.false_stop(p, toy_scan.minimal_trace(p))
    assert not toy_scan.false_stop(p, toy_scan.minimal_trace(p).replace(" stop.", " stop"))
    assert not any(toy_scan.false_stop(p, toy_scan.hint_trace(p, after=k)) for k in range(p.stop))
    assert not toy_scan.false_stop(p, toy_scan.verbose_trace(p, random.Random(0), toy_scan.Verbosity(hint_by_sure={})))
    # only the thinking counts: "stop" after </think> is not a claim
    assert not toy_scan.false_stop(p, toy_scan.hint_trace(p) + " stop")


def test_reached_stop_tells_a_scan_from_giving_up_with_or_without_the_period():
    p = max(toy_scan.make_problems(50, seed=6, levels=(5,)), key=lambda p: p.stop)
    assert toy_scan.reached_stop(p, toy_scan.minimal_trace(p))
    assert toy_scan.reached_stop(p, toy_scan.minimal_trace(p).replace(" stop.", " stop"))
    assert not any(toy_scan.reached_stop(p, toy_scan.hint_trace(p, after=k)) for k in range(p.stop))
