"""Scheduling arms of bench-serve: in which order vLLM serves the requests waiting for a slot.

    conciser bench-serve ... --schedule fcfs,ltr,oracle --ranker runs/ranker --ltr-window 20

  fcfs    vLLM's default policy: first come, first served.
  ltr     `--scheduling-policy priority`, each request's priority from a length ranker
          (conciser.eval.ranker) run in the client when the request arrives: shortest predicted
          first (approximate shortest-job-first; Fu et al., arXiv 2408.15792).
  oracle  the same, with priorities from the true lengths of an earlier run of the same stream
          (this model's first fcfs run): the ceiling a perfect ranker would reach.

vLLM's priority policy keeps its waiting queue as a heap on (priority, arrival time), smaller first.
Priorities never age and a running request is preempted only under KV-cache pressure, so pure
shortest-first can starve a long request for as long as shorter ones keep arriving.

**Starvation guard: a virtual deadline.** A request arriving at `a` seconds (stream clock) whose
predicted length quantile is `q` (0 = shortest, 1 = longest, from the ranker's calibration on its
training prompts; for the oracle, the rank of the true length within the stream) gets

    priority = round(1000 * (a + W * q))          (milliseconds; W = --ltr-window, seconds)

so requests are served earliest-deadline-first, the deadline being the arrival pushed back by up to
W seconds for the longest. A request can be overtaken only by requests that arrive less than
W * (q - q') <= W seconds after it: W = 0 is FCFS, W = infinity pure shortest-predicted-first. A
request's extra wait over its FCFS position is at most the service time of the requests arriving in
the W seconds after it; choose W around the FCFS queueing delay you are willing to double.
`--ltr-window auto` does that per model: W is the largest wait of the model's first FCFS run (a
fixed 20 s never bound for a concise toy model whose FCFS waits were at most 2.6 s, and its largest
wait doubled).
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

from conciser.errors import UserError, did_you_mean

SCHEDULES = ("fcfs", "ltr", "oracle")


def virtual_deadline(arrival_s: float, quantile: float, window_s: float) -> int:
    """vLLM priority (milliseconds of the stream clock; smaller is served first)."""
    return int(round(1000.0 * (arrival_s + window_s * min(1.0, max(0.0, quantile)))))


def parse_window(text: str | float) -> float | None:
    """--ltr-window: seconds (finite, >= 0), or None for "auto" (the model's largest FCFS wait)."""
    if str(text).strip().lower() == "auto":
        return None
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 <= value < float("inf"):
        raise UserError(f"--ltr-window must be a finite number of seconds >= 0 (0 = fcfs order) or 'auto', got {text!r}")
    return value


def parse_schedules(text: str) -> list[str]:
    names = [s.strip() for s in text.split(",") if s.strip()]
    if not names:
        raise UserError(f"--schedule {text!r}: give one or more of {', '.join(SCHEDULES)}, comma-separated")
    for n in names:
        if n not in SCHEDULES:
            raise UserError(f"--schedule: unknown arm {n!r}{did_you_mean(n, SCHEDULES)}")
    if len(set(names)) != len(names):
        raise UserError(f"--schedule {text!r}: an arm is named twice")
    if "oracle" in names and ("fcfs" not in names or names.index("oracle") < names.index("fcfs")):
        raise UserError("--schedule: oracle takes its lengths from an earlier fcfs run of the same stream; "
                        "list fcfs before oracle (e.g. fcfs,ltr,oracle)")
    return names


@dataclass
class Arm:
    """One scheduling arm. `prepare(request)` (None for fcfs) runs in the client before the request
    is sent and returns the body fields to add; `scores` collects what it predicted, per request."""

    name: str
    policy: str = "fcfs"                      # vLLM's --scheduling-policy for this arm's server
    window_s: float = 0.0
    scores: dict[int, float] = field(default_factory=dict)

    prepare = None


@dataclass
class LTRArm(Arm):
    ranker: object = None   # conciser.eval.ranker.Ranker

    def prepare(self, req) -> dict:
        score = self.ranker.score([req.messages[-1]["content"]])[0]
        self.scores[req.index] = score
        return {"priority": virtual_deadline(req.arrival, self.ranker.quantile(score), self.window_s)}


@dataclass
class OracleArm(Arm):
    quantiles: dict[int, float] = field(default_factory=dict)

    def prepare(self, req) -> dict:
        q = self.quantiles.get(req.index, 0.5)   # a request that failed in the reference run: the middle
        self.scores[req.index] = q
        return {"priority": virtual_deadline(req.arrival, q, self.window_s)}


def rank_quantiles(tokens: dict[int, int]) -> dict[int, float]:
    """Each request's true length as a quantile of the stream's lengths (mid-rank for ties), 0..1."""
    values = sorted(tokens.values())
    n = len(values)
    if n < 2:
        return {i: 0.5 for i in tokens}
    return {i: (bisect.bisect_left(values, t) + bisect.bisect_right(values, t) - 1) / 2 / (n - 1)
            for i, t in tokens.items()}


def make_arm(name: str, *, window_s: float, ranker=None, reference_tokens: dict[int, int] | None = None) -> Arm:
    if name == "fcfs":
        return Arm("fcfs")
    if name == "ltr":
        return LTRArm("ltr", policy="priority", window_s=window_s, ranker=ranker)
    if name == "oracle":
        return OracleArm("oracle", policy="priority", window_s=window_s, quantiles=rank_quantiles(reference_tokens or {}))
    raise UserError(f"unknown schedule {name!r}{did_you_mean(name, SCHEDULES)}")


def round_order(arms: list[str], round_index: int) -> list[str]:
    """Arms in the order a round runs them: as given in even rounds, reversed in odd ones (ABBA), so
    slow drift of a shared machine hits every arm alike, and neighbouring arms with the same policy
    share one server. Round 0 keeps the given order (fcfs runs before oracle needs its lengths)."""
    return list(arms) if round_index % 2 == 0 else list(reversed(arms))
