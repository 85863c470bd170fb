"""Tiny toy models for tests, importable by name (`from toy_models import save_random_toy_model`)."""


def save_random_toy_model(path, seed: int = 0, task: str = "toy", **overrides):
    """A random-init toy model + the tokenizer of toy task `task` saved to `path` (seconds, no training)."""
    import dataclasses

    import torch

    from conciser import toy
    from conciser.trainers.toy_sft import ToyBaseConfig, build_model

    cfg = dataclasses.replace(ToyBaseConfig(hidden_size=64, num_layers=2, num_heads=2, num_kv_heads=1,
                                            intermediate_size=128, seed=seed), **overrides)
    tokenizer = toy.task(task).build_tokenizer()
    torch.manual_seed(seed)
    model = build_model(cfg, tokenizer)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path
