"""`EvalConfig`: every option of `conciser eval`, documented once, and its validation.

The CLI (`eval/cli.py`) is generated from these fields: each field's metadata holds its help text
and group, and optionally its flags, choices (a tuple or a callable returning a registry's names),
bounds and how to parse a command-line string. Defaults live only here. `validate(cfg)` checks
every value (types, bounds, choices, combinations) before any benchmark file, tokenizer or model is
loaded; errors are `conciser.errors.UserError` naming the option and the fix.
"""

from __future__ import annotations

import dataclasses
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path

from conciser.errors import UserError, did_you_mean

DEFAULT_TEMPERATURE = 0.6
DEFAULT_TOP_P = 0.95
DEFAULT_TAU = 0.8
DEFAULT_ROUND = 4
TAU_GRID = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
L1_TARGET_PROMPT = "Think for {n} tokens."   # L1 (LCPO) exact-length instruction, appended to the prompt


def _benchmark_names() -> list[str]:
    from conciser.eval.benchmarks import known_benchmarks

    return known_benchmarks()


def _grader_names() -> tuple[str, ...]:
    from conciser.rewards.grading import GRADERS

    return tuple(GRADERS)


def _extraction_names() -> tuple[str, ...]:
    from conciser.rewards.grading import EXTRACTIONS

    return EXTRACTIONS


def _backend_names() -> tuple[str, ...]:
    from conciser.eval.backends import BACKENDS

    return tuple(BACKENDS)


def opt(default=dataclasses.MISSING, *, help: str, group: str, factory=None, flags=None, choices=None,
        min=None, max=None, above=None, const=None, cli: bool = True):
    """A documented field. `min`/`max` are inclusive bounds, `above` an exclusive lower bound (for
    every element of a list field too); `choices` a tuple or a callable returning valid names;
    `const` the value of a list option given without a value (`--tau-sweep`)."""
    meta = {"help": help, "group": group, "flags": flags, "choices": choices, "min": min, "max": max,
            "above": above, "const": const, "cli": cli}
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


WHAT, SAMPLING, PROMPT, BACKEND = "what to evaluate", "sampling", "prompt", "backend"
BUDGET, VOTE, EXIT, LENGTH, OUTPUT = ("budget sweep", "self-consistency", "early exit (one trajectory)",
                                      "length adherence", "outputs and grading")


@dataclass
class EvalConfig:
    """Every option of `evaluate` / `conciser eval` (see `eval/run.py` for the outputs)."""

    model: str = opt(help="saved model folder (or a hub id where the hub is reachable)", group=WHAT)
    benchmarks: list[str] = opt(factory=lambda: ["toy"], group=WHAT, flags=["--benchmarks", "--benchmark"],
                                help="comma-separated: {benchmarks}, a .jsonl path, or hf:<dataset id>")
    n: int | None = opt(None, min=1, group=SAMPLING,
                        help="samples per problem (accuracy is avg@n); default: the benchmark's pinned n, else 1")
    out_dir: str | Path | None = opt(None, group=OUTPUT, flags=["--out", "--out-dir"],
                                     help="output folder (default eval_runs/<model folder name>)")
    backend: str = opt("transformers", choices=_backend_names, group=BACKEND, help="generation backend")
    max_new_tokens: int | None = opt(None, min=1, group=SAMPLING,
                                     help="generation cap; default: the benchmark's (toy 160, math 32768)")
    temperature: float | None = opt(None, min=0.0, group=SAMPLING,
                                    help=f"default: the benchmark's pinned value, else {DEFAULT_TEMPERATURE}")
    top_p: float | None = opt(None, above=0.0, max=1.0, group=SAMPLING,
                              help=f"default: the benchmark's pinned value, else {DEFAULT_TOP_P}")
    limit: int | None = opt(None, min=1, group=WHAT, help="only the first N problems of each benchmark")
    seed: int = opt(0, group=SAMPLING, help="base of every sample's own seed")
    batch_size: int = opt(64, min=1, group=BACKEND, help="transformers backend: sequences per generate call")
    progress: bool = opt(True, group=OUTPUT, help="progress bars")
    ks: list[int] | None = opt(None, min=1, group=SAMPLING, flags=["--k", "--ks"],
                               help="comma-separated k for pass@k / maj@k / lfvote@k (default 1,2,4,... up to n, and n)")
    # benchmark and prompt
    columns: dict[str, str] | None = opt(None, group=WHAT,
                                         help="column mapping for your own data: question=COL,answer=COL[,id=COL]")
    split: str = opt("test", group=WHAT, help="split for hf:<dataset id> benchmarks")
    grader: str | None = opt(None, choices=_grader_names, group=OUTPUT, help="override the benchmark's grader")
    extraction: str = opt("boxed", choices=_extraction_names, group=OUTPUT,
                          help="boxed: the last \\boxed{} after thinking (the training grader); lenient: else the "
                               "last expression of the answer, read by math-verify (as Qwen2.5-Math/lighteval)")
    drop_unparseable_golds: bool = opt(False, group=OUTPUT,
                                       help="evaluate without the problems whose gold answer cannot be parsed "
                                            "(by default they stop the run before generation)")
    template: str | None = opt(None, group=PROMPT,
                               help="r1 (default for math: '...Please reason step by step, and put your final "
                                    "answer within \\boxed{}.'), plain, or a format string with {problem}")
    system_prompt: str | None = opt(None, group=PROMPT, help="a system message before the problem")
    chat_template: str = opt("auto", choices=("auto", "none"), group=PROMPT,
                             help="auto: the tokenizer's chat template; none: raw prompt text (base models)")
    think: str = opt("auto", choices=("auto", "force", "off"), group=PROMPT,
                     help="auto: detect a chat template that pre-fills <think>; force: add it; off: ignore it")
    # budget sweep
    budgets: list[int] | None = opt(None, min=1, group=BUDGET,
                                    help="comma-separated thinking budgets: generate once at the largest, cut the "
                                         "thinking at each B tokens and force the answer (budget_curve.json)")
    budget_answer_tokens: int = opt(20, min=1, group=BUDGET,
                                    help="tokens of the forced answer after the probe at each budget")
    # self-consistency
    early_stop: str | None = opt(None, choices=("certaindex",), group=VOTE,
                                 help="certaindex: sample in rounds, stop a problem once its answers agree (Dynasor)")
    tau: float | None = opt(None, above=0.0, max=1.0, group=VOTE,
                            help=f"certaindex threshold in (0, 1] (default {DEFAULT_TAU})")
    round_size: int | None = opt(None, min=1, group=VOTE, flags=["--round", "--round-size"],
                                 help=f"samples per problem and round (default {DEFAULT_ROUND})")
    tau_sweep: list[float] | None = opt(None, above=0.0, max=1.0, const=TAU_GRID, group=VOTE,
                                        help="generate all n samples and print accuracy/tokens over these thresholds "
                                             "(no value: 0.1,0.2,...,1.0)")
    lfvote_bins: int = opt(4, min=1, group=VOTE, help="lfvote@k: length bins of the k samples")
    lfvote_keep: int = opt(2, min=1, group=VOTE, help="lfvote@k: bins (lowest answer entropy) that vote")
    # early exit
    early_exit: str | None = opt(None, choices=("dynasor",), group=EXIT,
                                 help="Dynasor-CoT: probe every chunk, exit when the last W probe answers agree")
    dynasor_window: int = opt(3, min=1, group=EXIT, help="W (Dynasor 'mid' = 3)")
    dynasor_chunk: int = opt(64, min=1, group=EXIT, help="tokens between probes")
    dynasor_probe_tokens: int = opt(20, min=1, group=EXIT, help="tokens a probe may generate")
    # length adherence
    target_lengths: list[int] | None = opt(None, min=1, group=LENGTH,
                                           help="ask every problem once per target N with the instruction below "
                                                "(L1-style budget prompts); a target_length column works too")
    target_prompt: str = opt(L1_TARGET_PROMPT, group=LENGTH, help="instruction appended to the prompt, with {n}")
    # metrics and outputs
    baseline: str | Path | None = opt(None, group=OUTPUT, help="a run folder (or summary.json) to compute AES against")
    aes_alpha: float = opt(1.0, group=OUTPUT, help="AES weight of the length change")
    aes_beta: float = opt(3.0, group=OUTPUT, help="AES weight of an accuracy gain")
    aes_gamma: float = opt(5.0, group=OUTPUT, help="AES weight of an accuracy loss")
    rescore: bool = opt(False, group=OUTPUT, help="re-grade the saved samples, generate nothing")
    overwrite: bool = opt(False, group=OUTPUT, help="discard saved samples of a different run in --out")
    print_table: bool = opt(True, group=OUTPUT, help="print the summary tables")
    wandb: bool = opt(False, group=OUTPUT, help="log the summary to wandb")
    wandb_project: str = opt("conciser-eval", group=OUTPUT, help="wandb project")
    wandb_run_name: str | None = opt(None, group=OUTPUT, help="wandb run name (default: the output folder's name)")
    grading_timeout: float = opt(5.0, above=0.0, group=OUTPUT, help="seconds per answer")
    grading_workers: int | None = opt(None, min=1, group=OUTPUT, help="grading processes (default: up to 8)")
    # vLLM
    tensor_parallel_size: int = opt(1, min=1, group=BACKEND, flags=["--tensor-parallel-size", "--tp"],
                                    help="vllm: GPUs per replica")
    data_parallel_size: int = opt(1, min=1, group=BACKEND, flags=["--data-parallel-size", "--dp"],
                                  help="vllm: replicas (one process each)")
    max_model_len: int | None = opt(None, min=1, group=BACKEND, help="vllm: default longest prompt + max new tokens")
    gpu_memory_utilization: float | None = opt(None, above=0.0, max=1.0, group=BACKEND, help="vllm: fraction of GPU memory")
    dtype: str | None = opt(None, choices=("auto", "bfloat16", "float16", "float32"), group=BACKEND,
                            help="default: fp32 on CPU, the model's on GPU")
    enable_prefix_caching: bool = opt(True, group=BACKEND, flags=["--prefix-caching"], help="vllm: prefix caching")
    vllm_args: dict | None = opt(None, group=BACKEND, flags=["--vllm-arg"],
                                 help="any other vllm.LLM keyword as KEY=VALUE (JSON values), repeatable")

    def resolved_out(self) -> Path:
        if self.out_dir is not None:
            return Path(self.out_dir)
        return Path("eval_runs") / re.sub(r"[^A-Za-z0-9._-]+", "_", Path(str(self.model).rstrip("/")).name or "model")

    def resolved_tau(self) -> float:
        return DEFAULT_TAU if self.tau is None else float(self.tau)

    def resolved_round(self) -> int:
        return DEFAULT_ROUND if self.round_size is None else int(self.round_size)


# ---------------------------------------------------------------- validation


def choices_of(f: dataclasses.Field) -> tuple | None:
    c = f.metadata.get("choices")
    return tuple(c()) if callable(c) else c


def hints() -> dict[str, object]:
    return typing.get_type_hints(EvalConfig)


def base_type(hint) -> tuple[type, type | None]:
    """(outer type, element type) of an annotation, Optional removed: int, list[int] -> (list, int)."""
    args = [a for a in typing.get_args(hint) if a is not type(None)] if typing.get_origin(hint) in (typing.Union, _UNION) else [hint]
    if Path in args:
        return str, None
    h = args[0]
    origin = typing.get_origin(h)
    if origin in (list, tuple):
        return list, typing.get_args(h)[0]
    if origin is dict or h is dict:
        return dict, None
    return h, None


try:  # `int | None` is types.UnionType, not typing.Union
    import types as _types

    _UNION = _types.UnionType
except AttributeError:  # pragma: no cover
    _UNION = typing.Union


def _type_ok(value, t: type) -> bool:
    if t is bool:
        return isinstance(value, bool)
    if t is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if t is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if t is str:
        return isinstance(value, (str, Path))
    return isinstance(value, t)


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _check_field(f: dataclasses.Field, value, hint) -> None:
    if value is None:
        if type(None) in typing.get_args(hint):
            return
        raise UserError(f"{_flag(f.name)}: a value is required")
    outer, elem = base_type(hint)
    what = {bool: "true or false", int: "an integer", float: "a number", str: "a string",
            list: "a list", dict: "a mapping"}.get(outer, outer.__name__)
    if not _type_ok(value, outer) and not (outer is list and isinstance(value, tuple)):
        raise UserError(f"{_flag(f.name)}: expected {what}, got {value!r}")
    items = list(value) if outer is list else [value]
    if outer is list:
        if not items:
            raise UserError(f"{_flag(f.name)}: give at least one value")
        ename = {int: "integers", float: "numbers", str: "strings"}.get(elem, "values")
        if elem is not None and not all(_type_ok(v, elem) for v in items):
            raise UserError(f"{_flag(f.name)}: expected {ename}, got {value!r}")
    m = f.metadata
    for v in items:
        if m.get("min") is not None and v < m["min"]:
            raise UserError(f"{_flag(f.name)}: must be >= {m['min']}, got {v!r}")
        if m.get("max") is not None and v > m["max"]:
            raise UserError(f"{_flag(f.name)}: must be <= {m['max']}, got {v!r}")
        if m.get("above") is not None and v <= m["above"]:
            bound = f" and <= {m['max']}" if m.get("max") is not None else ""
            raise UserError(f"{_flag(f.name)}: must be > {m['above']}{bound}, got {v!r}")
    choices = choices_of(f)
    if choices is not None and value not in choices:
        raise UserError(f"{_flag(f.name)}: unknown value {value!r}{did_you_mean(str(value), choices)}")


def default_ks(n: int) -> list[int]:
    ks, k = [], 1
    while k <= n:
        ks.append(k)
        k *= 2
    return ks + ([n] if ks[-1] != n else [])


def check_model(model: str) -> None:
    p = Path(model).expanduser()
    if p.exists():
        if not (p / "config.json").exists():
            raise UserError(f"--model: folder {model} has no config.json; point --model at a saved model "
                            "(save_pretrained output or a checkpoint folder)")
        return
    # Not a local path: accept a hub id (owner/name) for machines with hub access, nothing else.
    if re.fullmatch(r"[A-Za-z0-9][\w.-]*/[\w.-]+", model) is None:
        raise UserError(f"--model: path {model} does not exist; give a saved model folder or a hub id (owner/name)")


def validate(cfg: EvalConfig) -> None:
    """Every option on its own (type, bounds, choices), then the combinations. No file is read but
    the model folder's config.json and the baseline's existence."""
    types = hints()
    for f in dataclasses.fields(EvalConfig):
        _check_field(f, getattr(cfg, f.name), types[f.name])
    if not str(cfg.model).strip():
        raise UserError("--model is required: a saved model folder, e.g. --model $(conciser toy-base)")
    if len(set(cfg.benchmarks)) != len(cfg.benchmarks):
        raise UserError(f"--benchmarks: a benchmark is listed twice: {','.join(cfg.benchmarks)}")
    if cfg.n is not None and cfg.ks is not None:
        bad = [k for k in cfg.ks if k > cfg.n]
        if bad:
            raise UserError(f"--k: pass@k/maj@k with k={bad} needs n >= k samples per problem, but n={cfg.n}; "
                            f"raise --n to {max(bad)} or drop those k")
    if cfg.lfvote_keep > cfg.lfvote_bins:
        raise UserError(f"--lfvote-keep: {cfg.lfvote_keep} bins cannot be kept out of --lfvote-bins {cfg.lfvote_bins}")
    if cfg.early_stop is None and cfg.tau is not None:
        raise UserError("--tau sets the certaindex early stop's threshold; add --early-stop certaindex "
                        "(or compare thresholds with --tau-sweep)")
    if cfg.early_stop is None and not cfg.tau_sweep and cfg.round_size is not None:
        raise UserError("--round sets certaindex's round size; add --early-stop certaindex or --tau-sweep")
    if cfg.early_stop or cfg.tau_sweep:
        if cfg.n is not None and cfg.resolved_round() > cfg.n:
            raise UserError(f"--round: rounds of K={cfg.resolved_round()} samples need n >= K, but n={cfg.n}; "
                            f"lower --round or raise --n")
    if cfg.budgets is not None:
        if cfg.early_exit or cfg.early_stop:
            raise UserError("--budgets cannot be combined with --early-exit or --early-stop: run them separately")
        if cfg.max_new_tokens is not None and cfg.max_new_tokens != max(cfg.budgets):
            raise UserError(f"--max-new-tokens {cfg.max_new_tokens} and --budgets disagree: the sweep generates at "
                            f"its largest budget ({max(cfg.budgets)}); drop --max-new-tokens")
    if cfg.early_exit and cfg.early_stop:
        raise UserError("--early-exit (one trajectory) and --early-stop (several samples) cannot be combined")
    if cfg.target_lengths is not None and "{n}" not in cfg.target_prompt:
        raise UserError(f"--target-prompt: {cfg.target_prompt!r} has no {{n}} placeholder for the target length")
    if cfg.rescore and cfg.overwrite:
        raise UserError("--rescore re-grades the saved samples and --overwrite discards them: use one")
    check_model(str(cfg.model))
    if cfg.baseline is not None and not Path(cfg.baseline).exists():
        raise UserError(f"--baseline: {cfg.baseline} does not exist; give an eval output folder or its summary.json")


def make_config(model: str, **options) -> EvalConfig:
    """EvalConfig from keyword options; an unknown option is a UserError with the closest name."""
    known = {f.name for f in dataclasses.fields(EvalConfig)}
    unknown = sorted(set(options) - known)
    if unknown:
        hints_ = [f"{u}{did_you_mean(u, known)}" for u in unknown]
        raise UserError(f"unknown option(s): {', '.join(hints_)} (see conciser.eval.config.EvalConfig)")
    return EvalConfig(model=str(model), **options)
