"""`conciser eval`: accuracy and tokens of a model on benchmarks, and side-by-side comparisons.

    conciser eval --model PATH [--benchmarks toy|math500,aime24,...] [--n 16] [--backend vllm] [--out DIR]
    conciser eval --model PATH --benchmark my.jsonl --columns question=prompt,answer=gold
    conciser eval --model PATH --benchmarks aime24 --n 16 --early-exit dynasor
    conciser eval --model PATH --out DIR --rescore           # re-grade saved samples, no generation
    conciser eval compare RUN [RUN ...] [--plot pareto.png]   # side-by-side table + Pareto plot

Re-running the same command resumes an interrupted run (only missing samples are generated).
Outputs and summary keys: see `conciser.eval.run`. Known benchmarks: toy, math500, aime24, aime25,
amc23, gsm8k, minerva, olympiadbench (bundled, offline).
"""

from __future__ import annotations

import argparse


def _kv(text: str, what: str) -> dict[str, str]:
    out = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        if "=" not in part:
            raise ValueError(f"{what}: expected KEY=VALUE pairs separated by commas, got {part!r}")
        k, v = part.split("=", 1)
        out[k.strip()] = v.strip()
    return out


def _vllm_value(v: str):
    import json

    try:
        return json.loads(v)
    except json.JSONDecodeError:
        return v


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.usage = "%(prog)s --model PATH [options]  |  %(prog)s compare RUN [RUN ...] [--plot PNG]"
    parser.add_argument("action", nargs="?", choices=["compare"], help="compare: side-by-side table of saved runs")
    parser.add_argument("runs", nargs="*", metavar="RUN", help="for compare: run folders or summary.json ([LABEL=]PATH)")
    g = parser.add_argument_group("what to evaluate")
    g.add_argument("--model", help="saved model folder (or a hub id where the hub is reachable)")
    g.add_argument("--benchmarks", "--benchmark", dest="benchmarks", default=None,
                   help="comma-separated: toy, math500, aime24, aime25, amc23, gsm8k, minerva, olympiadbench, "
                        "a .jsonl path, or hf:<dataset id> (default: toy)")
    g.add_argument("--columns", default=None, help="column mapping for your own data: question=COL,answer=COL[,id=COL]")
    g.add_argument("--split", default="test", help="split for hf:<dataset id> benchmarks")
    g.add_argument("--grader", default=None, choices=["math", "toy"], help="override the benchmark's grader")
    g.add_argument("--limit", type=int, default=None, help="only the first N problems of each benchmark")
    g = parser.add_argument_group("sampling")
    g.add_argument("--n", type=int, default=1, help="samples per problem (accuracy is avg@n)")
    g.add_argument("--k", default=None, help="comma-separated k for pass@k / maj@k (default 1,2,4,.. up to n)")
    g.add_argument("--temperature", type=float, default=None, help="default 0.6")
    g.add_argument("--top-p", type=float, default=None, help="default 0.95")
    g.add_argument("--max-new-tokens", type=int, default=None, help="default per suite: toy 160, math 32768")
    g.add_argument("--seed", type=int, default=0)
    g = parser.add_argument_group("prompt")
    g.add_argument("--template", default=None,
                   help="r1 (default for math: '...Please reason step by step, and put your final answer within "
                        "\\boxed{}.'), plain, or a format string with {problem}")
    g.add_argument("--system-prompt", default=None)
    g.add_argument("--no-chat-template", action="store_true", help="raw prompt text (base models)")
    g.add_argument("--think", default="auto", choices=["auto", "force", "off"],
                   help="auto: detect a chat template that pre-fills <think>; force: add it; off: ignore")
    g = parser.add_argument_group("backend")
    g.add_argument("--backend", default="transformers", choices=["transformers", "vllm"])
    g.add_argument("--batch-size", type=int, default=64, help="transformers backend: sequences per generate call")
    g.add_argument("--tensor-parallel-size", "--tp", type=int, default=1, help="vllm: GPUs per replica")
    g.add_argument("--data-parallel-size", "--dp", type=int, default=1, help="vllm: replicas (one process each)")
    g.add_argument("--max-model-len", type=int, default=None, help="vllm: default longest prompt + max new tokens")
    g.add_argument("--gpu-memory-utilization", type=float, default=None)
    g.add_argument("--dtype", default=None, help="auto, bfloat16, float16, float32 (default: fp32 on CPU, model's on GPU)")
    g.add_argument("--no-prefix-caching", action="store_true")
    g.add_argument("--vllm-arg", action="append", default=[], metavar="KEY=VALUE",
                   help="any other vllm.LLM keyword (JSON values), repeatable")
    g = parser.add_argument_group("early exit")
    g.add_argument("--early-exit", default=None, choices=["dynasor"],
                   help="Dynasor-CoT: probe every chunk, exit when the last W probe answers agree with no hedging")
    g.add_argument("--dynasor-window", type=int, default=3, help="W (Dynasor 'mid' = 3)")
    g.add_argument("--dynasor-chunk", type=int, default=64, help="tokens between probes")
    g.add_argument("--dynasor-probe-tokens", type=int, default=20)
    g = parser.add_argument_group("outputs")
    g.add_argument("--out", default=None, help="output folder (default eval_runs/<model folder name>)")
    g.add_argument("--rescore", action="store_true", help="re-grade the saved samples, generate nothing")
    g.add_argument("--overwrite", action="store_true", help="discard saved samples of a different run in --out")
    g.add_argument("--baseline", default=None, help="run folder to compute AES against")
    g.add_argument("--aes", default="1,3,5", help="AES constants alpha,beta,gamma (default 1,3,5)")
    g.add_argument("--wandb", action="store_true", help="log the summary to wandb")
    g.add_argument("--wandb-project", default="conciser-eval")
    g.add_argument("--wandb-run-name", default=None)
    g.add_argument("--grading-timeout", type=float, default=5.0, help="seconds per answer")
    g.add_argument("--no-progress", action="store_true")
    g = parser.add_argument_group("compare")
    g.add_argument("--plot", default=None, help="compare: write the Pareto plot here (default RUN1/pareto.png)")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    benches = [b.strip() for b in (args.benchmarks or "toy").split(",") if b.strip()]
    if args.action == "compare":
        if not args.runs:
            raise ValueError("compare needs at least one RUN folder: conciser eval compare RUN [RUN ...]")
        from conciser.eval.report import compare

        plot = args.plot or str(Path(args.runs[0].rpartition("=")[2] if "=" in args.runs[0] else args.runs[0]).parent / "pareto.png")
        compare(args.runs, plot=plot, benchmarks=benches if args.benchmarks else None)
        return 0
    if args.runs:
        raise ValueError(f"unexpected argument(s) {args.runs}; did you mean: conciser eval compare {' '.join(args.runs)}?")
    if not args.model:
        raise ValueError("--model is required: a saved model folder, e.g. --model $(conciser toy-base)")
    try:
        alpha, beta, gamma = (float(x) for x in args.aes.split(","))
    except ValueError:
        raise ValueError(f"--aes takes three numbers alpha,beta,gamma, got {args.aes!r}") from None
    ks = None
    if args.k:
        try:
            ks = [int(k) for k in args.k.split(",") if k.strip()]
        except ValueError:
            raise ValueError(f"--k takes comma-separated integers, got {args.k!r}") from None
    from conciser.eval.run import EvalConfig, evaluate_many

    cfg = EvalConfig(
        model=args.model, benchmarks=benches, n=args.n, out_dir=args.out, backend=args.backend,
        max_new_tokens=args.max_new_tokens, temperature=args.temperature, top_p=args.top_p, limit=args.limit,
        seed=args.seed, batch_size=args.batch_size, progress=not args.no_progress, ks=ks,
        columns=_kv(args.columns, "--columns") if args.columns else None, split=args.split, grader=args.grader,
        template=args.template, system_prompt=args.system_prompt,
        chat_template="none" if args.no_chat_template else "auto", think=args.think,
        early_exit=args.early_exit, dynasor_window=args.dynasor_window, dynasor_chunk=args.dynasor_chunk,
        dynasor_probe_tokens=args.dynasor_probe_tokens, baseline=args.baseline, aes_alpha=alpha, aes_beta=beta,
        aes_gamma=gamma, rescore=args.rescore, overwrite=args.overwrite, wandb=args.wandb,
        wandb_project=args.wandb_project, wandb_run_name=args.wandb_run_name, grading_timeout=args.grading_timeout,
        tensor_parallel_size=args.tensor_parallel_size, data_parallel_size=args.data_parallel_size,
        max_model_len=args.max_model_len, gpu_memory_utilization=args.gpu_memory_utilization, dtype=args.dtype,
        enable_prefix_caching=not args.no_prefix_caching,
        vllm_args={k: _vllm_value(v) for a in args.vllm_arg for k, v in _kv(a, "--vllm-arg").items()},
    )
    results = evaluate_many(cfg)
    if len(results) > 1:
        from conciser.eval.report import compare

        compare([str(cfg.resolved_out())], plot=None)
    print(f"outputs: {cfg.resolved_out()}")
    return 0
