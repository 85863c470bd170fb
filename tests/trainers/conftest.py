"""Helpers for trainer tests: a ConciseGRPOTrainer on a tiny toy model, and scripted rollouts.

Scripted rollouts replace only TRL's generation backend (`GRPOTrainer._generate_single_turn`), so
everything around it -- TRL's padding and logging, our grading, gathering, rewards, DOT, dynamic
sampling, estimators and losses -- runs for real on completions whose rewards the test chose.
"""

from __future__ import annotations

import pytest

from conciser import toy

from trainer_helpers import PROMPT, _toy_problems, completion, toy_inputs  # noqa: F401


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Tiny models run far faster on one thread: on a shared 2-core machine two contending OpenMP threads
    made each tiny matmul ~500x slower. Restored after each test."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def scripted(monkeypatch):
    """`scripted(trainer, script)`: TRL's generation backend returns `script(problem, j, call)` for the j-th
    copy of a prompt in the call-th generation call, cut at the trainer's current cap (as generation
    would be). Returns the list of (prompt ids, completion ids) per call. `trainer` may be None: the
    patch is on the class, so trainers built later (e.g. inside `conciser train`) use it too."""
    from trl import GRPOTrainer

    def install(trainer, script):
        calls = []

        def fake(self, prompt_ids, images, multimodal_fields, num_generations, has_tool_images=False):
            tok = self.processing_class
            out, seen = [], {}
            for ids in prompt_ids:
                p = _toy_problems()[PROMPT.search(tok.decode(ids)).group(0)]
                j = seen.get(p.id, 0)
                seen[p.id] = j + 1
                out.append(tok(script(p, j, len(calls)), add_special_tokens=False).input_ids[:self.max_completion_length])
            calls.append((prompt_ids, out))
            return out, None

        monkeypatch.setattr(GRPOTrainer, "_generate_single_turn", fake)
        return calls

    return install


@pytest.fixture
def make_trainer(tmp_path):
    """`make_trainer(model_dir, method, params, advantage=..., sampling=..., budget=..., n_train, **grpo)`."""
    made = []

    def make(model_dir, method="kimi", params=None, *, advantage=None, sampling=None, budget=None, n_train=16,
             grader="toy", allow_fresh_state=False, **grpo):
        from transformers import AutoModelForCausalLM, AutoTokenizer
        from trl import GRPOConfig

        from conciser.config import AdvantageConfig, BudgetConfig, SamplingConfig
        from conciser.rewards import build_reward
        from conciser.trainers.data import to_dataset
        from conciser.trainers.grpo import ConciseGRPOTrainer

        settings = dict(output_dir=str(tmp_path / f"out{len(made)}"), per_device_train_batch_size=8,
                        num_generations=4, max_completion_length=48, max_steps=1, learning_rate=1e-2,
                        report_to="none", save_strategy="no", logging_steps=1, seed=0, bf16=False,
                        dataloader_num_workers=0)
        settings.update(grpo)
        trainer = ConciseGRPOTrainer(
            model=AutoModelForCausalLM.from_pretrained(model_dir), processing_class=AutoTokenizer.from_pretrained(model_dir),
            args=GRPOConfig(**settings), train_dataset=to_dataset([p.to_row() for p in toy.train_problems(n_train)]),
            length_reward=build_reward(method, **(params or {})), grader=grader, allow_fresh_state=allow_fresh_state,
            advantage=AdvantageConfig(**(advantage or {})), sampling=SamplingConfig(**(sampling or {})),
            budget=BudgetConfig(**(budget or {})))
        made.append(trainer)
        return trainer

    return make
