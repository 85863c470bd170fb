"""Serve: length-aware scheduling on the toy -- does a learned length ranker beat FCFS behind vLLM,
before and after the model is made concise?

    python -m bench.serve_ltr [--requests 400] [--rate R] [--rounds 2] [--window W] [--keep runs/bench-serve-ltr]

Steps, each a `conciser` command (printed, and recorded in the results), each reused from `--keep`
when its output is already there:
  1. models: the toy base (`conciser toy-base`) and a concise one (`conciser train toy/laser`)
  2. ranker data: `conciser eval` of each model on toy problems from the *training* distribution
     (never the served ones), 2 samples each, with the serving settings (temperature 0.6, cap 160)
  3. rankers: `conciser ranker train` per model (ListMLE, lists of 32, Adam)
  4. `conciser bench-serve --schedule fcfs,ltr,oracle --rounds R` on the 250 held-out toy problems,
     one vLLM server at a time, few sequences per engine step (`--max-num-seqs`) so requests queue
     in the server, arrivals faster than it serves them
  5. bench/results/serve_ltr.{md,json,png}

Latency ratios are noisy on a shared machine: arms run interleaved (ABBA rounds); the load average
is recorded with the results. Re-run the printed bench-serve command on a quiet machine to check.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

from bench._common import RESULTS, machine, md_table, stamp

ARMS = ("fcfs", "ltr", "oracle")
TRAIN_PROBLEMS = 2000   # ranker training prompts per model (toy training distribution)


def _conciser(*args: str) -> list[str]:
    return [sys.executable, "-m", "conciser.cli", *args]


def _run(cmd: list[str], log: list[str], env: dict | None = None) -> None:
    text = shlex.join(["conciser", *cmd[3:]] if cmd[:3] == _conciser() else cmd)
    text = " ".join([*(f"{k}={v}" for k, v in (env or {}).items()), text])
    log.append(text)
    print(f"$ {text}", flush=True)
    subprocess.run(cmd, check=True, env={**os.environ, **(env or {})})


def _train_file(path: Path) -> Path:
    """Toy problems of the training distribution as a benchmark file (ids never in the eval set)."""
    from conciser import toy

    if not path.exists():
        rows = [{"id": p.id, "problem": p.prompt, "answer": p.answer} for p in toy.train_problems(TRAIN_PROBLEMS, seed=11)]
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _models(keep: Path, base: str | None, log: list[str]) -> dict[str, Path]:
    from conciser.trainers.toy_sft import ensure_toy_base

    base = Path(base) if base else ensure_toy_base()
    concise = keep / "concise"
    if not (concise / "config.json").is_file():
        # One torch thread: the toy model is tiny, and two threads on a busy 2-core machine run
        # several times slower than one (intra-op parallelism contending with other processes).
        _run(_conciser("train", "toy/laser", f"model.name_or_path={base}", f"trainer.output_dir={concise}"), log,
             env={"OMP_NUM_THREADS": "1"})
    return {"base": base, "concise": concise}


def _ranker(name: str, model: Path, keep: Path, train_file: Path, log: list[str]) -> dict:
    samples = keep / f"eval-{name}" / train_file.stem / "samples.jsonl"
    if not samples.is_file() or sum(1 for _ in samples.open()) < 2 * TRAIN_PROBLEMS:
        _run(_conciser("eval", "--model", str(model), "--benchmark", str(train_file), "--template", "plain",
                       "--grader", "toy", "--max-new-tokens", "160", "--n", "2", "--backend", "vllm",
                       "--out", str(keep / f"eval-{name}")), log)
    out = keep / f"ranker-{name}"
    if not (out / "ranker.json").is_file():
        _run(_conciser("ranker", "train", "--samples", str(samples), "--out", str(out)), log)
    meta = json.loads((out / "ranker.json").read_text())
    lengths = [json.loads(line)["tokens"] for line in samples.open()]
    return {"path": str(out), "kendall_tau": meta["kendall_tau"], "pair_accuracy": meta["pair_accuracy"],
            "kendall_tau_prompt_chars": meta["kendall_tau_prompt_chars"], "n_train": meta["n_train"],
            "n_heldout": meta["n_heldout"], "train_seconds": meta["train_seconds"],
            "samples_mean_tokens": sum(lengths) / len(lengths), "samples_min_tokens": min(lengths),
            "samples_max_tokens": max(lengths)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.serve_ltr", description=__doc__.split("\n")[0])
    ap.add_argument("--requests", type=int, default=400, help="requests per arm and round (default 400)")
    ap.add_argument("--rate", type=float, default=4.0, help="arrival rate, requests/s (default 4; above the service rate)")
    ap.add_argument("--max-num-seqs", type=int, default=8, help="vLLM sequences per engine step (default 8)")
    ap.add_argument("--rounds", type=int, default=2, help="ABBA rounds of the three arms (default 2)")
    ap.add_argument("--window", type=float, default=20.0, help="--ltr-window, seconds (default 20)")
    ap.add_argument("--keep", default="runs/bench-serve-ltr", help="work folder; finished steps are reused")
    ap.add_argument("--base", help="the verbose base model folder (default: `conciser toy-base`'s cached base)")
    ap.add_argument("--out-dir", default=str(RESULTS), help="where serve_ltr.{md,json,png} go")
    args = ap.parse_args(argv)
    keep = Path(args.keep).resolve()
    keep.mkdir(parents=True, exist_ok=True)
    log: list[str] = []
    t0 = time.time()
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")
    models = _models(keep, args.base, log)
    train_file = _train_file(keep / "toy_train.jsonl")
    rankers = {name: _ranker(name, path, keep, train_file, log) for name, path in models.items()}
    serve_out = keep / "serve"
    load_before = os.getloadavg()
    cmd = _conciser("bench-serve", "--benchmark", "toy", "--requests", str(args.requests), "--rate", str(args.rate),
                    "--concurrency", str(args.requests), "--seed", "0", "--out", str(serve_out),
                    "--schedule", ",".join(ARMS), "--rounds", str(args.rounds), "--ltr-window", str(args.window),
                    "--request-timeout", "3000", "--max-duration", "3000", "--cpu-kv-cache-gib", "2")
    for name, path in models.items():
        cmd += ["--model", str(path), "--name", name, "--ranker", rankers[name]["path"]]
    # no chunked prefill: vllm-cpu 0.32 dies on a chunked prefill of seeded requests (eval/backends.py)
    cmd.append(f"--vllm-args=--enforce-eager --max-num-seqs {args.max_num_seqs} --no-enable-prefix-caching "
               "--no-enable-chunked-prefill")
    _run(cmd, log)
    summary = json.loads((serve_out / "summary.json").read_text())
    results = _results(summary, rankers, args, load_before, log, time.time() - t0)
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "serve_ltr.json").write_text(json.dumps(results, indent=2) + "\n")
    (out_dir / "serve_ltr.md").write_text(_markdown(results) + "\n")
    (out_dir / "serve_ltr.png").write_bytes((serve_out / "latency_cdf.png").read_bytes())
    print((out_dir / "serve_ltr.md").read_text())
    return 0


# the key names for the committed JSON -> bench-serve's metric keys
KEYS = {"mean_latency_s": "latency_mean", "p50_latency_s": "latency_p50", "p95_latency_s": "latency_p95",
        "p99_latency_s": "latency_p99", "mean_ttft_s": "ttft_mean", "p50_ttft_s": "ttft_p50", "p95_ttft_s": "ttft_p95",
        "p99_ttft_s": "ttft_p99", "max_wait_s": "max_wait_s", "requests_per_s": "requests_per_s",
        "output_tokens_per_s": "output_tokens_per_s", "accuracy": "accuracy", "tokens_per_answer": "tokens_per_answer",
        "ranking_ms_mean": "prepare_ms_mean", "ok": "ok", "failed": "failed", "duration_s": "duration_s"}


def _results(summary: dict, rankers: dict, args, load_before, log: list[str], wall: float) -> dict:
    cfg = summary["config"]
    out = {"date": stamp(), "machine": machine(), "load_avg_before": [round(x, 2) for x in load_before],
           "load_avg_after": [round(x, 2) for x in os.getloadavg()], "wall_s": round(wall, 1),
           "commands": log, "config": {**cfg, "max_num_seqs": args.max_num_seqs}, "models": {}}
    for name, m in summary["models"].items():
        entry = {"ranker": rankers[name], "servers": [{k: s[k] for k in ("policy", "startup_s")} for s in m["servers"]]}
        for arm, a in m["arms"].items():
            row = {k: a["metrics"].get(src) for k, src in KEYS.items()}
            row["kendall_tau"] = rankers[name]["kendall_tau"]            # the ranker's, on held-out prompts
            row["stream_kendall_tau"] = a.get("stream_kendall_tau")      # this arm's priorities vs the lengths it got
            row["ratios_to_fcfs"] = {k: a.get("ratios_to_fcfs", {}).get(src) for k, src in KEYS.items()
                                     if src in a.get("ratios_to_fcfs", {})}
            row["rounds"] = [{k: r.get(src) for k, src in KEYS.items() if k in ("mean_latency_s", "p99_latency_s", "max_wait_s",
                                                                               "requests_per_s")} for r in a["rounds"]]
            entry[arm] = row
        out["models"][name] = entry
    return out


def _markdown(r: dict) -> str:
    cfg = r["config"]
    lines = [f"# Serve: length-aware scheduling (toy, vllm-cpu) -- {r['date']}", "",
             f"{cfg['requests']} requests per arm and round, Poisson arrivals at {cfg['rate']}/s, {cfg['rounds']} ABBA "
             f"rounds, `--max-num-seqs {r['config']['max_num_seqs']}`, starvation window {cfg['ltr_window_s']} s, cap "
             f"{cfg['max_tokens']} tokens, temperature {cfg['temperature']}. Machine: {r['machine']['cpus']} CPUs, load "
             f"average {r['load_avg_before'][0]} before / {r['load_avg_after'][0]} after (1 min); wall {r['wall_s'] / 60:.0f} min.", ""]
    header = ["model", "arm", "latency mean", "p50", "p95", "p99", "TTFT mean", "TTFT p99", "largest wait", "req/s",
              "out tok/s", "accuracy", "mean lat. / fcfs", "p99 / fcfs", "largest wait / fcfs", "ranking ms"]
    rows = []
    for name, m in r["models"].items():
        for arm in ARMS:
            a = m[arm]
            ratio = a["ratios_to_fcfs"]
            f = lambda v, p="{:.2f}": "-" if v is None else p.format(v)  # noqa: E731
            rows.append([name, arm, f(a["mean_latency_s"]), f(a["p50_latency_s"]), f(a["p95_latency_s"]),
                         f(a["p99_latency_s"]), f(a["mean_ttft_s"]), f(a["p99_ttft_s"]), f(a["max_wait_s"]),
                         f(a["requests_per_s"], "{:.3f}"), f(a["output_tokens_per_s"], "{:.1f}"), f(a["accuracy"], "{:.3f}"),
                         f(ratio.get("mean_latency_s"), "{:.2f}x"), f(ratio.get("p99_latency_s"), "{:.2f}x"),
                         f(ratio.get("max_wait_s"), "{:.2f}x"), f(a["ranking_ms_mean"])])
    lines += [md_table(header, rows), "", "Rankers (held-out prompts of the training distribution; the stream's own tau "
              "is measured on the served requests):", ""]
    rk = [[name, f"{m['ranker']['kendall_tau']:.3f}", f"{m['ranker']['pair_accuracy']:.3f}",
           f"{m['ranker']['kendall_tau_prompt_chars']:.3f}",
           "-" if m["ltr"]["stream_kendall_tau"] is None else f"{m['ltr']['stream_kendall_tau']:.3f}",
           f"{m['ranker']['samples_mean_tokens']:.1f} ({m['ranker']['samples_min_tokens']}-{m['ranker']['samples_max_tokens']})"]
          for name, m in r["models"].items()]
    lines += [md_table(["model", "held-out tau", "pair accuracy", "tau of prompt length alone", "tau on the stream",
                        "tokens mean (range)"], rk), "", "Commands:", ""]
    lines += [f"    {c}" for c in r["commands"]]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
