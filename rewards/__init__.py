"""Length rewards for concise reasoning, one module per method family, behind one registry.

Every reward sees the *gathered global batch* (:class:`RolloutBatch`) and returns one float per
completion: the method's total reward as its paper defines it (correctness term included).
``reward(batch)`` is pure; stateful rewards (``stateful = True``) learn only in ``observe(batch)``,
which the trainer calls once per optimizer step (evaluation never does), and checkpoint through
``state_dict()`` / ``load_state_dict()`` (JSON, with a ``"version"`` and the config).

    from conciser.rewards import RolloutBatch, build_reward
    reward = build_reward("laser", target_length=4096)
    batch = RolloutBatch(problem_ids=["q1", "q1"], lengths=[900, 5000], correct=[True, True],
                         truncated=[False, False], format_ok=[True, True], max_length=16384)
    reward(batch)   # [1.5, 1.0]

Add your own length reward
--------------------------
1. One module, ``rewards/my_reward.py`` (docstring: paper + arXiv id, what it rewards, every
   config field with its paper default)::

       from dataclasses import dataclass
       from conciser.rewards.a_dlp import ADlp
from conciser.rewards.adaptthink import AdaptThink
from conciser.rewards.base import LengthReward

       class MyReward(LengthReward):
           name = "my_reward"

           @dataclass(frozen=True)
           class Config:
               alpha: float = 0.1

           def reward(self, batch):
               return [float(ok) - self.config.alpha * n / batch.max_length
                       for ok, n in zip(batch.solved, batch.lengths)]

   A stateful reward also sets ``stateful = True`` and overrides ``observe(batch)``,
   ``_state()`` (extra JSON fields) and ``_load_state(d)``.
2. One registry line below: ``"my_reward": MyReward,`` -- or none at all: a recipe can name a reward
   that lives in your own package by dotted path, ``rewards.method: my_pkg.my_module:MyReward``.
3. One test file, ``tests/rewards/test_my_reward.py``: a table of hand-computed cases.
4. One recipe, ``recipes/toy/my_reward.yaml``, naming it under ``rewards:``.

What else a reward can ask of the trainer (texts, token ids, think/answer lengths and entropies,
budgets, cuts, its own dynamic-sampling scores, metrics to log) is declared, with defaults, on
``LengthReward`` (``rewards/base.py``); override what you use. No trainer file changes.

Every reward also takes ``length_scope`` (``total`` | ``think`` | ``answer``): which tokens its lengths
count. A reward that measures lengths reads them with ``self.scoped_lengths(batch)`` and sets
``length_scopes = LENGTH_SCOPES``; one that leaves the default refuses any scope but ``total``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from conciser.plugins import is_dotted_path, load_class
from conciser.rewards.a_dlp import ADlp
from conciser.rewards.adaptthink import AdaptThink
from conciser.rewards.base import LengthReward
from conciser.rewards.batch import RolloutBatch
from conciser.rewards.concise_r import ConciseR
from conciser.rewards.cosine import Cosine
from conciser.rewards.curriculum import Curriculum
from conciser.rewards.dler import Dler, DlerDA
from conciser.rewards.dot import Dot
from conciser.rewards.drpo import Drpo
from conciser.rewards.efficient_reasoning import EfficientReasoning
from conciser.rewards.grpo_lambda import GrpoLambda
from conciser.rewards.grpo_lead import GrpoLead
from conciser.rewards.hapo import Hapo
from conciser.rewards.kimi import Kimi
from conciser.rewards.l1 import L1Exact, L1Max
from conciser.rewards.laser import Laser
from conciser.rewards.laser_d import LaserD, LaserDE
from conciser.rewards.lc_r1 import LcR1
from conciser.rewards.o1_pruner import O1Pruner
from conciser.rewards.palu import Palu
from conciser.rewards.pear import Pear
from conciser.rewards.shorterbetter import ShorterBetter
from conciser.rewards.soft_overlong import SoftOverlong
from conciser.rewards.thinkprune import ThinkPrune

REWARDS: dict[str, type[LengthReward]] = {
    # card methods
    "laser": Laser,
    "laser_d": LaserD,
    "laser_de": LaserDE,
    "dler": Dler,
    "dler_da": DlerDA,
    "drpo": Drpo,
    "hapo": Hapo,
    "curriculum": Curriculum,
    # the field's other methods
    "kimi": Kimi,
    "cosine": Cosine,
    "l1_exact": L1Exact,
    "l1_max": L1Max,
    "thinkprune": ThinkPrune,
    "shorterbetter": ShorterBetter,
    "grpo_lambda": GrpoLambda,
    "palu": Palu,
    "dot": Dot,
    "concise_r": ConciseR,
    "soft_overlong": SoftOverlong,
    "pear": Pear,
    "lc_r1": LcR1,
    "efficient_reasoning": EfficientReasoning,
    "grpo_lead": GrpoLead,
    # scored against the starting model's reference statistics (rewards/reference.py)
    "o1_pruner": O1Pruner,
    "adaptthink": AdaptThink,
    "a_dlp": ADlp,
}


def reward_class(name: str) -> type[LengthReward]:
    """The reward class registered as ``name``, or named by dotted path (``my_pkg.mod:MyReward``)."""
    if is_dotted_path(name):
        cls = load_class(name, LengthReward, "rewards.method")
        if not dataclasses.is_dataclass(cls.Config):
            raise ValueError(f"rewards.method: {name!r} has no Config dataclass; give it a nested "
                             f"@dataclass(frozen=True) class Config (empty if it takes no options)")
        return cls
    if name not in REWARDS:
        raise ValueError(f"unknown length reward {name!r}; valid names: {sorted(REWARDS)}, or a dotted path "
                         f"'package.module:ClassName' to your own LengthReward subclass")
    return REWARDS[name]


def build_reward(name: str, **config: Any) -> LengthReward:
    """The reward registered as ``name`` (or named by dotted path), configured with ``config``."""
    return reward_class(name)(**config)


__all__ = ["REWARDS", "LengthReward", "RolloutBatch", "build_reward", "reward_class"]
