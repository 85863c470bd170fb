"""Fails loudly when TRL changes the private hooks ConciseGRPOTrainer overrides or calls.

The trainer subclasses trl.GRPOTrainer through private methods (pinned: trl 1.16.x). If this test
fails after a TRL upgrade, re-read those methods in the new version and adapt trainers/grpo.py
(and trainers/budget.py for where the generation cap is copied) before relaxing anything here.
"""

import inspect

import pytest
import trl
from trl import GRPOTrainer
from trl.generation.vllm_generation import VLLMGeneration

from conciser.trainers.grpo import ConciseGRPOTrainer

# method -> its parameters in TRL 1.16 (names, order, defaults)
EXPECTED = {
    "_calculate_rewards": "(self, inputs, prompts, completions, completion_ids_list)",
    "_generate_and_score_completions": "(self, inputs: list[dict[str, torch.Tensor | typing.Any]]) -> dict[str, torch.Tensor | typing.Any]",
    "_generate_single_turn": "(self, prompt_ids, images, multimodal_fields, num_generations, has_tool_images=False)",
    "_compute_loss": "(self, model, inputs)",
    "_save_checkpoint": "(self, model, trial)",
    "_load_optimizer_and_scheduler": "(self, checkpoint)",
    "_prepare_inputs": "(self, generation_batch: dict[str, torch.Tensor | typing.Any]) -> dict[str, torch.Tensor | typing.Any]",
    "_tokenize_prompts": "(self, prompts: list)",
}
# only called, never overridden: just the leading parameters we pass
CALLED = {"_get_per_token_logps_and_entropies": ["self", "model", "input_ids", "attention_mask", "logits_to_keep",
                                                 "batch_size"]}


def test_trl_version_is_the_pinned_minor():
    assert trl.__version__.startswith("1.16."), f"trainers/grpo.py was written against trl 1.16, found {trl.__version__}"


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_overridden_hook_signatures_match_trl_1_16(name):
    got = str(inspect.signature(getattr(GRPOTrainer, name)))
    assert got == EXPECTED[name], f"trl.GRPOTrainer.{name} changed: {got}"


def test_overrides_keep_trl_signatures():
    for name in EXPECTED:
        if name in ConciseGRPOTrainer.__dict__:
            mine = list(inspect.signature(getattr(ConciseGRPOTrainer, name)).parameters)
            assert mine == list(inspect.signature(getattr(GRPOTrainer, name)).parameters), name


def test_called_helpers_keep_their_leading_parameters():
    for name, params in CALLED.items():
        got = list(inspect.signature(getattr(GRPOTrainer, name)).parameters)[:len(params)]
        assert got == params, f"trl.GRPOTrainer.{name} changed: {got}"


def test_generation_cap_copies_are_where_budget_sets_them():
    # trainers/budget.set_generation_cap writes these; TRL 1.16 copies max_completion_length into them at init
    init = inspect.getsource(GRPOTrainer.__init__)
    assert "self.max_completion_length = args.max_completion_length" in init
    assert '"max_new_tokens": self.max_completion_length' in init
    assert "self.generation_config = GenerationConfig(**generation_kwargs" in init
    assert "self.generation_kwargs = generation_kwargs" in init
    assert "max_completion_length=self.max_completion_length" in init  # -> VLLMGeneration
    assert "self.max_completion_length = max_completion_length" in inspect.getsource(VLLMGeneration.__init__)
    generate = inspect.getsource(VLLMGeneration.generate)
    assert "max_completion_length = self.max_completion_length" in generate
    assert '"max_tokens": max_completion_length' in generate


def test_trl_calls_the_hooks_where_the_trainer_expects():
    score = inspect.getsource(GRPOTrainer._generate_and_score_completions)
    assert "self._calculate_rewards(inputs, prompts, completions, completion_ids_list)" in score
    assert "self._generate(prompts)" in score
    assert "self._generate_single_turn(" in inspect.getsource(GRPOTrainer._generate)
    assert "self._generate_and_score_completions(generation_batch)" in inspect.getsource(GRPOTrainer._prepare_inputs)
    assert "return self._compute_loss(model, inputs)" in inspect.getsource(GRPOTrainer.compute_loss)
    assert GRPOTrainer.loss_is_scaled_for_ga is True  # the DRPO loss scales for accumulation itself
