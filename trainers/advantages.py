"""Advantage estimators: how the gathered batch's rewards become per-completion learning signals.

Selected by `advantage.estimator` in the recipe; every estimator sees the *gathered, final* batch
(after DOT cuts and dynamic sampling), computes the same numbers on every rank, and returns one
value per completion in global order plus the metrics that say what it did.

    group  GRPO. TRL 1.16's own computation, unchanged (group mean; std per `trainer.scale_rewards`).
    batch  DLER / REINFORCE++-baseline (methods-core §2.2): A_i = r_i - mean_group(r), then whitened
           over the whole batch: (A - mean(A)) / sqrt(var(A) + eps), unbiased variance.
           params: token_weighted (False = the paper's per-sequence statistics; True = verl's code,
           mean and variance over response tokens), eps (1e-8).
    raw    A_i = r_i: no group baseline and no scaling, for rewards whose own reference terms are the
           baseline (AdaptThink's `naive` estimator: r = solved - A_ref + delta). params: whiten (False;
           True: (r - mean) / sqrt(var + eps) over the whole gathered batch, as O1-Pruner's code
           z-scores its weights over the dataset), eps (1e-8).
    drpo   DRPO's decoupled objective (methods-core §3). Not an advantage: per-sequence weights of
           the length-normalised log-likelihood s(o) = mean_t log pi(o_t), consumed by `drpo_loss`
           (the trainer swaps TRL's clipped loss for it). Positives get w_i = softmax of the length
           reward over the group's positives (sum +1); negatives get -softmax_N(s_j / tau) (sum -1),
           the gradient of tau * LSE_N(s / tau); all-correct and all-wrong groups get 0. The softmax is
           taken at the generating policy, which is the current one when each generation batch feeds
           one optimizer step (TRL's default: steps_per_generation = gradient accumulation,
           num_iterations = 1); with reuse it is the generating policy's, as a stale weight.
    grpo_lead  GRPO-LEAD's difficulty-aware reweighting (arXiv 2504.09696; code aeroplanepaper/GRPO-LEAD,
           `core_algos.py`): TRL's group advantage A (per `trainer.scale_rewards`) times a logistic weight
           of the group's solve rate rho (share of `correct and format_ok`):
               A' = A * w(rho) if A > 0 else A * w(1 - rho),   w(x) = A_min + (B_max - A_min) / (1 + exp(k (x - x0)))
           so correct answers to hard prompts (low rho) and wrong answers to easy ones (high rho) weigh up
           to B_max, the others down to A_min. params: min_weight A_min (0.4), max_weight B_max (1.5),
           midpoint x0 (0.75), steepness k (10); the code's std epsilon is 1e-6 where TRL's is 1e-4.

Adding an estimator: subclass `Estimator` (`name`, `advantages(inp) -> (values, metrics)`; optionally
`needs_scores`, `setup(reward, args)` for cross-block checks, and `owns_loss` + `loss(inp)` to replace
TRL's clipped loss), then add one line to ESTIMATORS -- or name it by dotted path in the recipe
(`advantage.estimator: my_pkg.my_module:MyEstimator`, options in `advantage.params`). The trainer
knows an estimator only through this base class.
"""

from __future__ import annotations

import math
import logging
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from conciser.plugins import is_dotted_path, load_class
from conciser.rewards import LengthReward, RolloutBatch
from conciser.rewards.drpo import Drpo

log = logging.getLogger(__name__)


@dataclass
class EstimatorInput:
    """Everything an estimator may use, all gathered and in global order (N completions).

    rewards: the recipe reward per completion.
    group_size: G; groups are contiguous blocks of G completions.
    batch: the scored batch, problem ids made positional (one id per block of G).
    trl_advantages: TRL's own advantages for these completions.
    token_counts: response tokens per completion that enter the loss.
    scores: length-normalised log-likelihood under the generating policy (only if `needs_scores`).
    reward: the length-reward object (DRPO reads its weights from it).
    """

    rewards: torch.Tensor
    group_size: int
    batch: RolloutBatch
    trl_advantages: torch.Tensor
    token_counts: torch.Tensor
    reward: Any
    scores: torch.Tensor | None = None


@dataclass
class LossInput:
    """What an estimator that owns its loss (`Estimator.owns_loss`) gets for one micro-batch.

    per_token_logps: log-probs of the completion tokens under the current policy (with gradient).
    old_per_token_logps: the same under the generating policy (no gradient).
    mask: loss tokens (1) vs padding / tool tokens (0).
    advantages: this micro-batch's values from `advantages()`.
    token_ratio: TRL's vLLM importance-sampling ratio per token, or None.
    prompts: how many prompts this micro-batch's share of the loss is averaged over (its share of the
        optimizer step's prompts, groups without a signal included).
    accumulation: gradient-accumulation steps of this micro-batch's window (1 at evaluation).
    reward: the length-reward object.
    """

    per_token_logps: torch.Tensor
    old_per_token_logps: torch.Tensor
    mask: torch.Tensor
    advantages: torch.Tensor
    token_ratio: torch.Tensor | None
    prompts: float
    accumulation: int
    reward: LengthReward


class Estimator:
    """Base of the advantage estimators: one value per completion from the gathered batch's rewards.

    needs_scores: the trainer computes `EstimatorInput.scores` (a log-prob pass when TRL has none).
    owns_loss: `loss()` replaces TRL's clipped objective; the trainer then computes the log-probs.
    """

    name: ClassVar[str] = "base"
    needs_scores: ClassVar[bool] = False
    owns_loss: ClassVar[bool] = False

    def setup(self, reward: LengthReward, args: Any) -> None:
        """Check that the reward and `trl.GRPOConfig` suit this estimator (before any model loads);
        a ValueError names the field and what to set instead."""
        if reward.preferred_estimator not in (None, self.name):
            log.warning("rewards.method=%s is written for advantage.estimator=%s; with %s it trains on its "
                        "scalar reward only", reward.name, reward.preferred_estimator, self.name)

    def advantages(self, inp: EstimatorInput) -> tuple[torch.Tensor, dict[str, float]]:
        """(one value per completion in global order, metrics to log)."""
        raise TypeError(f"estimator {self.name!r} does not define advantages()")

    def loss(self, inp: LossInput) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """(micro-batch loss already scaled for gradient accumulation, metrics) when `owns_loss`."""
        raise TypeError(f"estimator {self.name!r} does not own its loss (owns_loss=False)")


def _summary(values: torch.Tensor, prefix: str = "advantage") -> dict[str, float]:
    v = values.float()
    return {f"{prefix}/mean": v.mean().item(), f"{prefix}/std": v.std().item() if v.numel() > 1 else 0.0,
            f"{prefix}/abs_mean": v.abs().mean().item(), f"{prefix}/zero_frac": (v == 0).float().mean().item()}


class GroupAdvantage(Estimator):
    """GRPO: TRL's group-normalised advantages, passed through."""

    name = "group"

    def advantages(self, inp: EstimatorInput) -> tuple[torch.Tensor, dict[str, float]]:
        return inp.trl_advantages, _summary(inp.trl_advantages)


class BatchWhitened(Estimator):
    """DLER: subtract each group's mean reward, then whiten over the whole gathered batch."""

    name = "batch"

    def __init__(self, token_weighted: bool = False, eps: float = 1e-8) -> None:
        if not isinstance(token_weighted, bool):
            raise ValueError(f"advantage.params.token_weighted={token_weighted!r} must be true or false")
        if not isinstance(eps, (int, float)) or isinstance(eps, bool) or not eps > 0:
            raise ValueError(f"advantage.params.eps={eps!r} must be a number > 0")
        self.token_weighted = token_weighted
        self.eps = float(eps)

    def advantages(self, inp: EstimatorInput) -> tuple[torch.Tensor, dict[str, float]]:
        r = inp.rewards.double()
        centred = r - r.view(-1, inp.group_size).mean(dim=1).repeat_interleave(inp.group_size)
        if self.token_weighted:  # verl masked_whiten: token-weighted mean, unbiased token variance
            w = inp.token_counts.double()
            n = w.sum()
            mean = (w * centred).sum() / n.clamp(min=1)
            var = (w * (centred - mean) ** 2).sum() / (n - 1).clamp(min=1)
        else:
            mean = centred.mean()
            var = centred.var() if centred.numel() > 1 else torch.zeros((), dtype=centred.dtype)
        adv = ((centred - mean) / torch.sqrt(var + self.eps)).to(inp.rewards.dtype)
        metrics = _summary(adv)
        metrics.update({"advantage/centred_mean": mean.item(), "advantage/centred_std": math.sqrt(var.item())})
        return adv, metrics


class RawRewards(Estimator):
    """The rewards themselves (AdaptThink's `naive`), optionally whitened over the batch (O1-Pruner's code)."""

    name = "raw"

    def __init__(self, whiten: bool = False, eps: float = 1e-8) -> None:
        if not isinstance(whiten, bool):
            raise ValueError(f"advantage.params.whiten={whiten!r} must be true or false")
        if not isinstance(eps, (int, float)) or isinstance(eps, bool) or not eps > 0:
            raise ValueError(f"advantage.params.eps={eps!r} must be a number > 0")
        self.whiten = whiten
        self.eps = float(eps)

    def advantages(self, inp: EstimatorInput) -> tuple[torch.Tensor, dict[str, float]]:
        r = inp.rewards.double()
        if self.whiten:
            var = r.var() if r.numel() > 1 else torch.zeros((), dtype=r.dtype)
            r = (r - r.mean()) / torch.sqrt(var + self.eps)
        adv = r.to(inp.rewards.dtype)
        return adv, _summary(adv)


class DrpoWeights(Estimator):
    """DRPO: per-sequence weights for `drpo_loss` (positives: length softmax; negatives: -softmax(s/tau))."""

    name = "drpo"
    needs_scores = True
    owns_loss = True

    def setup(self, reward: LengthReward, args: Any) -> None:
        if not isinstance(reward, Drpo):
            raise ValueError(f"advantage.estimator=drpo needs rewards.method=drpo (its length weights), "
                             f"not {reward.name!r}")
        if args.beta != 0.0:
            raise ValueError(f"advantage.estimator=drpo has its own trust region (rewards.params.beta/delta) and "
                             f"no reference model; set trainer.beta=0 (got {args.beta})")

    def loss(self, inp: LossInput) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        cfg = inp.reward.config
        loss, parts = drpo_loss(inp.per_token_logps, inp.old_per_token_logps, inp.mask, inp.advantages, inp.prompts,
                                cfg.delta, cfg.beta, token_ratio=inp.token_ratio,
                                penalty_scale=1.0 / inp.accumulation)
        return loss, {"kl": parts["kl"], "penalty_coef": parts["penalty_coef"]}

    def advantages(self, inp: EstimatorInput) -> tuple[torch.Tensor, dict[str, float]]:
        reward, batch = inp.reward, inp.batch
        scores = inp.scores.tolist()
        pos = reward.positive_weights(batch)
        neg = reward.negative_weights(batch, scores)
        weights = torch.tensor([p + q for p, q in zip(pos, neg)], dtype=inp.rewards.dtype)
        live = reward.group_mask(batch)
        groups = len(batch) // inp.group_size
        # The objective's value under the generating policy, mean over all prompts (dead ones count as 0).
        tau, objective = reward.config.tau, 0.0
        solved = batch.solved
        for idx in batch.groups().values():
            if not live[idx[0]]:
                continue
            negs = [scores[i] / tau for i in idx if not solved[i]]
            lse = max(negs) + math.log(sum(math.exp(x - max(negs)) for x in negs) / len(negs))
            objective += sum(pos[i] * scores[i] for i in idx if solved[i]) - tau * lse
        positives = [w for w in pos if w > 0]
        metrics = {
            "drpo/live_group_frac": sum(live) / len(live),
            "drpo/objective": objective / max(groups, 1),
            "drpo/pos_weight_max": max(positives, default=0.0),
            "drpo/neg_weight_max": max((-w for w in neg if w < 0), default=0.0),
            "drpo/score_mean": sum(scores) / len(scores),
        }
        return weights, metrics


class DifficultyWeighted(Estimator):
    """GRPO-LEAD: group advantages scaled up for correct answers to hard prompts and wrong answers to easy ones."""

    name = "grpo_lead"

    def __init__(self, min_weight: float = 0.4, max_weight: float = 1.5, midpoint: float = 0.75,
                 steepness: float = 10.0) -> None:
        values = dict(min_weight=min_weight, max_weight=max_weight, midpoint=midpoint, steepness=steepness)
        for key, value in values.items():
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
                raise ValueError(f"advantage.params.{key}={value!r} must be a number")
        if not 0 <= min_weight <= max_weight:
            raise ValueError(f"advantage.params: need 0 <= min_weight <= max_weight, got {min_weight} and "
                             f"{max_weight} (the paper: 0.4 and 1.5)")
        self.min_weight, self.max_weight = float(min_weight), float(max_weight)
        self.midpoint, self.steepness = float(midpoint), float(steepness)

    def weight(self, rho: float) -> float:
        """w(rho): max_weight for rho well below the midpoint, min_weight well above it."""
        x = max(-60.0, min(60.0, self.steepness * (rho - self.midpoint)))
        return self.min_weight + (self.max_weight - self.min_weight) / (1.0 + math.exp(x))

    def advantages(self, inp: EstimatorInput) -> tuple[torch.Tensor, dict[str, float]]:
        right = inp.batch.correct_formatted
        weights = [0.0] * len(right)
        for idx in inp.batch.groups().values():
            rho = sum(right[i] for i in idx) / len(idx)
            for i in idx:
                weights[i] = self.weight(rho) if inp.trl_advantages[i] > 0 else self.weight(1.0 - rho)
        w = torch.tensor(weights, dtype=inp.trl_advantages.dtype)
        adv = inp.trl_advantages * w
        metrics = _summary(adv)
        metrics["grpo_lead/weight_mean"] = w.mean().item()
        return adv, metrics


ESTIMATORS: dict[str, type[Estimator]] = {"group": GroupAdvantage, "batch": BatchWhitened, "raw": RawRewards,
                                          "drpo": DrpoWeights, "grpo_lead": DifficultyWeighted}


def build_estimator(name: str, params: dict[str, Any] | None = None) -> Estimator:
    """The estimator registered as `name`, or named by dotted path (`my_pkg.mod:MyEstimator`); a
    ValueError names the valid ones or the bad parameter."""
    if is_dotted_path(name):
        cls = load_class(name, Estimator, "advantage.estimator")
    elif name in ESTIMATORS:
        cls = ESTIMATORS[name]
    else:
        raise ValueError(f"advantage.estimator: unknown estimator {name!r}; valid: {', '.join(sorted(ESTIMATORS))}, "
                         f"or a dotted path 'package.module:ClassName' to your own Estimator subclass")
    try:
        return cls(**(params or {}))
    except TypeError as exc:
        raise ValueError(f"advantage.params: {exc} (estimator {name!r})") from None


def sequence_scores(per_token_logps: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """DRPO's s(o): the mean token log-probability of each completion (its loss tokens only)."""
    return (per_token_logps * mask).sum(-1) / mask.sum(-1).clamp(min=1.0)


def drpo_loss(per_token_logps: torch.Tensor, old_per_token_logps: torch.Tensor, mask: torch.Tensor,
              weights: torch.Tensor, n_prompts: float, delta: float, beta: float,
              token_ratio: torch.Tensor | None = None, penalty_scale: float = 1.0,
              ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """DRPO's loss on one micro-batch (methods-core §3.3, the authors' code semantics).

        loss = -(1/n_prompts) sum_rows weight_i * s_i  +  stopgrad(max(beta (KL - delta), 0)) * KL

    with s_i the length-normalised log-likelihood (`sequence_scores`) and KL the token mean over the
    micro-batch of (log pi_old - log pi_theta). With `weights` from `DrpoWeights` the first term has
    the gradient of -mean_prompts[sum_P w s - tau LSE_N(s / tau)] (the weights are the LSE's softmax,
    taken at the generating policy), and the penalty has the gradient of (beta/2) [KL - delta]_+^2.
    `n_prompts` is the number of prompts this micro-batch's share of the loss is averaged over (dead
    groups included). `token_ratio` (TRL's vLLM importance-sampling ratio) multiplies each token's term.
    `penalty_scale` scales the penalty (1 / gradient-accumulation steps: the code averages it over
    micro-batches).
    """
    per_token = per_token_logps if token_ratio is None else per_token_logps * token_ratio
    scores = sequence_scores(per_token, mask)
    objective = (weights * scores).sum() / n_prompts
    kl = ((old_per_token_logps - per_token_logps) * mask).sum() / mask.sum().clamp(min=1.0)
    coef = torch.clamp(beta * (kl - delta), min=0.0).detach()
    loss = -objective + penalty_scale * coef * kl
    return loss, {"kl": kl.detach(), "penalty_coef": coef, "objective": objective.detach()}
