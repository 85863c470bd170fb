"""Dynamic sampling (DAPO / DLER), ConciseR's keep-all-correct rule and DOT's truncate-then-regrade,
through real TRL scoring passes on scripted rollouts (methods-core §2.4, methods-more §3-4).

Run: .venv/bin/pytest tests/trainers/test_sampling.py
"""

import math
import statistics

import pytest

from conciser.trainers.sampling import DynamicSamplingError, fill_flags, keep_groups

from trainer_helpers import completion, toy_inputs


@pytest.mark.parametrize("scores,solved,keep_all_correct,expected", [
    ([1, 0, 0, 0, 1, 1, 1, 1], None, False, [True, False]),
    ([0, 0, 0, 0, 0.1, 0.1, 0.1, 0.1], None, False, [False, False]),
    ([1, 1, 1, 1, 0, 0, 0, 0], [True] * 4 + [False] * 4, True, [True, False]),   # ConciseR
    ([1, 1, 1, 1], [True] * 4, False, [False]),
])
def test_keep_groups(scores, solved, keep_all_correct, expected):
    assert keep_groups(scores, 4, solved, keep_all_correct) == expected


def test_groups_of_one_are_always_kept():
    assert keep_groups([0.0, 0.0], 1) == [True, True]


def _trainer(make_trainer, model, scripted, script, method="dler", params=None, **sampling):
    trainer = make_trainer(model, method, {"target_length": 128} if params is None else params,
                           sampling={"dynamic": True, **sampling}, max_completion_length=128)
    calls = scripted(trainer, script)
    trainer.model.train()
    return trainer, calls


def test_all_equal_groups_are_dropped_and_refilled_from_new_prompts(tiny_toy_model, make_trainer, scripted):
    first = []

    def script(p, j, call):  # first batch: problem 0 all wrong (dropped), problem 1 varied; refills varied
        if call == 0 and p.id == first[0]:
            return completion(p, correct=False)
        return completion(p, correct=j == 0, extra=j)

    trainer, calls = _trainer(make_trainer, tiny_toy_model, scripted, script, max_gen_batches=3)
    first += [trainer.train_dataset[i]["problem_id"] for i in range(2)]
    out = trainer._generate_and_score_completions(toy_inputs(trainer, 2, 4))
    assert len(calls) == 2 and trainer.sampling_stats.draws == 1
    m = trainer._metrics["train"]
    assert m["sampling/gen_batches"] == [2.0] and m["sampling/kept_group_frac"] == [0.75]
    assert out["completion_ids"].size(0) == 8 and out["advantages"].size(0) == 8
    prompts = trainer.processing_class.batch_decode(out["prompt_ids"], skip_special_tokens=True)
    dropped = trainer.train_dataset[0]["prompt"][0]["content"]
    kept = trainer.train_dataset[1]["prompt"][0]["content"]
    assert not any(dropped in p for p in prompts) and all(kept in p for p in prompts[:4])
    assert all(prompts[4] == p for p in prompts[4:])  # one refill group, whole
    assert out["advantages"].abs().sum() > 0
    assert out["num_items_in_batch"].item() == out["completion_mask"].sum().item()


def test_stops_at_the_cap_with_the_documented_error(tiny_toy_model, make_trainer, scripted):
    trainer, calls = _trainer(make_trainer, tiny_toy_model, scripted, lambda p, j, call: completion(p, correct=False),
                              max_gen_batches=3)
    with pytest.raises(DynamicSamplingError, match=r"only 0 of the 2 groups.*sampling.max_gen_batches=3.*"
                                                   r"sampling.on_exhausted=fill"):
        trainer._generate_and_score_completions(toy_inputs(trainer, 2, 4))
    assert len(calls) == 3  # the first batch and two refills, then the error
    assert trainer.sampling_stats.generation_batches == 3 and trainer.sampling_stats.draws == 2


@pytest.mark.parametrize("flags,missing,expected", [
    ([True, False, False, True, False], 2, [False, True, True, False, False]),
    ([False, False], 0, [False, False]),
    ([False, False], 2, [True, True]),
])
def test_fill_flags_take_the_first_dropped_groups(flags, missing, expected):
    assert fill_flags(flags, missing) == expected


def test_fill_flags_cannot_invent_groups():
    with pytest.raises(ValueError, match="3 groups missing but only 1 dropped"):
        fill_flags([True, False], 3)


def test_on_exhausted_fill_tops_the_batch_up_with_dropped_groups(tiny_toy_model, make_trainer, scripted):
    """Past the cap, `fill` trains on the kept groups plus the last batch's first dropped ones."""
    def script(p, j, call):  # only the first batch's problem 0 group is varied; every other group all wrong
        return completion(p, correct=call == 0 and p.id == first[0] and j == 0, extra=j)

    first = []
    trainer, calls = _trainer(make_trainer, tiny_toy_model, scripted, script, max_gen_batches=3, on_exhausted="fill")
    first += [trainer.train_dataset[i]["problem_id"] for i in range(2)]
    out = trainer._generate_and_score_completions(toy_inputs(trainer, 2, 4))
    assert len(calls) == 3 and out["completion_ids"].size(0) == 8
    m = trainer._metrics["train"]
    assert m["sampling/gen_batches"] == [3.0] and m["sampling/filled_group_frac"] == [0.5]
    assert m["sampling/kept_group_frac"] == [pytest.approx(1 / 6)]
    assert trainer.sampling_stats.filled_steps == 1 and trainer.sampling_stats.steps == 1
    prompts = trainer.processing_class.batch_decode(out["prompt_ids"], skip_special_tokens=True)
    kept = trainer.train_dataset[0]["prompt"][0]["content"]
    assert all(kept in p for p in prompts[:4]) and not any(kept in p for p in prompts[4:])
    assert all(prompts[4] == p for p in prompts[4:])   # one whole group from the last refill
    adv = out["advantages"]
    assert adv[:4].abs().sum() > 0 and adv[4:].abs().sum() == 0  # the filler group: all wrong, no signal


def test_on_exhausted_is_checked_before_a_model_loads():
    from conciser.config import load_recipe
    from conciser.trainers.train import prepare

    with pytest.raises(ValueError, match=r"sampling.on_exhausted: must be one of error, fill, got 'skip'"):
        prepare("toy/dler", ["sampling.on_exhausted=skip", "model.name_or_path=/nonexistent"])
    assert load_recipe("toy/dler").sampling.on_exhausted in ("error", "fill")


@pytest.mark.parametrize("keep_all_correct,batches", [(None, 1), (False, 2)])
def test_concise_r_keeps_all_correct_groups(tiny_toy_model, make_trainer, scripted, keep_all_correct, batches):
    # metric=correct: an all-correct group looks all-equal; ConciseR's stage 2 keeps it (None = the method's rule)
    def script(p, j, call):
        return completion(p, correct=True, extra=j) if call == 0 else completion(p, correct=j == 0)

    trainer, calls = _trainer(make_trainer, tiny_toy_model, scripted, script, method="concise_r", params={},
                              metric="correct", keep_all_correct=keep_all_correct)
    trainer._generate_and_score_completions(toy_inputs(trainer, 2, 4))
    assert len(calls) == batches


def test_dot_cuts_the_outlier_of_a_solved_group_masks_its_tail_and_regrades(tiny_toy_model, make_trainer, scripted):
    # group 0: three minimal answers of n tokens and one with 200 filler tokens; alpha = 1:
    # T = floor(mean + std) (sample std) and (n + 200) - T >= 32, so the outlier is cut at T (no answer left).
    # Group 1 is all minimal (solved, equal: dropped); refill groups have an outlier again.
    def script(p, j, call):
        return completion(p, extra=200 if j == 3 and (call > 0 or p.id == first[0]) else 0)

    trainer = make_trainer(tiny_toy_model, "dot", {"alpha": 1.0}, sampling={"dynamic": True}, max_completion_length=256)
    first = [trainer.train_dataset[0]["problem_id"]]
    calls = scripted(trainer, script)
    trainer.model.train()
    out = trainer._generate_and_score_completions(toy_inputs(trainer, 2, 4))
    # the cut group is no longer all-correct, so dynamic sampling keeps it; group 1 (all solved, equal) is
    # dropped and the batch refilled
    n = len(calls[0][1][0])
    cut = math.floor(statistics.mean([n, n, n, n + 200]) + statistics.stdev([n, n, n, n + 200]))
    assert n + 200 - cut >= 32
    assert len(calls) == 2
    assert out["completion_mask"].sum(1).tolist()[:4] == [n, n, n, cut]
    assert out["advantages"][3] < 0 < out["advantages"][0]
    assert trainer._metrics["train"]["dot/cut_frac"][0] == pytest.approx(1 / 8)
