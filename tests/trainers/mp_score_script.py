"""Score the same scripted rollouts with ConciseGRPOTrainer in however many processes torchrun starts.

    torchrun --standalone --nproc_per_node N tests/trainers/mp_score_script.py MODEL_DIR OUT_DIR

The global generation batch is always 12 completions = 3 prompts x 4 (per-device batch 12 / N), so with
N = 2 the middle group straddles the ranks. Each rank writes OUT_DIR/rank<r>.json with the world size
it saw, and per recipe: the gathered rewards, the gathered advantages and the reward state after two
scoring rounds; then one real training step with dynamic sampling. Used by test_multiprocess.py.
"""

import hashlib
import json
import os
import sys
from pathlib import Path

GROUP = 4
CONFIGS = {
    "hapo+batch": ("hapo", {}, {"estimator": "batch"}, {}),
    "laser_d+group": ("laser_d", {"target_length": 24, "grid_step": 16, "coverage_source": "training",
                                  "refresh_every": 1}, {"estimator": "group"}, {}),
    "drpo+drpo": ("drpo", {"lam": 0.2, "tau": 2.0}, {"estimator": "drpo"}, {}),
    "dler+batch+dynamic": ("dler", {"target_length": 60}, {"estimator": "batch"}, {"dynamic": True, "max_gen_batches": 4}),
}


def script(p, j, call):
    """Deterministic rollouts: correctness and length from (problem, copy, call); the first problem's
    group is all wrong in call 0 (dynamic sampling must refill)."""
    from conciser import toy

    h = int(hashlib.sha1(f"{p.id}:{j}:{call}".encode()).hexdigest(), 16)
    right = h % 3 != 0 and not (call == 0 and p.id == script.first)
    text = toy.minimal_trace(p).replace(toy.THINK_CLOSE, " hmm" * (h % 9) + toy.THINK_CLOSE)
    return text if right else text.replace("\\boxed{" + p.answer + "}", "\\boxed{" + str((int(p.answer) + 1) % 10) + "}")


def main(model_dir: str, out_dir: str) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import GRPOConfig, GRPOTrainer

    from conciser import toy
    from conciser.config import AdvantageConfig, SamplingConfig
    from conciser.rewards import build_reward
    from conciser.trainers.data import to_dataset
    from conciser.trainers.grpo import ConciseGRPOTrainer

    sys.path.insert(0, str(Path(__file__).parent))
    from trainer_helpers import PROMPT, _toy_problems

    world, rank = int(os.environ.get("WORLD_SIZE", 1)), int(os.environ.get("RANK", 0))  # torchrun's
    n_local = 3 * GROUP // world
    rows = [p.to_row() for p in toy.train_problems(12)]
    script.first = rows[0]["problem_id"]
    calls = [0]

    def fake_generate(self, prompt_ids, images, multimodal_fields, num_generations, has_tool_images=False):
        tok = self.processing_class
        out = []
        for i, ids in enumerate(prompt_ids):
            p = _toy_problems()[PROMPT.search(tok.decode(ids)).group(0)]
            j = (rank * len(prompt_ids) + i) % GROUP  # the copy's index in its group, counted globally
            out.append(tok(script(p, j, calls[0]), add_special_tokens=False).input_ids)
        calls[0] += 1
        return out, None

    GRPOTrainer._generate_single_turn = fake_generate

    def make(method, params, advantage, sampling, **extra):
        args = GRPOConfig(output_dir=f"{out_dir}/run-{method}", per_device_train_batch_size=n_local,
                          num_generations=GROUP, max_completion_length=96, max_steps=1, learning_rate=1e-2,
                          report_to="none", save_strategy="no", logging_steps=1, seed=0, bf16=False, use_cpu=True,
                          **extra)
        return ConciseGRPOTrainer(
            model=AutoModelForCausalLM.from_pretrained(model_dir), processing_class=AutoTokenizer.from_pretrained(model_dir),
            args=args, train_dataset=to_dataset(rows), length_reward=build_reward(method, **params), grader="toy",
            advantage=AdvantageConfig(**advantage), sampling=SamplingConfig(**sampling))

    results, seen = {}, []
    for name, (method, params, advantage, sampling) in CONFIGS.items():
        calls[0] = 0
        trainer = make(method, params, advantage, sampling)
        seen.append((trainer.accelerator.num_processes, trainer.accelerator.process_index))
        trainer.model.train()
        rewards, advantages = [], []
        calculate = trainer._calculate_rewards

        def record(*a, _calculate=calculate, _rewards=rewards):
            out = _calculate(*a)
            _rewards.append(out[:, 0].tolist())
            return out

        trainer._calculate_rewards = record
        for round_ in range(2):
            global_rows = [rows[round_ % 2 + k] for k in range(3) for _ in range(GROUP)]
            local = global_rows[rank * n_local:(rank + 1) * n_local]
            out = trainer._generate_and_score_completions(local)
            advantages.append(trainer.accelerator.gather(out["advantages"]).tolist())
        results[name] = {"rewards": rewards, "advantages": advantages,
                         "state": trainer.length_reward.state_dict() if trainer.length_reward.stateful else None,
                         "sampling": trainer.sampling_stats.state_dict()}

    calls[0] = 0
    trainer = make("hapo", {}, {"estimator": "batch"}, {"dynamic": True})
    trainer.train()
    results["train"] = {"global_step": trainer.state.global_step, "state": trainer.length_reward.state_dict(),
                        "sampling": trainer.sampling_stats.state_dict(),
                        "param_sum": float(sum(p.detach().double().sum() for p in trainer.model.parameters()))}
    seen.append((trainer.accelerator.num_processes, trainer.accelerator.process_index))
    backend = torch.distributed.get_backend() if torch.distributed.is_initialized() else None
    Path(out_dir, f"rank{rank}.json").write_text(json.dumps({
        "world": world, "rank": rank, "accelerator_seen": seen, "backend": backend, "results": results}))


if __name__ == "__main__":
    main(*sys.argv[1:3])
