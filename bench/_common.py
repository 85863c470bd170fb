"""What the three benches share: machine facts, result files, markdown tables."""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Sequence

RESULTS = Path(__file__).parent / "results"


def machine() -> dict:
    """The facts a reader needs to judge a timing: CPUs we may use, load, versions."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:
        cpus = os.cpu_count() or 1
    info = {"cpus": cpus, "load_avg_1m": round(os.getloadavg()[0], 2), "python": platform.python_version(),
            "platform": platform.platform(terse=True)}
    try:  # on: CPU time is shared per session, not per process (see bench/README.md)
        info["sched_autogroup"] = "on" if Path("/proc/sys/kernel/sched_autogroup_enabled").read_text().strip() == "1" else "off"
    except OSError:
        pass
    for dist in ("torch", "transformers", "trl", "math-verify", "sympy"):
        try:
            from importlib.metadata import version

            info[dist] = version(dist)
        except Exception:
            pass
    return info


def stamp() -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S %Z")


def result_paths(name: str, quick: bool, out_dir: Path | None = None) -> tuple[Path, Path]:
    """(json, md) paths: bench/results/<name>.json, or <name>.quick.json for --quick runs."""
    out = Path(out_dir) if out_dir is not None else RESULTS
    out.mkdir(parents=True, exist_ok=True)
    stem = f"{name}.quick" if quick else name
    return out / f"{stem}.json", out / f"{stem}.md"


def write_results(name: str, quick: bool, data: dict, markdown: str, out_dir: Path | None = None) -> Path:
    """Write <name>[.quick].json and .md; returns the markdown path."""
    js, md = result_paths(name, quick, out_dir)
    js.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n", encoding="utf-8")
    md.write_text(markdown.rstrip() + "\n", encoding="utf-8")
    return md


def md_table(header: Sequence[str], rows: Sequence[Sequence], align: str | None = None) -> str:
    """A GitHub markdown table; `align` is one char per column, 'l' or 'r' (default: first l, rest r)."""
    align = align or "l" + "r" * (len(header) - 1)
    sep = ["---:" if a == "r" else ":---" for a in align]
    lines = ["| " + " | ".join(str(h) for h in header) + " |", "| " + " | ".join(sep) + " |"]
    for r in rows:
        lines.append("| " + " | ".join("" if v is None else str(v) for v in r) + " |")
    return "\n".join(lines)


def median(xs: Sequence[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def log(msg: str) -> None:
    """Progress lines on stderr, so that a bench's stdout stays the table."""
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)
