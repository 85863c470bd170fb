"""The request stream of bench-serve: a seeded plan, one streaming chat completion per request,
sent at Poisson arrival times with a cap on requests in flight.

The stream is bounded and reproducible, and identical for every model and scheduling arm:
`make_plan` fixes the problems (seed-shuffled, cycled if more requests than problems), each
request's sampling seed and its arrival time. Each request streams, so the client sees the first
token (TTFT); each has a wall-clock limit and the whole stream one too.

A schedule may add fields to each request's body before it is sent (`prepare`, e.g. vLLM's
`priority` from a length ranker). That work runs in the client when the request arrives and is
timed: `prepare_s` is recorded and counted in the request's latency and TTFT, which run from the
start of `prepare` to the last byte / the first token.
"""

from __future__ import annotations

import http.client
import json
import math
import random
import threading
import time
from dataclasses import dataclass
from typing import Callable

from conciser.eval.serve_server import HOST


class RequestError(RuntimeError):
    """One request failed (HTTP error, server-side error event, timeout, malformed stream)."""


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
    arrival: float | None = None         # planned arrival, seconds after the stream started
    sent: float | None = None            # when the client took it up (a slot was free), same clock
    latency: float | None = None         # taken up -> last byte (prepare_s included)
    ttft: float | None = None            # taken up -> first generated text (prepare_s included)
    prepare_s: float | None = None       # the schedule's client-side work (ranking), if any
    priority: int | None = None          # the vLLM priority sent, if any
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
               request_timeout: float, max_duration: float,
               prepare: Callable[[PlannedRequest], dict] | None = None) -> tuple[list[RequestResult], float]:
    """Send `plan` at its arrival times with at most `concurrency` requests in flight.

    `concurrency` worker threads, all started before the clock starts, take the requests in plan
    order: each waits for its request's arrival time and sends it, so a request is taken up at its
    arrival or, when every worker is busy, as soon as one is free. Nothing but that wait lies
    between a request's arrival and its send: no thread start on the send path, which on a CPU the
    server keeps busy waits for the scheduler. (The client's seconds-long lag on the toy VM was the
    server's session starving it: see VLLMServer.nice.)

    `prepare(request)`, if given, runs in the request's worker thread before it is sent and returns
    fields to add to its body (e.g. {"priority": 3}); its time is part of the request's latency.
    Returns the results (in plan order) and the stream's wall time (first send to last answer).
    A failed request is recorded, not raised; requests not sent within `max_duration` are recorded
    as failed too. On an abort (Ctrl-C, SIGTERM) no further request is sent and the requests in
    flight are not waited for: stopping the server ends them.
    """
    results = [RequestResult(index=r.index, problem_id=r.problem_id, arrival=r.arrival) for r in plan]
    ends: list[float] = []
    taken = iter(zip(plan, results))
    take_lock, stop = threading.Lock(), threading.Event()
    clock = {"t0": 0.0}
    ready = threading.Barrier(min(concurrency, len(plan)) + 1)

    def one(req: PlannedRequest, res: RequestResult, t0: float) -> None:
        try:
            extra, cost = {}, 0.0
            if prepare is not None:
                p0 = time.perf_counter()
                extra = prepare(req)
                cost = res.prepare_s = time.perf_counter() - p0
                res.priority = extra.get("priority")
            body = {"model": served_name, "messages": req.messages, "seed": req.seed, "stream": True,
                    "stream_options": {"include_usage": True}, **sampling, **extra}
            out = send_request(port, body, request_timeout)
            res.ok, res.completion = True, out["text"]
            res.ttft, res.latency = out["ttft"] + cost, out["latency"] + cost
            res.finish_reason = out["finish_reason"]
            res.completion_tokens = int(out["usage"].get("completion_tokens") or 0)
            res.prompt_tokens = out["usage"].get("prompt_tokens")
        except Exception as exc:   # recorded per request; the stream goes on
            res.error = f"{type(exc).__name__}: {exc}"
        finally:
            ends.append(time.perf_counter() - t0)

    def worker() -> None:
        ready.wait()
        t0 = clock["t0"]
        deadline = t0 + max_duration
        while not stop.is_set():
            with take_lock:
                nxt = next(taken, None)
            if nxt is None:
                return
            req, res = nxt
            wait = t0 + req.arrival - time.perf_counter()
            if wait > 0 and stop.wait(min(wait, max(0.0, deadline - time.perf_counter()))):
                return
            if time.perf_counter() > deadline:
                res.error = f"not sent: the stream ran past --max-duration {max_duration:.0f} s"
                continue
            res.sent = time.perf_counter() - t0
            one(req, res, t0)

    workers = [threading.Thread(target=worker, name=f"bench-serve_{i}", daemon=True)
               for i in range(min(concurrency, len(plan)))]
    for w in workers:
        w.start()
    clock["t0"] = time.perf_counter()
    ready.wait()
    try:
        for w in workers:
            while w.is_alive():   # a join in slices, so the main thread still takes signals
                w.join(0.5)
    finally:
        stop.set()   # on an abort: workers send nothing more; daemon threads do not hold the process
    sent = [r.sent for r in results if r.sent is not None]
    duration = (max(ends) - min(sent)) if sent and ends else 0.0
    return results, duration

