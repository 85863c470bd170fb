"""Metrics and reports of bench-serve: per-stream summaries, ratios, the printed tables, and the
latency CDF plot of the scheduling arms.

Times per request (see conciser.eval.serve_load): latency and TTFT run from when the client takes
the request up (its slot free; the schedule's ranking included) to the last byte / first token;
the *wait* of a request runs from its planned arrival to its first token, so it holds every queue
it sat in (client, ranker, server) -- `max_wait_s`, the largest, is the starvation measure.
"""

from __future__ import annotations

import math

from conciser.eval.serve_load import RequestResult


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
    waits = [(r.sent - (r.arrival if r.arrival is not None else r.sent)) + r.ttft for r in ok if r.sent is not None]
    client = [r.sent - r.arrival for r in results if r.sent is not None and r.arrival is not None]
    prep = [r.prepare_s * 1000.0 for r in ok if r.prepare_s is not None]
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
        "latency_p99": percentile(lat, 99), "ttft_mean": _mean(ttft), "ttft_p99": percentile(ttft, 99),
        "wait_mean_s": _mean(waits), "max_wait_s": max(waits) if waits else None,
        "client_wait_max_s": max(client) if client else None,   # > 0: the client's --concurrency queued requests
        "prepare_ms_mean": _mean(prep), "prepare_ms_max": max(prep) if prep else None,
    }


RATIO_KEYS = ("tokens_per_answer", "latency_p50", "latency_p95", "ttft_p50", "ttft_p95", "tpot_ms",
              "requests_per_s", "output_tokens_per_s", "accuracy", "latency_mean", "latency_p99", "ttft_mean",
              "ttft_p99", "max_wait_s")


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



# ---------------------------------------------------------------- scheduling arms

# (label, key, format) rows of the per-model arm table; ratios to fcfs beside them
ARM_ROWS = (
    ("latency mean (s)", "latency_mean", "{:.2f}"), ("latency p50 (s)", "latency_p50", "{:.2f}"),
    ("latency p95 (s)", "latency_p95", "{:.2f}"), ("latency p99 (s)", "latency_p99", "{:.2f}"),
    ("TTFT mean (s)", "ttft_mean", "{:.2f}"), ("TTFT p50 (s)", "ttft_p50", "{:.2f}"),
    ("TTFT p95 (s)", "ttft_p95", "{:.2f}"), ("TTFT p99 (s)", "ttft_p99", "{:.2f}"),
    ("largest wait (s)", "max_wait_s", "{:.2f}"), ("requests / s", "requests_per_s", "{:.3f}"),
    ("output tokens / s", "output_tokens_per_s", "{:.1f}"), ("accuracy", "accuracy", "{:.1%}"),
    ("tokens / answer", "tokens_per_answer", "{:.1f}"), ("ranking cost mean (ms)", "prepare_ms_mean", "{:.2f}"),
)


def _fmt(value, pattern):
    return "-" if value is None else pattern.format(value)


def arm_rows(model: dict) -> list[list[str]]:
    """Rows (label, value per arm, ratio to fcfs per other arm) of one model's arm table."""
    arms = list(model["arms"])
    rows = []
    for label, key, pattern in ARM_ROWS:
        row = [label] + [_fmt(model["arms"][a]["metrics"].get(key), pattern) for a in arms]
        row += [_fmt(model["arms"][a].get("ratios_to_fcfs", {}).get(key), "{:.2f}x") for a in arms if a != "fcfs"]
        rows.append(row)
    taus = [_fmt(model["arms"][a].get("stream_kendall_tau"), "{:.3f}") for a in arms]
    rows.append(["Kendall tau on the stream"] + taus + [""] * sum(a != "fcfs" for a in arms))
    return rows


def print_arm_tables(summary: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    cfg = summary["config"]
    for name, model in summary["models"].items():
        arms = list(model.get("arms", {}))
        if arms == ["fcfs"] or not arms:
            continue
        table = Table(title=f"{name}: {cfg['requests']} requests x {cfg['rounds']} round(s), rate {cfg['rate']}/s, "
                            f"window {_seconds(model.get('ltr_window_s', cfg.get('ltr_window_s')))}")
        table.add_column("metric")
        for a in arms:
            table.add_column(a, justify="right")
        for a in arms:
            if a != "fcfs":
                table.add_column(f"{a} / fcfs", justify="right", style="bold")
        for row in arm_rows(model):
            table.add_row(*row)
        Console().print(table)


def _seconds(value) -> str:
    return f"{value:.1f} s" if isinstance(value, (int, float)) else str(value)


def plot_latency_cdfs(latencies: dict[str, dict[str, list[float]]], path, title: str = "") -> None:
    """One panel per model, one CDF line per arm: latencies[model][arm] = per-request latencies (s)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = list(latencies)
    fig, axes = plt.subplots(1, len(models), figsize=(5.5 * len(models), 4.2), squeeze=False, sharey=True)
    for ax, m in zip(axes[0], models):
        for arm, values in latencies[m].items():
            v = sorted(values)
            if v:
                ax.step(v, [(i + 1) / len(v) for i in range(len(v))], where="post", label=f"{arm} (mean {sum(v) / len(v):.1f} s)")
        ax.set_title(m)
        ax.set_xlabel("latency (s)")
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right", fontsize=8)
    axes[0][0].set_ylabel("fraction of requests")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
