"""`ConciseGRPOTrainer`: TRL's GRPOTrainer with length rewards computed on the gathered batch.

TRL calls reward functions per rank on local slices, and one prompt's group can straddle ranks, so
a group-aware length reward written as a plain TRL reward function is wrong on more than one GPU
(reference/ecosystem.md §2.1). This subclass instead:

1. grades each completion once, locally (the grader is the only correctness judge);
2. gathers (problem id, token length, correct, truncated, format ok) from every rank;
3. scores the whole gathered batch with the recipe's reward (`conciser.rewards`), identically on
   every rank, and commits stateful rewards' `observe(batch)` in training mode only;
4. checkpoints reward state as JSON next to TRL's files and restores it on resume.

Overrides rely on TRL 1.16.0 private hooks (pinned in pyproject; `tests/trainers/test_trl_hooks.py`
fails loudly if their signatures change).
"""

from __future__ import annotations

import json
import logging
import os
import statistics
from pathlib import Path

import torch
from accelerate.utils import gather_object
from trl import GRPOTrainer

from conciser.rewards import RolloutBatch
from conciser.rewards.grading import get_grader

log = logging.getLogger(__name__)

REWARD_STATE_FILE = "reward_state.json"


class _RewardColumn:
    """The single reward "function" TRL sees; `_calculate_rewards` below computes it instead.

    TRL needs one entry per reward column (names, weights, metric keys). It is never called.
    """

    def __init__(self, name: str):
        self.__name__ = name

    def __call__(self, **_):  # pragma: no cover - guarded by the override
        raise RuntimeError("ConciseGRPOTrainer computes rewards on the gathered batch; this is never called")


def completion_text(completion) -> str:
    """TRL passes conversational completions as a message list; plain ones as a string."""
    if isinstance(completion, list):
        return "".join(m.get("content", "") for m in completion if isinstance(m, dict))
    return completion


class ConciseGRPOTrainer(GRPOTrainer):
    """GRPO with a conciser length reward scored on the gathered global batch.

    length_reward: an object from `conciser.rewards.build_reward`.
    grader: `toy` or `math` (see `conciser.rewards.grading.GRADERS`).
    allow_fresh_state: resume a stateful reward without its state file (it starts empty).
    """

    def __init__(self, *args, length_reward, grader: str = "math", allow_fresh_state: bool = False, **kwargs):
        self.length_reward = length_reward
        self.grade_batch = get_grader(grader)
        self.allow_fresh_state = allow_fresh_state
        kwargs.pop("reward_funcs", None)
        super().__init__(*args, reward_funcs=[_RewardColumn(length_reward.name)], **kwargs)

    # -- rewards on the gathered batch (TRL 1.16: `_calculate_rewards(inputs, prompts, completions,
    #    completion_ids_list)` returns the gathered (global_B, n_funcs) tensor in global order).
    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        mode = "train" if self.model.training else "eval"
        texts = [completion_text(c) for c in completions]
        grades = self.grade_batch(golds=[str(x["answer"]) for x in inputs], completions=texts)
        local = [
            (str(x["problem_id"]), len(ids), g.correct, (not ids) or ids[-1] not in self.eos_token_ids,
             g.extracted is not None, g.timed_out, text)
            for x, ids, g, text in zip(inputs, completion_ids_list, grades, texts, strict=True)
        ]
        rows = gather_object(local)
        batch = RolloutBatch(
            problem_ids=[r[0] for r in rows], lengths=[r[1] for r in rows], correct=[r[2] for r in rows],
            truncated=[r[3] for r in rows], format_ok=[r[4] for r in rows], texts=[r[6] for r in rows],
            step=self.state.global_step, max_length=self.max_completion_length,
        )
        rewards = self.length_reward.reward(batch)
        if mode == "train" and self.length_reward.stateful:
            self.length_reward.observe(batch)
        self._log_batch_metrics(mode, batch, timeouts=sum(r[5] for r in rows))
        return torch.tensor(rewards, dtype=torch.float32, device=self.accelerator.device).unsqueeze(1)

    def _log_batch_metrics(self, mode: str, batch: RolloutBatch, timeouts: int) -> None:
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
        m["length/budget"].append(float(self.max_completion_length))

    # -- reward state in checkpoints (TRL 1.16 uses the same pair for its entropy controller state).
    def _save_checkpoint(self, model, trial):
        super()._save_checkpoint(model, trial)
        if self.length_reward.stateful and self.args.should_save:
            ckpt = Path(self._get_output_dir(trial=trial)) / f"checkpoint-{self.state.global_step}"
            tmp = ckpt / (REWARD_STATE_FILE + ".tmp")
            tmp.write_text(json.dumps(self.length_reward.state_dict()))
            os.replace(tmp, ckpt / REWARD_STATE_FILE)  # atomic: a crash never leaves half a file

    def _load_optimizer_and_scheduler(self, checkpoint):
        super()._load_optimizer_and_scheduler(checkpoint)
        if checkpoint is None or not self.length_reward.stateful:
            return
        path = Path(checkpoint) / REWARD_STATE_FILE
        if path.is_file():
            self.length_reward.load_state_dict(json.loads(path.read_text()))
            log.info("restored %s reward state from %s", self.length_reward.name, path)
        elif self.allow_fresh_state:
            log.warning("%s has no %s; the %s reward starts with empty state (rewards.allow_fresh_state)",
                        checkpoint, REWARD_STATE_FILE, self.length_reward.name)
        else:
            raise FileNotFoundError(
                f"resuming from {checkpoint}, but it has no {REWARD_STATE_FILE} for the stateful "
                f"'{self.length_reward.name}' reward. Resume from a checkpoint written by conciser, or set "
                f"rewards.allow_fresh_state=true to start the reward state empty."
            )
