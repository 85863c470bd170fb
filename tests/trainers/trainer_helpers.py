"""Helpers for trainer tests, imported by name (`from trainer_helpers import completion`): a module of
its own, because `from conftest import ...` is ambiguous when several conftest.py files exist."""

from __future__ import annotations

import functools
import re

from conciser import toy


def completion(p: toy.ToyProblem, correct: bool = True, extra: int = 0, eos: bool = True) -> str:
    """The minimal trace of `p` with `extra` filler tokens in the thinking; wrong answer if not
    `correct`; no EOS (a truncated completion) if not `eos`. Tokens: p.minimal_tokens + extra."""
    text = toy.minimal_trace(p).replace(toy.THINK_CLOSE, " hmm" * extra + toy.THINK_CLOSE)
    if not correct:
        text = text.replace("\\boxed{" + p.answer + "}", "\\boxed{" + str((int(p.answer) + 1) % 10) + "}")
    return text if eos else text.removesuffix(toy.EOS)


PROMPT = re.compile(r"solve: start=\d; [^.]*\.")


@functools.lru_cache(maxsize=1)
def _toy_problems() -> dict[str, toy.ToyProblem]:
    """prompt text -> problem, for every toy training problem a recipe can use (n_train <= 2000, seed 0)."""
    return {p.prompt: p for p in toy.train_problems(2000)}


def toy_inputs(trainer, n_prompts: int, group: int, offset: int = 0) -> list[dict]:
    """`n_prompts` dataset rows, each repeated `group` times (what TRL's RepeatSampler yields)."""
    rows = [trainer.train_dataset[i] for i in range(offset, offset + n_prompts)]
    return [r for r in rows for _ in range(group)]
