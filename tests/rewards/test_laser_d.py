"""LASER-D / LASER-DE (arXiv 2505.15612): hand-computed tables from methods-core §1.4-1.5.

Run: .venv/bin/pytest tests/rewards/test_laser_d.py
"""

import dataclasses
import json
import random
from functools import partial

import pytest

from conciser.rewards import build_reward
from conciser.rewards.laser_d import (is_repetitive, length_grid, min_correct, monitor_bucket,
                                      training_bucket)

from batches import make_batch


mk = partial(make_batch, max_length=40)


@pytest.mark.parametrize("lower,upper,step,expected", [
    (4096, 16384, 1024, list(range(4096, 16385, 1024))),
    (512, 4096, 1024, [512, 1024, 2048, 3072, 4096]),
    (4000, 16384, 1024, [4000 + 1024 * k for k in range(14)]),  # last = 17312 covers the cap
    (10, 25, 10, [10, 20, 30]),
    (5, 25, 10, [5, 10, 20, 30]),
    (10, 40, 10, [10, 20, 30, 40]),
])
def test_grid(lower, upper, step, expected):
    assert length_grid(lower, upper, step) == expected


@pytest.mark.parametrize("k,rounding,expected", [
    (8, "floor", (5, 2, 1)), (8, "ceil", (6, 3, 1)),
    (4, "floor", (2, 1, 1)), (4, "ceil", (3, 2, 1)),
    (3, "floor", (2, 1, 1)), (3, "ceil", (2, 1, 1)),
])
def test_min_correct(k, rounding, expected):
    assert tuple(min_correct(b, k, rounding) for b in ("easy", "medium", "hard")) == expected


@pytest.mark.parametrize("k,n_solved,train,monitor", [
    (8, 8, "easy", "easy"), (8, 6, "easy", "easy"), (8, 5, "medium", "medium"),
    (8, 3, "medium", "medium"), (8, 2, "hard", "hard"), (8, 0, "hard", "hard"),
    # K = 3 and 6: the two splits differ exactly at acc = 1/3 and 2/3
    (3, 2, "easy", "medium"), (3, 1, "medium", "hard"), (3, 3, "easy", "easy"),
    (6, 4, "easy", "medium"), (6, 2, "medium", "hard"), (6, 5, "easy", "easy"),
])
def test_buckets(k, n_solved, train, monitor):
    assert training_bucket(n_solved, k) == train
    assert monitor_bucket(n_solved, k) == monitor


# Monitor set, K = 4, cap 40, grid (L_T=10, step 10) = [10, 20, 30, 40]:
#   m1 easy   (4/4): lengths 5 15 25 35   m2 medium (2/4): 10 20 30 40
#   m3 hard   (1/4): lengths 40 40 12 40
MONITOR = mk(lengths=[5, 15, 25, 35, 10, 20, 30, 40, 40, 40, 12, 40],
             correct=[True] * 4 + [True, True, False, False] + [False, False, True, False],
             ids=["m1"] * 4 + ["m2"] * 4 + ["m3"] * 4)
CFG = dict(target_length=10, grid_step=10)


@pytest.mark.parametrize("rounding,batch_max,expected", [
    # floor: C = 2/1/1. easy: floor(P*2)>=1 -> P>=1/2 -> 20; medium/hard need P = 1 -> 40
    ("floor", 40, {"easy": 20, "medium": 40, "hard": 40}),
    # ceil: C = 3/2/1. easy: 3P>=1 -> P>=1/3 -> 20 (P(10)=1/4); medium: 2P>=1 -> 20; hard 40
    ("ceil", 40, {"easy": 20, "medium": 20, "hard": 40}),
    # the target never exceeds the longest response of the training batch
    ("floor", 30, {"easy": 20, "medium": 30, "hard": 30}),
    ("floor", 15, {"easy": 15, "medium": 15, "hard": 15}),
])
def test_bucket_targets_from_monitor(rounding, batch_max, expected):
    r = build_reward("laser_d", rounding=rounding, **CFG)
    r.update_coverage(MONITOR)
    assert r.bucket_targets(batch_max) == expected


def test_expected_correct_two_needs_full_coverage_for_easy():
    r = build_reward("laser_d", expected_correct=2, **CFG)
    r.update_coverage(MONITOR)
    assert r.bucket_targets(40) == {"easy": 40, "medium": 40, "hard": 40}


def test_empty_bucket_falls_back_to_batch_max():
    r = build_reward("laser_d", **CFG)
    r.update_coverage(mk(lengths=[5, 6, 7, 8], correct=[True] * 4, ids=["e"] * 4))
    # easy: P(10) = 1 -> floor(1*2) = 2 >= 1 -> 10; no medium/hard prompts -> batch max
    assert r.bucket_targets(33) == {"easy": 10, "medium": 33, "hard": 33}


TRAIN = dict(  # group a: 4/4 solved -> easy; group b: 2/4 -> medium; group c: 0/4 -> hard
    lengths=[18, 20, 21, 39, 35, 40, 10, 39, 1, 2, 3, 4],
    correct=[True] * 4 + [True, True, False, False] + [False] * 4,
    ids=["a"] * 4 + ["b"] * 4 + ["c"] * 4, step=1)


@pytest.mark.parametrize("name,config,with_monitor,expected", [
    ("no statistics yet: every bucket uses L_T", dict(target_length=20, grid_step=10), False,
     [1.5, 1.5, 1.0, 1.0, 1.0, 1.0, -0.5, -0.5] + [-0.5] * 4),
    ("floor targets easy 20, medium 40", CFG, True,
     [1.5, 1.5, 1.0, 1.0, 1.5, 1.5, -0.5, -0.5] + [-0.5] * 4),
    ("ceil targets easy 20, medium 20", dict(rounding="ceil", **CFG), True,
     [1.5, 1.5, 1.0, 1.0, 1.0, 1.0, -0.5, -0.5] + [-0.5] * 4),
    ("hybrid mode", dict(mode="hybrid", **CFG), True,
     [1.5, 1.5, 0.5, 0.5, 1.5, 1.5, -0.5, -0.5] + [-0.5] * 4),
    ("penalty mode", dict(mode="penalty", **CFG), True,
     [1.0, 1.0, 0.5, 0.5, 1.0, 1.0, -0.5, -0.5] + [-0.5] * 4),
])
def test_laser_d_table(name, config, with_monitor, expected):
    r = build_reward("laser_d", **config)
    if with_monitor:
        r.update_coverage(MONITOR)
    assert r(mk(**TRAIN)) == pytest.approx(expected)


def test_format_failures_and_truncation_score_minus_one():
    r = build_reward("laser_de", target_length=10, repetition_filter=False)
    b = mk(lengths=[5, 40, 20, 5], correct=[True, True, False, False], ids=["a"] * 4,
           truncated=[False, True, True, False], format_ok=[False, True, True, False])
    assert r(b) == [-1.0] * 4


DE_TEXTS = ["ok"] * 2 + ["x"] + [" ".join(f"w{i}" for i in range(20)), "a b " * 10, "z", "z"]


def test_laser_de_table():
    # L_T = 10 (no statistics). group: 2/7 solved -> hard bucket, target L_T = 10
    r = build_reward("laser_de", target_length=10, grid_step=10)
    b = mk(lengths=[5, 20, 5, 20, 20, 20, 40], correct=[True, True] + [False] * 5, ids=["g"] * 7,
           format_ok=[True] * 5 + [False, True], truncated=[False] * 6 + [True], texts=DE_TEXTS)
    #        correct short, correct long, wrong short, wrong long, wrong long repetitive,
    #        wrong long bad format, wrong truncated
    assert r(b) == pytest.approx([1.5, 1.0, -0.5, 0.0, -0.5, -1.0, -1.0])
    # token ids take precedence over texts: a repetitive id sequence withholds the bonus
    ids = [list(range(n)) for n in b.lengths]
    ids[3] = [1, 2] * 10
    b2 = dataclasses.replace(b, token_ids=ids)
    assert r(b2)[3] == -0.5
    # filter off: every wrong, well-formed, long answer gets the bonus
    assert build_reward("laser_de", target_length=10, repetition_filter=False)(b)[3:5] == [0.0, 0.0]


def test_laser_de_exploration_boundary_is_strict():
    r = build_reward("laser_de", target_length=10, repetition_filter=False)
    b = mk(lengths=[10, 11], correct=[False, False], ids=["g", "g"])
    assert r(b) == [-0.5, 0.0]


def test_laser_de_needs_texts_or_token_ids_for_the_filter():
    b = mk(lengths=[20], correct=[False], ids=["g"])
    with pytest.raises(ValueError, match="texts.*token_ids.*repetition_filter=False"):
        build_reward("laser_de", target_length=10)(b)


def test_laser_de_rejects_other_modes():
    with pytest.raises(ValueError, match="laser_de.mode"):
        build_reward("laser_de", mode="hybrid")


@pytest.mark.parametrize("tokens,expected", [
    ([1] * 8, False),                                   # <= 2n tokens: never repetitive
    ([1, 2] * 5, True),                                 # bigram 3x, gaps 2 < 10 // 3
    (list(range(40)), False),
    ([7] * 50, True),                                   # uniform trigrams skipped; 6-gram repeats
    ([0, 1, 2] + list(range(100, 124)) + [0, 1, 2], False),  # 2 hits, gap 27 >= 30 // 3
    ([0, 1, 2, 50, 0, 1, 2] + list(range(100, 123)), True),  # 2 hits, gap 4 < 10
    ([0, 1, 2, 3] * 2 + list(range(1000, 1192)), False),     # len 200: needs 3 hits
    ([0, 1, 2, 3] * 3 + list(range(1000, 1188)), True),
])
def test_repetition_detector(tokens, expected):
    assert is_repetitive(tokens) is expected


def test_training_source_refreshes_every_n_steps():
    r = build_reward("laser_d", coverage_source="training", refresh_every=20, **CFG)
    assert r.refresh_due(0) and not r.monitor_due(0)  # no monitor set to sample: training batches refresh
    r.observe(mk(lengths=[5, 6, 7, 8], correct=[True] * 4, ids=["e"] * 4, step=0))
    assert r.bucket_targets(40)["easy"] == 10 and not r.refresh_due(19)
    r.observe(mk(lengths=[30, 30, 30, 30], correct=[True] * 4, ids=["f"] * 4, step=5))
    assert r.bucket_targets(40)["easy"] == 10  # window collected, not yet refreshed
    r.observe(mk(lengths=[30, 30, 30, 30], correct=[True] * 4, ids=["f"] * 4, step=20))
    # rebuilt from steps 5 and 20 only: 8 easy responses all of length 30 -> P(20) = 0 -> 30
    assert r.bucket_targets(40)["easy"] == 30
    d = json.loads(json.dumps(r.state_dict()))
    fresh = build_reward("laser_d", coverage_source="training", refresh_every=20, **CFG)
    fresh.load_state_dict(d)
    assert fresh.state_dict() == r.state_dict()


def test_monitor_source_ignores_observe_and_reports_due_steps():
    r = build_reward("laser_d", **CFG)
    r.observe(mk(**TRAIN))
    assert r.state_dict()["coverage"] is None and r.monitor_due(1)
    r.update_coverage(dataclasses.replace(MONITOR, step=40))
    assert not r.monitor_due(59) and r.monitor_due(60)


def test_mixed_group_sizes_need_group_size():
    b = mk(lengths=[1, 2, 3], correct=[True] * 3, ids=["a", "a", "b"])
    with pytest.raises(ValueError, match="group_size"):
        build_reward("laser_d", **CFG).update_coverage(b)
    r = build_reward("laser_d", group_size=2, **CFG)
    r.update_coverage(b)
    assert r.state_dict()["coverage"]["group_size"] == 2


@pytest.mark.parametrize("name", ["laser_d", "laser_de"])
def test_correct_never_below_wrong_in_a_group(name):
    rng = random.Random(7)
    r = build_reward(name, **CFG)
    r.update_coverage(MONITOR)
    for _ in range(50):
        n = rng.randint(1, 8)
        b = mk(lengths=[rng.randint(0, 40) for _ in range(n)],
               correct=[rng.random() < 0.5 for _ in range(n)], ids=["g"] * n,
               texts=["a b c"] * n)
        out = r(b)
        right = [x for x, ok in zip(out, b.solved) if ok]
        wrong = [x for x, ok in zip(out, b.solved) if not ok]
        if right and wrong:
            assert min(right) > max(wrong)


def test_reward_is_pure():
    r = build_reward("laser_de", **CFG)
    r.update_coverage(MONITOR)
    b = mk(**TRAIN, texts=["a"] * 12)
    before = r.state_dict()
    assert r(b) == r(b) and r.state_dict() == before


def test_target_length_above_the_cap_is_rejected_at_coverage_time():
    r = build_reward("laser_d")  # L_T = 4096
    with pytest.raises(ValueError, match="target_length=4096.*exceeds the coverage cap 40"):
        r.update_coverage(MONITOR)


@pytest.mark.parametrize("name", ["laser_d", "laser_de"])
def test_training_source_on_random_batches_is_finite_and_round_trips(name):
    rng = random.Random(11)
    config = dict(coverage_source="training", target_length=8, grid_step=8, refresh_every=3,
                  group_size=4)
    r = build_reward(name, **config)
    for step in range(12):
        n_groups, g = rng.randint(1, 4), rng.randint(1, 6)
        n = n_groups * g
        b = mk(lengths=[rng.randint(0, 64) for _ in range(n)],
               correct=[rng.random() < 0.5 for _ in range(n)],
               ids=[f"p{k}" for k in range(n_groups) for _ in range(g)],
               texts=[" ".join(rng.choice("abc") for _ in range(rng.randint(0, 40))) for _ in range(n)],
               max_length=64, step=step)
        before = r.state_dict()
        out = r(b)
        assert r.state_dict() == before and all(-1.0 <= x <= 1.5 for x in out)
        r.observe(b)
        fresh = build_reward(name, **config)
        fresh.load_state_dict(json.loads(json.dumps(r.state_dict())))
        assert fresh.state_dict() == r.state_dict() and fresh(b) == r(b)
    assert r.state_dict()["coverage"]["step"] == 9
