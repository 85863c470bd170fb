"""Evaluate a model on benchmarks: generate, grade with the training grader, summarise, save.

    from conciser.eval.run import evaluate
    summary = evaluate("path/to/model", benchmark="toy", n=4)          # transformers backend
    summary = evaluate("path/to/model", benchmark="math500", n=16, backend="vllm", out_dir="runs/eval/base")

Per benchmark, `OUT/<benchmark>/` holds
  run.json       the generation settings; a re-run into the same folder must match them
  samples.jsonl  one line per sample, appended as samples finish (crash-safe): benchmark,
                 problem_id, sample, seed, answer (gold), text, prompt_tokens, tokens,
                 finish_reason ("stop" | "length" | "early_exit"), then after grading correct,
                 extracted, timed_out, grade_error; with --early-exit also probe_tokens, probes
  summary.json   the summary below
Re-running the same command resumes: only missing (problem, sample) pairs are generated, and
samples already graded keep their verdict (`rescore=True` re-grades all, without generating).
Every sample has its own seed (from `seed`, the problem id and the sample index), so a sample is
the same whether generated in one go or after a crash, and `n` can be raised later.

Summary keys (flat; None where undefined):
  benchmark, model, backend, n, n_problems, n_samples
  accuracy            avg@n: mean over problems of the fraction of correct samples (R1's "pass@1")
  accuracy_stderr     standard error of accuracy over problems
  pass@K              unbiased pass@k for each K in `ks` (default 1, 2, 4, ... up to n)
  maj@K               majority vote over the first K samples, answers clustered by equivalence (K > 1)
  mean_tokens, median_tokens, p90_tokens                       all samples (generated token ids)
  mean_tokens_correct, ..._incorrect (and median/p90 of each)  correct / incorrect samples
  max_tokens_seen, truncation_rate (finish "length"), no_answer_rate
  accuracy_per_1k_tokens   accuracy / (mean_tokens / 1000)
  grading_timeouts, grading_errors   samples whose grading timed out / whose worker crashed
  aes, aes_delta_length, aes_delta_accuracy, aes_baseline, aes_alpha, aes_beta, aes_gamma
                      only with `baseline=RUN` (AES of O1-Pruner; defaults alpha=1, beta=3, gamma=5)
  mean_probe_tokens, mean_total_tokens, early_exit_rate, dynasor_window, dynasor_chunk
                      only with early_exit="dynasor" (mean_tokens is then the main trajectory)
  mean_minimal_tokens, tokens_over_minimal   toy only: mean tokens / mean minimal tokens (1.0 = limit)
  by_level            {level (a string, as in JSON): {n_problems, accuracy, mean_tokens,
                      truncation_rate[, mean_minimal_tokens]}} when problems have a level (toy, MATH-500)
  temperature, top_p, max_new_tokens, seed, template, system_prompt, chat_template, think_prefilled,
  grader, source, early_exit
  samples_generated, generation_seconds, grading_seconds   this invocation only (VOLATILE_KEYS)
The returned dict equals the saved summary.json.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

from conciser.eval.benchmarks import Benchmark, Problem, load_benchmark

log = logging.getLogger(__name__)

DEFAULT_TEMPERATURE = 0.6
DEFAULT_TOP_P = 0.95
# Keys of a summary that describe this invocation rather than the results.
VOLATILE_KEYS = ("samples_generated", "generation_seconds", "grading_seconds")
THINK_OPEN_TAGS = ("<think>",)


@dataclass
class EvalConfig:
    """Every option of `evaluate` (the CLI flags map onto these one to one)."""

    model: str
    benchmarks: list[str] = field(default_factory=lambda: ["toy"])
    n: int = 1
    out_dir: str | Path | None = None
    backend: str = "transformers"            # transformers | vllm
    max_new_tokens: int | None = None        # default: the benchmark's (toy 160, math 32768)
    temperature: float | None = None         # default 0.6
    top_p: float | None = None               # default 0.95
    limit: int | None = None                 # first N problems of each benchmark
    seed: int = 0
    batch_size: int = 64                     # transformers backend
    progress: bool = True
    ks: list[int] | None = None              # pass@k / maj@k; default powers of two up to n, and n
    # benchmark and prompt
    columns: dict[str, str] | None = None    # user data: {"question": col, "answer": col, "id": col}
    split: str = "test"                      # hf:<id> benchmarks
    grader: str | None = None                # override the benchmark's grader ("math" | "toy")
    template: str | None = None              # "r1" | "plain" | a format string with {problem}
    system_prompt: str | None = None
    chat_template: str = "auto"              # auto (the tokenizer's) | none (raw text)
    think: str = "auto"                      # auto (detect a pre-filled <think>) | force | off
    # early exit
    early_exit: str | None = None            # None | "dynasor"
    dynasor_window: int = 3
    dynasor_chunk: int = 64
    dynasor_probe_tokens: int = 20
    # metrics and outputs
    baseline: str | Path | None = None       # a run folder (or summary.json) to compute AES against
    aes_alpha: float = 1.0
    aes_beta: float = 3.0
    aes_gamma: float = 5.0
    rescore: bool = False
    overwrite: bool = False
    print_table: bool = True
    wandb: bool = False
    wandb_project: str = "conciser-eval"
    wandb_run_name: str | None = None
    grading_timeout: float = 5.0
    grading_workers: int | None = None
    # vLLM
    tensor_parallel_size: int = 1
    data_parallel_size: int = 1
    max_model_len: int | None = None
    gpu_memory_utilization: float | None = None
    dtype: str | None = None
    enable_prefix_caching: bool = True
    vllm_args: dict | None = None            # any other vllm.LLM keyword

    def resolved_out(self) -> Path:
        if self.out_dir is not None:
            return Path(self.out_dir)
        return Path("eval_runs") / re.sub(r"[^A-Za-z0-9._-]+", "_", Path(str(self.model).rstrip("/")).name or "model")


# ---------------------------------------------------------------- validation


def _check_model(model: str) -> None:
    p = Path(model).expanduser()
    if p.exists():
        if not (p / "config.json").exists():
            raise FileNotFoundError(f"model folder {model} has no config.json; point --model at a saved model "
                                    "(save_pretrained output or a checkpoint folder)")
        return
    # Not a local path: accept a hub id (owner/name) for machines with hub access, nothing else.
    if re.fullmatch(r"[A-Za-z0-9][\w.-]*/[\w.-]+", model) is None:
        raise FileNotFoundError(f"model path {model} does not exist; give a saved model folder or a hub id (owner/name)")


def _default_ks(n: int) -> list[int]:
    ks, k = [], 1
    while k <= n:
        ks.append(k)
        k *= 2
    return ks + ([n] if ks[-1] != n else [])


def _validate(cfg: EvalConfig) -> None:
    if cfg.n < 1:
        raise ValueError(f"n must be >= 1, got {cfg.n}")
    if cfg.ks is not None:
        bad = [k for k in cfg.ks if k < 1 or k > cfg.n]
        if bad:
            raise ValueError(f"pass@k/maj@k with k={bad} needs n >= k samples per problem, but n={cfg.n}; "
                             f"raise --n to {max(bad)} or drop those k")
    if cfg.backend not in ("transformers", "vllm"):
        raise ValueError(f"unknown backend {cfg.backend!r}; use transformers or vllm")
    if cfg.early_exit not in (None, "dynasor"):
        raise ValueError(f"unknown early exit {cfg.early_exit!r}; the only one is dynasor")
    if cfg.early_exit and (cfg.dynasor_window < 1 or cfg.dynasor_chunk < 1):
        raise ValueError("dynasor window and chunk must be >= 1")
    if cfg.think not in ("auto", "force", "off"):
        raise ValueError(f"think must be auto, force or off, got {cfg.think!r}")
    if cfg.chat_template not in ("auto", "none"):
        raise ValueError(f"chat_template must be auto or none, got {cfg.chat_template!r}")
    if cfg.limit is not None and cfg.limit < 1:
        raise ValueError(f"limit must be >= 1, got {cfg.limit}")
    t = cfg.temperature
    if t is not None and t < 0:
        raise ValueError(f"temperature must be >= 0, got {t}")
    if cfg.top_p is not None and not 0 < cfg.top_p <= 1:
        raise ValueError(f"top_p must be in (0, 1], got {cfg.top_p}")
    _check_model(str(cfg.model))
    if cfg.baseline is not None:
        _find_summary(cfg.baseline, None)   # exists and readable


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
    the cap is not credited with a box it only considered.
    """
    use_chat = chat_template == "auto" and getattr(tokenizer, "chat_template", None)
    if chat_template == "auto" and not use_chat:
        log.warning("the tokenizer has no chat template: prompts are the raw benchmark text")
    texts = []
    for p in problems:
        user = bench.user_message(p)
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


def load_tokenizer(model: str):
    """The model's tokenizer. A plain tokenizers-library tokenizer (tokenizer_class TokenizersBackend /
    PreTrainedTokenizerFast, e.g. the toy's word-level one) is loaded as such: AutoTokenizer would
    rebuild it as the model type's tokenizer (Qwen2's byte-level BPE), which encodes and decodes
    its text differently."""
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    cfg = Path(model).expanduser() / "tokenizer_config.json"
    if cfg.is_file() and json.loads(cfg.read_text()).get("tokenizer_class") in ("TokenizersBackend", "PreTrainedTokenizerFast"):
        return PreTrainedTokenizerFast.from_pretrained(model)
    return AutoTokenizer.from_pretrained(model)


def sample_seed(seed: int, benchmark: str, problem_id: str, sample: int) -> int:
    h = hashlib.sha256(f"{seed}|{benchmark}|{problem_id}|{sample}".encode()).digest()
    return int.from_bytes(h[:4], "little") & 0x7FFFFFFF


# ---------------------------------------------------------------- samples file


def read_samples(path: Path) -> list[dict]:
    """Records of samples.jsonl; a line cut off by a crash is dropped (and the file repaired)."""
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
            key = (r.get("problem_id"), r.get("sample"))
            if key in seen:
                continue
            seen.add(key)
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


class _Appender:
    """Appends records to samples.jsonl as they finish, flushed line by line."""

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


# ---------------------------------------------------------------- grading


def grade_records(records: list[dict], grader: str, *, prefill: str, timeout: float, workers: int | None,
                  progress: bool) -> None:
    """Fill correct / extracted / timed_out / grade_error in place, with the training grader."""
    from conciser.rewards.grading import get_grader

    if not records:
        return
    grades = get_grader(grader)(golds=[r["answer"] for r in records],
                                completions=[prefill + r["text"] for r in records],
                                timeout=timeout, workers=workers, progress=progress)
    for r, g in zip(records, grades):
        r.update(correct=bool(g.correct), extracted=g.extracted, timed_out=bool(g.timed_out), grade_error=g.error)


def equivalence(grader: str, timeout: float, workers: int | None):
    """pairs -> [b equals a] with the grader (a as gold), for maj@k clustering."""
    from conciser.rewards.grading import get_grader

    def equal(pairs: list[tuple[str, str]]) -> list[bool]:
        grades = get_grader(grader)(golds=[a for a, _ in pairs], completions=[f"\\boxed{{{b}}}" for _, b in pairs],
                                    timeout=timeout, workers=workers)
        return [g.correct for g in grades]

    return equal


# ---------------------------------------------------------------- the run


def _find_summary(run: str | Path, benchmark: str | None) -> dict | None:
    """The summary of `benchmark` in a run folder / benchmark folder / summary.json (None if absent)."""
    p = Path(run)
    if not p.exists():
        raise FileNotFoundError(f"baseline run {run} does not exist; give an eval output folder or its summary.json")
    if benchmark is None:
        return None
    for cand in (p, p / "summary.json", p / benchmark / "summary.json"):
        if cand.is_file():
            s = json.loads(cand.read_text())
            if s.get("benchmark") == benchmark:
                return s
    return None


def _backend_factory(cfg: EvalConfig, tokenizer, max_model_len: int):
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


def _identity(cfg: EvalConfig, bench: Benchmark, prompts: Prompts, sampling: dict) -> dict:
    """What must not change between a run and its resumption."""
    ident = {
        "model": str(Path(cfg.model).expanduser().resolve()) if Path(cfg.model).expanduser().exists() else cfg.model,
        "benchmark": bench.name, "source": bench.source, "grader": bench.grader, "template": bench.template,
        "system_prompt": cfg.system_prompt, "chat_template": prompts.chat_template,
        "think_prefilled": bool(prompts.think_prefill), "backend": cfg.backend, "seed": cfg.seed, **sampling,
        "early_exit": cfg.early_exit,
    }
    if cfg.early_exit:
        ident.update(dynasor_window=cfg.dynasor_window, dynasor_chunk=cfg.dynasor_chunk,
                     dynasor_probe_tokens=cfg.dynasor_probe_tokens)
    return ident


def _check_identity(path: Path, ident: dict, overwrite: bool) -> None:
    if path.exists() and not overwrite:
        old = json.loads(path.read_text())
        diff = {k: (old.get(k), v) for k, v in ident.items() if old.get(k) != v}
        if diff:
            what = "; ".join(f"{k}: {a!r} there, {b!r} now" for k, (a, b) in diff.items())
            raise ValueError(f"{path.parent} holds samples of a different run ({what}). "
                             "Give another output folder (--out) or pass --overwrite to discard them")


def evaluate_many(cfg: EvalConfig, _backend=None) -> dict[str, dict]:
    """Run every benchmark of `cfg`; returns {benchmark: summary}. All input is checked first.
    `_backend`: an already started backend for `cfg.model` to reuse (tests); it is not closed here."""
    _validate(cfg)
    benches = [load_benchmark(b, columns=cfg.columns, split=cfg.split, grader=cfg.grader, template=cfg.template,
                              max_new_tokens=cfg.max_new_tokens) for b in cfg.benchmarks]
    if len({b.name for b in benches}) != len(benches):
        raise ValueError(f"benchmark listed twice: {cfg.benchmarks}")
    out_root = cfg.resolved_out()
    if cfg.rescore:
        missing = [b.name for b in benches if not (out_root / b.name / "samples.jsonl").exists()]
        if missing:
            raise FileNotFoundError(f"--rescore: no samples.jsonl for {missing} under {out_root}; run without --rescore first")

    try:
        tokenizer = load_tokenizer(cfg.model)
    except OSError as exc:
        raise FileNotFoundError(f"cannot load the tokenizer of {cfg.model}: {exc}") from None
    temperature = DEFAULT_TEMPERATURE if cfg.temperature is None else float(cfg.temperature)
    top_p = DEFAULT_TOP_P if cfg.top_p is None else float(cfg.top_p)
    ks = sorted(set(cfg.ks)) if cfg.ks else _default_ks(cfg.n)

    plans = []
    for bench in benches:
        problems = bench.problems[: cfg.limit] if cfg.limit else bench.problems
        prompts = render_prompts(tokenizer, bench, problems, system_prompt=cfg.system_prompt,
                                 chat_template=cfg.chat_template, think=cfg.think)
        plans.append((bench, problems, prompts))
    longest = max(len(i) for _, _, pr in plans for i in pr.ids)
    max_new = max(b.max_new_tokens for b in benches)
    probe_room = (cfg.dynasor_probe_tokens + 64) if cfg.early_exit else 0

    backend = None

    def get_backend():
        nonlocal backend
        if _backend is not None:
            return _backend
        if backend is None:
            backend = _backend_factory(cfg, tokenizer, longest + max_new + probe_room)
        return backend

    results = {}
    try:
        for bench, problems, prompts in plans:
            results[bench.name] = _evaluate_one(cfg, bench, problems, prompts, tokenizer, get_backend,
                                                temperature=temperature, top_p=top_p, ks=ks)
    finally:
        if backend is not None:
            backend.close()
    if cfg.wandb:
        _log_wandb(cfg, results)
    return results


def _evaluate_one(cfg: EvalConfig, bench: Benchmark, problems: list[Problem], prompts: Prompts, tokenizer,
                  get_backend, *, temperature: float, top_p: float, ks: list[int]) -> dict:
    out = cfg.resolved_out() / bench.name
    out.mkdir(parents=True, exist_ok=True)
    sampling = {"temperature": temperature, "top_p": top_p, "max_new_tokens": bench.max_new_tokens}
    ident = _identity(cfg, bench, prompts, sampling)
    samples_path = out / "samples.jsonl"
    if cfg.overwrite and not cfg.rescore:
        for f in ("samples.jsonl", "summary.json"):
            (out / f).unlink(missing_ok=True)
    _check_identity(out / "run.json", ident, cfg.overwrite)
    (out / "run.json").write_text(json.dumps(ident, indent=2) + "\n")

    records = read_samples(samples_path)
    have = {(r["problem_id"], r["sample"]) for r in records}
    index = {p.id: i for i, p in enumerate(problems)}
    todo = [(p, j) for p in problems for j in range(cfg.n) if (p.id, j) not in have]
    gen_seconds = 0.0
    if todo and cfg.rescore:
        log.warning("%s: --rescore grades the %d saved samples; %d are missing (run without --rescore to generate them)",
                    bench.name, len(records), len(todo))
    elif todo:
        from conciser.eval.backends import Request

        log.info("%s: generating %d samples (%d already saved)", bench.name, len(todo), len(have))
        backend = get_backend()
        reqs = [Request(key=f"{p.id}\t{j}", prompt_ids=prompts.ids[index[p.id]], max_tokens=bench.max_new_tokens,
                        seed=sample_seed(cfg.seed, bench.name, p.id, j), group=p.id) for p, j in todo]
        answers = {p.id: p.answer for p in problems}
        appender = _Appender(samples_path)

        def record(key: str, token_ids: list[int], reason: str, **extra) -> None:
            pid, j = key.split("\t")
            r = {"benchmark": bench.name, "problem_id": pid, "sample": int(j),
                 "seed": sample_seed(cfg.seed, bench.name, pid, int(j)), "answer": answers[pid],
                 "prompt_tokens": len(prompts.ids[index[pid]]), "tokens": len(token_ids), "finish_reason": reason,
                 "text": tokenizer.decode(token_ids, skip_special_tokens=True), **extra}
            records.append(r)
            appender(r)

        t0 = time.time()
        try:
            if cfg.early_exit == "dynasor":
                from conciser.eval.dynasor import dynasor_generate

                dynasor_generate(backend, reqs, tokenizer=tokenizer, bench=bench, prefill=prompts.think_prefill,
                                 window=cfg.dynasor_window, chunk=cfg.dynasor_chunk,
                                 probe_tokens=cfg.dynasor_probe_tokens, temperature=temperature, top_p=top_p,
                                 equal=equivalence(bench.grader, cfg.grading_timeout, cfg.grading_workers),
                                 on_done=lambda g: record(g.key, g.token_ids, g.finish_reason, probe_tokens=g.probe_tokens,
                                                          probes=g.probes),
                                 progress=cfg.progress)
            else:
                backend.generate(reqs, temperature=temperature, top_p=top_p, progress=cfg.progress,
                                 desc=f"{bench.name} generate",
                                 on_done=lambda g: record(g.key, g.token_ids, g.finish_reason))
        finally:
            appender.close()
        gen_seconds = time.time() - t0

    t0 = time.time()
    to_grade = records if cfg.rescore else [r for r in records if "correct" not in r]
    grade_records(to_grade, bench.grader, prefill=prompts.think_prefill, timeout=cfg.grading_timeout,
                  workers=cfg.grading_workers, progress=cfg.progress)
    if to_grade:
        records.sort(key=lambda r: (index.get(r["problem_id"], len(index)), r["problem_id"], r["sample"]))
        write_samples(samples_path, records)
    grade_seconds = time.time() - t0

    selected = [r for r in records if r["problem_id"] in index and r["sample"] < cfg.n]
    if cfg.rescore and not selected:
        raise ValueError(f"{samples_path} has no samples of the selected problems")
    meta = {p.id: p.meta for p in problems}
    for r in selected:
        m = meta[r["problem_id"]]
        if "level" in m:
            r.setdefault("level", m["level"])
        if "minimal_tokens" in m:
            r.setdefault("minimal_tokens", m["minimal_tokens"])
    from conciser.eval.metrics import summarize

    n_eff = cfg.n
    summary = {"benchmark": bench.name, "model": cfg.model, "backend": cfg.backend, "n": n_eff}
    summary.update(summarize(selected, n=n_eff, ks=[k for k in ks if k <= n_eff],
                             equivalent=equivalence(bench.grader, cfg.grading_timeout, cfg.grading_workers)))
    summary.update({k: ident[k] for k in ("temperature", "top_p", "max_new_tokens", "seed", "template",
                                          "system_prompt", "chat_template", "think_prefilled", "grader", "source",
                                          "early_exit")})
    if cfg.early_exit:
        summary.update(dynasor_window=cfg.dynasor_window, dynasor_chunk=cfg.dynasor_chunk)
    if cfg.baseline is not None:
        base = _find_summary(cfg.baseline, bench.name)
        if base is None:
            log.warning("baseline %s has no %s summary: no AES", cfg.baseline, bench.name)
        else:
            from conciser.eval.metrics import aes

            try:
                summary.update(aes(accuracy=summary["accuracy"], tokens=summary["mean_tokens"],
                                   base_accuracy=base["accuracy"], base_tokens=base["mean_tokens"] or 0,
                                   alpha=cfg.aes_alpha, beta=cfg.aes_beta, gamma=cfg.aes_gamma))
            except ValueError as exc:   # a baseline with zero accuracy or tokens has no relative change
                log.warning("no AES against %s: %s", cfg.baseline, exc)
                summary.update(aes=None, aes_delta_length=None, aes_delta_accuracy=None)
            summary.update(aes_baseline=str(cfg.baseline), aes_alpha=cfg.aes_alpha, aes_beta=cfg.aes_beta,
                           aes_gamma=cfg.aes_gamma)
    summary.update(samples_generated=len(todo) if not cfg.rescore else 0,
                   generation_seconds=round(gen_seconds, 2), grading_seconds=round(grade_seconds, 2))
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    if cfg.print_table:
        from conciser.eval.report import print_summary

        print_summary(summary)
    return summary


def _log_wandb(cfg: EvalConfig, results: dict[str, dict]) -> None:
    import wandb

    run = wandb.init(project=cfg.wandb_project, name=cfg.wandb_run_name or cfg.resolved_out().name, job_type="eval",
                     config={k: v for k, v in dataclasses.asdict(cfg).items() if k != "vllm_args"} | {"out_dir": str(cfg.resolved_out())})
    flat = {}
    for name, s in results.items():
        for k, v in s.items():
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                flat[f"eval/{name}/{k}"] = v
            elif k == "by_level":
                for lv, d in v.items():
                    for kk, vv in d.items():
                        flat[f"eval/{name}/level_{lv}/{kk}"] = vv
    run.log(flat)
    run.summary.update(flat)
    run.finish()


def evaluate(model: str, benchmark: str = "toy", n: int = 1, out_dir: str | Path | None = None,
             backend: str = "transformers", max_new_tokens: int | None = None, temperature: float | None = None,
             top_p: float | None = None, limit: int | None = None, seed: int = 0, batch_size: int = 64,
             progress: bool = True, **more) -> dict:
    """Evaluate `model` on one benchmark and return its summary (see the module docstring for keys).

    `more` takes any other `EvalConfig` field (ks, baseline, early_exit, columns, template, think, ...).
    Outputs go to `out_dir/<benchmark>/` (default `eval_runs/<model folder name>/<benchmark>/`).
    """
    known = {f.name for f in dataclasses.fields(EvalConfig)}
    unknown = sorted(set(more) - known)
    if unknown:
        import difflib

        hints = [f"{u} (did you mean {m[0]}?)" if (m := difflib.get_close_matches(u, known, 1)) else u for u in unknown]
        raise ValueError(f"evaluate() got unknown option(s): {', '.join(hints)}; see conciser.eval.run.EvalConfig")
    cfg = EvalConfig(model=str(model), benchmarks=[benchmark], n=n, out_dir=out_dir, backend=backend,
                     max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p, limit=limit, seed=seed,
                     batch_size=batch_size, progress=progress, **more)
    return next(iter(evaluate_many(cfg).values()))
