"""Build the toy "overthinking" base model: a tiny Qwen2 trained from scratch by SFT on verbose traces.

    conciser toy-base [--out DIR] [--steps N] [--force]

The model (about 0.6M parameters) learns the toy task (`conciser.toy`) from freshly sampled verbose
traces: the needed steps plus slips it fixes, redundant re-checks, filler and a final re-verification
pass. The loss covers completion tokens only. Deterministic given the seed (single-threaded data,
fixed torch seed); built on CPU in a few minutes and cached under `toy_base_dir()`, keyed by the
config, so `make demo` and the tests reuse it. Never committed as a binary.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

from conciser import toy

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ToyBaseConfig:
    """Architecture and SFT schedule of the toy base. Changing any field changes the cache key."""

    hidden_size: int = 128
    num_layers: int = 3
    num_heads: int = 4
    num_kv_heads: int = 2
    intermediate_size: int = 384
    max_position_embeddings: int = 1024
    steps: int = 700              # optimizer steps
    batch_size: int = 48          # sequences per step
    lr: float = 3e-3
    warmup: int = 50
    weight_decay: float = 0.01
    seed: int = 0
    verbosity: toy.Verbosity = field(default_factory=toy.Verbosity)

    def key(self) -> str:
        blob = json.dumps(dataclasses.asdict(self), sort_keys=True) + "v2"
        return hashlib.sha1(blob.encode()).hexdigest()[:10]


def toy_base_dir(cfg: ToyBaseConfig = ToyBaseConfig()) -> Path:
    """Where the toy base for `cfg` is cached ($CONCISER_CACHE, default ~/.cache/conciser)."""
    root = Path(os.environ.get("CONCISER_CACHE", Path.home() / ".cache" / "conciser"))
    return root / f"toy-base-{cfg.key()}"


def build_model(cfg: ToyBaseConfig, tokenizer):
    import torch
    from transformers import GenerationConfig, Qwen2Config, Qwen2ForCausalLM

    mcfg = Qwen2Config(
        vocab_size=len(tokenizer), hidden_size=cfg.hidden_size, num_hidden_layers=cfg.num_layers,
        num_attention_heads=cfg.num_heads, num_key_value_heads=cfg.num_kv_heads,
        intermediate_size=cfg.intermediate_size, max_position_embeddings=cfg.max_position_embeddings,
        tie_word_embeddings=True, rope_theta=10000.0,
        pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id, bos_token_id=None,
    )
    torch.manual_seed(cfg.seed)
    model = Qwen2ForCausalLM(mcfg)
    model.generation_config = GenerationConfig(
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
        do_sample=True, temperature=1.0, top_p=1.0, max_new_tokens=toy.DEFAULT_MAX_COMPLETION,
    )
    return model


def _encode_example(tokenizer, problem: toy.ToyProblem, completion: str) -> tuple[list[int], int]:
    prompt = tokenizer.apply_chat_template(problem.to_row()["prompt"], tokenize=False, add_generation_prompt=True)
    p_ids = tokenizer(prompt, add_special_tokens=False).input_ids
    c_ids = tokenizer(completion, add_special_tokens=False).input_ids
    return p_ids + c_ids, len(p_ids)


def _batch(tokenizer, rng: random.Random, cfg: ToyBaseConfig, level: int):
    """A fresh batch of verbose traces of one level (little padding), labels on completion tokens."""
    import torch

    seqs = []
    for _ in range(cfg.batch_size):
        p = toy.make_problem(rng, level)
        seqs.append(_encode_example(tokenizer, p, toy.verbose_trace(p, rng, cfg.verbosity)))
    width = max(len(s) for s, _ in seqs)
    ids = torch.full((len(seqs), width), tokenizer.pad_token_id)
    labels = torch.full((len(seqs), width), -100)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, (s, n_prompt) in enumerate(seqs):
        ids[i, : len(s)] = torch.tensor(s)
        labels[i, n_prompt : len(s)] = torch.tensor(s[n_prompt:])
        mask[i, : len(s)] = 1
    return ids, mask, labels


def train_toy_base(out: Path, cfg: ToyBaseConfig = ToyBaseConfig(), progress: bool = True) -> Path:
    """Train the toy base from scratch and save model + tokenizer to `out` (atomically)."""
    import torch
    from tqdm.auto import tqdm

    torch.manual_seed(cfg.seed)
    tokenizer = toy.build_tokenizer()
    model = build_model(cfg, tokenizer)
    n_params = sum(p.numel() for p in model.parameters())
    log.info("toy base: %d parameters, %d SFT steps of %d", n_params, cfg.steps, cfg.batch_size)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.98))

    def lr_at(step: int) -> float:
        if step < cfg.warmup:
            return (step + 1) / cfg.warmup
        frac = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
        return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * frac))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
    rng = random.Random(cfg.seed)
    levels = list(toy.LEVELS)
    model.train()
    t0 = time.time()
    bar = tqdm(range(cfg.steps), desc="toy base SFT", disable=not progress)
    for step in bar:
        ids, mask, labels = _batch(tokenizer, rng, cfg, levels[step % len(levels)])
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        if step % 10 == 0:
            bar.set_postfix(loss=f"{loss.item():.3f}")
    model.eval()
    tmp = out.with_name(out.name + ".tmp")
    tmp.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    (tmp / "toy_base.json").write_text(json.dumps(
        {"config": dataclasses.asdict(cfg), "parameters": n_params, "build_seconds": round(time.time() - t0, 1),
         "final_loss": round(loss.item(), 4)}, indent=2))
    if out.exists():
        import shutil
        shutil.rmtree(out)
    tmp.rename(out)
    return out


def ensure_toy_base(cfg: ToyBaseConfig = ToyBaseConfig(), force: bool = False, progress: bool = True) -> Path:
    """The cached toy base for `cfg`, built first if missing (or if `force`)."""
    out = toy_base_dir(cfg)
    if force or not (out / "toy_base.json").exists():
        log.info("building the toy base model in %s", out)
        train_toy_base(out, cfg, progress=progress)
    return out
