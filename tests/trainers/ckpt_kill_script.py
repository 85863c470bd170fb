"""`conciser train ...` that SIGKILLs itself at a chosen point of saving one checkpoint (for test_checkpoints.py).

    python ckpt_kill_script.py POINT STEP conciser-train-args...

Generation is scripted (TRL's backend returns known completions, chosen by problem, copy and global
step, so a resumed run sees the rollouts the uninterrupted one saw): most are right with lengths that
vary, so HAPO's history fills and the weights move; a tiny model's own samples are almost never right.

POINT is where, inside the save of checkpoint-STEP, the process dies:
    start     before anything of the checkpoint is written
    weights   after the model weights, before the optimizer / scheduler / RNG / trainer state
    trl       after all of TRL's files, before reward_state.json
    marker    after reward_state.json, before the completion marker
    after     after the completion marker (the checkpoint is complete)
    none      no kill (an uninterrupted run)
"""

from __future__ import annotations

import os
import signal
import sys


def die():
    sys.stdout.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def script_generation() -> None:
    from trl import GRPOTrainer

    from trainer_helpers import PROMPT, _toy_problems, completion

    def generate(self, prompt_ids, images, multimodal_fields, num_generations, has_tool_images=False):
        out, seen = [], {}
        for ids in prompt_ids:
            p = _toy_problems()[PROMPT.search(self.processing_class.decode(ids)).group(0)]
            j = seen[p.id] = seen.get(p.id, -1) + 1
            text = completion(p, correct=j != 1, extra=(3 * j + self.state.global_step) % 7)
            out.append(self.processing_class(text, add_special_tokens=False).input_ids[:self.max_completion_length])
        return out, None

    GRPOTrainer._generate_single_turn = generate


def install(point: str, step: int) -> None:
    from transformers import Trainer

    import conciser.trainers.grpo as grpo

    def at_step(trainer) -> bool:
        return trainer.state.global_step == step

    if point == "start":
        original = Trainer._save_checkpoint

        def save(self, model, trial):
            if at_step(self):
                die()
            return original(self, model, trial)

        Trainer._save_checkpoint = save
    elif point == "weights":
        original_opt = Trainer._save_optimizer_and_scheduler

        def save_opt(self, output_dir):
            if at_step(self):
                die()
            return original_opt(self, output_dir)

        Trainer._save_optimizer_and_scheduler = save_opt
    elif point in ("trl", "marker", "after"):
        if point == "trl":
            original_state = grpo.ConciseGRPOTrainer.state_dict

            def state_dict(self):
                if at_step(self):
                    die()
                return original_state(self)

            grpo.ConciseGRPOTrainer.state_dict = state_dict
        else:
            original_mark = grpo.mark_complete

            def mark(folder, at):
                if at == step and point == "marker":
                    die()
                out = original_mark(folder, at)
                if at == step:
                    die()
                return out

            grpo.mark_complete = mark
    elif point != "none":
        raise SystemExit(f"unknown kill point {point!r}")


if __name__ == "__main__":
    import torch

    torch.set_num_threads(1)
    point, step, *argv = sys.argv[1:]
    script_generation()
    install(point, int(step))
    from conciser.cli import main

    sys.exit(main(argv))
