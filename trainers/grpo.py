"""`ConciseGRPOTrainer`: TRL's GRPOTrainer with length rewards computed on the gathered batch.

TRL calls reward functions per rank on local slices, and one prompt's group can straddle ranks, so
a group-aware length reward written as a plain TRL reward function is wrong on more than one GPU
(reference/ecosystem.md §2.1). This subclass therefore does not use TRL's `reward_funcs` at all: the
recipe's `LengthReward` scores the whole gathered batch. Once per generation batch it:

1. budgets the generation: the recipe's budget schedule sets the cap for this step in every place
   TRL keeps a copy (`trainers/budget.py`); per-question budgets cut each completion at its
   question's budget; a reward's monitor set is sampled when the reward says it is due; rollouts
   open with the prefixes the reward forces (`completion_prefixes`, `trainers/prefixes.py`);
2. grades each completion once, locally (the grader is the only correctness judge), fills what the
   reward declared it needs (texts, token ids, think/answer lengths and entropies; `rollouts.py`),
   and gathers the rows from every rank;
3. cuts completions where the reward asks (`cut_lengths`, DOT), masks the cut tails and re-grades;
4. scores the whole gathered batch with the reward, identically on every rank, and commits stateful
   rewards' `observe(batch)` in training mode only (once per scored generation batch: with dynamic
   sampling, dropped groups teach the state too);
5. dynamic sampling (`trainers/sampling.py`): drops all-equal groups and refills from new prompts;
6. turns rewards into advantages with the recipe's estimator (`trainers/advantages.py`); an
   estimator that owns its loss (DRPO) replaces TRL's clipped loss;
7. checkpoints reward and controller state as JSON next to TRL's files, marks the folder complete
   last (`trainers/checkpoints.py`), and restores the state on resume.

The trainer knows the reward and the estimator only through what their base classes declare
(`LengthReward`, `Estimator`): a new method touches no file here.

Every override relies on TRL 1.16.0 private hooks (pinned in pyproject); each says what it relies on,
and `tests/trainers/test_trl_hooks.py` fails loudly if their signatures change.
"""

from __future__ import annotations

import json
import logging
import os
import random
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from accelerate.utils import gather_object
from trl import GRPOConfig, GRPOTrainer
from trl.trainer.utils import pad

from conciser.config import AdvantageConfig, BudgetConfig, SamplingConfig
from conciser.errors import MissingInput
from conciser.rewards import LengthReward, RolloutBatch
from conciser.rewards.grading import THINK_CLOSE, get_grader
from conciser.trainers.advantages import EstimatorInput, LossInput, build_estimator, sequence_scores
from conciser.trainers.budget import build_budget, set_generation_cap
from conciser.trainers.checks import check_training_blocks
from conciser.trainers.checkpoints import mark_complete
from conciser.trainers.prefixes import Forced, behaviour_logps, forced_prefixes, rows_forced, with_prefixes
from conciser.trainers.rollouts import (
    PHASE_ENTROPIES, Row, check_needs, completion_text, phase_fields, rollout_batch,
)
from conciser.trainers.sampling import (
    DynamicSamplingError, Refill, SamplingStats, concat_rows, fill_flags, gather_rows,
    keep_groups, pad_values, row_keys, take_rows, trim_padding,
)

__all__ = ["ConciseGRPOTrainer", "completion_text"]

log = logging.getLogger(__name__)

REWARD_STATE_FILE = "reward_state.json"
STATE_VERSION = 1


class _RewardColumn:
    """The one reward column TRL is given (its logging needs a name); `_calculate_rewards` replaces
    TRL's per-rank reward calls, so this is never called."""

    def __init__(self, name: str):
        self.__name__ = name

    def __call__(self, **_):  # pragma: no cover - guarded by the override
        raise RuntimeError("ConciseGRPOTrainer computes rewards on the gathered batch; this is never called")


@dataclass
class _Scored:
    """What `_calculate_rewards` computed for one generation batch (all gathered, global order)."""

    rows: list[Row]
    batch: RolloutBatch
    rewards: list[float]
    filter_scores: list[float]     # what dynamic sampling compares within a group
    cuts_local: list[int | None] | None  # cut lengths of this rank's completions (reward's cut_lengths)


@dataclass
class _Round:
    """One generate-and-score pass. TRL's hooks run inside `super()._generate_and_score_completions`
    with fixed signatures, so what they share travels here (set by `_score_round`, cleared after)."""

    row_budgets: list[int] | None = None   # per-question caps of this rank's rows
    budget_metric: float = 0.0             # the cap (or mean per-question cap) logged as length/budget
    prompt_ids: list[list[int]] | None = None  # captured when entropies are needed
    forced: list[Forced] | None = None     # the prefixes forced on this rank's rows (training)
    scored: _Scored | None = None


@dataclass
class _Gathered:
    """Everything the estimator needs about one (final) gathered batch."""

    rows: list[Row]
    rewards: list[float]
    trl_advantages: torch.Tensor
    token_counts: torch.Tensor
    scores: torch.Tensor | None
    group: int


class ConciseGRPOTrainer(GRPOTrainer):
    """GRPO with a conciser length reward scored on the gathered global batch.

    length_reward: an object from `conciser.rewards.build_reward` (TRL's `reward_funcs` is not used).
    grader: `toy` or `math` (see `conciser.rewards.grading.GRADERS`).
    allow_fresh_state: resume without the state file (stateful rewards and dynamic sampling start empty).
    advantage / sampling / budget: the recipe blocks (`conciser.config`); defaults: GRPO, no dynamic
        sampling, constant budget.
    """

    def __init__(self, *args, length_reward: LengthReward, grader: str = "math", allow_fresh_state: bool = False,
                 advantage: AdvantageConfig | None = None, sampling: SamplingConfig | None = None,
                 budget: BudgetConfig | None = None, **kwargs):
        if kwargs.pop("reward_funcs", None):
            raise ValueError("ConciseGRPOTrainer scores completions with length_reward on the gathered batch; "
                             "do not pass reward_funcs (write a LengthReward instead)")
        self.length_reward = length_reward
        self.grade_batch = get_grader(grader)
        self.allow_fresh_state = allow_fresh_state
        self.advantage_config = advantage or AdvantageConfig()
        self.sampling = sampling or SamplingConfig()
        self.budget_config = budget or BudgetConfig()
        grpo_args = kwargs.get("args") or next((a for a in args if isinstance(a, GRPOConfig)), None)
        if grpo_args is None:
            raise ValueError("ConciseGRPOTrainer needs args=trl.GRPOConfig(...)")
        check_training_blocks(length_reward, self.advantage_config, self.sampling, self.budget_config, grpo_args)
        self.estimator = build_estimator(self.advantage_config.estimator, self.advantage_config.params)
        self.needs = check_needs(length_reward.needs(), length_reward.name)
        if grpo_args.use_vllm and grpo_args.vllm_mode == "colocate":
            from conciser.trainers.vllm_cpu import patch_cpu_linear_for_weight_sync

            patch_cpu_linear_for_weight_sync()  # no-op with CUDA
        # TRL 1.16: GRPOTrainer(model, reward_funcs, args, ...) builds its reward columns, generation
        # config and vLLM engine from these; the budget and estimator read back what it set.
        super().__init__(*args, reward_funcs=[_RewardColumn(length_reward.name)], **kwargs)

        self.budget = build_budget(self.budget_config.schedule, self.budget_config.params, length_reward,
                                   self.max_completion_length, self.args.max_steps)
        self.sampling_stats = SamplingStats()
        self._refill = (Refill(self.train_dataset, self.num_generations, self.args.seed)
                        if self.sampling.dynamic else None)
        keep = self.sampling.keep_all_correct
        self._keep_all_correct = length_reward.keep_all_correct if keep is None else keep
        self._think_tag = self._tokenizer.encode(THINK_CLOSE, add_special_tokens=False)
        self._forced = forced_prefixes(length_reward, self.num_generations, self._tokenizer)
        self._round: _Round | None = None
        self._reward_metrics: dict[str, float] = {}

    # ---------------------------------------------------------------------------------------------
    # Generation batch: budget, monitor, rounds of generate+score, dynamic sampling, advantages.
    # TRL 1.16: `_prepare_inputs` calls `_generate_and_score_completions(inputs)` once per generation
    # batch (train) or per eval batch with this rank's rows, and expects this rank's batch dict back
    # (`advantages` = local slice, `num_items_in_batch` = global loss-token count).
    def _generate_and_score_completions(self, inputs):
        mode = "train" if self.model.training else "eval"
        if mode == "train":
            if not self.budget.per_prompt:
                set_generation_cap(self, self.budget.budget_at(self.state.global_step))
            self._refresh_coverage()
            if self.sampling.dynamic:
                return self._dynamic_sampling(inputs)
        out, scored = self._score_round(inputs)
        loss_mask = self._loss_mask(out)
        gather = self.accelerator.gather
        gathered = _Gathered(
            rows=scored.rows, rewards=scored.rewards, trl_advantages=gather(out["advantages"]),
            token_counts=gather(loss_mask.sum(-1)),
            scores=(gather(sequence_scores(out["old_per_token_logps"], loss_mask))
                    if self.estimator.needs_scores else None),
            group=self.num_generations if mode == "train" else self.num_generations_eval)
        values = self._estimate(mode, out, gathered)
        # TRL 1.16 logged its own advantages for the completions table (`_logs["advantages"]`, one per
        # completion of this batch, appended last): show the estimator's instead.
        logged = self._logs["advantages"]
        for _ in range(min(len(values), len(logged))):
            logged.pop()
        logged.extend(values.tolist())
        return out

    def _score_round(self, inputs) -> tuple[dict[str, Any], _Scored]:
        """One TRL generate-and-score pass over `inputs` (plus per-question cuts and cut masks)."""
        inputs = self._with_budget_prompt(inputs)
        round_ = _Round(budget_metric=float(self.max_completion_length), forced=rows_forced(  # training rounds only
            self._forced if self.model.training else None, self.accelerator.process_index * len(inputs), len(inputs)))
        if self.budget.per_prompt:
            pids = gather_object([str(x["problem_id"]) for x in inputs])
            budgets = self.budget.budgets_for(pids, self.state.global_step)
            start = self.accelerator.process_index * len(inputs)
            round_.row_budgets = budgets[start:start + len(inputs)]
            round_.budget_metric = statistics.fmean(budgets)
            set_generation_cap(self, max(budgets))
        self._round = round_
        try:
            out = super()._generate_and_score_completions(inputs)
        finally:
            self._round = None
        scored = round_.scored
        if scored.cuts_local is not None:  # no gradient on the cut tails
            for i, cut in enumerate(scored.cuts_local):
                if cut is not None:
                    out["completion_mask"][i, cut:] = 0
            out["num_items_in_batch"] = self.accelerator.gather(self._loss_mask(out).sum()).sum()
        if (self.estimator.needs_scores or round_.forced) and out.get("old_per_token_logps") is None:
            out["old_per_token_logps"] = self._policy_logps(out)
        if round_.forced:  # the forced tokens' behaviour probability (`trainers/prefixes.py`)
            out["old_per_token_logps"] = behaviour_logps(out["old_per_token_logps"], round_.forced)
        return out, scored

    def _dynamic_sampling(self, inputs):
        """Generation batches until `need` groups have unequal scores; every rank loops alike."""
        group, n_local = self.num_generations, len(inputs)
        world, rank = self.accelerator.num_processes, self.accelerator.process_index
        need = n_local * world // group
        pads = pad_values(self._tokenizer.pad_token_id)
        cap = self.sampling.max_gen_batches
        pool, meta, kept, filled = [], [], 0, 0
        for attempt in range(1, cap + 1):
            if attempt > 1:
                inputs = self._refill.rows(self.sampling_stats.draws, need, rank, n_local)
                self.sampling_stats.draws += 1
            out, scored = self._score_round(inputs)
            if any(k in out for k in ("pixel_values", "num_images")):
                raise NotImplementedError("sampling.dynamic supports text prompts only")
            out["_loss_tokens"] = self._loss_mask(out).sum(-1)
            keys = row_keys(out, n_local)
            flags = keep_groups(scored.filter_scores, group, scored.batch.solved, self._keep_all_correct)
            self.sampling_stats.generation_batches += 1
            self.sampling_stats.groups_seen += len(flags)
            self.sampling_stats.groups_kept += sum(flags)
            index = [g * group + j for g, ok in enumerate(flags) if ok for j in range(group)]
            rows = gather_rows(self.accelerator, out, keys, pads)  # a collective: every rank, every round
            if index:
                pool.append(take_rows(rows, index))
                meta += [(scored.rows[i], scored.rewards[i]) for i in index]
            kept += sum(flags)
            if kept >= need:
                break
        else:
            if self.sampling.on_exhausted != "fill":
                raise DynamicSamplingError(
                    f"dynamic sampling: only {kept} of the {need} groups a batch needs had unequal scores after "
                    f"{cap} generation batches (sampling.max_gen_batches={cap}). The policy's groups are all "
                    f"equal (all wrong, all right or all truncated): raise sampling.max_gen_batches, change the "
                    f"prompts' difficulty, set sampling.on_exhausted=fill to train on a topped-up batch, or "
                    f"set sampling.dynamic=false.")
            # Top up with the last batch's dropped groups: the step trains as without dynamic sampling.
            filled = need - kept
            index = [g * group + j for g, ok in enumerate(fill_flags(flags, filled)) if ok for j in range(group)]
            pool.append(take_rows(rows, index))
            meta += [(scored.rows[i], scored.rewards[i]) for i in index]
            self.sampling_stats.filled_steps += 1
        self.sampling_stats.steps += 1
        self._metrics["train"]["sampling/gen_batches"].append(float(attempt))
        self._metrics["train"]["sampling/kept_group_frac"].append(kept / (attempt * need))
        self._metrics["train"]["sampling/filled_group_frac"].append(filled / need)
        rows = take_rows(concat_rows(pool, pads), range(need * group))
        meta = meta[:need * group]
        tokens = rows.pop("_loss_tokens")
        local = trim_padding(take_rows(rows, range(rank * n_local, (rank + 1) * n_local)))
        local["num_items_in_batch"] = self._loss_mask(rows).sum()
        self._estimate("train", local, _Gathered(
            rows=[m[0] for m in meta], rewards=[m[1] for m in meta], trl_advantages=rows["advantages"],
            token_counts=tokens, group=group,
            scores=(sequence_scores(rows["old_per_token_logps"], self._loss_mask(rows))
                    if self.estimator.needs_scores else None)))
        return local

    def _estimate(self, mode: str, out: dict[str, Any], g: _Gathered) -> torch.Tensor:
        """Run the recipe's estimator on the gathered batch; put this rank's slice into `out`; return all."""
        device = self.accelerator.device
        positional = [f"group-{i // g.group}" for i in range(len(g.rows))]  # groups are contiguous blocks
        batch = rollout_batch(g.rows, self.needs, self._batch_cap(), self.state.global_step, positional)
        values, metrics = self.estimator.advantages(EstimatorInput(
            rewards=torch.tensor(g.rewards, dtype=torch.float32), group_size=g.group, batch=batch,
            trl_advantages=g.trl_advantages.float().cpu(), token_counts=g.token_counts.float().cpu(),
            reward=self.length_reward, scores=None if g.scores is None else g.scores.float().cpu()))
        for key, value in metrics.items():
            self._metrics[mode][key].append(value)
        n = out["completion_ids"].size(0)
        start = self.accelerator.process_index * n
        out["advantages"] = values[start:start + n].to(device)
        if self.estimator.owns_loss:  # what its loss averages over (0-dim: TRL's batch split keeps it)
            out["group_count"] = torch.tensor(float(len(values) // g.group), device=device)
        return values

    # ---------------------------------------------------------------------------------------------
    # Rewards on the gathered batch. TRL 1.16: `_calculate_rewards(inputs, prompts, completions,
    # completion_ids_list)` gets this rank's rows and returns the gathered (global_B, n_funcs) tensor in
    # global (rank-major) order.
    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        mode = "train" if self.model.training else "eval"
        reward, round_ = self.length_reward, self._round
        texts = [completion_text(c) for c in completions]
        entropies = (self._token_entropies(round_.prompt_ids, completion_ids_list)
                     if self.needs & PHASE_ENTROPIES else None)
        local = self._grade(inputs, completion_ids_list, texts, entropies)
        rows = gather_object(local)
        batch = self._rollout_batch(rows)
        cuts_local = None
        cuts = reward.cut_lengths(batch)
        if cuts is not None:  # cut, then re-grade what is left (DOT, methods-more §3)
            self._metrics[mode][f"{reward.name}/cut_frac"].append(sum(c is not None for c in cuts) / len(cuts))
            if any(c is not None for c in cuts):
                start = self.accelerator.process_index * len(inputs)
                cuts_local = cuts[start:start + len(inputs)]
                local = self._regrade_cut(inputs, local, completion_ids_list, cuts_local, entropies)
                rows = gather_object(local)
                batch = self._rollout_batch(rows)
        rewards = reward.reward(batch)
        filter_scores = self._filter_scores(batch, rewards)
        if mode == "train" and reward.stateful:
            reward.observe(batch)
        round_.scored = _Scored(rows, batch, rewards, filter_scores, cuts_local)
        self._log_batch_metrics(mode, batch, round_.budget_metric, timeouts=sum(r.timed_out for r in rows))
        return torch.tensor(rewards, dtype=torch.float32, device=self.accelerator.device).unsqueeze(1)

    def _grade(self, inputs, completion_ids_list, texts, entropies=None) -> list[Row]:
        grades = self.grade_batch(golds=[str(x["answer"]) for x in inputs], completions=texts)
        return [self._row(x, list(ids), g, text, ent, truncated=(not ids) or ids[-1] not in self.eos_token_ids)
                for x, ids, g, text, ent in zip(inputs, completion_ids_list, grades, texts,
                                                entropies or [None] * len(inputs), strict=True)]

    def _row(self, x, ids: list[int], grade, text: str, entropies, truncated: bool) -> Row:
        return Row(str(x["problem_id"]), len(ids), grade.correct, truncated, grade.extracted is not None,
                   grade.timed_out, text if "texts" in self.needs else None,
                   ids if "token_ids" in self.needs else None, x.get("target_length"),
                   **phase_fields(ids, self._think_tag, entropies, self.needs))

    def _regrade_cut(self, inputs, local, completion_ids_list, cuts_local, entropies) -> list[Row]:
        """The cut completions re-graded on their cut text (a cut has no EOS: truncated)."""
        which = [i for i, c in enumerate(cuts_local) if c is not None]
        ids = [list(completion_ids_list[i][:cuts_local[i]]) for i in which]
        texts = self.processing_class.batch_decode(ids, skip_special_tokens=True)
        grades = self.grade_batch(golds=[str(inputs[i]["answer"]) for i in which], completions=texts)
        out = list(local)
        for i, cut_ids, text, g in zip(which, ids, texts, grades):
            out[i] = self._row(inputs[i], cut_ids, g, text, entropies[i] if entropies else None, truncated=True)
        return out

    def _batch_cap(self) -> int:
        return self.budget.cap if self.budget.per_prompt else self.max_completion_length

    def _rollout_batch(self, rows: list[Row]) -> RolloutBatch:
        return rollout_batch(rows, self.needs, self._batch_cap(), self.state.global_step)

    def _filter_scores(self, batch: RolloutBatch, rewards: list[float]) -> list[float]:
        metric = self.sampling.metric
        if metric == "correct":
            return [float(s) for s in batch.solved]
        if metric == "auto":
            return list(self.length_reward.sampling_scores(batch, rewards))
        return list(rewards)

    def _log_batch_metrics(self, mode: str, batch: RolloutBatch, budget: float, timeouts: int) -> None:
        m = self._metrics[mode]
        right = [n for n, c in zip(batch.lengths, batch.correct) if c]
        wrong = [n for n, c in zip(batch.lengths, batch.correct) if not c]
        m["correct/frac"].append(sum(batch.correct) / len(batch.correct))
        m["format/ok_frac"].append(sum(batch.format_ok) / len(batch.format_ok))
        m["grading/timeouts"].append(float(timeouts))
        m["length/mean"].append(statistics.fmean(batch.lengths))
        m["length/truncated_frac"].append(sum(batch.truncated) / len(batch.truncated))
        if right:
            m["length/mean_correct"].append(statistics.fmean(right))
        if wrong:
            m["length/mean_incorrect"].append(statistics.fmean(wrong))
        m["length/budget"].append(budget)
        if batch.think_lengths is not None:
            m["length/think_mean"].append(statistics.fmean(batch.think_lengths))
            m["length/answer_mean"].append(statistics.fmean(batch.answer_lengths))
        name = self.length_reward.name
        metrics = {f"{name}/{k}": float(v) for k, v in self.length_reward.metrics(batch).items()}
        for key, value in metrics.items():
            m[key].append(value)
        if mode == "train":
            self._reward_metrics = metrics

    # ---------------------------------------------------------------------------------------------
    # Generation details.
    # TRL 1.16: `_generate_single_turn(prompt_ids, images, multimodal_fields, num_generations,
    # has_tool_images=False)` returns (completion_ids, logprobs) per row, vLLM or transformers alike.
    def _generate_single_turn(self, prompt_ids, images, multimodal_fields, num_generations, has_tool_images=False):
        round_ = self._round
        forced = round_.forced if round_ is not None else None  # the monitor set (no round) is never forced
        if round_ is not None and self.needs & PHASE_ENTROPIES:  # the prompts alone: a prefix is completion
            round_.prompt_ids = [list(p) for p in prompt_ids]
        if forced is not None:
            prompt_ids = [list(p) + f.ids for p, f in zip(prompt_ids, forced, strict=True)]
            num_generations = 1  # a group's rows now differ (TRL's vLLM server mode samples one prompt per group)
        completion_ids, logprobs = super()._generate_single_turn(
            prompt_ids, images, multimodal_fields, num_generations, has_tool_images)
        if round_ is None:  # the monitor set's generation (`_refresh_coverage`)
            return completion_ids, logprobs
        if forced is not None:  # the prefix opens the completion, which stays within the cap
            completion_ids, logprobs = with_prefixes(forced, completion_ids, logprobs, self.max_completion_length)
        if round_.row_budgets is not None:  # per-question caps: the first L tokens of a sample capped later
            budgets = round_.row_budgets
            completion_ids = [list(ids[:b]) for ids, b in zip(completion_ids, budgets, strict=True)]
            if logprobs is not None:
                logprobs = [lp[:b] for lp, b in zip(logprobs, budgets, strict=True)]
        return completion_ids, logprobs

    def _with_budget_prompt(self, inputs):
        """Curriculum / ThinkPrune write the budget into the prompt (`budget.prompt`)."""
        if not self.budget_config.prompt:
            return inputs
        note = self.length_reward.budget_prompt(self.state.global_step)
        out = []
        for x in inputs:
            prompt = x["prompt"]
            if isinstance(prompt, str):
                prompt = f"{prompt}\n\n{note}"
            else:
                prompt = [*prompt[:-1], {**prompt[-1], "content": f"{prompt[-1]['content']}\n\n{note}"}]
            out.append({**x, "prompt": prompt})
        return out

    def _refresh_coverage(self) -> None:
        """Sample the fixed monitor set (K each) when the reward says it is due (LASER-D/DE with
        `coverage_source=monitor`: before step 1, then every N steps) and hand it to `update_coverage`.
        TRL 1.16: `_tokenize_prompts(prompts)` -> (prompt_ids, images, multimodal_fields)."""
        r = self.length_reward
        if not r.monitor_due(self.state.global_step):
            return
        group, world = self.num_generations, self.accelerator.num_processes
        size = min(self.sampling.monitor_prompts, len(self.train_dataset))
        index = random.Random(self.args.seed).sample(range(len(self.train_dataset)), size)
        flat = [i for i in index for _ in range(group)]
        per_rank = -(-len(flat) // world)
        flat += flat[:per_rank * world - len(flat)]  # equal shares (repeats a few rows when uneven)
        mine = [self.train_dataset[i] for i in flat[self.accelerator.process_index * per_rank:][:per_rank]]
        prompts = [x["prompt"] for x in self._with_budget_prompt(mine)]
        prompt_ids, images, fields = self._tokenize_prompts(prompts)
        completion_ids, _ = self._generate_single_turn(prompt_ids, images, fields, group)
        texts = self.processing_class.batch_decode(completion_ids, skip_special_tokens=True)
        entropies = self._token_entropies(prompt_ids, completion_ids) if self.needs & PHASE_ENTROPIES else None
        rows = gather_object(self._grade(mine, completion_ids, texts, entropies))[:len(index) * group]
        batch = self._rollout_batch(rows)
        r.update_coverage(batch)
        self._metrics["train"][f"{r.name}/monitor_solved_frac"].append(sum(batch.solved) / len(batch))
        log.info("%s: coverage refreshed at step %d from %d monitor prompts x %d", r.name,
                 self.state.global_step, len(index), group)

    def _loss_mask(self, out) -> torch.Tensor:
        mask = out["completion_mask"]
        return mask * out["tool_mask"] if out.get("tool_mask") is not None else mask

    def _padded(self, prompt_ids, completion_ids) -> tuple[torch.Tensor, torch.Tensor, int]:
        """(ids, attention mask, completion width): prompts left-padded, completions right-padded, as TRL."""
        device = self.accelerator.device
        p = [torch.tensor(x, device=device) for x in prompt_ids]
        c = [torch.tensor(list(x), device=device, dtype=torch.long) for x in completion_ids]
        pid = pad(p, padding_value=self._tokenizer.pad_token_id, padding_side="left")
        pmask = pad([torch.ones_like(x) for x in p], padding_value=0, padding_side="left")
        cid = pad(c, padding_value=self._tokenizer.pad_token_id, padding_side="right")
        cmask = pad([torch.ones_like(x) for x in c], padding_value=0, padding_side="right")
        return torch.cat([pid, cid], dim=1), torch.cat([pmask, cmask], dim=1), cid.size(1)

    @torch.no_grad()
    def _token_entropies(self, prompt_ids, completion_ids) -> list[list[float]]:
        """Per-token entropy of each completion under the sampling policy (the current weights, TRL's
        temperature), for rewards that need think/answer entropies. TRL 1.16:
        `_get_per_token_logps_and_entropies(..., compute_entropy=True)` -> (logps, entropies, aux)."""
        if prompt_ids is None or len(prompt_ids) != len(completion_ids):
            raise RuntimeError("token entropies need this batch's prompt ids, one per completion "
                               "(captured in _generate_single_turn)")
        ids, mask, width = self._padded(prompt_ids, completion_ids)
        _, entropies, _ = self._get_per_token_logps_and_entropies(
            self.model, ids, mask, width, batch_size=self.args.per_device_train_batch_size, compute_entropy=True)
        return [entropies[i, :len(c)].tolist() for i, c in enumerate(completion_ids)]

    @torch.no_grad()
    def _policy_logps(self, out) -> torch.Tensor:
        """Per-token log-probs of the completions under the current (= generating) policy.
        TRL 1.16: `_get_per_token_logps_and_entropies(model, input_ids, attention_mask, logits_to_keep,
        batch_size=None, ...)` -> (logps, entropies, aux_loss)."""
        ids = torch.cat([out["prompt_ids"], out["completion_ids"]], dim=1)
        mask = torch.cat([out["prompt_mask"], out["completion_mask"]], dim=1)
        logps, _, _ = self._get_per_token_logps_and_entropies(
            self.model, ids, mask, out["completion_ids"].size(1), batch_size=self.args.per_device_train_batch_size)
        return logps

    # ---------------------------------------------------------------------------------------------
    # An estimator's own loss (DRPO). TRL 1.16: `_compute_loss(model, inputs)` returns the micro-batch
    # loss already scaled for gradient accumulation (GRPOTrainer sets `loss_is_scaled_for_ga`).
    def _compute_loss(self, model, inputs):
        if not self.estimator.owns_loss:
            return super()._compute_loss(model, inputs)
        completion_ids = inputs["completion_ids"]
        ids = torch.cat([inputs["prompt_ids"], completion_ids], dim=1)
        attention = torch.cat([inputs["prompt_mask"], inputs["completion_mask"]], dim=1)
        logps, _, _ = self._get_per_token_logps_and_entropies(model, ids, attention, completion_ids.size(1))
        old = inputs.get("old_per_token_logps")
        corrected = self.use_vllm and self.vllm_importance_sampling_correction  # TRL's IS ratio vs vLLM's logps
        mode = "train" if self.model.training else "eval"
        # The loss is a mean over the prompts of one optimizer step's window (dead groups count): this
        # rank's share, as TRL's dapo normaliser does for tokens.
        prompts = inputs["group_count"] / self.accelerator.num_processes
        accumulation = self.current_gradient_accumulation_steps if mode == "train" else 1
        if mode == "train":
            prompts = prompts * accumulation / self.args.steps_per_generation
        loss, parts = self.estimator.loss(LossInput(
            per_token_logps=logps, old_per_token_logps=logps.detach() if old is None else old,
            mask=self._loss_mask(inputs), advantages=inputs["advantages"],
            token_ratio=inputs.get("importance_sampling_ratio") if corrected else None,
            prompts=prompts, accumulation=accumulation, reward=self.length_reward))
        m = self._metrics[mode]
        for key, value in parts.items():
            if value.numel() == 1:
                m[f"{self.estimator.name}/{key}"].append(self.accelerator.gather(value.reshape(1)).mean().item())
        return loss

    # ---------------------------------------------------------------------------------------------
    # State in checkpoints. TRL 1.16 uses the same pair for its entropy controller
    # (`entropy_ctrl_state.json`): `_save_checkpoint(model, trial)` after the folder is written,
    # `_load_optimizer_and_scheduler(checkpoint)` on resume, before the first step.
    def state_dict(self) -> dict[str, Any]:
        """Reward and controller state (JSON): reward state, dynamic-sampling counters, budget, metrics."""
        r = self.length_reward
        return {
            "version": STATE_VERSION, "global_step": self.state.global_step,
            "reward": r.state_dict() if r.stateful else None,
            "sampling": self.sampling_stats.state_dict() if self.sampling.dynamic else None,
            "budget": {"schedule": self.budget.name, "max_completion_length": self.max_completion_length},
            "metrics": dict(self._reward_metrics),  # for inspection (e.g. LASER-D targets); not restored
        }

    def _save_checkpoint(self, model, trial):
        super()._save_checkpoint(model, trial)
        ckpt = Path(self._get_output_dir(trial=trial)) / f"checkpoint-{self.state.global_step}"
        if self.args.should_save:
            tmp = ckpt / (REWARD_STATE_FILE + ".tmp")
            tmp.write_text(json.dumps(self.state_dict()))
            os.replace(tmp, ckpt / REWARD_STATE_FILE)  # atomic: a crash never leaves half a file
        self.accelerator.wait_for_everyone()  # every rank's shards are on disk before the marker
        if self.args.should_save:
            mark_complete(ckpt, self.state.global_step)  # last: only now is the checkpoint usable

    def _load_optimizer_and_scheduler(self, checkpoint):
        super()._load_optimizer_and_scheduler(checkpoint)
        if checkpoint is None:
            return
        stateful = self.length_reward.stateful
        path = Path(checkpoint) / REWARD_STATE_FILE
        state = json.loads(path.read_text()) if path.is_file() else {}
        if "name" in state and "reward" not in state:  # older files held the reward state alone
            state = {"reward": state}
        missing = [what for what, needed, key in (
            (f"the '{self.length_reward.name}' reward's state", stateful, "reward"),
            ("the dynamic-sampling counters", self.sampling.dynamic, "sampling")) if needed and not state.get(key)]
        if missing and not self.allow_fresh_state:
            raise MissingInput(
                f"resuming from {checkpoint}, but {path.name} there lacks {' and '.join(missing)}. Resume from a "
                f"checkpoint written by conciser, or set rewards.allow_fresh_state=true to start that state empty.")
        if missing:
            log.warning("%s lacks %s; starting it empty (rewards.allow_fresh_state)", path, " and ".join(missing))
        if stateful and state.get("reward"):
            self.length_reward.load_state_dict(state["reward"])
            log.info("restored %s reward state from %s", self.length_reward.name, path)
        if self.sampling.dynamic and state.get("sampling"):
            self.sampling_stats.load_state_dict(state["sampling"])
