"""RolloutBatch validation, the REWARDS registry, and properties every reward must keep.

Run: .venv/bin/pytest tests/rewards/test_registry.py
"""

import json
import math
import random

import pytest

from conciser.rewards import REWARDS, RolloutBatch, build_reward
from conciser.rewards.reference import ProblemStats, ReferenceStats


def valid(**over):
    kw = dict(problem_ids=["a", "a", "b"], lengths=[1, 2, 3], correct=[True, False, True],
              truncated=[False, False, True], format_ok=[True, True, False], max_length=8)
    kw.update(over)
    return kw


@pytest.mark.parametrize("over,match", [
    (dict(problem_ids=[], lengths=[], correct=[], truncated=[], format_ok=[]), "problem_ids is empty"),
    (dict(lengths=[1, 2]), "lengths has 2 entries"),
    (dict(correct=[True]), "correct has 1 entries"),
    (dict(truncated=[False] * 4), "truncated has 4 entries"),
    (dict(format_ok=[True, True]), "format_ok has 2 entries"),
    (dict(lengths=[1, -2, 3]), r"lengths\[1\]=-2 must be >= 0"),
    (dict(lengths=[1, 2.5, 3]), r"lengths\[1\] must be an int"),
    (dict(lengths=[1, 2, 9]), r"lengths\[2\]=9 exceeds max_length=8"),
    (dict(max_length=0), "max_length=0"),
    (dict(step=-1), "step=-1"),
    (dict(correct=[True, "yes", False]), r"correct\[1\] must be a bool"),
    (dict(problem_ids=["a", 1, "b"]), r"problem_ids\[1\] is int"),
    (dict(target_lengths=[1, 2]), "target_lengths has 2 entries"),
    (dict(target_lengths=[1, 0, 2]), r"target_lengths\[1\]=0"),
    (dict(texts=["x", "y"]), "texts has 2 entries"),
    (dict(texts=["x", None, "z"]), r"texts\[1\]"),
    (dict(lengths="123"), "lengths must be a list"),
])
def test_invalid_batches_raise_naming_the_field(over, match):
    with pytest.raises(ValueError, match=match):
        RolloutBatch(**valid(**over))


def test_batch_helpers():
    b = RolloutBatch(**valid(problem_ids=["b", "a", "b"]))
    assert list(b.groups().items()) == [("b", [0, 2]), ("a", [1])]
    assert b.solved == [True, False, False]
    assert len(b) == 3
    with pytest.raises(ValueError, match="needs RolloutBatch.texts"):
        b.require("texts", "laser_de")


def test_unknown_name_lists_valid_names_sorted():
    with pytest.raises(ValueError) as e:
        build_reward("lazer")
    assert str(sorted(REWARDS)) in str(e.value)


@pytest.mark.parametrize("name", sorted(REWARDS))
def test_unknown_key_names_reward_and_key(name):
    with pytest.raises((TypeError, ValueError)) as e:
        build_reward(name, not_a_key=1)
    assert name in str(e.value) and "not_a_key" in str(e.value) and "valid keys" in str(e.value)


def random_batch(rng, step):
    max_length = rng.choice([64, 4096, 20480])
    n_groups, g = rng.randint(1, 5), rng.randint(1, 6)
    ids, lengths, correct, truncated, fmt, texts, targets, think, entropies = [], [], [], [], [], [], [], [], []
    for k in range(n_groups):
        for _ in range(g):
            t = rng.random() < 0.2
            n = max_length if t else rng.randint(0, max_length)
            ids.append(f"p{rng.randint(0, 6)}-{k}")
            lengths.append(n)
            truncated.append(t)
            fmt.append(rng.random() < 0.9)
            correct.append(rng.random() < 0.5)
            texts.append(" ".join(rng.choice(["a", "b", "wait", "so"]) for _ in range(rng.randint(0, 30)))
                         + rng.choice(["", "<think>x</think> <answer>4</answer>", "<think> a=4. so 4</think>\\boxed{4}"]))
            targets.append(rng.randint(1, 5000))
            think.append(rng.randint(0, n))
            entropies.append([rng.choice([None, rng.uniform(0, 3)]) for _ in range(2)])
    return RolloutBatch(problem_ids=ids, lengths=lengths, correct=correct, truncated=truncated,
                        format_ok=fmt, max_length=max_length, step=step, texts=texts,
                        target_lengths=targets, think_lengths=think,
                        answer_lengths=[n - t for n, t in zip(lengths, think)],
                        think_entropies=[e[0] for e in entropies], answer_entropies=[e[1] for e in entropies])


SMALL = {"soft_overlong": dict(cache_length=16)}  # its paper cache (4096) must fit under the cap


def with_reference(reward):
    """A reward that scores against reference statistics gets some for every id `random_batch` draws."""
    if reward.reference_stats() is not None:
        rng = random.Random(7)
        reward.use_reference(ReferenceStats({f"p{i}-{k}": ProblemStats(rng.uniform(1, 5000), rng.random(), 4)
                                             for i in range(7) for k in range(5)}, "REF"))
    return reward


@pytest.mark.parametrize("name", sorted(REWARDS))
def test_finite_pure_and_state_round_trip_on_random_batches(name):
    rng = random.Random(1234)
    reward = with_reference(build_reward(name, **SMALL.get(name, {})))
    for step in range(25):
        batch = random_batch(rng, step)
        state = json.dumps(reward.state_dict(), sort_keys=True)
        r1 = reward(batch)
        r2 = reward(batch)
        assert json.dumps(reward.state_dict(), sort_keys=True) == state, "reward() changed state"
        assert r1 == r2 and len(r1) == len(batch)
        assert all(isinstance(x, float) and math.isfinite(x) for x in r1), (name, r1)
        reward.observe(batch)
        d = json.loads(json.dumps(reward.state_dict()))
        assert "version" in d
        fresh = with_reference(build_reward(name, **SMALL.get(name, {})))
        fresh.load_state_dict(d)
        assert fresh.state_dict() == reward.state_dict()
        assert fresh(batch) == reward(batch)


@pytest.mark.parametrize("name", sorted(REWARDS))
def test_state_with_another_config_is_rejected(name):
    reward = build_reward(name, **SMALL.get(name, {}))
    d = json.loads(json.dumps(reward.state_dict()))
    key = next(iter(d["config"]))
    d["config"][key] = "something else"
    with pytest.raises(ValueError, match="config"):
        build_reward(name, **SMALL.get(name, {})).load_state_dict(d)
    d = reward.state_dict()
    d["version"] = -1
    with pytest.raises(ValueError, match="version"):
        build_reward(name, **SMALL.get(name, {})).load_state_dict(d)


@pytest.mark.parametrize("name", sorted(REWARDS))
def test_module_docstring_cites_the_paper_and_every_config_field(name):
    import dataclasses
    import re
    import sys

    cls = REWARDS[name]
    assert cls.name == name
    doc = sys.modules[cls.__module__].__doc__
    assert re.search(r"arXiv \d{4}\.\d{5}", doc), f"{name}: no arXiv id in the module docstring"
    missing = [f.name for f in dataclasses.fields(cls.Config) if f.name not in doc]
    assert not missing, f"{name}: config fields {missing} are not documented in {cls.__module__}"


@pytest.mark.parametrize("name,config,match", [
    ("laser", dict(target_length="4096"), "target_length='4096' must be int"),
    ("laser", dict(alpha=True), "alpha=True must be float"),
    ("laser", dict(target_length=4096.0), "must be int"),
    ("dler_da", dict(truncation_lengths=4000), "must be tuple"),
    ("hapo", dict(length_reward=1), "must be str"),
])
def test_config_types_are_checked_naming_the_field(name, config, match):
    with pytest.raises(TypeError, match=match):
        build_reward(name, **config)


def test_ints_are_accepted_for_float_fields():
    assert build_reward("laser", alpha=1).config.alpha == 1
