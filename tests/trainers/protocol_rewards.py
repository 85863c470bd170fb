"""Rewards defined outside conciser, named by dotted path in tests (`protocol_rewards:Capture`): they record
the batches the trainer hands them, so tests can check what a declared capability makes the trainer fill."""

from __future__ import annotations

from dataclasses import dataclass

from conciser.rewards import LengthReward
from conciser.rewards.batch import TRAINER_FIELDS

SEEN: list = []  # batches scored, in order (cleared by the tests)


class Capture(LengthReward):
    """Correctness reward that asks for every optional field the trainer can fill."""

    name = "capture"

    @dataclass(frozen=True)
    class Config:
        bonus: float = 0.0

    def needs(self) -> frozenset[str]:
        return frozenset(TRAINER_FIELDS)

    def reward(self, batch):
        SEEN.append(batch)
        return [float(ok) + self.config.bonus for ok in batch.solved]


class Plain(Capture):
    """The same reward asking for nothing."""

    name = "plain"

    def needs(self) -> frozenset[str]:
        return frozenset()
