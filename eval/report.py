"""Printed tables, the accuracy-vs-tokens Pareto plot and the accuracy-vs-budget curves.

    conciser eval compare RUN [RUN ...] [--plot pareto.png] [--curves budget_curves.png] [--benchmarks toy]

A RUN is an eval output folder (holding <benchmark>/summary.json), one benchmark's folder, or a
summary.json. Runs are labelled by their folder name unless given as LABEL=PATH. Runs with a
budget sweep (budget_curve.json beside their summary) are also drawn as curves, one panel per
benchmark. Default outputs go into RUN1's folder; an existing file there is replaced with a notice.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

_MAIN_COLS = [("accuracy", "acc", "{:.3f}"), ("mean_tokens", "tokens", "{:.0f}"), ("median_tokens", "median", "{:.0f}"),
              ("p90_tokens", "p90", "{:.0f}"), ("mean_tokens_correct", "tok✓", "{:.0f}"),
              ("mean_tokens_incorrect", "tok✗", "{:.0f}"), ("truncation_rate", "trunc", "{:.3f}"),
              ("accuracy_per_1k_tokens", "acc/1k tok", "{:.3f}")]


def _fmt(v, f: str = "{:.3f}") -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f.format(v)
    return str(v)


def _console():
    import sys

    from rich.console import Console

    # Not a terminal (a log file, a pipe, pytest): rich would assume 80 columns and squash the table.
    return Console() if sys.stdout.isatty() else Console(width=200)


def print_summary(s: dict, curve: list[dict] | None = None) -> None:
    """One benchmark's summary as a rich table (and per-level, budget, certaindex and length tables)."""
    from rich.table import Table

    title = f"{s['benchmark']}: {s['model']} ({s['backend']}, n={s['n']}, {s['n_problems']} problems, " \
            f"T={s.get('temperature')}, top-p={s.get('top_p')}, max {s.get('max_new_tokens')} new tokens)"
    t = Table(title=title, title_justify="left", min_width=min(len(title), 100))
    t.add_column("metric")
    t.add_column("value", justify="right")
    for key in ["accuracy", "accuracy_stderr", *[k for k in s if k.startswith(("pass@", "maj@", "lfvote@"))]]:
        t.add_row(key, _fmt(s.get(key)))
    for key, _, f in _MAIN_COLS[1:]:
        t.add_row(key, _fmt(s.get(key), f))
    for key in ("median_tokens_correct", "median_tokens_incorrect", "no_answer_rate", "mean_minimal_tokens",
                "tokens_over_minimal", "mean_probe_tokens", "mean_total_tokens", "early_exit_rate",
                "certaindex_tau", "early_stop_accuracy", "samples_used", "tokens_used", "full_tokens",
                "tokens_used_fraction", "budget_auc", "length_deviation", "length_score",
                "aes", "aes_delta_length", "aes_delta_accuracy", "grading_timeouts", "grading_errors", "gold_unparseable",
                "extraction"):
        if key in s:
            t.add_row(key, _fmt(s[key]))
    console = _console()
    console.print(t)
    if s.get("by_level"):
        lt = Table(title=f"{s['benchmark']} by level", title_justify="left")
        cols = ["n_problems", "accuracy", "mean_tokens", "truncation_rate"]
        if any("mean_minimal_tokens" in d for d in s["by_level"].values()):
            cols.append("mean_minimal_tokens")
        lt.add_column("level")
        for c in cols:
            lt.add_column(c, justify="right")
        for lv, d in s["by_level"].items():
            lt.add_row(lv, *[_fmt(d.get(c), "{:.3f}" if c in ("accuracy", "truncation_rate") else "{:.1f}") for c in cols])
        console.print(lt)
    if curve:
        console.print(_rows_table(f"{s['benchmark']} budget sweep (budget_auc {_fmt(s.get('budget_auc'))})", curve,
                                  [("budget", "{}"), ("accuracy", "{:.3f}"), ("mean_tokens", "{:.1f}"), ("forced_rate", "{:.3f}")]))
    if s.get("certaindex_sweep"):
        n = s["n"]
        console.print(_rows_table(f"{s['benchmark']} certaindex tau sweep (rounds of {s.get('certaindex_round')}; "
                                  f"maj@{n} {_fmt(s.get(f'maj@{n}'))} with {_fmt(s.get('full_tokens'), '{:.1f}')} "
                                  "tokens per problem)", s["certaindex_sweep"],
                                  [("tau", "{}"), ("accuracy", "{:.3f}"), ("samples_used", "{:.2f}"), ("tokens_used", "{:.1f}"),
                                   ("tokens_used_fraction", "{:.3f}")]))
    if s.get("length_by_target"):
        rows = [{"target": t, **d} for t, d in s["length_by_target"].items()]
        console.print(_rows_table(f"{s['benchmark']} length adherence", rows,
                                  [("target", "{}"), ("n_samples", "{}"), ("mean_tokens", "{:.1f}"), ("accuracy", "{:.3f}"),
                                   ("length_deviation", "{:.3f}"), ("length_score", "{:.1f}")]))


def _rows_table(title: str, rows: list[dict], cols: list[tuple[str, str]]):
    from rich.table import Table

    t = Table(title=title, title_justify="left")
    for c, _ in cols:
        t.add_column(c, justify="right")
    for r in rows:
        t.add_row(*[_fmt(r.get(c), f) for c, f in cols])
    return t


def load_runs(specs: Sequence[str]) -> list[tuple[str, dict[str, dict]]]:
    """[(label, {benchmark: summary})] for each RUN spec ([LABEL=]PATH)."""
    runs = []
    for spec in specs:
        label, _, path = spec.rpartition("=") if "=" in spec and not Path(spec).exists() else ("", "", spec)
        p = Path(path)
        if not p.exists():
            raise FileNotFoundError(f"run {path} does not exist; give an eval output folder or a summary.json")
        files = [p] if p.is_file() else ([p / "summary.json"] if (p / "summary.json").exists() else sorted(p.glob("*/summary.json")))
        if not files:
            raise FileNotFoundError(f"no summary.json in {path} or its sub-folders; run conciser eval --out {path} first")
        summaries = {}
        for f in files:
            s = json.loads(f.read_text())
            curve = f.parent / "budget_curve.json"
            if curve.is_file():
                s = {**s, "budget_curve": json.loads(curve.read_text())}
            summaries[s["benchmark"]] = s
        if not label:
            # run/<benchmark>/summary.json: the run folder names it
            label = p.parent.parent.name if p.is_file() else (p.parent.name if files == [p / "summary.json"] else p.name)
        runs.append((label, summaries))
    return runs


def default_output(specs: Sequence[str], name: str) -> Path:
    """RUN1/<name>: the first run's folder (the folder holding it when RUN1 is a summary.json)."""
    spec = specs[0]
    path = Path(spec.rpartition("=")[2] if "=" in spec and not Path(spec).exists() else spec)
    return (path.parent if path.is_file() else path) / name


def _save(fig, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        print(f"replacing the existing {path}")   # never silently
    fig.savefig(path, dpi=120)


def compare(specs: Sequence[str], *, plot: str | Path | None = None, benchmarks: Sequence[str] | None = None,
            curves: str | Path | None = None) -> dict:
    """Print the side-by-side table of several runs, draw the Pareto plot to `plot` and, for runs with
    a budget sweep, the accuracy-vs-budget curves to `curves`; returns the rows. Replacing an
    existing file is announced."""
    from rich.table import Table

    runs = load_runs(specs)
    names = list(benchmarks) if benchmarks else sorted({b for _, s in runs for b in s})
    console = _console()
    rows: dict[str, list[dict]] = {}
    for bench in names:
        t = Table(title=f"{bench}", title_justify="left")
        t.add_column("run", no_wrap=True)
        extra = [k for k in ("tokens_over_minimal", "mean_total_tokens", "budget_auc", "early_stop_accuracy",
                             "tokens_used_fraction", "length_score", "aes")
                 if any(k in s.get(bench, {}) for _, s in runs)]
        passk = sorted({k for _, s in runs for k in s.get(bench, {})
                        if k.startswith(("pass@", "maj@", "lfvote@")) and k != "pass@1"},
                       key=lambda k: (k.split("@")[0], int(k.split("@")[1])))
        for _, head, _ in _MAIN_COLS:
            t.add_column(head, justify="right")
        for k in passk + extra:
            t.add_column(k, justify="right")
        t.add_column("n", justify="right")
        rows[bench] = []
        for label, summaries in runs:
            s = summaries.get(bench)
            if s is None:
                continue
            rows[bench].append({"run": label, **s})
            t.add_row(label, *[_fmt(s.get(k), f) for k, _, f in _MAIN_COLS], *[_fmt(s.get(k)) for k in passk + extra],
                      f"{s['n']}x{s['n_problems']}")
        console.print(t)
    if plot:
        pareto_plot(rows, plot)
        console.print(f"Pareto plot: {plot}")
    if curves and any(r.get("budget_curve") for rs in rows.values() for r in rs):
        budget_plot(rows, curves)
        console.print(f"budget curves: {curves}")
    return rows


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the points not dominated (fewer-or-equal tokens and higher-or-equal accuracy)."""
    front = []
    for i, (x, y) in enumerate(points):
        dominated = any((x2 <= x and y2 >= y) and (x2 < x or y2 > y) for j, (x2, y2) in enumerate(points) if j != i)
        if not dominated:
            front.append(i)
    return sorted(front, key=lambda i: points[i][0])


def pareto_plot(rows: dict[str, list[dict]], path: str | Path) -> Path:
    """Accuracy vs mean tokens, one panel per benchmark, the Pareto front drawn as a step line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    benches = [b for b, r in rows.items() if r]
    if not benches:
        raise ValueError("nothing to plot: no run has a summary for the selected benchmarks")
    fig, axes = plt.subplots(1, len(benches), figsize=(5 * len(benches), 4), squeeze=False)
    for ax, bench in zip(axes[0], benches):
        pts = [(r["mean_tokens"], r["accuracy"]) for r in rows[bench]]
        for r, (x, y) in zip(rows[bench], pts):
            ax.scatter([x], [y], s=40)
            ax.annotate(r["run"], (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
        front = pareto_front(pts)
        if len(front) > 1:
            ax.step([pts[i][0] for i in front], [pts[i][1] for i in front], where="post", color="grey",
                    linestyle="--", linewidth=1, label="Pareto front")
            ax.legend(fontsize=8, loc="lower right")
        ax.set_title(bench)
        ax.set_xlabel("mean tokens per sample")
        ax.set_ylabel("accuracy (avg@n)")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    path = Path(path)
    _save(fig, path)
    plt.close(fig)
    return path


def budget_plot(rows: dict[str, list[dict]], path: str | Path) -> Path:
    """Accuracy vs thinking budget (log2 axis), one line per run, one panel per benchmark; the
    legend gives each run's budget_auc. Dotted: mean tokens used, on the right axis."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    benches = [b for b, rs in rows.items() if any(r.get("budget_curve") for r in rs)]
    fig, axes = plt.subplots(1, len(benches), figsize=(6 * len(benches), 4.2), squeeze=False)
    for ax, bench in zip(axes[0], benches):
        tok = ax.twinx()
        for i, r in enumerate(x for x in rows[bench] if x.get("budget_curve")):
            c = r["budget_curve"]
            color = f"C{i}"
            ax.plot([p["budget"] for p in c], [p["accuracy"] for p in c], marker="o", color=color,
                    label=f"{r['run']} (AUC {r.get('budget_auc', 0):.3f})")
            tok.plot([p["budget"] for p in c], [p["mean_tokens"] for p in c], linestyle=":", color=color, alpha=0.6)
        ax.set_xscale("log", base=2)
        budgets = sorted({p["budget"] for r in rows[bench] for p in r.get("budget_curve") or []})
        ax.set_xticks(budgets, [str(b) for b in budgets])
        ax.set_ylim(0, 1.02)
        ax.set_title(f"{bench}: accuracy vs thinking budget")
        ax.set_xlabel("thinking budget (tokens; answer forced at the cut)")
        ax.set_ylabel("accuracy (avg@n)")
        tok.set_ylabel("mean tokens used (dotted)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    path = Path(path)
    _save(fig, path)
    plt.close(fig)
    return path
