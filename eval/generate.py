"""Generation and resume: prompts, per-sample seeds, the crash-safe samples file, the run identity.

A run folder's `samples.jsonl` gets one line per finished sample, appended and flushed as it
finishes; `read_samples` drops a line cut off by a crash. Every sample has its own seed (from the
run's seed, the benchmark, the problem id and the sample index), so a sample is the same whether it
is generated in one go, in rounds (certaindex early stopping), or after a crash. `run.json` holds the
settings that must not change between a run and its resumption (`identity`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from conciser.errors import UserError
from conciser.eval.benchmarks import Benchmark, Problem
from conciser.eval.config import EvalConfig

log = logging.getLogger(__name__)

THINK_OPEN_TAGS = ("<think>",)


# ---------------------------------------------------------------- prompts


@dataclass
class Prompts:
    ids: list[list[int]]
    think_prefill: str        # text the template put after the generation prompt ("" if none)
    chat_template: bool


def render_prompts(tokenizer, bench: Benchmark, problems: list[Problem], *, system_prompt: str | None,
                   chat_template: str, think: str) -> Prompts:
    """Token ids of each problem's prompt: the benchmark template, then the model's chat template.

    think="auto" detects a template that opens the think block in the prompt (R1-distill's newer
    template ends with "<think>\\n"); "force" appends "<think>\\n" when it does not; "off" ignores it.
    The pre-filled text is prepended to each completion before grading, so that thinking cut off by
    the cap is not credited with a box it only considered. A problem with a target length
    (`meta["target_instruction"]`, see `with_targets`) gets that instruction after the template.
    """
    use_chat = chat_template == "auto" and getattr(tokenizer, "chat_template", None)
    if chat_template == "auto" and not use_chat:
        log.warning("the tokenizer has no chat template: prompts are the raw benchmark text")
    texts = []
    for p in problems:
        user = bench.user_message(p)
        if p.meta.get("target_instruction"):
            user = f"{user} {p.meta['target_instruction']}"
        if use_chat:
            msgs = ([{"role": "system", "content": system_prompt}] if system_prompt else []) + [{"role": "user", "content": user}]
            texts.append(tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True))
        else:
            texts.append((system_prompt + "\n\n" if system_prompt else "") + user)
    prefill = ""
    if think != "off" and texts:
        tail = texts[0].rstrip()
        for tag in THINK_OPEN_TAGS:
            if tail.endswith(tag):
                prefill = texts[0][texts[0].rfind(tag):]
        if not prefill and think == "force":
            prefill = "<think>\n"
            texts = [t + prefill for t in texts]
    ids = [list(tokenizer(t, add_special_tokens=not use_chat).input_ids) for t in texts]
    return Prompts(ids=ids, think_prefill=prefill, chat_template=bool(use_chat))


def with_targets(problems: list[Problem], targets: list[int], prompt: str) -> list[Problem]:
    """Each problem once per target length N, its id suffixed "@N", the instruction `prompt` (with
    {n}) appended to its user message, as L1 states a budget."""
    import dataclasses

    return [dataclasses.replace(p, id=f"{p.id}@{n}", meta={**p.meta, "target_length": n,
                                                           "target_instruction": prompt.format(n=n)})
            for n in targets for p in problems]


def load_tokenizer(model: str):
    """The model's tokenizer. A plain tokenizers-library tokenizer (tokenizer_class TokenizersBackend /
    PreTrainedTokenizerFast, e.g. the toy's word-level one) is loaded as such: AutoTokenizer would
    rebuild it as the model type's tokenizer (Qwen2's byte-level BPE), which encodes and decodes
    its text differently."""
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    cfg = Path(model).expanduser() / "tokenizer_config.json"
    try:
        if cfg.is_file() and json.loads(cfg.read_text()).get("tokenizer_class") in ("TokenizersBackend", "PreTrainedTokenizerFast"):
            return PreTrainedTokenizerFast.from_pretrained(model)
        return AutoTokenizer.from_pretrained(model)
    except OSError as exc:
        raise UserError(f"--model: cannot load the tokenizer of {model}: {exc}") from None


def sample_seed(seed: int, benchmark: str, problem_id: str, sample: int, extra: str = "") -> int:
    h = hashlib.sha256(f"{seed}|{benchmark}|{problem_id}|{sample}{extra}".encode()).digest()
    return int.from_bytes(h[:4], "little") & 0x7FFFFFFF


# ---------------------------------------------------------------- samples files


def read_samples(path: Path, key: Callable[[dict], tuple] = lambda r: (r.get("problem_id"), r.get("sample"))) -> list[dict]:
    """Records of a JSONL samples file; a line cut off by a crash is dropped (and the file repaired).
    A key seen twice keeps its first record (generation only ever appends missing keys)."""
    if not path.exists():
        return []
    records, bad = [], 0
    seen = set()
    with open(path, encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                continue
            try:
                r = json.loads(line)
            except json.JSONDecodeError:
                bad += 1
                continue
            k = key(r)
            if k in seen:
                continue
            seen.add(k)
            records.append(r)
    if bad:
        log.warning("%s: dropped %d unreadable line(s) (an interrupted write); they will be regenerated", path, bad)
        write_samples(path, records)
    return records


def write_samples(path: Path, records: list[dict]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(path)


class Appender:
    """Appends records to a samples file as they finish, flushed line by line."""

    def __init__(self, path: Path):
        self.f = open(path, "a", encoding="utf-8")
        self.last_sync = time.time()

    def __call__(self, record: dict) -> None:
        self.f.write(json.dumps(record, ensure_ascii=False) + "\n")
        self.f.flush()
        if time.time() - self.last_sync > 5:
            os.fsync(self.f.fileno())
            self.last_sync = time.time()

    def close(self) -> None:
        self.f.flush()
        os.fsync(self.f.fileno())
        self.f.close()


# ---------------------------------------------------------------- run identity and backend


def identity(cfg: EvalConfig, bench: Benchmark, prompts: Prompts, sampling: dict) -> dict:
    """What must not change between a run and its resumption. Early stopping, budgets and the
    extraction mode are not in it: they read the same samples (a full run's samples serve an
    early-stopped one, and re-grading with another extraction is `--rescore --extraction ...`)."""
    ident = {
        "model": str(Path(cfg.model).expanduser().resolve()) if Path(cfg.model).expanduser().exists() else cfg.model,
        "benchmark": bench.name, "source": bench.source, "grader": bench.grader, "template": bench.template,
        "system_prompt": cfg.system_prompt, "chat_template": prompts.chat_template,
        "think_prefilled": bool(prompts.think_prefill), "backend": cfg.backend, "seed": cfg.seed, **sampling,
        "early_exit": cfg.early_exit, "target_lengths": cfg.target_lengths,
    }
    if cfg.early_exit:
        ident.update(dynasor_window=cfg.dynasor_window, dynasor_chunk=cfg.dynasor_chunk,
                     dynasor_probe_tokens=cfg.dynasor_probe_tokens)
    if cfg.target_lengths:
        ident["target_prompt"] = cfg.target_prompt
    return ident


def check_identity(path: Path, ident: dict, overwrite: bool) -> None:
    if path.exists() and not overwrite:
        old = json.loads(path.read_text())
        diff = {k: (old.get(k), v) for k, v in ident.items() if old.get(k) != v}
        if diff:
            what = "; ".join(f"{k}: {a!r} there, {b!r} now" for k, (a, b) in diff.items())
            raise UserError(f"{path.parent} holds samples of a different run ({what}). "
                            "Give another output folder (--out) or pass --overwrite to discard them")


def backend_factory(cfg: EvalConfig, tokenizer, max_model_len: int):
    from conciser.eval import backends

    if cfg.backend == "transformers":
        return backends.TransformersBackend(cfg.model, tokenizer, batch_size=cfg.batch_size, dtype=cfg.dtype)
    extra = dict(cfg.vllm_args or {})
    if backends._visible_gpus() is None:
        extra.setdefault("enforce_eager", True)   # CPU: torch.compile costs ~1 min at start and gains little
    return backends.VLLMBackend(
        cfg.model, tokenizer, tensor_parallel_size=cfg.tensor_parallel_size, data_parallel_size=cfg.data_parallel_size,
        max_model_len=cfg.max_model_len or max_model_len, gpu_memory_utilization=cfg.gpu_memory_utilization,
        dtype=cfg.dtype, enable_prefix_caching=cfg.enable_prefix_caching, extra=extra)


# ---------------------------------------------------------------- generating samples


class SampleGenerator:
    """Generates (problem, sample) pairs of one benchmark into `records` and its samples file.

    `keep_ids`: also save each sample's generated token ids (the budget sweep cuts them)."""

    def __init__(self, cfg: EvalConfig, bench: Benchmark, problems: list[Problem], prompts: Prompts, tokenizer,
                 get_backend, path: Path, records: list[dict], *, temperature: float, top_p: float,
                 keep_ids: bool = False, equal=None):
        self.cfg, self.bench, self.prompts, self.tokenizer = cfg, bench, prompts, tokenizer
        self.get_backend, self.path, self.records = get_backend, path, records
        self.temperature, self.top_p, self.keep_ids, self.equal = temperature, top_p, keep_ids, equal
        self.index = {p.id: i for i, p in enumerate(problems)}
        self.answers = {p.id: p.answer for p in problems}
        self.generated = 0
        self.seconds = 0.0

    def missing(self, pairs: list[tuple[Problem, int]]) -> list[tuple[Problem, int]]:
        have = {(r["problem_id"], r["sample"]) for r in self.records}
        return [(p, j) for p, j in pairs if (p.id, j) not in have]

    def __call__(self, pairs: list[tuple[Problem, int]]) -> int:
        """Generate the pairs not saved yet; returns how many were generated."""
        from conciser.eval.backends import Request

        todo = self.missing(pairs)
        if not todo:
            return 0
        cfg, bench = self.cfg, self.bench
        log.info("%s: generating %d samples (%d already saved)", bench.name, len(todo), len(self.records))
        backend = self.get_backend()
        reqs = [Request(key=f"{p.id}\t{j}", prompt_ids=self.prompts.ids[self.index[p.id]], max_tokens=bench.max_new_tokens,
                        seed=sample_seed(cfg.seed, bench.name, p.id, j), group=p.id) for p, j in todo]
        appender = Appender(self.path)

        def record(key: str, token_ids: list[int], reason: str, **extra) -> None:
            pid, j = key.split("\t")
            r = {"benchmark": bench.name, "problem_id": pid, "sample": int(j),
                 "seed": sample_seed(cfg.seed, bench.name, pid, int(j)), "answer": self.answers[pid],
                 "prompt_tokens": len(self.prompts.ids[self.index[pid]]), "tokens": len(token_ids),
                 "finish_reason": reason, "text": self.tokenizer.decode(token_ids, skip_special_tokens=True), **extra}
            if self.keep_ids:
                r["token_ids"] = list(token_ids)
            self.records.append(r)
            appender(r)

        t0 = time.time()
        try:
            if cfg.early_exit == "dynasor":
                from conciser.eval.dynasor import dynasor_generate

                dynasor_generate(backend, reqs, tokenizer=self.tokenizer, bench=bench, prefill=self.prompts.think_prefill,
                                 window=cfg.dynasor_window, chunk=cfg.dynasor_chunk,
                                 probe_tokens=cfg.dynasor_probe_tokens, temperature=self.temperature, top_p=self.top_p,
                                 equal=self.equal,
                                 on_done=lambda g: record(g.key, g.token_ids, g.finish_reason, probe_tokens=g.probe_tokens,
                                                          probes=g.probes),
                                 progress=cfg.progress)
            else:
                backend.generate(reqs, temperature=self.temperature, top_p=self.top_p, progress=cfg.progress,
                                 desc=f"{bench.name} generate", on_done=lambda g: record(g.key, g.token_ids, g.finish_reason))
        finally:
            appender.close()
        self.seconds += time.time() - t0
        self.generated += len(todo)
        return len(todo)
