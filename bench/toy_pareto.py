"""Toy Pareto: every length-reward method trained from the same toy base, evaluated on the same problems.

    python -m bench.toy_pareto --task toy-scan   # every method, 40 steps, seeds 0-2 (`make bench`)
    python -m bench.toy_pareto                   # the same on the first toy task, toy-chain
    python -m bench.toy_pareto --quick           # 6 methods, 8 steps, 60 problems, seed 0, the base's quick build
    python -m bench.toy_pareto --methods laser,dler --steps 40 --seeds 0,1
    python -m bench.toy_pareto --methods dler,dler_da --update   # re-run two methods into the results
    python -m bench.toy_pareto --task toy-scan --out /tmp/lr2e-4 trainer.learning_rate=2e-4   # every recipe overridden

Every method starts from the cached toy base (`conciser toy-base`) with the same training seed and
the same number of optimizer steps, and is evaluated on the same held-out toy problems
(`conciser.eval`, benchmark "toy": the first N of its problems, levels cycled evenly) with the same
sampling and the toy's default generation cap, so the rows are comparable:

    every method   its own recipes/toy/<method>.yaml (every registered reward has one; only the step
                   count, seed and output folder change): the card methods laser, laser_d, laser_de,
                   dler, dler_da, drpo, hapo, curriculum, then the rest of the rewards registry
    grpo           plain GRPO, correctness only: recipes/toy/grpo.yaml
    openr1_len     the peer: stock TRL GRPOTrainer with open-r1's accuracy + length rewards (Kimi-style,
                   character lengths, min/max over each rank's batch; bench/openr1_peer.py), grpo's settings

`--task toy-scan` runs the same on the toy-scan task (conciser/toy_scan.py: its base, its training data,
its benchmark); the results go to bench/results/toy_pareto_toy_scan.*, beside the toy-chain ones.

A method that fails to train is reported with its error, not dropped. Results: a table (accuracy,
mean tokens, tokens / minimal, the change against the base, per difficulty level) in
bench/results/toy_pareto.md + .json and the plot bench/results/toy_pareto.png (accuracy against
mean tokens, the Pareto front, the base, the minimal length; with several seeds, mean ± std).

Runs go `--jobs` at a time (default: the CPUs), each in its own process with one torch thread
(tiny models waste a second thread, and on shared cores two threads stall on OpenMP barriers).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from bench._common import RESULTS, log, machine, md_table, result_paths, stamp, write_results
from bench.pareto_plot import pareto_png as plot
from conciser.toy import TASKS

CARD = ["laser", "laser_d", "laser_de", "dler", "dler_da", "drpo", "hapo", "curriculum"]
GRPO = "grpo"
# The peer row: stock TRL GRPOTrainer with open-r1's length reward (bench/openr1_peer.py), trained with
# the plain GRPO row's settings (recipes/toy/grpo.yaml).
PEER = "openr1_len"
# L1 models are evaluated with one stated budget (the paper reports fixed-budget evals), about twice
# the toy's mean minimal length; every other method sees the plain toy prompt.
L1_EVAL_BUDGET = 64


def eval_template(method: str) -> str | None:
    """The eval prompt of a method whose reward states a per-prompt budget (L1): one stated budget."""
    from conciser.config import load_recipe
    from conciser.rewards import reward_class

    if method == "base":
        return None
    prompt = reward_class(load_recipe(recipe_for(method)).rewards.method).target_prompt
    return None if prompt is None else "{problem} " + prompt.format(n=L1_EVAL_BUDGET)


QUICK_METHODS = ["grpo", "laser", "laser_d", "dler", "hapo", "kimi"]
FULL_STEPS, QUICK_STEPS = 40, 8
FULL_SEEDS = (0, 1, 2)   # issue 12: three training seeds, intervals over them
FULL_PROBLEMS, QUICK_PROBLEMS = 250, 60


def all_methods() -> list[str]:
    from conciser.rewards import REWARDS

    return [*CARD, GRPO, *[m for m in REWARDS if m not in CARD], PEER]


def task_overrides(task: str, recipe: str) -> list[str]:
    """Recipe overrides that train toy recipe `recipe` on toy task `task`: its data, its generation cap
    (the recipes name the default task and its 160-token cap), and reference statistics of its own
    (runs/<task>/... beside the default task's runs/toy/...: they are sampled from the task's base)."""
    if task in ("toy", "toy-chain"):
        return []
    from conciser import toy
    from conciser.config import load_recipe

    out = [f"data.dataset={task}", f"trainer.max_completion_length={toy.task(task).DEFAULT_MAX_COMPLETION}"]
    ref = load_recipe(recipe).rewards.params.get("reference_stats")
    if ref:
        out.append(f"rewards.params.reference_stats={str(ref).replace('runs/toy/', f'runs/{task}/', 1)}")
    return out


def results_name(task: str) -> str:
    """bench/results/<name>.json: toy_pareto for the default task, toy_pareto_<task> for another."""
    return "toy_pareto" if task in ("toy", "toy-chain") else f"toy_pareto_{task.replace('-', '_')}"


def recipe_for(method: str) -> str:
    """The recipe that trains `method` on the toy: recipes/toy/<method>.yaml (the peer: the GRPO row's)."""
    from conciser.config import resolve_recipe_path

    method = GRPO if method == PEER else method
    resolve_recipe_path(f"toy/{method}")  # a missing recipe fails here, naming the bundled ones
    return f"toy/{method}"


def _schedule_over(recipe: str, steps: int) -> list[str]:
    """A reward whose schedule spans the run (curriculum's `total_steps`) spans the bench's steps:
    cut off at 40 of its 60 steps, the curriculum would be compared at its step-40 budget."""
    from conciser.config import load_recipe

    total = load_recipe(recipe).rewards.params.get("total_steps")
    return [] if total in (None, steps) else [f"rewards.params.total_steps={steps}"]


@dataclass
class Spec:
    """One (method, seed) run: train (unless method == "base") then evaluate."""

    method: str
    seed: int
    steps: int
    problems: int
    model: str
    out: str
    eval_seed: int = 0
    extra: list[str] = field(default_factory=list)
    task: str = "toy"       # the toy task trained on and evaluated (conciser.toy.TASKS)


@contextlib.contextmanager
def _steps_recorded(reached: list[int]):
    """While active, conciser's trainer records its last finished step in reached[0] (so that a
    method that fails mid-run is reported with the step it reached). Nothing else changes."""
    from transformers import TrainerCallback

    import conciser.trainers.grpo as grpo

    class Record(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            reached[0] = state.global_step

    base = grpo.ConciseGRPOTrainer

    class Recorded(base):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.add_callback(Record())

    grpo.ConciseGRPOTrainer = Recorded  # train() imports it by name when called
    try:
        yield
    finally:
        grpo.ConciseGRPOTrainer = base


def train_method(method: str, task: str, model: str, out: Path, steps: int, seed: int, extra: list[str]) -> Path:
    """Train `method` from `model` on toy task `task` as every bench does: its toy recipe with the task's
    overrides, the run's steps and seed (the peer with stock TRL). Returns the trained model's folder."""
    from conciser.trainers.train import train

    recipe = recipe_for(method)
    overrides = [*_schedule_over(recipe, steps), *task_overrides(task, recipe), f"model.name_or_path={model}",
                 f"trainer.output_dir={out}", f"trainer.max_steps={steps}", f"trainer.seed={seed}",
                 "trainer.logging_steps=5", *extra]
    if method == PEER:
        from bench.openr1_peer import train_peer

        return train_peer(recipe, overrides)
    return train(recipe, overrides)


def run_one(spec: Spec) -> dict:
    """Train and evaluate one spec in this process; returns its result record (never raises)."""
    import torch

    torch.set_num_threads(1)
    from conciser.eval.run import evaluate

    out = Path(spec.out)
    rec: dict = {"method": spec.method, "seed": spec.seed, "steps": spec.steps}
    t0 = time.perf_counter()
    reached = [0]
    try:
        model = spec.model
        if spec.method != "base":
            recipe = recipe_for(spec.method)
            overrides = _schedule_over(recipe, spec.steps)
            rec["recipe"], rec["overrides"] = recipe, overrides
            with _steps_recorded(reached):
                model = str(train_method(spec.method, spec.task, spec.model, out / "model", spec.steps, spec.seed,
                                         spec.extra))
        rec["train_s"] = round(time.perf_counter() - t0, 1)
        t1 = time.perf_counter()
        s = evaluate(model, benchmark=spec.task, n=1, limit=spec.problems, out_dir=out / "eval", seed=spec.eval_seed,
                     template=eval_template(spec.method), print_table=False, progress=False)
        rec["eval_s"] = round(time.perf_counter() - t1, 1)
        rec["summary"] = {k: s.get(k) for k in ("n_problems", "accuracy", "accuracy_stderr", "mean_tokens",
                                                "mean_minimal_tokens", "tokens_over_minimal", "truncation_rate",
                                                "no_answer_rate", "by_level", "max_new_tokens", "temperature")}
        rec["summary"].update(sample_figures(out / "eval" / spec.task / "samples.jsonl", spec.task))
    except Exception as exc:  # reported in the table: a method that cannot train is a result too
        import traceback

        rec["error"] = f"{type(exc).__name__}: {exc}"
        rec["failed_at_step"] = reached[0] + 1 if spec.method != "base" else None
        rec["traceback"] = traceback.format_exc()[-4000:]
    rec["wall_s"] = round(time.perf_counter() - t0, 1)
    return rec


def by_need_quartile(samples: Path, task: str) -> dict[str, dict]:
    """Accuracy and mean tokens by quartile of needed (minimal) length over the evaluated problems:
    {"Q1": {...}, ..., "Q4": {...}}, Q4 the longest. Problems are ranked by minimal length (ties by id),
    so on toy-scan a quartile mixes levels: it is the problems that need the most thinking, whatever
    their prompt says."""
    from conciser import toy

    rows = [json.loads(line) for line in samples.open()]
    need = {p.id: p.minimal_tokens for p in toy.task(task).eval_problems(max(250, len(rows)))}
    rows.sort(key=lambda r: (need[r["problem_id"]], r["problem_id"]))
    out = {}
    for q in range(4):
        part = rows[q * len(rows) // 4:(q + 1) * len(rows) // 4]
        if part:
            out[f"Q{q + 1}"] = {"accuracy": statistics.fmean(r["correct"] for r in part),
                                "mean_tokens": statistics.fmean(r["tokens"] for r in part),
                                "mean_minimal_tokens": statistics.fmean(need[r["problem_id"]] for r in part),
                                "problems": len(part)}
    return out


def _scan_samples(samples: Path, task: str):
    """(the task's module, [(problem, completion text)] of the eval samples) on toy-scan; (None, []) on a
    task without the hint and the stop rule."""
    from conciser import toy

    mod = toy.task(task)
    if not hasattr(mod, "SURE"):
        return None, []
    rows = [json.loads(line) for line in samples.open()]
    probs = {p.id: p for p in mod.eval_problems(max(250, len(rows)))}
    return mod, [(probs[r["problem_id"]], r["text"]) for r in rows]


def hint_by_sure(samples: Path, task: str) -> dict[int, float]:
    """On toy-scan: the share of answers taken from the hint at each printed odds ({sure: share}), which
    shows whether a policy gives up where the odds make it pay (the surer hints first); {} on other tasks.
    An answer is taken from the hint when it is the hint's digit and the scan never reached its stop
    (`toy_scan.reached_stop`): with or without the hint phrase, since a policy can learn to drop the
    phrase (and the stop step's period: counting "stop." made a policy that drops it look like a
    hint-taker whenever the hint was right)."""
    from conciser.rewards.grading import extract_answer

    mod, pairs = _scan_samples(samples, task)
    if mod is None:
        return {}
    taken = {s: [] for s in mod.SURE}
    for p, text in pairs:
        taken[p.sure].append(extract_answer(text) == p.hint and not mod.reached_stop(p, text))
    return {s: statistics.fmean(v) for s, v in taken.items() if v}


def false_stop_rate(samples: Path, task: str) -> float | None:
    """On toy-scan: the share of answers whose thinking claims a stop it never reached
    (`toy_scan.false_stop`: scan errors and made-up stops); None on other tasks."""
    mod, pairs = _scan_samples(samples, task)
    if mod is None or not pairs:
        return None
    return statistics.fmean(mod.false_stop(p, text) for p, text in pairs)


def sample_figures(samples: Path, task: str) -> dict:
    """The summary figures computed from a run's eval samples (not by the eval itself)."""
    return {"by_need_quartile": by_need_quartile(samples, task), "hint_by_sure": hint_by_sure(samples, task),
            "false_stop_rate": false_stop_rate(samples, task)}


CURVE_BUDGETS = (8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 128, 160)


def best_method(agg: dict[str, dict]) -> str | None:
    """The trained method whose model gets a budget curve: among those at least as accurate as the base
    (means over seeds), the one with the fewest tokens / minimal; if none is, the most accurate."""
    base = (agg.get("base") or {}).get("accuracy")
    ok = {k: a for k, a in agg.items() if k != "base" and a.get("accuracy") is not None}
    if not ok:
        return None
    keep = {k: a for k, a in ok.items() if base is None or a["accuracy"] >= base}
    if keep:
        return min(keep, key=lambda k: keep[k]["tokens_over_minimal"])
    return max(ok, key=lambda k: ok[k]["accuracy"])


def budget_curves(models: dict[str, Path], task: str, problems: int) -> dict[str, list[dict]]:
    """Budget-forcing curves (conciser/toy_scan_check.budget_curve: one sample per problem, thinking cut at
    B and the answer forced) of each model on the bench's held-out problems: {name: [{budget, accuracy,
    mean_tokens, by_level: {level: accuracy}}]}."""
    from conciser import toy
    from conciser.toy_scan_check import budget_curve

    held_out = toy.task(task).eval_problems(max(250, problems))[:problems]
    out = {}
    for name, path in models.items():
        c = budget_curve(path, held_out, CURVE_BUDGETS)
        out[name] = [{"budget": b, "accuracy": c["accuracy"][b], "mean_tokens": c["mean_tokens"][b],
                      "by_level": {str(lv): c["by_level"][lv][b] for lv in c["by_level"]}} for b in CURVE_BUDGETS]
        log(f"budget curve of {name}: " + ", ".join(f"B={p['budget']} {p['accuracy']:.2f}" for p in out[name]))
    return out


def _worker_loop(queue: str) -> None:
    """A worker process: claims spec files from `queue`/todo one at a time and runs them.

    One process runs several specs, so the ~15 s of imports (torch, transformers, TRL, vLLM's
    client) are paid once per worker rather than once per method. A claim is an atomic rename.
    """
    todo, claimed = Path(queue) / "todo", Path(queue) / "claimed"
    parent = os.getppid()
    while True:
        if os.getppid() != parent:
            return  # the bench that started us was killed (we were re-parented): claim nothing more
        for f in sorted(todo.glob("*.json")):
            mine = claimed / f"{f.stem}.{os.getpid()}.json"
            try:
                f.rename(mine)
            except OSError:
                continue  # another worker took it
            spec = Spec(**json.loads(mine.read_text()))
            print(f"=== {spec.method} seed {spec.seed}", flush=True)
            rec = run_one(spec)
            (Path(spec.out) / "spec.json").write_text(json.dumps(asdict(spec)))
            tmp = Path(spec.out) / "result.json.tmp"
            tmp.write_text(json.dumps(rec, indent=2))
            tmp.rename(Path(spec.out) / "result.json")
            break
        else:
            return  # nothing left to claim


def finished_run(spec: Spec) -> dict | None:
    """The record of `spec`'s successful run in its folder, if one is there (written by this spec)."""
    out = Path(spec.out)
    try:
        if json.loads((out / "spec.json").read_text()) != asdict(spec):
            return None
        rec = json.loads((out / "result.json").read_text())
    except (OSError, ValueError):
        return None
    return rec if "summary" in rec else None


def run_specs(specs: list[Spec], jobs: int, queue: Path, timeout: float | None = None) -> list[dict]:
    """Run specs on `jobs` worker processes (a file queue under `queue`); results in spec order.

    A spec still running after `timeout` seconds gets its worker killed (and replaced) and an error.
    A spec whose folder already holds its finished run (same spec, no error) is not run again, so a
    run interrupted with `--keep DIR` resumes when the same command is given again.
    """
    todo, claimed = queue / "todo", queue / "claimed"
    shutil.rmtree(queue, ignore_errors=True)  # an interrupted run's claims are stale
    todo.mkdir(parents=True)
    claimed.mkdir(parents=True)
    results: dict[int, dict] = {}
    for i, spec in enumerate(specs):
        out = Path(spec.out)
        out.mkdir(parents=True, exist_ok=True)
        if (done := finished_run(spec)) is not None:
            results[i] = done
            log(f"{spec.method} (seed {spec.seed}): finished earlier, reusing {out / 'result.json'}")
            continue
        (out / "result.json").unlink(missing_ok=True)  # or a stale one would be read as this run's
        (todo / f"{i:04d}.json").write_text(json.dumps(asdict(spec)))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false",
           "WANDB_MODE": "disabled", "HF_HUB_OFFLINE": "1"}
    boot = f"import sys; sys.path[:] = {sys.path!r}; from bench.toy_pareto import _worker_loop; _worker_loop({str(queue)!r})"
    workers: list[tuple[subprocess.Popen, object]] = []

    def spawn() -> None:
        logf = open(queue / f"worker-{len(workers)}.log", "w")
        proc = subprocess.Popen([sys.executable, "-c", boot], stdout=logf, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, env=env)
        workers.append((proc, logf))

    for _ in range(min(jobs, len(specs) - len(results))):
        spawn()
    started: dict[int, float] = {}
    while len(results) < len(specs):
        time.sleep(0.5)
        for f in claimed.glob("*.json"):
            i = int(f.name.split(".")[0])
            if i in results:
                continue
            started.setdefault(i, time.monotonic())
            res = Path(specs[i].out) / "result.json"
            pid = int(f.name.split(".")[1])
            proc = next((p for p, _ in workers if p.pid == pid), None)
            over = timeout is not None and time.monotonic() - started[i] > timeout
            if res.is_file():
                results[i] = json.loads(res.read_text())
            elif over or (proc is not None and proc.poll() is not None):
                if proc is not None and proc.poll() is None:
                    proc.kill()
                    proc.wait()
                why = f"timed out after {timeout:.0f} s" if over else f"its worker process died ({proc.returncode})"
                results[i] = {"method": specs[i].method, "seed": specs[i].seed, "steps": specs[i].steps, "error": why}
                if any(todo.glob("*.json")):
                    spawn()  # a replacement for the rest of the queue
            else:
                continue
            rec = results[i]
            done = (f"acc {rec['summary']['accuracy']:.3f}, {rec['summary']['mean_tokens']:.0f} tokens"
                    if "summary" in rec else f"FAILED: {rec.get('error')}")
            log(f"{specs[i].method} (seed {specs[i].seed}) done in {time.monotonic() - started[i]:.0f} s: {done} "
                f"[{len(results)}/{len(specs)}]")
        if len(results) < len(specs) and all(p.poll() is not None for p, _ in workers) and not any(claimed.glob("*.json")) \
                and not any(todo.glob("*.json")):
            raise RuntimeError(f"toy pareto workers exited with specs unfinished; see {queue}/worker-*.log")
    for proc, logf in workers:
        proc.wait()
        logf.close()
    return [results[i] for i in range(len(specs))]


# ---------------------------------------------------------------- table and plot

# Two-sided 95% Student t quantiles by degrees of freedom (index = df; seeds - 1), up to 9 seeds.
T95 = (None, 12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306)
# Floors of the seed std in the front-separation test (issue 12): differences smaller are ties anyway.
SEP_FLOOR = {"accuracy": 0.01, "tokens_over_minimal": 0.02}
# Seeds of one method whose shares of answers from the hint differ by at least this ended at different
# policies (one on the shortcut, one scanning); a partial policy the same on every seed (0.47-0.61) is not split.
SPLIT = 0.5


def separated_front(agg: dict[str, dict]) -> dict:
    """The Pareto front of the trained methods (accuracy up, tokens / minimal down; means over seeds),
    sorted from shortest to longest, and which of them the seeds tell apart: the longer one more
    accurate and longer by more than twice the pooled seed std of both metrics (std floored at
    SEP_FLOOR) -- the figure of merit of a toy meant to tell methods apart.

    `longest_separated_chain`: the longest run of consecutive front methods each separated from the next.
    `longest_separated_tiers`: the longest sequence of front methods, shortest first, each separated from
    the next one in it, skipping methods between them; several methods that end at one policy tie with each
    other and break every run of neighbours, but not this."""
    pts = {k: a for k, a in agg.items() if k != "base" and a.get("accuracy") is not None}
    front = [k for k, a in pts.items()
             if not any(b["accuracy"] >= a["accuracy"] and b["tokens_over_minimal"] <= a["tokens_over_minimal"]
                        and (b["accuracy"], b["tokens_over_minimal"]) != (a["accuracy"], a["tokens_over_minimal"])
                        for b in pts.values())]
    front.sort(key=lambda k: pts[k]["tokens_over_minimal"])

    def pooled(a, b, key):
        sa, sb = (max(x.get(f"{key}_std") or 0.0, SEP_FLOOR[key]) for x in (a, b))
        return ((sa ** 2 + sb ** 2) / 2) ** 0.5

    def separated(short: str, long: str) -> bool:
        a, b = pts[short], pts[long]
        return (b["accuracy"] - a["accuracy"] > 2 * pooled(a, b, "accuracy")
                and b["tokens_over_minimal"] - a["tokens_over_minimal"] > 2 * pooled(a, b, "tokens_over_minimal"))

    pairs = [{"shorter": short, "longer": long, "d_accuracy": pts[long]["accuracy"] - pts[short]["accuracy"],
              "d_tokens_over_minimal": pts[long]["tokens_over_minimal"] - pts[short]["tokens_over_minimal"],
              "separated": separated(short, long)} for short, long in zip(front, front[1:])]
    best, run = (front[:1], front[:1])
    for p in pairs:
        run = run + [p["longer"]] if p["separated"] else [p["longer"]]
        best = run if len(run) > len(best) else best
    # tiers[i]: the longest separated sequence that ends at front[i] (the front is short: quadratic is fine)
    tiers: list[list[str]] = []
    for i, m in enumerate(front):
        before = [tiers[j] for j in range(i) if separated(front[j], m)]
        tiers.append(max(before, key=len, default=[]) + [m])
    return {"front": front, "pairs": pairs, "longest_separated_chain": best,
            "longest_separated_tiers": max(tiers, key=len, default=[])}


def aggregate(records: list[dict]) -> dict[str, dict]:
    """Per method: mean and std over seeds of the headline metrics, per level means, errors."""
    out: dict[str, dict] = {}
    for rec in records:
        out.setdefault(rec["method"], {"runs": []})["runs"].append(rec)
    for method, m in out.items():
        ok = [r["summary"] for r in m["runs"] if "summary" in r]
        m["seeds"] = [r["seed"] for r in m["runs"] if "summary" in r]
        m["errors"] = [r["error"] + (f" (at step {r['failed_at_step']} of {r['steps']})" if r.get("failed_at_step") else "")
                       for r in m["runs"] if "error" in r]
        for key in ("accuracy", "mean_tokens", "tokens_over_minimal", "truncation_rate", "mean_minimal_tokens"):
            vals = [s[key] for s in ok if s.get(key) is not None]
            m[key] = statistics.fmean(vals) if vals else None
            m[f"{key}_std"] = statistics.stdev(vals) if len(vals) > 1 else None
            # half-width of the 95% t-interval of the mean over seeds
            m[f"{key}_ci95"] = T95[len(vals) - 1] * m[f"{key}_std"] / len(vals) ** 0.5 if 1 < len(vals) <= len(T95) else None
        quartiles = [q for q in ("Q1", "Q2", "Q3", "Q4") if ok and all(q in (s.get("by_need_quartile") or {}) for s in ok)]
        m["by_need_quartile"] = {q: {k: statistics.fmean(s["by_need_quartile"][q][k] for s in ok)
                                     for k in ("accuracy", "mean_tokens", "mean_minimal_tokens")} for q in quartiles}
        if "Q4" in quartiles and len(ok) > 1:
            m["by_need_quartile"]["Q4"]["accuracy_std"] = statistics.stdev(s["by_need_quartile"]["Q4"]["accuracy"] for s in ok)
        hints = [{int(k): v for k, v in (s.get("hint_by_sure") or {}).items()} for s in ok]  # JSON keys are strings
        m["hint_by_sure"] = {x: statistics.fmean(h[x] for h in hints if x in h) for x in sorted({x for h in hints for x in h})}
        # the odds are uniform over the problems, so the mean over odds is the share of all answers
        m["hint_share_by_seed"] = [statistics.fmean(h.values()) if h else None for h in hints]
        stops = [s["false_stop_rate"] for s in ok if s.get("false_stop_rate") is not None]
        m["false_stop_rate"] = statistics.fmean(stops) if stops else None   # results before it was kept: none
        m["false_stop_by_seed"] = [s.get("false_stop_rate") for s in ok]
        levels = sorted({lv for s in ok for lv in (s.get("by_level") or {})}, key=int)
        m["by_level"] = {lv: {k: statistics.fmean(s["by_level"][lv][k] for s in ok if lv in (s.get("by_level") or {}))
                              for k in ("accuracy", "mean_tokens", "mean_minimal_tokens")} for lv in levels}
    return out


def split_methods(agg: dict[str, dict]) -> list[str]:
    """Methods whose seeds ended at different policies: their shares of answers from the hint differ by
    SPLIT or more between two seeds -- their mean over seeds is a lottery between two policies, not an
    operating point, and their seed std is as wide as the gap between the two."""
    def spread(a: dict) -> float:
        shares = [x for x in a.get("hint_share_by_seed") or [] if x is not None]
        return max(shares) - min(shares) if shares else 0.0

    return sorted(name for name, a in agg.items() if name != "base" and spread(a) >= SPLIT)


def _pm(mean: float | None, std: float | None, fmt: str) -> str:
    if mean is None:
        return "-"
    return fmt.format(mean) + (f" ± {fmt.format(std)}" if std is not None else "")


def _fewer(r: dict) -> str:
    """ " (dler, dler_da: 12, as their recipes)" for methods that trained fewer steps than the run's."""
    fewer = {}
    for rec in r["runs"]:
        if rec["method"] != "base" and rec.get("steps", r["config"]["steps"]) < r["config"]["steps"]:
            fewer.setdefault(rec["steps"], set()).add(rec["method"])
    parts = [f"{', '.join(sorted(ms))}: {n}" for n, ms in sorted(fewer.items())]
    return f" ({'; '.join(parts)}, as their recipes stop)" if parts else ""


def _ci(a: dict) -> str:
    """The 95% t-intervals of the seed mean of accuracy and tokens / minimal ("" with one seed), clipped to
    what the metric can be (accuracy in [0, 1], length >= 0): with 3 seeds and one collapse the t-interval
    runs past both."""
    if a.get("accuracy_ci95") is None or a.get("tokens_over_minimal_ci95") is None:
        return ""
    acc, tom = a["accuracy"], a["tokens_over_minimal"]
    return (f"[{max(0.0, acc - a['accuracy_ci95']):.2f}, {min(1.0, acc + a['accuracy_ci95']):.2f}]; "
            f"[{max(0.0, tom - a['tokens_over_minimal_ci95']):.2f}, {tom + a['tokens_over_minimal_ci95']:.2f}]")


def _q4(a: dict) -> str:
    """Accuracy / mean tokens on the quarter of problems with the longest minimal length (all levels)."""
    q = (a.get("by_need_quartile") or {}).get("Q4")
    return "" if q is None else f"{_pm(q['accuracy'], q.get('accuracy_std'), '{:.2f}')} / {q['mean_tokens']:.0f}"


def _false_stops(a: dict) -> str:
    """"0.05 (0.00 0.14 0.01)": the mean share of false stops and each seed's; "-" where it was not measured."""
    if a.get("false_stop_rate") is None:
        return "-"
    seeds = a.get("false_stop_by_seed") or []
    return f"{a['false_stop_rate']:.2f}" + (" (" + " ".join("-" if x is None else f"{x:.2f}" for x in seeds) + ")"
                                            if len(seeds) > 1 else "")


def _eval_cap(r: dict):
    return next((x["summary"].get("max_new_tokens") for x in r["runs"] if "summary" in x), "?")


def to_markdown(r: dict) -> str:
    agg, base = r["methods"], r["methods"].get("base", {})
    m = r["machine"]
    cfg = r["config"]
    levels = sorted(base.get("by_level") or {}, key=int)
    # keys are ints when aggregated here and strings when read back from the JSON; one form for both
    hints = {k: {int(x): v for x, v in (a.get("hint_by_sure") or {}).items()} for k, a in agg.items()}
    odds = sorted({x for h in hints.values() for x in h})
    order = sorted((k for k in agg if k != "base"), key=lambda k: (agg[k].get("mean_tokens") is None,
                                                                    agg[k].get("mean_tokens") or 0))
    rows = []
    for name in ["base", *order]:
        a = agg[name]
        if a.get("accuracy") is None:
            rows.append([name, "failed: " + "; ".join(sorted(set(a["errors"])))[:200], *[""] * (7 + len(levels) + 3 * bool(odds))])
            continue
        d_acc = (a["accuracy"] - base["accuracy"]) * 100 if name != "base" and base.get("accuracy") is not None else None
        d_tok = (a["mean_tokens"] / base["mean_tokens"] - 1) * 100 if name != "base" and base.get("mean_tokens") else None
        card = "card" if name in CARD else ("peer" if name == PEER else ("" if name in ("base", GRPO) else "other"))
        rows.append([f"{name}" + (f" ({card})" if card else ""), _pm(a["accuracy"], a["accuracy_std"], "{:.3f}"),
                     _pm(a["mean_tokens"], a["mean_tokens_std"], "{:.1f}"),
                     _pm(a["tokens_over_minimal"], a["tokens_over_minimal_std"], "{:.2f}×"), _ci(a),
                     f"{d_acc:+.1f}" if d_acc is not None else "", f"{d_tok:+.0f}%" if d_tok is not None else "",
                     f"{a['truncation_rate']:.3f}", _q4(a),
                     *[f"{a['by_level'][lv]['accuracy']:.2f} / {a['by_level'][lv]['mean_tokens']:.0f}"
                       if lv in a["by_level"] else "" for lv in levels],
                     *([" ".join(f"{hints[name][x]:.2f}" if x in hints[name] else "-" for x in odds),
                        " ".join("-" if x is None else f"{x:.2f}" for x in a.get("hint_share_by_seed") or []),
                        _false_stops(a)] if odds else [])])
    minimal = " ".join(f"L{lv} {base['by_level'][lv]['mean_minimal_tokens']:.0f}" for lv in levels)
    seeds = ", ".join(str(s) for s in cfg["seeds"])
    return "\n".join([
        f"# Toy Pareto ({r['mode']})",
        "",
        f"{r['date']} · {m['cpus']} CPUs · torch {m.get('torch')}, trl {m.get('trl')} · wall {r['wall_s'] / 60:.0f} min",
        *[f"Re-run since (`--update`): {', '.join(u['methods'])}, {u['date']}, {u['wall_s'] / 60:.0f} min."
          for u in cfg.get("updates", [])],
        *([f"Collected from a stopped run (`--collect`): {c['finished']} of {c['of']} runs finished in its "
           f"{c['span_s'] / 60:.0f} min; not run: "
           + (", ".join(f"{x['method']} seed {x['seed']}" for x in r["runs"] if x.get("error", "").startswith("not run"))
              or "none") + "."] if (c := cfg.get("collected")) else []),
        "",
        f"Every method trained {cfg['steps']} steps{_fewer(r)} from the toy base `{Path(cfg['base']).name}`"
        + (f" ({n} SFT steps; " if (n := cfg.get("base_sft_steps")) else " (") + "training seed(s) "
        f"{seeds}; mean ± std over seeds where there are several), then evaluated on the same {cfg['problems']} "
        f"held-out toy problems (1 sample each, eval seed {cfg['eval_seed']}, cap {_eval_cap(r)} tokens). "
        f"Sorted by mean tokens. Δ = change against the base. Per level: accuracy / mean tokens "
        f"(minimal tokens: {minimal}); longest-need quarter: accuracy / mean tokens on the quarter of problems whose "
        f"minimal length is longest, whatever their level. L1 (l1_exact, l1_max) trains on budgets drawn into its prompts and is "
        f"evaluated with one stated budget of {L1_EVAL_BUDGET} tokens (\"Think for [maximum] {L1_EVAL_BUDGET} tokens.\"); "
        f"curriculum's budget schedule is stretched or squeezed to the run's steps."
        + (f" Hint taken: at each printed odds (sure {', '.join(map(str, odds))}: right {odds[0] * 10}-{odds[-1] * 10}% "
           f"of the time), the share of answers that give the hint's digit without scanning to the stop; a policy that "
           f"prices tokens gives up on the surest first. Hint share per seed: the share of all its answers taken from "
           f"the hint, seed by seed (seeds {SPLIT} or more apart ended at different policies). False stops: the share "
           f"of answers whose thinking claims a stop it never reached (a misread or slipped step that met the stop "
           f"rule, or a stop made up where the step does not meet it), mean and per seed."
           if odds else ""),
        "",
        md_table(["method", "accuracy", "mean tokens", "tokens / minimal", "95% CI: accuracy; × minimal", "Δ acc (points)", "Δ tokens", "truncated",
                  "longest-need quarter", *[f"L{lv}" for lv in levels],
                  *(["hint taken by odds", "hint share per seed", "false stops"] if odds else [])], rows),
        "",
        f"![toy Pareto]({r['plot']})",
        *_front_markdown(r.get("front"), r.get("split") if odds else None),
        *_curves_markdown(r.get("budget_curves")),
    ])


def _front_markdown(front: dict | None, split: list[str] | None = None) -> list[str]:
    """The Pareto front and which neighbours on it the seeds tell apart (`separated_front`); `split`: the
    methods whose seeds ended at different policies (`split_methods`), where the task has a shortcut."""
    if not front or not front["front"]:
        return []
    if split is not None:
        on = [m for m in front["front"] if m in split]
        split_line = [f"Seeds split between the shortcut and scanning (their shares of answers from the hint "
                      f"{SPLIT} or more apart): {', '.join(split) or 'none'}"
                      + (f"; on the front: {', '.join(on)}." if on else "."), ""]
    else:
        split_line = []
    steps = [f"{p['shorter']} → {p['longer']}: {p['d_accuracy']:+.3f} accuracy, {p['d_tokens_over_minimal']:+.2f}× minimal, "
             + ("separated" if p["separated"] else "inside 2× the pooled seed std: a tie") for p in front["pairs"]]
    return ["", "## Pareto front", "",
            f"Front (accuracy up, tokens / minimal down), shortest first: {', '.join(front['front'])}. Longest chain of "
            f"neighbours each told apart from the next (by more than twice the pooled seed std of both metrics; "
            f"std floored at {SEP_FLOOR['accuracy']} accuracy, {SEP_FLOOR['tokens_over_minimal']} tokens / minimal): "
            f"{' → '.join(front['longest_separated_chain'])} ({len(front['longest_separated_chain'])} methods). "
            + _tiers_sentence(front), "",
            *split_line, *[f"- {s}" for s in steps]]


def _tiers_sentence(front: dict) -> str:
    """The longest separated sequence over the whole front (results written before it was kept have none)."""
    tiers = front.get("longest_separated_tiers")
    if tiers is None:
        return ""
    return (f"Longest chain over the whole front, each told apart from the next in it (the methods between "
            f"them tie with one of its members): {' → '.join(tiers)} ({len(tiers)} methods).")


def _curves_markdown(curves: dict | None) -> list[str]:
    """The budget-forcing curves as a table: accuracy per thinking budget B, all levels and per level."""
    if not curves:
        return []
    budgets = [p["budget"] for p in next(iter(curves.values()))]
    rows = []
    for name, pts in curves.items():
        rows.append([name, "all", *[f"{p['accuracy']:.2f}" for p in pts]])
        for lv in pts[0]["by_level"]:
            rows.append(["", f"L{lv}", *[f"{p['by_level'][lv]:.2f}" for p in pts]])
    return ["", "## Budget forcing", "",
            "One sample per held-out problem (T=0.6, top-p 0.95); a completion whose thinking is longer than B is cut "
            "at B tokens and its answer forced with `</think>\\boxed{` (greedy). Accuracy per budget B:", "",
            md_table(["model", "level", *[f"B={b}" for b in budgets]], rows)]


def pareto_png(agg: dict[str, dict], path: Path) -> Path:
    kinds = {k: "base" if k == "base" else ("card" if k in CARD else ("grpo" if k == GRPO else ("peer" if k == PEER else "other")))
             for k in agg}
    return plot(agg, path, kinds, "toy task: accuracy vs length after the same training budget")


def base_sft_steps(model: str) -> int | None:
    """The SFT steps of the toy base at `model` (`--quick` trains from a shorter build); None if it is not one."""
    meta = Path(model) / "toy_base.json"
    return json.loads(meta.read_text())["config"]["steps"] if meta.is_file() else None


def write(records: list[dict], *, config: dict, quick: bool, wall_s: float, mach: dict,
          out_dir: Path | None = None, curves: dict | None = None) -> dict:
    """Aggregate records, draw the plot, write the table (markdown + JSON); returns the results dict."""
    out = Path(out_dir) if out_dir is not None else RESULTS
    name = results_name(config.get("task", "toy"))
    agg = aggregate(records)
    png = pareto_png(agg, out / (f"{name}.quick.png" if quick else f"{name}.png"))
    result = {"bench": "toy_pareto", "date": stamp(), "mode": "quick" if quick else "full", "config": config,
              "wall_s": round(wall_s, 1), "machine": mach, "plot": png.name,
              "methods": {k: {kk: vv for kk, vv in v.items() if kk != "runs"} for k, v in agg.items()},
              "front": separated_front(agg), "split": split_methods(agg),
              "runs": [{k: v for k, v in rec.items() if k != "traceback"} for rec in records]}
    if curves:
        result["budget_curves"] = curves
    path = write_results(name, quick, result, to_markdown(result), out)
    log(f"wrote {path} and {png}")
    return result


def previous_results(quick: bool, out_dir: Path | None, *, methods: list[str], seeds: list[int], steps: int,
                     problems: int, model: str, extra: list[str], task: str = "toy") -> dict:
    """The committed results an `--update` run rewrites; refused unless they were run the same way."""
    path = result_paths(results_name(task), quick, out_dir)[0]
    if not path.exists():
        raise FileNotFoundError(f"--update: no results to update at {path}; run without --update first")
    old = json.loads(path.read_text())
    cfg = old["config"]
    want = {"seeds": seeds, "steps": steps, "problems": problems, "base": model, "extra_overrides": extra}
    for key, value in want.items():
        if cfg.get(key) != value:
            raise ValueError(f"--update: {path} was run with {key}={cfg.get(key)!r}, this run has {value!r}; "
                             f"pass the same {key}, or re-run every method without --update")
    missing = sorted(set(methods) - set(cfg["methods"]))
    if missing:
        raise ValueError(f"--update: {missing} not in {path}; re-run every method without --update")
    return old


def run(quick: bool = False, *, methods: list[str] | None = None, seeds: list[int] | None = None,
        steps: int | None = None, problems: int | None = None, jobs: int | None = None, model: str | None = None,
        out_dir: Path | None = None, work_dir: Path | None = None, run_timeout: float | None = None,
        extra: list[str] | None = None, update: bool = False, task: str = "toy", curves_too: bool = False,
        collect: bool = False) -> dict:
    """Train and evaluate every method (and evaluate the base); writes and returns the results dict.

    `extra`: recipe overrides applied to every method (tests shrink the batch with it). `update`:
    train and evaluate only `methods` and put their runs in place of theirs in the existing results
    (the base's evaluation and every other method's runs are kept: each run is deterministic per seed).
    `collect`: train nothing; write the results of the runs already finished in `work_dir` (a bench that
    was stopped) and report the others as not run.
    """
    t0 = time.perf_counter()
    mach = machine()
    if update and not methods:
        raise ValueError("--update needs --methods: the methods to re-run")
    if collect and (work_dir is None or update):
        raise ValueError("--collect reads the finished runs of an earlier run: give its --keep DIR (and no --update)")
    methods = methods or (QUICK_METHODS if quick else all_methods())
    unknown = sorted(set(methods) - set(all_methods()))
    if unknown:
        raise ValueError(f"unknown method(s) {unknown}; valid: {', '.join(all_methods())}")
    seeds = seeds or ([0] if quick else list(FULL_SEEDS))
    steps = steps or (QUICK_STEPS if quick else FULL_STEPS)
    problems = problems or (QUICK_PROBLEMS if quick else FULL_PROBLEMS)
    jobs = jobs or mach["cpus"]
    if model is None:
        from conciser.trainers.toy_sft import base_config, ensure_toy_base

        model = str(ensure_toy_base(base_config(task, quick=quick)))
    old = previous_results(quick, out_dir, methods=methods, seeds=seeds, steps=steps, problems=problems, model=model,
                           extra=list(extra or []), task=task) if update else None
    broken, method_steps = {}, {}
    for m in methods:  # a recipe that does not validate is reported, before minutes of training
        try:
            from conciser.reference_cli import ensure_toy_reference
            from conciser.trainers.train import prepare

            # reference statistics (o1_pruner, adaptthink, a_dlp): built once here, before the workers start
            overrides = [*task_overrides(task, recipe_for(m)), f"model.name_or_path={model}", *(extra or [])]
            ensure_toy_reference(recipe_for(m), overrides)
            _, _, _, args = prepare(recipe_for(m), overrides)
            # a recipe that stops earlier keeps its own length (DLER's: dynamic sampling runs dry on the toy)
            method_steps[m] = min(steps, args.max_steps) if args.max_steps > 0 else steps
            if method_steps[m] < steps:   # said here, not only under the table: `--steps` alone cannot lift it
                log(f"{m}: trains {method_steps[m]} steps, not {steps}: its recipe stops there (trainer.max_steps); "
                    f"to train {steps}, add trainer.max_steps={steps}")
        except Exception as exc:
            broken[m] = f"{type(exc).__name__}: {exc}"
            log(f"{m}: recipe does not validate: {broken[m]}")
    tmp = None
    if work_dir is None:
        tmp = tempfile.TemporaryDirectory(prefix="bench-pareto-")
        work_dir = Path(tmp.name)
    try:
        specs = [] if old else [Spec("base", seeds[0], 0, problems, model, str(Path(work_dir) / "base"), task=task)]
        specs += [Spec(m, s, method_steps[m], problems, model, str(Path(work_dir) / f"{m}-seed{s}"), extra=list(extra or []),
                       task=task)
                  for s in seeds for m in methods if m not in broken]
        log(f"toy pareto ({task}): {len(methods)} methods x {len(seeds)} seed(s), {steps} steps, {problems} problems, "
            f"{jobs} jobs, load {mach['load_avg_1m']}")
        if collect:
            records = [finished_run(sp) or {"method": sp.method, "seed": sp.seed, "steps": sp.steps,
                                            "error": "not run: the bench was stopped first (resume: the same command with --keep)"}
                       for sp in specs]
            done = [Path(sp.out) / "result.json" for sp, r in zip(specs, records) if "summary" in r]
            for sp, rec in zip(specs, records):   # figures derived from the samples: from this code, not the run's
                samples = Path(sp.out) / "eval" / task / "samples.jsonl"
                if "summary" in rec and samples.is_file():
                    rec["summary"].update(sample_figures(samples, task))
            # the stopped run's own span: first run's folder made to the last result written
            wall_from = min((Path(sp.out).stat().st_mtime for sp in specs if Path(sp.out).exists()), default=0.0)
            collected = {"from": str(work_dir), "finished": len(done), "of": len(specs),
                         "span_s": round(max((p.stat().st_mtime for p in done), default=wall_from) - wall_from, 1)}
            log(f"collected {len(done)} of {len(specs)} runs from {work_dir}")
        else:
            records = run_specs(specs, jobs, Path(work_dir) / "queue", timeout=run_timeout)
        records += [{"method": m, "seed": s, "steps": steps, "error": f"recipe: {e}"} for m, e in broken.items()
                    for s in seeds]
        curves = old.get("budget_curves") if old else None
        if curves_too and not old:
            best = best_method(aggregate(records))
            models = {"base": Path(model)}
            if best is not None:
                models[f"{best} (seed {seeds[0]})"] = Path(work_dir) / f"{best}-seed{seeds[0]}" / "model"
            curves = budget_curves(models, task, problems)
    finally:
        if tmp is not None:
            tmp.cleanup()
    config = {"task": task, "methods": methods, "seeds": seeds, "steps": steps, "problems": problems, "base": model,
              "base_sft_steps": base_sft_steps(model), "eval_seed": 0, "jobs": jobs, "extra_overrides": list(extra or [])}
    if collect:
        config["collected"] = collected
        wall_s = collected["span_s"]   # the stopped run's, not this call's
    wall_s, mach = time.perf_counter() - t0, {**mach, "load_avg_1m_after": round(os.getloadavg()[0], 2)}
    if old:
        records = [r for r in old["runs"] if r["method"] not in methods] + records
        updates = old["config"].get("updates", []) + [{"date": stamp(), "methods": methods, "wall_s": round(wall_s, 1)}]
        config = {**old["config"], "updates": updates}
        wall_s, mach = old["wall_s"], old["machine"]
    return write(records, config=config, quick=quick, wall_s=wall_s, mach=mach, out_dir=out_dir, curves=curves)


def check_overrides(overrides: list[str], out: str | None) -> None:
    """Refuse command-line recipe overrides that would write over the committed results, or that no recipe
    takes (checked on the GRPO row's recipe, before any base is built or model trained)."""
    from conciser.config import RecipeError, load_recipe

    if out is None:
        raise SystemExit(f"recipe overrides {overrides} change what the bench measures: give --out DIR for their "
                         "results (bench/results holds the recipes' own settings)")
    try:
        load_recipe(recipe_for(GRPO), overrides)  # a bad key or value fails here, naming the field
    except RecipeError as exc:
        raise SystemExit(f"recipe override: {exc}") from None


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(prog="python -m bench.toy_pareto", description=__doc__.split("\n")[0])
    ap.add_argument("--task", default="toy", choices=TASKS, help="the toy task (default toy: toy-chain); results of "
                                                                 "another go to bench/results/toy_pareto_<task>.*")
    ap.add_argument("--quick", action="store_true", help=f"{len(QUICK_METHODS)} methods, {QUICK_STEPS} steps, "
                                                         f"{QUICK_PROBLEMS} problems, from the base's quick build (toy_sft.base_config(task, quick=True))")
    ap.add_argument("--methods", default=None, help="comma-separated (default: all, or the quick set)")
    ap.add_argument("--seeds", default=None, help="comma-separated training seeds (default 0,1,2; --quick 0)")
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--problems", type=int, default=None, help="held-out toy problems to evaluate")
    ap.add_argument("--jobs", type=int, default=None, help="runs at a time (default: the CPUs)")
    ap.add_argument("--model", default=None, help="base model (default: the cached toy base, built if missing)")
    ap.add_argument("--out", default=None, help="results folder (default bench/results)")
    ap.add_argument("--keep", default=None, metavar="DIR", help="keep trained models and eval samples here; the same "
                                                                 "command with the same DIR resumes, reusing finished runs")
    ap.add_argument("--update", action="store_true", help="re-run only --methods and replace their runs in the "
                                                          "existing results (same seeds, steps, problems, base)")
    ap.add_argument("--collect", action="store_true", help="train nothing: write the results of the runs finished in "
                                                           "--keep DIR (a stopped bench); the rest are reported as not run")
    ap.add_argument("--curves", action=argparse.BooleanOptionalAction, default=None,
                    help="budget-forcing curves of the base and the best method's seed-0 model (default: on, off with --quick)")
    ap.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                    help="recipe overrides applied to every method, as `conciser train` takes them (e.g. "
                         "trainer.learning_rate=2e-4); needs --out, so the committed results stay the recipes' own")
    args = ap.parse_args(argv)
    if args.overrides:
        check_overrides(args.overrides, args.out)
    r = run(args.quick, methods=args.methods.split(",") if args.methods else None,
            seeds=[int(s) for s in args.seeds.split(",")] if args.seeds else None, steps=args.steps,
            problems=args.problems, jobs=args.jobs, model=args.model, out_dir=Path(args.out) if args.out else None,
            work_dir=Path(args.keep) if args.keep else None, update=args.update, task=args.task, collect=args.collect,
            curves_too=(not args.quick) if args.curves is None else args.curves, extra=args.overrides or None)
    print(to_markdown(r))
    return r


if __name__ == "__main__":
    main()
