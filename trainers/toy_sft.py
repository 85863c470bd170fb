"""Build the toy "overthinking" base model: a tiny Qwen2 trained from scratch by SFT on verbose traces.

    conciser toy-base [--force] [--check [--n N]]

The model (about 0.6M parameters) learns the toy task (`conciser.toy`) from freshly sampled verbose
traces: the needed steps plus slips it fixes, redundant re-checks, filler and a final re-verification
pass. The loss covers completion tokens only. Deterministic given the seed (single-threaded data,
fixed torch seed); built on CPU in a few minutes and cached under `toy_base_dir()`, keyed by the
config, so `make demo` and the tests reuse it. Never committed as a binary. `conciser toy-base --check`
(`conciser/toy_base_cli.py`) measures the acceptance bar of a base with the eval harness.
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
from typing import ClassVar

from conciser import toy, toy_scan

log = logging.getLogger(__name__)


def native_bf16() -> bool:
    """This CPU computes bf16 natively (otherwise torch emulates it, far slower than float32). Read from the
    CPU flags where Linux lists them, so naming the toy base's folder does not import torch."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        flags = set(cpuinfo.read_text(errors="replace").split())
        return bool(flags & {"avx512_bf16", "amx_bf16", "amx_tile"})
    import torch

    return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())


@dataclass(frozen=True)
class ToyBaseConfig:
    """Architecture and SFT schedule of the toy base. Changing any field changes the cache key."""

    hidden_size: int = 128
    num_layers: int = 3
    num_heads: int = 4
    num_kv_heads: int = 2
    intermediate_size: int = 384
    max_position_embeddings: int = 1024
    steps: int = 2000             # optimizer steps
    batch_size: int = 32          # sequences per step
    # Curriculum: without it the lookups are never learned (loss stays at the unigram level).
    easy_steps: int = 150         # first: minimal traces of levels 1-2 only
    minimal_steps: int = 450      # then minimal traces of every level; after that verbose traces
    lr: float = 1e-3              # 3e-3 never learns the lookups either
    warmup: int = 20
    # bf16 autocast: about 2x faster where the CPU has native bf16 (AVX512-BF16 / AMX), about 8x SLOWER
    # where it has not (AVX2 only: 20 s vs 2.6 s a step, measured); so on only where it helps.
    bf16: bool = field(default_factory=lambda: native_bf16())
    bucket: int = 8               # batches of one level cut from this many batches' traces sorted by length
    weight_decay: float = 0.01
    seed: int = 0
    verbosity: toy.Verbosity = field(default_factory=toy.Verbosity)

    task: ClassVar[str] = "toy-chain"        # the toy task (conciser.toy.task); not a field, so not in the key
    easy_levels: ClassVar[tuple[int, ...]] = (1, 2)   # the levels of the first `easy_steps` steps
    _version: ClassVar[str] = "v10"          # bump to invalidate cached bases of this task
    # `sft_data_fingerprint` of this config: the cache key covers the fields and `_version`, not the trace
    # code, so a test compares the two and tells whoever edits the traces to bump `_version` (a stale cached
    # base was reused once when only the traces changed).
    _data_fingerprint: ClassVar[str] = "01fb9e1a79ac"
    _cache_prefix: ClassVar[str] = "toy-base"
    # SFT steps of the shorter build that the `--quick` benches train from (`base_config(task, quick=True)`);
    # None: the full base (toy-chain's; no shorter build of it was measured)
    quick_steps: ClassVar[int | None] = None

    def key(self) -> str:
        blob = json.dumps(dataclasses.asdict(self), sort_keys=True) + self._version
        return hashlib.sha1(blob.encode()).hexdigest()[:10]


@dataclass(frozen=True)
class ScanBaseConfig(ToyBaseConfig):
    """The `toy-scan` base (conciser/toy_scan.py): two layers, fp32, and a curriculum of short scans first."""

    num_layers: int = 2
    # Teacher-forced step-result accuracy 0.89 at step 1000 and 0.91 at the end of a 1350-step build (229 s
    # on 2 cores); 1800 steps give the lookups time and keep the build under the 6 minutes issue 12 allows.
    steps: int = 1800
    # bf16 autocast is ~8x slower than fp32 on CPUs without native bf16 (AVX2 only, as ours now)
    bf16: bool = False
    verbosity: toy_scan.Verbosity = field(default_factory=toy_scan.Verbosity)
    # seed 0 diverged late in SFT on scan-v4 (loss up from 0.07 at step 1200 to 0.24; step-result digit
    # accuracy 0.89, base accuracy 0.52 at the cap); seed 1 reaches 0.994 with the same schedule
    seed: int = 1

    task: ClassVar[str] = "toy-scan"
    easy_levels: ClassVar[tuple[int, ...]] = (0, 1)   # 0: toy_scan.WARMUP_LEVEL, scans of 3 operands
    # v2: scans of up to 9 steps, hint right 60%; v3: level 1 alpha 1.0; v4: the hint's odds printed (50-90%);
    # v5: the hint taken by odds (Verbosity.hint_by_sure)
    _version: ClassVar[str] = "scan-v5"
    _data_fingerprint: ClassVar[str] = "19f3b8d9790c"
    _cache_prefix: ClassVar[str] = "toy-scan-base"
    # 1200 steps: 2.7 min instead of 5 on 2 cores, so `make bench-quick` fits 10 minutes from nothing;
    # 0.90 accuracy at 3.3x minimal on the quick Pareto's 60 problems (the full base: 0.92 at 3.0x)
    quick_steps: ClassVar[int] = 1200


# The base of each toy task, by task name (`conciser toy-base --task NAME`, model.name_or_path: NAME).
BASE_CONFIGS: dict[str, type[ToyBaseConfig]] = {"toy": ToyBaseConfig, "toy-chain": ToyBaseConfig, "toy-scan": ScanBaseConfig}


def base_config(task: str, quick: bool = False) -> ToyBaseConfig:
    """The default base config of toy task `task`; `quick`: its shorter build (`quick_steps` SFT steps),
    the one the `--quick` benches train from."""
    toy.task(task)  # unknown names fail here, with the list of tasks
    cfg = BASE_CONFIGS[task]()
    return dataclasses.replace(cfg, steps=cfg.quick_steps) if quick and cfg.quick_steps else cfg


def toy_base_dir(cfg: ToyBaseConfig | None = None) -> Path:
    """Where the toy base for `cfg` is cached ($CONCISER_CACHE, default ~/.cache/conciser)."""
    root = Path(os.environ.get("CONCISER_CACHE", Path.home() / ".cache" / "conciser"))
    cfg = cfg or ToyBaseConfig()
    return root / f"{cfg._cache_prefix}-{cfg.key()}"


def sft_data_fingerprint(cfg: ToyBaseConfig, per_level: int = 40) -> str:
    """A hash of what the base of `cfg` is trained on: the token ids of fixed-seed verbose and minimal
    traces (prompts included) of every level it sees, so it changes with the tokenizer, the problem
    generator and the trace code. Not part of `key()` (that would rename every cached base and every
    committed result's base); `tests/trainers/test_toy_sft.py` holds it against `_data_fingerprint`."""
    task = toy.task(cfg.task)
    tokenizer = task.build_tokenizer()
    rng = random.Random(0)
    digest = hashlib.sha1()
    for level in sorted({*cfg.easy_levels, *task.LEVELS}):
        for _ in range(per_level):
            p = task.make_problem(rng, level)
            for text in (task.verbose_trace(p, rng, cfg.verbosity), task.minimal_trace(p)):
                digest.update(json.dumps(_encode_example(tokenizer, p, text)).encode())
    return digest.hexdigest()[:12]


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
        do_sample=True, temperature=1.0, top_p=1.0, max_new_tokens=toy.task(cfg.task).DEFAULT_MAX_COMPLETION,
    )
    return model


def _encode_example(tokenizer, problem, completion: str) -> tuple[list[int], int]:
    prompt = tokenizer.apply_chat_template(problem.to_row()["prompt"], tokenize=False, add_generation_prompt=True)
    p_ids = tokenizer(prompt, add_special_tokens=False).input_ids
    c_ids = tokenizer(completion, add_special_tokens=False).input_ids
    return p_ids + c_ids, len(p_ids)


def _batches(tokenizer, rng: random.Random, cfg: ToyBaseConfig, level: int, minimal: bool = False,
             n: int = 1) -> list[tuple]:
    """`n` batches (ids, mask, labels, tokens) of fresh traces of one level, labels on completion tokens only.

    The n * batch_size traces are sorted by length before they are cut into batches, in a random
    batch order: verbose traces of one level vary 2x in length, and padding costs attention
    quadratically (n=8 cuts padding from 21% to 5% and the step time by a quarter). `tokens` is the
    mean label count of the n batches: dividing each batch's summed loss by it keeps every token's
    weight what it is in unsorted batches (a per-batch mean would overweight the batch of shortest
    traces, which holds the shortcut guesses, and the base would learn to guess)."""
    import torch

    task = toy.task(cfg.task)
    seqs = []
    for _ in range(cfg.batch_size * n):
        p = task.make_problem(rng, level)
        text = task.minimal_trace(p) if minimal else task.verbose_trace(p, rng, cfg.verbosity)
        seqs.append(_encode_example(tokenizer, p, text))
    if n > 1:
        seqs.sort(key=lambda s: len(s[0]))
    tokens = sum(len(s) - n_prompt for s, n_prompt in seqs) / n   # label tokens per batch, on average
    out = []
    for chunk in (seqs[i * cfg.batch_size:(i + 1) * cfg.batch_size] for i in range(n)):
        width = max(len(s) for s, _ in chunk)
        ids = torch.full((len(chunk), width), tokenizer.pad_token_id)
        labels = torch.full((len(chunk), width), -100)
        mask = torch.zeros((len(chunk), width), dtype=torch.long)
        for i, (s, n_prompt) in enumerate(chunk):
            ids[i, : len(s)] = torch.tensor(s)
            labels[i, n_prompt : len(s)] = torch.tensor(s[n_prompt:])
            mask[i, : len(s)] = 1
        out.append((ids, mask, labels, tokens))
    rng.shuffle(out)
    return out


def result_digit_accuracy(model, tokenizer, cfg: ToyBaseConfig, n: int = 16) -> float:
    """Teacher-forced accuracy of the step results on fresh verbose traces of every level ("b9:1=[0]"
    in toy-chain; that and the stop decision "c0:0[ stop]" in toy-scan): a cheap check that the base learned the steps, without sampling."""
    import torch

    rng = random.Random(12345)
    task = toy.task(cfg.task)
    if cfg.task == "toy-scan":  # no slips or hint answers to mask out: every step's result is right
        cfg = dataclasses.replace(cfg, verbosity=dataclasses.replace(cfg.verbosity, p_slip=0.0, hint_by_sure={}))
    right = total = 0
    was_training = model.training
    model.eval()
    with torch.no_grad():
        for level in task.LEVELS:
            ids, mask, labels, _ = _batches(tokenizer, rng, dataclasses.replace(cfg, batch_size=n), level)[0]
            pred = model(input_ids=ids, attention_mask=mask).logits.argmax(-1)
            # position t predicts token t+1, a step result
            keep = _result_positions(tokenizer, ids, labels, cfg.task)
            right += (pred[:, :-1][keep] == ids[:, 1:][keep]).sum().item()
            total += keep.sum().item()
    model.train(was_training)
    return right / max(total, 1)


def _result_positions(tokenizer, ids, labels, task: str):
    """Positions t (of ids[:, :-1]) whose next token is a step result in the completion."""
    import torch

    in_completion = labels[:, 1:] != -100
    at = (ids[:, :-1] == tokenizer.convert_tokens_to_ids("=")) & in_completion  # "b9:1=[0]"
    if task == "toy-scan":
        # and the stop decision after the total: "b9:1[=]" or "c0:0[ stop]"
        prev = torch.cat([torch.full_like(ids[:, :1], -1), ids[:, :-2]], dim=1)
        return at | ((prev == tokenizer.convert_tokens_to_ids(":")) & in_completion)
    return at & ~_slip_mask(tokenizer, ids)[:, 1:]


def _slip_mask(tokenizer, ids):
    """True at result digits that are deliberate slips (the trace fixes them with "fix.")."""
    import torch

    fix = tokenizer.convert_tokens_to_ids("Ġfix")
    eq = tokenizer.convert_tokens_to_ids("=")
    mask = torch.zeros_like(ids, dtype=torch.bool)
    for b in range(ids.size(0)):
        row = ids[b].tolist()
        for i, t in enumerate(row):
            if t == fix:
                # "xV:P=W. wait, check xV:P=R. fix." -> the slipped W is the result 2 "=" back.
                eqs = [j for j in range(i) if row[j] == eq]
                if len(eqs) >= 2:
                    mask[b, eqs[-2] + 1] = True
    return mask


def train_toy_base(out: Path, cfg: ToyBaseConfig | None = None, progress: bool = True) -> Path:
    """Train the toy base from scratch and save model + tokenizer to `out` (atomically)."""
    import torch
    from tqdm.auto import tqdm

    cfg = cfg or ToyBaseConfig()
    torch.manual_seed(cfg.seed)
    task = toy.task(cfg.task)
    tokenizer = task.build_tokenizer()
    model = build_model(cfg, tokenizer)
    # eager attention trains ~10% faster than SDPA's CPU kernels at this size; not saved with the model
    model.set_attn_implementation("eager")
    n_params = sum(p.numel() for p in model.parameters())
    log.info("toy base: %d parameters, %d SFT steps of %d", n_params, cfg.steps, cfg.batch_size)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.98))

    def lr_at(step: int) -> float:
        if step < cfg.warmup:
            return (step + 1) / cfg.warmup
        # constant through the curriculum, then cosine down to 5% over the verbose phase
        frac = max(0.0, (step - cfg.minimal_steps) / max(1, cfg.steps - cfg.minimal_steps))
        return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * frac))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
    rng = random.Random(cfg.seed)
    levels = list(task.LEVELS)
    queues: dict[tuple[int, bool], list] = {}
    model.train()
    t0 = time.time()
    bar = tqdm(range(cfg.steps), desc="toy base SFT", disable=not progress)
    for step in bar:
        pool = cfg.easy_levels if step < cfg.easy_steps else levels
        which = (pool[step % len(pool)], step < cfg.minimal_steps)
        if not queues.get(which):
            queues[which] = _batches(tokenizer, rng, cfg, *which, n=cfg.bucket)
        ids, mask, labels, tokens = queues[which].pop()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=cfg.bf16):
            loss = model(input_ids=ids, attention_mask=mask, labels=labels, num_items_in_batch=tokens).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        if step % 10 == 0:
            bar.set_postfix(loss=f"{loss.item():.3f}")
        if progress and (step + 1) % 500 == 0:  # 4-5 s each on 2 cores
            log.info("step %d: loss %.3f, step-result digit accuracy %.4f", step + 1, loss.item(),
                     result_digit_accuracy(model, tokenizer, cfg))
    model.eval()
    model.set_attn_implementation("sdpa")
    digit_acc = result_digit_accuracy(model, tokenizer, cfg)
    tmp = out.with_name(out.name + ".tmp")
    tmp.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    (tmp / "toy_base.json").write_text(json.dumps(
        {"task": cfg.task, "config": dataclasses.asdict(cfg), "parameters": n_params, "build_seconds": round(time.time() - t0, 1),
         "final_loss": round(loss.item(), 4), "result_digit_accuracy": round(digit_acc, 4)}, indent=2))
    if out.exists():
        import shutil
        shutil.rmtree(out)
    tmp.rename(out)
    return out


def ensure_toy_base(cfg: ToyBaseConfig | None = None, force: bool = False, progress: bool = True) -> Path:
    """The cached toy base for `cfg`, built first if missing (or if `force`)."""
    cfg = cfg or ToyBaseConfig()
    out = toy_base_dir(cfg)
    if force or not (out / "toy_base.json").exists():
        log.info("building the toy base model in %s", out)
        train_toy_base(out, cfg, progress=progress)
    return out
