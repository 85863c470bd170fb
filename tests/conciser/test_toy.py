"""The toy task: deterministic problems, traces that are correct and verbose, a tokenizer that
AutoTokenizer (and so vLLM) reloads identically, and a grader that reads the toy answer format."""

import random
import statistics

import pytest
from transformers import AutoTokenizer, Qwen2Config

from conciser import toy
from conciser.rewards.grading import grade, grade_toy


@pytest.fixture(scope="module")
def tokenizer():
    return toy.build_tokenizer()


def test_problems_are_deterministic_and_answers_are_the_chained_sum():
    a, b = toy.make_problems(50, seed=3), toy.make_problems(50, seed=3)
    assert a == b
    for p in a:
        assert int(p.answer) == (p.start + sum(p.operands)) % 10
        assert len(p.operands) == toy.LEVELS[p.level]
    assert toy.make_problems(50, seed=4) != a


def test_training_problems_never_overlap_the_held_out_benchmark():
    held_out = {p.id for p in toy.eval_problems(1000)}
    assert not held_out & {p.id for p in toy.train_problems(3000)}


@pytest.mark.parametrize("level", sorted(toy.LEVELS))
def test_minimal_tokens_is_the_token_count_of_the_minimal_trace(tokenizer, level):
    for p in toy.make_problems(20, seed=level, levels=(level,)):
        ids = tokenizer(toy.minimal_trace(p), add_special_tokens=False).input_ids
        assert len(ids) == p.minimal_tokens == 7 * len(p.operands) + 7
        assert ids[-1] == tokenizer.eos_token_id


def test_verbose_traces_are_correct_and_overthink(tokenizer):
    rng = random.Random(0)
    ratios = []
    for p in toy.make_problems(200, seed=1):
        text = toy.verbose_trace(p, rng)
        assert grade_toy(gold=p.answer, completion=text).correct
        ratios.append(len(tokenizer(text, add_special_tokens=False).input_ids) / p.minimal_tokens)
    assert statistics.fmean(ratios) >= 3.0


def test_slips_are_always_followed_by_a_fixing_check():
    rng = random.Random(1)
    style = toy.Verbosity(p_slip=1.0)
    p = toy.make_problems(1, seed=0, levels=(5,))[0]
    text = toy.verbose_trace(p, rng, style)
    assert text.count("fix.") == len(p.operands)


def test_hard_levels_overrun_the_default_cap_and_fit_six_times_minimal(tokenizer):
    rng = random.Random(2)
    lengths = [len(tokenizer(toy.verbose_trace(p, rng), add_special_tokens=False).input_ids)
               for p in toy.make_problems(100, seed=9, levels=(5,))]
    assert statistics.fmean(l > toy.DEFAULT_MAX_COMPLETION for l in lengths) > 0.5
    assert max(lengths) <= 6 * toy.minimal_tokens(toy.LEVELS[5])


def test_tokenizer_reloads_identically_through_autotokenizer(tokenizer, tmp_path):
    tokenizer.save_pretrained(tmp_path)
    Qwen2Config(vocab_size=len(tokenizer)).save_pretrained(tmp_path)  # AutoTokenizer keys off the model type
    again = AutoTokenizer.from_pretrained(tmp_path)
    rng = random.Random(3)
    for p in toy.make_problems(30, seed=5):
        prompt = tokenizer.apply_chat_template(p.to_row()["prompt"], tokenize=False, add_generation_prompt=True)
        for text in (prompt, toy.verbose_trace(p, rng)):
            ids = tokenizer(text, add_special_tokens=False).input_ids
            assert again(text, add_special_tokens=False).input_ids == ids
            assert again.decode(ids) == text
    # Think tags survive skip_special_tokens (TRL decodes completions that way), the EOS does not.
    ids = tokenizer(toy.minimal_trace(p), add_special_tokens=False).input_ids
    assert tokenizer.decode(ids, skip_special_tokens=True).startswith(toy.THINK_OPEN)
    assert toy.EOS not in tokenizer.decode(ids, skip_special_tokens=True)


def test_every_toy_word_is_one_token(tokenizer):
    p = toy.make_problems(1, seed=0, levels=(2,))[0]
    pieces = tokenizer.convert_ids_to_tokens(tokenizer(toy.minimal_trace(p), add_special_tokens=False).input_ids)
    assert pieces[:4] == ["<think>", "Ġa", str(p.operands[0]), ":"]
    assert pieces[-6:] == ["</think>", "\\boxed", "{", p.answer, "}", "<|end|>"]
    assert {"Ġb", "Ġc"} <= set(pieces)  # step names after the first carry their space


def test_toy_answers_grade_the_same_with_the_math_grader():
    p = toy.make_problems(1, seed=0)[0]
    text = toy.minimal_trace(p)
    assert grade_toy(gold=p.answer, completion=text).correct
    assert grade(gold=p.answer, completion=text).correct
    wrong = str((int(p.answer) + 1) % 10)
    assert not grade_toy(gold=wrong, completion=text).correct
