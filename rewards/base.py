"""The small base every length reward shares: config handling, the state protocol, and everything a
reward may ask of the trainer.

A reward is a class with a nested frozen ``Config`` dataclass and a ``reward(batch)`` method.
Stateful rewards set ``stateful = True`` and override ``observe``, ``_state`` and ``_load_state``.

The trainer knows a reward only through what is declared here: every optional capability is a class
attribute or a method below, with a default that asks for nothing and costs nothing. A new reward
overrides what it uses and touches no trainer file. The trainer never probes with ``hasattr``.

    ==========================  ==================================================================
    needs()                     optional ``RolloutBatch`` fields the trainer must fill
                                (``TRAINER_FIELDS``: texts, token ids, think/answer lengths, entropies)
    length_scopes               the ``length_scope`` values the reward honours (see below)
    keep_all_correct            dynamic sampling keeps groups whose completions are all solved
    preferred_estimator         the advantage estimator this reward's objective is written for
    budget_kind                 None, "step" (``budget_at``) or "question" (``budget_for``)
    budget_at(step)             the generation cap at an optimizer step
    budget_for(pid, max_len)    one question's generation cap
    budget_prompt(step)         text appended to the prompt when ``budget.prompt`` is on
    target_prompt               "... {n} ..." stating a per-prompt token budget (L1)
    cut_lengths(batch)          where to cut completions before scoring (DOT)
    sampling_scores(batch, r)   what dynamic sampling compares within a group
    monitor_due(step)           sample the monitor set now; the result goes to ``update_coverage``
    metrics(batch)              numbers to log under ``<name>/`` each generation batch
    check_cap(cap)              refuse settings that cannot work under the generation cap
    reference_stats()           path of the starting model's per-problem length and accuracy
                                (``rewards/reference.py``); loaded, checked, given to ``use_reference``
    completion_prefixes(G)      text forced at the start of each rollout of a group, by position
                                (AdaptThink's forced empty thinking); training only
    ==========================  ==================================================================

Length scope. Every reward takes the config key ``length_scope`` (default ``"total"``): which tokens a
length-measuring reward counts -- the whole completion (``total``), its thinking up to and including the
end-of-thinking tag (``think``) or the answer after it (``answer``). A reward reads its lengths through
``scoped_lengths(batch)`` and lists what it can honour in ``length_scopes``; a scope other than total
adds the per-phase lengths to ``needs()``, so the trainer fills them. A reward whose lengths are
generation caps or cut positions keeps the default ``("total",)`` and refuses any other scope when it
is built, naming itself and the scopes it supports.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, Literal

from conciser.errors import UserError
from conciser.rewards.batch import RolloutBatch

#: What a reward's lengths can count: the whole completion, its thinking (up to and including the
#: end-of-thinking tag) or its answer (after the tag). See "Length scope" above.
LENGTH_SCOPES = ("total", "think", "answer")
#: The trainer fields a think or answer scope reads (they come together in a RolloutBatch).
PHASE_LENGTHS = frozenset({"think_lengths", "answer_lengths"})


class LengthReward:
    """Base of every length reward. Subclasses set ``name`` and ``Config`` and override ``reward``."""

    name: ClassVar[str] = "base"
    Config: ClassVar[type] = type(None)
    stateful: ClassVar[bool] = False
    STATE_VERSION: ClassVar[int] = 1

    #: Dynamic sampling keeps groups whose completions are all solved even when their scores are all
    #: equal (ConciseR stage 2: its length reward acts only there). ``sampling.keep_all_correct`` wins.
    keep_all_correct: ClassVar[bool] = False
    #: The advantage estimator this reward's objective is written for (DRPO's weights need "drpo");
    #: training with another estimator logs a warning. None: any estimator.
    preferred_estimator: ClassVar[str | None] = None
    #: Which generation budget the reward defines for ``budget.schedule=reward``: None (none),
    #: "step" (one cap per optimizer step, ``budget_at``) or "question" (per question, ``budget_for``).
    budget_kind: ClassVar[Literal["step", "question"] | None] = None
    #: A format string with ``{n}`` stating a per-prompt token budget in the prompt (L1: "Think for
    #: {n} tokens."): the reward scores against ``RolloutBatch.target_lengths``, so the data must give
    #: each row a ``target_length`` (or ``data.target_lengths`` draws them). None: no per-prompt budget.
    target_prompt: ClassVar[str | None] = None
    #: The ``length_scope`` values this reward honours: ("total",) for a reward that measures no length
    #: or whose lengths are generation caps / cut positions; ``LENGTH_SCOPES`` for one that reads its
    #: lengths through ``scoped_lengths``.
    length_scopes: ClassVar[tuple[str, ...]] = ("total",)
    length_scope: str = "total"  # this instance's scope (set by __init__)

    def __init__(self, config: Any = None, *, length_scope: str = "total", **overrides: Any) -> None:
        self.length_scope = self._check_scope(length_scope)
        if config is None:
            valid = sorted([f.name for f in dataclasses.fields(self.Config)] + ["length_scope"])
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

    # ----- optional capabilities: what the trainer may ask (defaults ask for nothing) --------------
    def needs(self) -> frozenset[str]:
        """Optional ``RolloutBatch`` fields this reward reads, from ``TRAINER_FIELDS``. The trainer
        fills only these: texts are gathered from every rank, entropies cost a forward pass.
        Override as ``super().needs() | {...}``: the base declares what the length scope reads."""
        return frozenset() if self.length_scope == "total" else PHASE_LENGTHS

    def scoped_lengths(self, batch: RolloutBatch) -> list[int]:
        """Each completion's length in this reward's ``length_scope``: ``batch.lengths`` (total), or
        the tokens of its thinking (closing tag included) or of its answer after the tag."""
        if self.length_scope == "total":
            return list(batch.lengths)
        return list(batch.require(f"{self.length_scope}_lengths", self.name))

    def _check_scope(self, scope: Any) -> str:
        if scope not in LENGTH_SCOPES:
            raise UserError(f"{self.name}.length_scope={scope!r} is not one of {list(LENGTH_SCOPES)}")
        if scope not in self.length_scopes:
            raise UserError(f"{self.name}.length_scope={scope!r}: reward {self.name!r} supports length_scope "
                            f"{' / '.join(self.length_scopes)} only; remove length_scope, or pick a reward that "
                            f"measures think / answer lengths (laser, dler, kimi, ...)")
        return scope

    def budget_at(self, step: int) -> int:
        """The generation cap at optimizer ``step`` (``budget_kind == "step"``)."""
        raise TypeError(f"reward {self.name!r} has no per-step budget (budget_kind={self.budget_kind!r})")

    def budget_for(self, problem_id: str, max_length: int) -> int:
        """Question ``problem_id``'s generation cap, at most ``max_length`` (``budget_kind == "question"``)."""
        raise TypeError(f"reward {self.name!r} has no per-question budget (budget_kind={self.budget_kind!r})")

    def budget_prompt(self, step: int) -> str | None:
        """Text appended to the last user message when ``budget.prompt`` is on; None: no such text."""
        return None

    def cut_lengths(self, batch: RolloutBatch) -> list[int | None] | None:
        """Token counts to cut completions to before grading and scoring (the cut tails get no
        gradient), None per uncut completion; None for the batch: this reward never cuts (DOT cuts)."""
        return None

    def sampling_scores(self, batch: RolloutBatch, rewards: list[float]) -> list[float]:
        """What dynamic sampling (``sampling.metric=auto``) compares within a group: the rewards, unless
        the method's paper filters on something else (DLER: the score before its stop multiplier)."""
        return list(rewards)

    def monitor_due(self, step: int) -> bool:
        """True when the trainer should sample the fixed monitor set now (before ``step``) and pass the
        graded batch to ``update_coverage`` (LASER-D's coverage statistics)."""
        return False

    def update_coverage(self, batch: RolloutBatch) -> None:
        """Take the monitor set's batch (K samples per monitor prompt) sampled because ``monitor_due``."""

    def check_cap(self, cap: int) -> None:
        """Raise ValueError when this reward's settings cannot work with generations capped at `cap` tokens
        (the smallest cap of the budget schedule): e.g. a target length no completion can reach."""

    def metrics(self, batch: RolloutBatch) -> dict[str, float]:
        """The method's state worth logging for ``batch`` (targets, budgets, history), logged as
        ``<name>/<key>``. Pure."""
        return {}

    def reference_stats(self) -> str | None:
        """Path of the reference statistics this reward scores against: the eval harness's samples of
        the *starting* model on the training problems (``rewards/reference.py``); None: none (default).
        Before any model loads, the trainer reads the file, checks that it was written for the recipe's
        model and covers every training problem (a UserError names the file and the command that
        writes it), and passes the training problems' statistics to ``use_reference``."""
        return None

    def use_reference(self, stats: Any) -> None:
        """Take the loaded ``ReferenceStats`` (once, before training, when ``reference_stats()`` names a file)."""
        raise TypeError(f"reward {self.name!r} declares no reference statistics (reference_stats() is None)")

    def completion_prefixes(self, group_size: int) -> list[str | None] | None:
        """Text that each of a group's ``group_size`` rollouts must start with, by position in the group
        (None: sampled freely); None for all: nothing is forced (default). Training only: evaluation and
        the monitor set sample freely.

        The trainer appends a prefix's tokens to the prompt for generation and makes them the first
        tokens of the completion: they are graded, counted in ``lengths`` and trained, because the
        decision they stand for (AdaptThink: close the thinking at once) is what the policy must learn
        to take by itself at inference, where nothing is forced. They were not sampled from the policy,
        so their behaviour probability is the share of the group forced to the same prefix: the trainer
        writes log(share) as the old log-prob of the prefix's last token (write prefixes whose last
        token is the decision, as ``</think>`` is) and 0 for its earlier tokens -- AdaptThink's
        importance sampling. The completion, prefix included, stays within the generation cap."""
        return None

    def state_dict(self) -> dict[str, Any]:
        return {"version": self.STATE_VERSION, "name": self.name, "config": self._config_state(),
                **self._state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for key, mine in (("version", self.STATE_VERSION), ("name", self.name),
                          ("config", self._config_state())):
            if state.get(key) != mine:
                raise ValueError(f"reward {self.name!r}: state {key} {state.get(key)!r} does not "
                                 f"match this reward's {key} {mine!r}; load a matching state file "
                                 f"or start fresh")
        self._load_state(state)

    def _config_state(self) -> dict[str, Any]:
        """The config as saved with the state (the length scope only when not total, so states
        written before scopes existed still load)."""
        out = _jsonable(dataclasses.asdict(self.config))
        if self.length_scope != "total":
            out["length_scope"] = self.length_scope
        return out

    def _state(self) -> dict[str, Any]:
        return {}

    def _load_state(self, state: dict[str, Any]) -> None:
        pass


def check_targets(name: str, targets: dict[str, int], cap: int) -> None:
    """A target length (rewards.params.<key>) above the generation cap would never bind: the method would
    silently become plain correctness, or (LASER-D) fail when its grid is built."""
    for key, value in targets.items():
        if value > cap:
            raise ValueError(f"rewards.params.{key}={value} is above the generation cap {cap} tokens "
                             f"(trainer.max_completion_length, or the budget schedule's smallest cap), so it "
                             f"never binds; set {key} <= {cap} or raise the cap")


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
