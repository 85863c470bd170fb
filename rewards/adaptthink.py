"""AdaptThink: teach a reasoning model when not to think (Zhang et al., "AdaptThink: Reasoning Models Can
Learn When to Think", arXiv 2505.13417; code THU-KEG/AdaptThink @ 84cf948, `src/adapt_think_reward_manager.py`,
`adapt_think_vllm_rollout.py`, `adapt_think_core_algos.py`, `scripts/run_adapt_think_1.5b_*.sh`).

What it rewards. The paper's constrained objective -- make NoThinking (the response closes its
thinking at once) as likely as possible while accuracy stays at the reference model's -- becomes

    r = solved - A_ref(x) + delta * 1[NoThinking]

with A_ref(x) the reference (starting) model's accuracy on the problem, pre-sampled K = 16 times
(`rewards/reference.py`), and `solved` `RolloutBatch.solved` (correct, well formed, finished). A
completion is NoThinking when its text, after an optional opening `<think>`, starts with `</think>`
(the code's `response_str.strip().startswith('</think>')`); one that never closes its thinking is
thinking.

Importance sampling. A reasoning model almost never closes its thinking at once, so on-policy
sampling would never try NoThinking. The code forces half of each group's rollouts (`nothinking_ratio`)
to start with `</think>` and the other half with "Alright" (a common first word of thinking), so the
first token's behaviour distribution is 0.5 / 0.5, and overwrites that token's old log-prob with
log 0.5 (`adjust_old_logprobs`). Here the reward declares it as `completion_prefixes` (rewards/base.py)
and the trainer forces the prefixes and writes log(share) as the forced decision token's old log-prob.
The forced tokens are completion tokens, trained with the rest: the choice they stand for is what the
policy must learn to make by itself at inference, where nothing is forced.

Paper vs code, and this implementation:
  * The code's advantage is the reward itself (`adv_estimator=naive`: no group baseline, no std);
    A_ref is the baseline. That is `advantage.estimator: raw` here (the toy recipe's). Under GRPO's
    `group` estimator A_ref cancels within a group.
  * The code's ratio is per sequence: exp(mean over tokens of log pi - log pi_old), PPO-clipped,
    averaged over sequences (TRL: `importance_sampling_level: sequence`, `loss_type: grpo`; the toy
    recipe sets both). There the forced token's log(pi / 0.5) is diluted by the length, so it trains
    almost like an on-policy token. With TRL's default token-level ratio the forced token's ratio
    pi / 0.5 is clipped like any other: exact, but the decision then learns only from positive
    advantages and slowly while pi(</think>) is small.
  * The code's bonus goes to rollouts *forced* to NoThinking (its thinking half cannot close at
    once, being forced to "Alright"); here to every NoThinking completion (the paper's 1[y_1 = </think>]),
    which is the same when both halves are forced.
  * The code caps NoThinking rollouts at 4,096 tokens (16,384 otherwise); here one cap for all.
  * The reference accuracy is of the eval harness's samples (`rewards/reference.py`), as the code
    pre-samples its reference model with its own script.

Config (default): delta (0.05), nothinking_ratio (0.5; round(G * ratio) rollouts of each group, the
first ones, are forced to NoThinking), nothinking_prefix ("</think>": for a chat template that opens
`<think>` in the prompt, as R1-distilled models'; the toy writes "<think></think>"), thinking_prefix
("Alright", the code's; null = the thinking half samples freely), reference_stats (null; required: the path of the reference samples).
"""

from __future__ import annotations

from dataclasses import dataclass

from conciser.rewards._stats import mean
from conciser.rewards.batch import RolloutBatch
from conciser.rewards.grading import THINK_CLOSE, THINK_OPEN
from conciser.rewards.reference import ReferenceReward


def is_nothinking(text: str) -> bool:
    """The completion closes its thinking before writing anything: `</think>` first, after an optional `<think>`."""
    text = text.lstrip()
    if text.startswith(THINK_OPEN):
        text = text[len(THINK_OPEN):].lstrip()
    return text.startswith(THINK_CLOSE)


class AdaptThink(ReferenceReward):
    """AdaptThink: solved - A_ref + delta * 1[NoThinking], with half of each group forced to NoThinking."""

    name = "adaptthink"
    preferred_estimator = "raw"

    @dataclass(frozen=True)
    class Config:
        delta: float = 0.05
        nothinking_ratio: float = 0.5
        nothinking_prefix: str = THINK_CLOSE
        thinking_prefix: str | None = "Alright"
        reference_stats: str | None = None

        def __post_init__(self) -> None:
            if self.delta < 0:
                raise ValueError(f"adaptthink.delta={self.delta} must be >= 0 (the NoThinking bonus)")
            if not 0 <= self.nothinking_ratio <= 1:
                raise ValueError(f"adaptthink.nothinking_ratio={self.nothinking_ratio} must be in [0, 1]")
            if not is_nothinking(self.nothinking_prefix):
                raise ValueError(f"adaptthink.nothinking_prefix={self.nothinking_prefix!r} must close the thinking "
                                 f"at once ('{THINK_CLOSE}', after an optional '{THINK_OPEN}')")
            if self.thinking_prefix is not None and (not self.thinking_prefix.strip()
                                                     or is_nothinking(self.thinking_prefix)):
                raise ValueError(f"adaptthink.thinking_prefix={self.thinking_prefix!r} must start the thinking "
                                 f"(e.g. 'Alright'), or be null to sample the thinking half freely")

    def needs(self) -> frozenset[str]:
        return frozenset({"texts"})

    def completion_prefixes(self, group_size: int) -> list[str | None] | None:
        forced = round(group_size * self.config.nothinking_ratio)
        return [self.config.nothinking_prefix] * forced + [self.config.thinking_prefix] * (group_size - forced)

    def reward(self, batch: RolloutBatch) -> list[float]:
        ref = self.reference
        texts = batch.require("texts", self.name)
        return [float(ok) - ref[pid].accuracy + (self.config.delta if is_nothinking(t) else 0.0)
                for pid, ok, t in zip(batch.problem_ids, batch.solved, texts)]

    def metrics(self, batch: RolloutBatch) -> dict[str, float]:
        texts = batch.require("texts", self.name)
        nothink = [is_nothinking(t) for t in texts]
        out = {"nothinking_frac": sum(nothink) / len(nothink),
               "ref_accuracy_mean": mean([self.reference[pid].accuracy for pid in batch.problem_ids])}
        for label, mode in (("nothinking", True), ("thinking", False)):
            idx = [i for i, n in enumerate(nothink) if n == mode]
            if idx:
                out[f"{label}_solved_frac"] = mean([float(batch.solved[i]) for i in idx])
                out[f"{label}_length_mean"] = mean([float(batch.lengths[i]) for i in idx])
        return out
