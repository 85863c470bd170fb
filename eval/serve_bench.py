"""Serving benchmark: what a concise model buys behind `vllm serve` (OpenAI-compatible API), and what
a length-aware scheduler buys on top.

    conciser bench-serve --model runs/base --model runs/concise --benchmark toy \\
        --requests 200 --rate 8 --concurrency 16 --max-tokens 160 --seed 0 --out runs/bench-serve
    conciser bench-serve ... --schedule fcfs,ltr,oracle --ranker runs/ranker-base --ranker runs/ranker-concise \\
        --ltr-window 20 --rounds 2 --vllm-args="--max-num-seqs 8"

For each model in turn (never two at once, so they do not share the machine): start vLLM's OpenAI
server (conciser.eval.serve_server: its own process group, /health wait, always stopped), send
warm-up requests, then the request stream (conciser.eval.serve_load: bounded, seeded, identical for
every model and arm), stop the server; grade the answers with `conciser.rewards.grading` (the
grader the benchmark names). The server's generation cap is `--max-tokens` for every model
(`--override-generation-config`), whatever their generation_config.json says.

Per model: tokens per answer (the usage field), latency and TTFT (mean, p50/p95/p99), time per
output token, the largest wait of any request (arrival to first token), requests/s and output
tokens/s over the stream's wall time, truncation rate and accuracy; then the ratios of every model
to the first (`--model` order: base first, concise second gives concise/base).

`--schedule fcfs,ltr,oracle` runs the same stream per model under each scheduling arm
(conciser.eval.serve_schedule: vLLM's FCFS; `--scheduling-policy priority` with priorities from a
length ranker, `--ranker`, one per model or one for all; the same from the true lengths of this
model's first fcfs run), `--rounds` times, arms in ABBA order; an arm's figures pool its rounds, and
its ratios to fcfs are reported with them. For the arms to matter, requests must queue *in the
server*: give the client more requests in flight (`--concurrency`) than the server runs at once
(`--vllm-args="--max-num-seqs N"`) and an arrival rate above its service rate.

Written to `--out`: summary.json, requests-<model>[-<arm>].jsonl (every request, with its
completion), server-<model>[-<k>-<policy>].log, and with --schedule latency_cdf.png. Extra server
flags go in `--vllm-args` (e.g. "--tensor-parallel-size 2 --max-model-len 34000", or
"--enforce-eager" to skip CPU compilation).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import re
import shlex
import sys
from dataclasses import asdict
from pathlib import Path

from conciser.errors import UserError
from conciser.eval import serve_server
from conciser.eval.serve_load import PlannedRequest, RequestError, RequestResult, make_plan, run_stream, send_request  # noqa: F401
from conciser.eval.serve_report import percentile, print_arm_tables, print_table, ratios, summarize  # noqa: F401
from conciser.eval.serve_schedule import make_arm, parse_schedules, parse_window, round_order
from conciser.eval.serve_server import (_LIVE, HOST, ServerError, VLLMServer, exit_on_signals, free_port,  # noqa: F401
                                        group_members, server_env, vllm_command, vllm_launcher)

log = logging.getLogger(__name__)


def _labels(models: list[str], names: list[str] | None) -> list[str]:
    if names:
        if len(names) != len(models):
            raise UserError(f"{len(names)} --name for {len(models)} --model; give one --name per --model or none")
        labels = names
    else:
        labels = [Path(m).name or "model" for m in models]
    seen: dict[str, int] = {}
    out = []
    for label in labels:
        label = re.sub(r"[^A-Za-z0-9._-]+", "-", label)
        seen[label] = seen.get(label, 0) + 1
        out.append(label if seen[label] == 1 else f"{label}-{seen[label]}")
    return out


def _grade(results: list[RequestResult], plan: list[PlannedRequest], grader, prepend_think: bool) -> None:
    ok = [r for r in results if r.ok]
    if ok:
        golds = {r.index: r.gold for r in plan}
        completions = [("<think>" + r.completion) if prepend_think else r.completion for r in ok]
        for r, g in zip(ok, grader(golds=[golds[r.index] for r in ok], completions=completions)):
            r.correct = bool(g.correct)


def _start(model: str, label: str, log_name: str, policy: str, args: argparse.Namespace, out: Path, max_tokens: int,
           sampling: dict, plan: list[PlannedRequest]) -> VLLMServer:
    """A ready server (warm-up requests sent); the caller stops it."""
    port = free_port()
    cmd = vllm_command(model, port=port, served_name=label, seed=args.seed, max_tokens=max_tokens,
                       extra_args=shlex.split(args.vllm_args or ""), policy=policy)
    server = VLLMServer(command=cmd, port=port, log_path=out / log_name, env=server_env(args.cpu_kv_cache_gib), nice=args.server_nice,
                        startup_timeout=args.startup_timeout)
    server.__enter__()   # stops itself if it never gets ready
    try:
        for req in plan[: args.warmup]:   # not timed: first-request costs (lazy init, caches) are not serving cost
            try:
                send_request(port, {"model": label, "messages": req.messages, "seed": req.seed, "stream": True,
                                    "stream_options": {"include_usage": True}, **sampling}, args.request_timeout)
            except RequestError as exc:
                log.warning("warm-up request failed: %s", exc)
    except BaseException:
        server.stop()
        raise
    return server


def _stream_tau(arm, results: list[RequestResult]) -> float | None:
    """Kendall tau between what the arm predicted per request and the lengths it got."""
    from conciser.eval.ranker import kendall_tau

    pairs = [(arm.scores[r.index], r.completion_tokens) for r in results if r.ok and r.index in arm.scores]
    return kendall_tau([p[0] for p in pairs], [p[1] for p in pairs]) if len(pairs) > 1 else None


def bench_model(model: str, label: str, plan: list[PlannedRequest], args: argparse.Namespace, out: Path,
                max_tokens: int, grader, arms: list[str] | None = None, ranker=None) -> dict:
    """Run the stream against `model` once per arm and round (a server per run of arms sharing a
    policy, always stopped); grade; write the requests files. `arms` None: one plain fcfs run."""
    scheduled = arms is not None
    arms = arms or ["fcfs"]
    rounds = args.rounds if scheduled else 1
    sampling = {"max_tokens": max_tokens, "temperature": args.temperature, "top_p": args.top_p}
    runs: dict[str, list[tuple[int, list[RequestResult], float]]] = {a: [] for a in arms}
    taus: dict[str, list] = {a: [] for a in arms}
    servers: list[dict] = []
    server, policy, reference = None, None, None
    window = args.ltr_window   # None: auto, set by the first fcfs run
    try:
        for rnd in range(rounds):
            for name in round_order(arms, rnd):
                arm = make_arm(name, window_s=window or 0.0, ranker=ranker, reference_tokens=reference)
                if server is None or arm.policy != policy:
                    if server is not None:
                        server.stop()
                    log_name = f"server-{label}-{len(servers)}-{arm.policy}.log" if scheduled else f"server-{label}.log"
                    server, policy = _start(model, label, log_name, arm.policy, args, out, max_tokens, sampling, plan), arm.policy
                    servers.append({"policy": policy, "command": server.command, "pid": server.pgid,
                                    "startup_s": server.ready_after, "log": log_name})
                log.info("%s%s: %d requests, rate %s/s, concurrency %d", label, f" [{name}, round {rnd + 1}]" if scheduled else "",
                         len(plan), args.rate, args.concurrency)
                results, duration = run_stream(server.port, label, plan, concurrency=args.concurrency, sampling=sampling,
                                               request_timeout=args.request_timeout, max_duration=args.max_duration,
                                               prepare=arm.prepare)
                if name == "fcfs" and reference is None:   # the oracle's lengths: this stream under fcfs
                    reference = {r.index: r.completion_tokens for r in results if r.ok}
                    if window is None:   # --ltr-window auto: the largest wait fcfs gave this model
                        window = summarize(results, duration).get("max_wait_s") or 0.0
                        log.info("%s: --ltr-window auto = %.1f s (the largest wait of its first fcfs run)", label, window)
                runs[name].append((rnd, results, duration))
                taus[name].append(_stream_tau(arm, results) if arm.prepare else None)
    finally:
        if server is not None:
            server.stop()
    entry = {"path": str(model), "command": servers[0]["command"], "server_pid": servers[0]["pid"],
             "server_startup_s": servers[0]["startup_s"]}
    arm_out = {}
    for name in arms:
        pooled = [r for _, results, _ in runs[name] for r in results]
        _grade(pooled, plan, grader, args.prepend_think)
        file = out / (f"requests-{label}-{name}.jsonl" if scheduled else f"requests-{label}.jsonl")
        with open(file, "w", encoding="utf-8") as f:
            for rnd, results, _ in runs[name]:
                for r in results:
                    f.write(json.dumps({**asdict(r), **({"arm": name, "round": rnd} if scheduled else {})}) + "\n")
        arm_out[name] = {"metrics": summarize(pooled, sum(d for _, _, d in runs[name])),
                         "rounds": [summarize(results, d) for _, results, d in runs[name]],
                         "stream_kendall_tau": _mean_or_none(taus[name]),
                         "latencies": [r.latency for r in pooled if r.ok]}
    first = arm_out[arms[0]]["metrics"]
    for name in arms:
        if name != "fcfs" and "fcfs" in arm_out:
            arm_out[name]["ratios_to_fcfs"] = ratios(arm_out["fcfs"]["metrics"], arm_out[name]["metrics"])
    entry["metrics"] = first
    entry["failed_all_arms"] = sum(a["metrics"]["failed"] for a in arm_out.values())
    entry["first_error"] = next((r.error for a in arms for _, res, _ in runs[a] for r in res if r.error), None)
    if scheduled:
        entry.update(arms=arm_out, servers=servers, server_pids=[s["pid"] for s in servers], ltr_window_s=window)
        if ranker is not None:
            entry["ranker"] = {"path": str(ranker.path), "kendall_tau": ranker.kendall_tau,
                               "pair_accuracy": ranker.meta.get("pair_accuracy")}
    return entry


def _mean_or_none(values: list) -> float | None:
    v = [x for x in values if x is not None]
    return sum(v) / len(v) if v else None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", action="append", required=True,
                        help="model folder (HF format); repeat it: the first is the reference (base), ratios are to it")
    parser.add_argument("--name", action="append", help="label per --model (default: folder name)")
    parser.add_argument("--benchmark", default="toy", help="toy, math500 or any name conciser eval knows (default toy)")
    parser.add_argument("--requests", type=int, default=100, help="requests per model (default 100)")
    parser.add_argument("--rate", type=float, default=math.inf, help="mean arrival rate, requests/s (Poisson); inf = all at once (default)")
    parser.add_argument("--concurrency", type=int, default=16, help="most requests in flight (default 16)")
    parser.add_argument("--max-tokens", type=int, help="generation cap per answer (default: the benchmark's, 160 for toy)")
    parser.add_argument("--temperature", type=float, default=0.6, help="sampling temperature (default 0.6)")
    parser.add_argument("--top-p", type=float, default=0.95, help="nucleus sampling (default 0.95)")
    parser.add_argument("--seed", type=int, default=0, help="fixes prompt order, arrival times and per-request sampling seeds")
    parser.add_argument("--out", required=True, help="output folder: summary.json, requests-*.jsonl, server-*.log")
    parser.add_argument("--warmup", type=int, default=1, help="untimed warm-up requests per server (default 1)")
    parser.add_argument("--request-timeout", type=float, default=600.0, help="seconds one request may take (default 600)")
    parser.add_argument("--max-duration", type=float, default=3600.0, help="seconds the stream of one model may take (default 3600)")
    parser.add_argument("--startup-timeout", type=float, default=900.0, help="seconds a server may take to get ready (default 900)")
    parser.add_argument("--vllm-args", default="", help='extra flags for vllm serve, one string; write it with "=": --vllm-args="--max-model-len 34000"')
    # vLLM reads VLLM_CPU_KVCACHE_SPACE with int(): "4.0" stops the server at start-up
    parser.add_argument("--cpu-kv-cache-gib", type=int, default=4, help="VLLM_CPU_KVCACHE_SPACE (whole GiB) on machines without CUDA, if unset (default 4)")
    parser.add_argument("--server-nice", type=int, default=None,
                        help="CPU niceness of the vLLM servers, 0-19 (default: 10 on a machine without CUDA, where the "
                             "engine keeps the cores busy and would starve this client; 0 with a GPU)")
    parser.add_argument("--prepend-think", action="store_true",
                        help="grade '<think>' + answer (for models whose chat template opens the think block in the prompt)")
    g = parser.add_argument_group("scheduling arms (conciser.eval.serve_schedule)")
    g.add_argument("--schedule", help="comma-separated arms: fcfs (vLLM default), ltr (priority from --ranker), "
                                      "oracle (priority from fcfs's true lengths), e.g. fcfs,ltr,oracle")
    g.add_argument("--ranker", action="append", help="ranker folder for ltr (conciser ranker train): one for all models or one per --model")
    g.add_argument("--ltr-window", default="20",
                   help="starvation guard, seconds: priority = arrival + W * predicted length quantile, so a request is "
                        "overtaken only by requests arriving less than W s after it (0 = fcfs; default 20); 'auto': "
                        "per model, the largest wait of its first fcfs run")
    g.add_argument("--rounds", type=int, default=1, help="repeat every arm this many times, ABBA order (default 1)")


def _validate(args: argparse.Namespace) -> list[str] | None:
    if not 1 <= args.requests <= 100_000:
        raise UserError(f"--requests must be between 1 and 100000, got {args.requests}")
    if not args.rate > 0:
        raise UserError(f"--rate must be > 0 requests/s (inf sends all at once), got {args.rate}")
    if args.concurrency < 1:
        raise UserError(f"--concurrency must be >= 1, got {args.concurrency}")
    if args.max_tokens is not None and args.max_tokens < 1:
        raise UserError(f"--max-tokens must be >= 1, got {args.max_tokens}")
    for name in ("request_timeout", "max_duration", "startup_timeout"):
        if not 0 < getattr(args, name) < math.inf:
            raise UserError(f"--{name.replace('_', '-')} must be a positive number of seconds")
    if args.warmup < 0:
        raise UserError(f"--warmup must be >= 0, got {args.warmup}")
    if args.cpu_kv_cache_gib < 1:
        raise UserError(f"--cpu-kv-cache-gib must be a whole number of GiB >= 1, got {args.cpu_kv_cache_gib}")
    if args.server_nice is None:
        import torch

        args.server_nice = 0 if torch.cuda.is_available() else 10
    elif not 0 <= args.server_nice <= 19:
        raise UserError(f"--server-nice must be a niceness from 0 (as this client) to 19 (lowest), got {args.server_nice}")
    for m in args.model:
        if not Path(m, "config.json").is_file():
            raise UserError(f"--model {m}: no config.json there; give an HF model folder "
                            "(conciser export CHECKPOINT OUT makes one from a training checkpoint)")
    arms = parse_schedules(args.schedule) if args.schedule is not None else None
    if args.rounds < 1:
        raise UserError(f"--rounds must be >= 1, got {args.rounds}")
    args.ltr_window = parse_window(args.ltr_window)
    if args.ltr_window is None and arms and ("fcfs" not in arms or arms.index("fcfs") > 0):
        raise UserError("--ltr-window auto takes the window from the first fcfs run; list fcfs first in --schedule "
                        "(e.g. fcfs,ltr,oracle)")
    rankers = args.ranker or []
    if arms and "ltr" in arms:
        if not rankers:
            raise UserError("--schedule ltr needs --ranker DIR (train one: conciser ranker train --samples ... --out DIR)")
        if len(rankers) not in (1, len(args.model)):
            raise UserError(f"{len(rankers)} --ranker for {len(args.model)} --model; give one for all or one per --model")
    elif rankers:
        raise UserError("--ranker is only used by the ltr arm; add ltr to --schedule (e.g. --schedule fcfs,ltr,oracle)")
    return arms


def _load_rankers(args: argparse.Namespace, n: int) -> list:
    if not args.ranker:
        return [None] * n
    from conciser.eval.ranker import Ranker

    loaded = [Ranker.load(p) for p in args.ranker]
    return loaded if len(loaded) == n else loaded * n


def run(args: argparse.Namespace) -> int:
    from conciser.eval.benchmarks import load_benchmark
    from conciser.rewards.grading import get_grader

    arms = _validate(args)
    labels = _labels(args.model, args.name)
    bench = load_benchmark(args.benchmark)
    grader = get_grader(bench.grader)
    max_tokens = args.max_tokens or bench.max_new_tokens
    plan = make_plan(bench, args.requests, args.rate, args.seed)
    serve_server.vllm_launcher()   # fail early when vLLM is missing
    rankers = _load_rankers(args, len(args.model))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    config = {"benchmark": bench.name, "source": bench.source, "grader": bench.grader, "requests": args.requests,
              "rate": args.rate if math.isfinite(args.rate) else "inf", "concurrency": args.concurrency,
              "max_tokens": max_tokens, "temperature": args.temperature, "top_p": args.top_p, "seed": args.seed,
              "warmup": args.warmup, "vllm_args": args.vllm_args, "host": HOST}
    if arms:
        config.update(schedule=arms, rounds=args.rounds, ltr_window_s="auto" if args.ltr_window is None else args.ltr_window,
                      rankers=args.ranker)
    summary = {"config": config, "models": {}, "ratios": {}}
    try:
        with exit_on_signals():
            for model, label, ranker in zip(args.model, labels, rankers):
                summary["models"][label] = bench_model(model, label, plan, args, out, max_tokens, grader, arms, ranker)
    except ServerError as exc:
        summary["error"] = str(exc)
        (out / "summary.json").write_text(json.dumps(summary, indent=2))   # the models benchmarked so far
        print(f"conciser bench-serve: {exc}", file=sys.stderr)
        return 1
    ref = labels[0]
    for label in labels[1:]:
        summary["ratios"][label] = ratios(summary["models"][ref]["metrics"], summary["models"][label]["metrics"])
    if arms:
        from conciser.eval.serve_report import plot_latency_cdfs

        cdfs = {m: {a: v.pop("latencies") for a, v in e["arms"].items()} for m, e in summary["models"].items()}
        plot_latency_cdfs(cdfs, out / "latency_cdf.png", title=f"{bench.name}: {args.requests} requests, rate {config['rate']}/s")
    else:
        for e in summary["models"].values():
            e.pop("arms", None)
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    print_table(summary)
    if arms:
        print_arm_tables(summary)
    print(f"wrote {out / 'summary.json'}")
    failed = {k: v["failed_all_arms"] for k, v in summary["models"].items() if v["failed_all_arms"]}
    if failed:
        first = next((v["first_error"] for v in summary["models"].values() if v["first_error"]), "unknown")
        print(f"conciser bench-serve: failed requests {failed}; first error: {first} "
              f"(per-request errors in {out}/requests-*.jsonl, server logs in {out}/server-*.log)", file=sys.stderr)
        return 1
    return 0
