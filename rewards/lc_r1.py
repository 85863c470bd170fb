"""LC-R1 (Cheng, Chen, Fu & Zhou, "Optimizing Length Compression in Large Reasoning Models",
arXiv 2506.14755; code zxiangx/LC-R1 @ 7a6bd8b: ``scripts/train.py`` and the patched
``trl/trainer/grpo_trainer.py``, ``get_prefix`` and ``_generate_and_score_completions``).

What it rewards. Brevity (a length reward against the group's longest correct answer) and
Sufficiency (a compress reward against "invalid thinking": the thinking a model does after it has
already written the correct answer, mostly re-checking it). Per completion, with right = correct and
exactly one ``</think>`` in the text (the code's format reward 1 + accuracy 1 = 2):

    r = format_reward * I(one </think>) + correct_reward * I(correct)
        + length_weight * len_r + compress_weight * compress_r

    len_r      = 1 - L' / max(L' of the group's right answers)   (0 in a group with no right answer)
    compress_r = f - 1   for a right answer whose thinking reaches the answer, f = the share of the
                         thinking up to that point (so -(share of invalid thinking), in (-1, 0])
               = -1      for a right answer whose thinking never writes it (the code's -1)
               = 0       otherwise

L' is the length in the reward's ``length_scope`` (default ``total``) of the *compressed* completion:
for a right answer whose thinking reaches the answer, the invalid thinking is taken out (as the code
trains on the cut sequence), i.e. L' = L - round((1 - f) * think tokens); with scope ``answer``
nothing is taken out. ``length_on_wrong`` (code: True) gives wrong answers len_r too, measured
against the same maximum, so a short wrong answer gains and a long one loses.

Where the answer is first reached. The code asks a separate extractor LM for "the first sentence
that reveals the ground-truth answer". Here the final answer is the grader's own extraction
(``rewards.grading.extract_answer``; for a right completion it is the gold answer as written by the
model) and the thinking (before the last ``</think>``, the grader's split) is scanned for its first
occurrence; f = characters up to the end of that sentence (as the extractor copies "up to and
including that sentence": to a full stop followed by a space, a line break or the end) / characters
of the thinking, turned into tokens in proportion (the reward sees no tokenizer). ``answer_match``:
``standalone`` (the answer not glued to a letter or digit on either side, nor part of a decimal
number: "is 42", "=42.", "{42}" count, "142", "42x", "0.42", "42.5" do not) or ``after_equals`` (written
right after "=", as a result: on the toy "c4:0=4." is the first time the answer digit 4 is written
as a step's result; an operand "c4" or a previous value "a3:4=7." never counts). An answer
written in another form in the thinking (0.5 vs 1/2) is not recognised, and an intermediate result
that happens to equal the answer counts as reaching it (the extractor LM can make both mistakes too).

Where this differs from the code (the compress reward cannot be reproduced exactly as a
per-completion reward):
* The code *cuts* the invalid thinking out of every right completion before the loss, keeps the
  ``</think>`` and the answer, and adds 1 - V/T (V = valid thinking tokens, T = thinking tokens) to
  the advantage of the ``</think>`` token only (-1 when the extractor finds nothing), on top of the
  group-mean-centred sequence advantage. Here the completion is trained whole and the invalid share
  becomes a sequence-level penalty (f - 1 = -(1 - V/T)); the trainer's advantage estimator then
  treats it like the rest of the reward (the code does not normalise it).
* The code centres rewards on the group mean without dividing by the std (``scale_rewards=False``):
  recipes set ``trainer.scale_rewards: none``.
* The code's lengths are tokens before the first EOS (``eos_idx``), here completion tokens.

Config (code default): length_weight (1.0, ``len_penalty_coef``), compress_weight (1.0,
``add_adv``), format_reward (1.0), correct_reward (1.0), length_on_wrong (True),
answer_match ("standalone"; the toy recipe uses "after_equals").
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from conciser.rewards._stats import mean
from conciser.rewards.base import LENGTH_SCOPES, PHASE_LENGTHS, LengthReward
from conciser.rewards.batch import RolloutBatch
from conciser.rewards.grading import THINK_CLOSE, THINK_OPEN, extract_answer

ANSWER_MATCHES = ("standalone", "after_equals")
UNREACHED = -1.0  # the code's compress reward when the thinking never writes the answer


# the rest of a sentence: up to a full stop (or ! ?) that ends it, a line break, or the end of the text
_SENTENCE_END = re.compile(r".*?(?:[.!?](?=\s|$)|\n|$)")


def answer_reached(thinking: str, answer: str, match: str = "standalone") -> int | None:
    """End (character index) of the sentence in which ``thinking`` first writes ``answer``, or None."""
    if not answer:
        return None
    lead = r"=\s*" if match == "after_equals" else r"(?<![0-9A-Za-z.])"
    found = re.search(lead + re.escape(answer) + r"(?![0-9A-Za-z]|\.[0-9])", thinking)
    if found is None:
        return None
    return _SENTENCE_END.match(thinking, found.end()).end()


def valid_fraction(text: str, match: str = "standalone") -> float | None:
    """The share of the thinking (characters) up to where it first writes the final answer; None when
    it never does, or there is no closed thinking or no answer."""
    answer = extract_answer(text)
    if answer is None or THINK_CLOSE not in text:
        return None
    thinking = text.rsplit(THINK_CLOSE, 1)[0].removeprefix(THINK_OPEN)
    end = answer_reached(thinking, answer, match)
    return None if end is None else end / len(thinking)


class LcR1(LengthReward):
    """LC-R1: format + accuracy + length reward vs the longest right answer + compress reward."""

    name = "lc_r1"
    length_scopes = LENGTH_SCOPES

    @dataclass(frozen=True)
    class Config:
        length_weight: float = 1.0
        compress_weight: float = 1.0
        format_reward: float = 1.0
        correct_reward: float = 1.0
        length_on_wrong: bool = True
        answer_match: Literal["standalone", "after_equals"] = "standalone"

        def __post_init__(self) -> None:
            if self.answer_match not in ANSWER_MATCHES:
                raise ValueError(f"lc_r1.answer_match={self.answer_match!r} is not one of {list(ANSWER_MATCHES)}")
            for field in ("length_weight", "compress_weight"):
                if getattr(self, field) < 0:
                    raise ValueError(f"lc_r1.{field}={getattr(self, field)} must be >= 0")

    def needs(self) -> frozenset[str]:
        return super().needs() | {"texts"} | PHASE_LENGTHS

    def right(self, batch: RolloutBatch) -> list[bool]:
        """Correct with exactly one end-of-thinking tag: the code's format + accuracy = 2."""
        texts = batch.require("texts", self.name)
        return [c and t.count(THINK_CLOSE) == 1 for c, t in zip(batch.correct, texts)]

    def valid_fractions(self, batch: RolloutBatch) -> list[float | None]:
        """f per right completion (None: never reached); None for the others."""
        texts = batch.require("texts", self.name)
        return [valid_fraction(t, self.config.answer_match) if ok else None
                for ok, t in zip(self.right(batch), texts)]

    def compress_rewards(self, batch: RolloutBatch) -> list[float]:
        return [(UNREACHED if f is None else f - 1.0) if ok else 0.0
                for ok, f in zip(self.right(batch), self.valid_fractions(batch))]

    def compressed_lengths(self, batch: RolloutBatch) -> list[int]:
        """L': scoped lengths with the invalid thinking of right, answer-reaching completions taken out."""
        lengths = self.scoped_lengths(batch)
        if self.length_scope == "answer":
            return lengths
        think = batch.require("think_lengths", self.name)
        return [n - round((1.0 - f) * t) if f is not None else n
                for n, t, f in zip(lengths, think, self.valid_fractions(batch))]

    def length_rewards(self, batch: RolloutBatch) -> list[float]:
        right, lengths = self.right(batch), self.compressed_lengths(batch)
        out = [0.0] * len(batch)
        for idx in batch.groups().values():
            top = max((lengths[i] for i in idx if right[i]), default=0)
            if top <= 0:
                continue
            for i in idx:
                if right[i] or self.config.length_on_wrong:
                    out[i] = 1.0 - lengths[i] / top
        return out

    def reward(self, batch: RolloutBatch) -> list[float]:
        c = self.config
        texts = batch.require("texts", self.name)
        return [c.format_reward * (t.count(THINK_CLOSE) == 1) + c.correct_reward * ok
                + c.length_weight * n + c.compress_weight * k
                for t, ok, n, k in zip(texts, batch.correct, self.length_rewards(batch),
                                       self.compress_rewards(batch))]

    def metrics(self, batch: RolloutBatch) -> dict[str, float]:
        if batch.texts is None:
            return {}
        fractions = [f for ok, f in zip(self.right(batch), self.valid_fractions(batch)) if ok]
        if not fractions:
            return {}
        reached = [f for f in fractions if f is not None]
        out = {"unreached_frac": 1.0 - len(reached) / len(fractions)}
        if reached:
            out["valid_frac_mean"] = mean(reached)
        return out
