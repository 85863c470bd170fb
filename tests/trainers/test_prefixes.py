"""Forced completion prefixes (trainers/prefixes.py): tokenized once, placed by global row, opening the
completion within the cap, and carrying the share of the group forced to them as behaviour log-prob."""

import math

import pytest
import torch

from conciser.trainers.prefixes import Forced, behaviour_logps, forced_prefixes, rows_forced, with_prefixes


class _Tok:
    def encode(self, text, add_special_tokens=False):
        return [ord(c) for c in text]


class _Reward:
    name = "mine"

    def __init__(self, prefixes):
        self.prefixes = prefixes

    def completion_prefixes(self, group):
        return self.prefixes


def test_share_of_the_group_per_prefix():
    forced = forced_prefixes(_Reward(["ab", "ab", "ab", "c"]), 4, _Tok())
    assert [f.ids for f in forced] == [[97, 98]] * 3 + [[99]]
    assert [f.log_share for f in forced] == pytest.approx([math.log(0.75)] * 3 + [math.log(0.25)])
    free = forced_prefixes(_Reward(["ab", None]), 2, _Tok())
    assert free[0] == Forced([97, 98], math.log(0.5)) and free[1].ids == []
    assert forced_prefixes(_Reward(None), 4, _Tok()) is None
    assert forced_prefixes(_Reward([None, ""]), 2, _Tok()) is None
    with pytest.raises(ValueError, match="one text or None per rollout"):
        forced_prefixes(_Reward(["a"]), 2, _Tok())


def test_rows_take_their_place_in_the_global_group():
    forced = [Forced([1]), Forced([2]), Forced([3]), Forced([4])]
    # rank 1 of a 2-rank batch of 12 rows (6 each) with groups of 4: global rows 6..11
    assert [f.ids[0] for f in rows_forced(forced, start=6, n=6)] == [3, 4, 1, 2, 3, 4]
    assert rows_forced(None, 0, 3) is None


def test_the_prefix_opens_the_completion_within_the_cap():
    forced = [Forced([7, 8], math.log(0.5)), Forced([])]
    ids, lps = with_prefixes(forced, [[1, 2, 3], [4, 5]], [[-0.1, -0.2, -0.3], [-0.4, -0.5]], cap=4)
    assert ids == [[7, 8, 1, 2], [4, 5]]
    assert math.isnan(lps[0][0]) and math.isnan(lps[0][1]) and lps[0][2:] == [-0.1, -0.2] and lps[1] == [-0.4, -0.5]
    assert with_prefixes(forced, [[1], [2]], None, cap=8) == ([[7, 8, 1], [2]], None)


def test_behaviour_log_probs():
    old = torch.full((3, 4), -2.0)
    out = behaviour_logps(old, [Forced([7, 8], math.log(0.5)), Forced([]), Forced([9, 9, 9, 9, 9], -1.0)])
    assert out[0].tolist() == pytest.approx([0.0, math.log(0.5), -2.0, -2.0])  # decision token last
    assert out[1].tolist() == [-2.0] * 4                                         # sampled freely
    assert out[2].tolist() == [0.0] * 4                                          # cut before its decision token
    assert old.eq(-2.0).all()                                                    # not changed in place
