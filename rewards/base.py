"""The small base every length reward shares: config handling and the state protocol.

A reward is a class with a nested frozen ``Config`` dataclass and a ``reward(batch)`` method.
Stateful rewards set ``stateful = True`` and override ``observe``, ``_state`` and ``_load_state``.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

from conciser.rewards.batch import RolloutBatch


class LengthReward:
    name: ClassVar[str] = "base"
    Config: ClassVar[type] = type(None)
    stateful: ClassVar[bool] = False
    STATE_VERSION: ClassVar[int] = 1

    def __init__(self, config: Any = None, **overrides: Any) -> None:
        if config is None:
            valid = sorted(f.name for f in dataclasses.fields(self.Config))
            bad = sorted(set(overrides) - set(valid))
            if bad:
                raise TypeError(
                    f"reward {self.name!r}: unknown config key(s) {bad}; valid keys: {valid}"
                )
            _check_types(self.name, self.Config, overrides)
            config = self.Config(**overrides)
        elif overrides:
            config = dataclasses.replace(config, **overrides)
        if not isinstance(config, self.Config):
            raise TypeError(f"reward {self.name!r}: config must be {self.Config.__qualname__}")
        self.config = config

    def reward(self, batch: RolloutBatch) -> list[float]:
        """The method's total per-completion reward. Pure: never changes state."""
        raise NotImplementedError

    def __call__(self, batch: RolloutBatch) -> list[float]:
        return self.reward(batch)

    def observe(self, batch: RolloutBatch) -> None:
        """Commit what this batch teaches (called once per optimizer step; never at eval)."""

    def state_dict(self) -> dict[str, Any]:
        return {"version": self.STATE_VERSION, "name": self.name,
                "config": _jsonable(dataclasses.asdict(self.config)), **self._state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for key, mine in (("version", self.STATE_VERSION), ("name", self.name),
                          ("config", _jsonable(dataclasses.asdict(self.config)))):
            if state.get(key) != mine:
                raise ValueError(f"reward {self.name!r}: state {key} {state.get(key)!r} does not "
                                 f"match this reward's {key} {mine!r}; load a matching state file "
                                 f"or start fresh")
        self._load_state(state)

    def _state(self) -> dict[str, Any]:
        return {}

    def _load_state(self, state: dict[str, Any]) -> None:
        pass


def _check_types(name: str, config_cls: type, values: dict[str, Any]) -> None:
    """Reject a value whose type does not match its field's default (None defaults: unchecked)."""
    fields = {f.name: f for f in dataclasses.fields(config_cls)}
    for key, value in values.items():
        default = fields[key].default
        if value is None and "None" in str(fields[key].type):
            continue
        kinds = {bool: (bool,), int: (int,), float: (int, float), str: (str,),
                 tuple: (list, tuple)}.get(type(default))
        if kinds and (not isinstance(value, kinds) or (bool not in kinds and isinstance(value, bool))):
            raise TypeError(f"reward {name!r}: {key}={value!r} must be {type(default).__name__} "
                            f"(default {default!r})")


def _jsonable(value: Any) -> Any:
    """Tuples -> lists so a config compares equal after a JSON round trip."""
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value
