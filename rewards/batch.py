"""``RolloutBatch``: the gathered global batch of completions that every length reward sees.

One entry per completion. Completions with the same ``problem_id`` form a group (GRPO's G rollouts
of one prompt). Lengths are completion *tokens* (from completion ids, EOS included if emitted),
never characters; a length above ``max_length`` is rejected because it almost always means
characters were passed.

The optional per-completion fields in ``TRAINER_FIELDS`` cost the trainer work (gathering texts
across ranks, a forward pass for entropies), so it fills only those a reward declares in
``LengthReward.needs()``; ``target_lengths`` comes from the data.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

_PER_COMPLETION = ("lengths", "correct", "truncated", "format_ok")
#: Optional fields the trainer fills on request (``LengthReward.needs()``).
TRAINER_FIELDS = ("texts", "token_ids", "think_lengths", "answer_lengths", "think_entropies", "answer_entropies")
_OPTIONAL = ("target_lengths", *TRAINER_FIELDS)


@dataclass(frozen=True, kw_only=True)
class RolloutBatch:
    """A gathered batch of scored completions.

    Fields (one entry per completion unless noted):
        problem_ids: prompt / problem id; the same id means the same group.
        lengths: completion length in tokens.
        correct: the grader's verdict on the final answer.
        truncated: True when the completion hit the cap without emitting EOS.
        format_ok: True when the completion is well formed (closed thinking, a boxed answer).
        max_length: the generation cap in tokens (one value for the batch).
        step: the optimizer step that produced the batch (one value).
        target_lengths: optional per-completion token budget (L1's n_gold).
        texts: optional decoded completions (LASER-DE's repetition filter, curriculum's tags).
        token_ids: optional completion token ids, ``len(token_ids[i]) == lengths[i]`` (LASER-DE's
            repetition filter runs on token ids in the authors' code; preferred over texts).
        think_lengths / answer_lengths: optional tokens before and after the end of thinking
            (``think_lengths[i]`` includes the closing tag; the split is at its last occurrence, as
            the grader's; no tag: all thinking, answer 0); ``think + answer == lengths``.
        think_entropies / answer_entropies: optional mean token entropy (nats) of the thinking and of
            the answer part under the sampling policy (temperature included); None for an empty part.
    """

    problem_ids: Sequence[str]
    lengths: Sequence[int]
    correct: Sequence[bool]
    truncated: Sequence[bool]
    format_ok: Sequence[bool]
    max_length: int
    step: int = 0
    target_lengths: Sequence[int] | None = None
    texts: Sequence[str] | None = None
    token_ids: Sequence[Sequence[int]] | None = None
    think_lengths: Sequence[int] | None = None
    answer_lengths: Sequence[int] | None = None
    think_entropies: Sequence[float | None] | None = None
    answer_entropies: Sequence[float | None] | None = None

    def __post_init__(self) -> None:
        n = len(self.problem_ids)
        if n == 0:
            raise ValueError("RolloutBatch.problem_ids is empty: a batch needs at least one "
                             "completion")
        for name in ("problem_ids", *_PER_COMPLETION, *_OPTIONAL):
            value = getattr(self, name)
            if value is None:
                continue
            if isinstance(value, (str, bytes)) or not hasattr(value, "__len__"):
                raise ValueError(f"RolloutBatch.{name} must be a list, got {type(value).__name__}")
            if len(value) != n:
                raise ValueError(f"RolloutBatch.{name} has {len(value)} entries but problem_ids "
                                 f"has {n}; pass one entry per completion")
        _set(self, "max_length", _int("max_length", self.max_length, minimum=1))
        _set(self, "step", _int("step", self.step, minimum=0))
        for i, pid in enumerate(self.problem_ids):
            if not isinstance(pid, str):
                raise ValueError(f"RolloutBatch.problem_ids[{i}] is {type(pid).__name__}; "
                                 f"problem ids must be str (use str(id))")
        _set(self, "problem_ids", list(self.problem_ids))
        lengths = [_int(f"lengths[{i}]", v, minimum=0) for i, v in enumerate(self.lengths)]
        for i, length in enumerate(lengths):
            if length > self.max_length:
                raise ValueError(f"RolloutBatch.lengths[{i}]={length} exceeds max_length="
                                 f"{self.max_length}; lengths must be completion tokens")
        _set(self, "lengths", lengths)
        for name in ("correct", "truncated", "format_ok"):
            _set(self, name, [_bool(f"{name}[{i}]", v) for i, v in enumerate(getattr(self, name))])
        if self.target_lengths is not None:
            _set(self, "target_lengths", [_int(f"target_lengths[{i}]", v, minimum=1)
                                          for i, v in enumerate(self.target_lengths)])
        if self.texts is not None:
            for i, text in enumerate(self.texts):
                if not isinstance(text, str):
                    raise ValueError(f"RolloutBatch.texts[{i}] is {type(text).__name__}, not str")
            _set(self, "texts", list(self.texts))
        if self.token_ids is not None:
            for i, (ids, length) in enumerate(zip(self.token_ids, lengths)):
                if isinstance(ids, (str, bytes)) or not hasattr(ids, "__len__") or len(ids) != length:
                    raise ValueError(f"RolloutBatch.token_ids[{i}] must be a list of {length} ids "
                                     f"(lengths[{i}])")
            _set(self, "token_ids", [list(ids) for ids in self.token_ids])
        if (self.think_lengths is None) != (self.answer_lengths is None):
            raise ValueError("RolloutBatch.think_lengths and answer_lengths come together; pass both or neither")
        if self.think_lengths is not None:
            think = [_int(f"think_lengths[{i}]", v, minimum=0) for i, v in enumerate(self.think_lengths)]
            answer = [_int(f"answer_lengths[{i}]", v, minimum=0) for i, v in enumerate(self.answer_lengths)]
            for i, (t, a, n) in enumerate(zip(think, answer, lengths)):
                if t + a != n:
                    raise ValueError(f"RolloutBatch.think_lengths[{i}] + answer_lengths[{i}] = {t + a}, "
                                     f"but lengths[{i}] = {n}; the two parts must add up to the completion")
            _set(self, "think_lengths", think)
            _set(self, "answer_lengths", answer)
        for name in ("think_entropies", "answer_entropies"):
            values = getattr(self, name)
            if values is not None:
                _set(self, name, [_entropy(f"{name}[{i}]", v) for i, v in enumerate(values)])

    def __len__(self) -> int:
        return len(self.problem_ids)

    def groups(self) -> dict[str, list[int]]:
        """problem id -> completion indices, ids in first-seen order."""
        out: dict[str, list[int]] = {}
        for i, pid in enumerate(self.problem_ids):
            out.setdefault(pid, []).append(i)
        return out

    @property
    def correct_formatted(self) -> list[bool]:
        """Correct and well formed, truncated or not: the grader's verdict on the answer."""
        return [c and f for c, f in zip(self.correct, self.format_ok)]

    @property
    def solved(self) -> list[bool]:
        """Correct, well formed and finished (not truncated): a usable final answer."""
        return [c and f and not t for c, f, t in zip(self.correct, self.format_ok, self.truncated)]

    def require(self, field: str, reward: str, fix: str = "") -> list[Any]:
        """The optional per-completion field ``field``, or a ValueError that names the reward."""
        value = getattr(self, field)
        if value is None:
            hint = f" or {fix}" if fix else ""
            declare = ("; a reward declares it in needs() so the trainer fills it"
                       if field in TRAINER_FIELDS else "")
            raise ValueError(f"reward {reward!r} needs RolloutBatch.{field}; pass {field}=[...] "
                             f"(one per completion){hint}{declare}")
        return value


def _set(batch: RolloutBatch, name: str, value: Any) -> None:
    object.__setattr__(batch, name, value)


def _int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not hasattr(value, "__index__"):
        raise ValueError(f"RolloutBatch.{name} must be an int, got {value!r}")
    value = int(value)
    if value < minimum:
        raise ValueError(f"RolloutBatch.{name}={value} must be >= {minimum}")
    return value


def _entropy(name: str, value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
        raise ValueError(f"RolloutBatch.{name} must be a number >= 0 or None, got {value!r}")
    return float(value)


def _bool(name: str, value: Any) -> bool:
    if value in (0, 1) and not isinstance(value, (str, float)):
        return bool(value)
    raise ValueError(f"RolloutBatch.{name} must be a bool, got {value!r}")
