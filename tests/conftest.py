"""Shared test fixtures. Tests run on CPU, offline, with wandb disabled unless a test enables it."""

import os

import pytest

from toy_models import save_random_toy_model  # noqa: F401  (re-exported for fixtures below)

os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")


@pytest.fixture(scope="session")
def tiny_sft_toy_model(tmp_path_factory):
    """A tiny toy model after a few seconds of SFT on verbose traces: it writes the answer format
    sometimes, so GRPO rewards vary (a random model's rewards are all equal, so nothing moves)."""
    from conciser.trainers.toy_sft import ToyBaseConfig, train_toy_base

    cfg = ToyBaseConfig(hidden_size=32, num_layers=2, num_heads=2, num_kv_heads=1, intermediate_size=64,
                        steps=40, batch_size=16, lr=1e-2, warmup=5,
                        bf16=False)  # the same model on every CPU (bf16 autocast only where it is native)
    return train_toy_base(tmp_path_factory.mktemp("tiny_sft") / "model", cfg, progress=False)


@pytest.fixture(scope="session")
def tiny_toy_model(tmp_path_factory):
    """Path to a random-init tiny toy model (session-wide; do not modify it)."""
    return save_random_toy_model(tmp_path_factory.mktemp("tiny_toy_model"))
