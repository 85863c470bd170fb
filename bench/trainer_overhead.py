"""Trainer overhead: `conciser train` against stock TRL `GRPOTrainer`, same model, data, batch, steps.

    python -m bench.trainer_overhead            # the toy-scan base, 64 completions a step, 3 rounds x 8 steps
    python -m bench.trainer_overhead --quick    # 1 round x 7 steps, from the base's quick build
    python -m bench.trainer_overhead --task toy-chain   # on the first toy task and its base

The toy-scan task by default: the toy Pareto trains on it too, so `make bench` builds one base, not two.

Four configurations, each a real training run:

    stock        trl.GRPOTrainer with a plain correctness reward function (the toy grader, 1/0)
    correctness  conciser train toy/laser with alpha=0, wrong/format rewards 0: pure 1/0 correctness
    laser_d      conciser train toy/laser_d + advantage.estimator=batch (LASER-D, batch whitening,
                 its monitor set sampled every refresh_every steps)
    hapo         conciser train toy/hapo (per-problem history: state updated every step)

All four share the trainer block (batch, generations, cap, seed, steps) and the training prompts.
The learning rate is 0, so the policy, and with it the work of generating, stays the same in every
run and every step: a method that teaches shorter answers would otherwise look "faster" for a reason
that is not overhead (completion lengths are reported to show the work was equal).

Side by side, step by step: a round starts the four runs as four processes, and a callback gates
every optimizer step, so step k of each configuration runs back to back (in an order rotated every
step) while the other three wait. Load from other users of a shared machine, which changes by the
minute, falls on all four alike. A step is timed from "go" until the run is ready for its next step
(generation, scoring, loss, backward, optimizer, logging: everything conciser adds); TRL's own
`step_time` (generation to backward) is kept too. The first step of every run (one-off start-up)
and the last (end-of-training work) are not counted. The result: each configuration's median step
time over all rounds, divided by stock TRL's.

torch runs one intra-op thread here: on a 2-core machine shared with other users' torch jobs, two
threads per process oversubscribe the cores and OpenMP barriers stall single steps for seconds.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import subprocess
import tempfile
import time
from dataclasses import asdict, dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Callable

from bench._common import log, machine, md_table, stamp, write_results
from conciser.rewards.workers import spawn

# name -> (recipe, overrides on top of the shared ones); None = stock TRL
CONFIGS: dict[str, tuple[str, list[str]] | None] = {
    "stock": None,
    "correctness": ("toy/laser", ["rewards.params.alpha=0.0", "rewards.params.wrong_reward=0.0",
                                  "rewards.params.format_reward=0.0"]),
    "laser_d": ("toy/laser_d", ["advantage.estimator=batch"]),
    "hapo": ("toy/hapo", []),
}
TASK = "toy-scan"
LABELS = {"stock": "stock TRL GRPOTrainer, correctness reward",
          "correctness": "(a) conciser, correctness only",
          "laser_d": "(b) conciser, LASER-D + batch advantages",
          "hapo": "(c) conciser, HAPO (stateful)"}


@dataclass(frozen=True)
class Setup:
    """What every configuration shares."""

    model: str
    task: str = TASK                # the toy task whose prompts every configuration trains on
    steps: int = 8                  # per run; the first and the last are not counted
    rounds: int = 3
    batch: int = 64                 # completions per step
    generations: int = 8
    max_completion_length: int | None = None   # None: the task's cap (its recipes' and its eval's)
    n_train: int = 128
    seed: int = 0
    extra: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self):
        if self.max_completion_length is None:
            from conciser import toy

            object.__setattr__(self, "max_completion_length", toy.task(self.task).DEFAULT_MAX_COMPLETION)

    def overrides(self, recipe: str, out_dir: Path) -> list[str]:
        """`recipe`'s overrides for this setup: the task's data (and cap, and reference statistics), then the
        shared trainer block."""
        from bench.toy_pareto import task_overrides

        return [*task_overrides(self.task, recipe), f"model.name_or_path={self.model}",
                f"data.n_train={self.n_train}", "data.seed=0",
                f"trainer.output_dir={out_dir}", f"trainer.max_steps={self.steps}",
                f"trainer.per_device_train_batch_size={self.batch}", f"trainer.num_generations={self.generations}",
                f"trainer.max_completion_length={self.max_completion_length}", "trainer.learning_rate=0.0",
                "trainer.logging_steps=1", f"trainer.seed={self.seed}", *self.extra]


def tiny_model(path: Path, seed: int = 0, task: str = TASK) -> str:
    """A random-init tiny model with toy task `task`'s tokenizer, saved in seconds (for tests)."""
    import torch

    from conciser import toy
    from conciser.trainers.toy_sft import ToyBaseConfig, build_model

    cfg = ToyBaseConfig(hidden_size=64, num_layers=2, num_heads=2, num_kv_heads=1, intermediate_size=128, seed=seed)
    tokenizer = toy.task(task).build_tokenizer()
    torch.manual_seed(seed)
    model = build_model(cfg, tokenizer)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)


def correctness_reward(completions, answer, **_) -> list[float]:
    """Stock TRL's reward function: 1.0 if the toy answer is right, else 0.0."""
    from conciser.rewards.grading import grade_toy
    from conciser.trainers.grpo import completion_text

    return [float(grade_toy(gold=str(a), completion=completion_text(c)).correct) for c, a in zip(completions, answer)]


def _run_stock(setup: Setup, out_dir: Path, callbacks: list) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import GRPOTrainer

    from conciser.trainers.data import to_dataset
    from conciser.trainers.train import prepare

    recipe_name, overrides = CONFIGS["correctness"]
    recipe, rows, _, args = prepare(recipe_name, [*overrides, *setup.overrides(recipe_name, out_dir)])  # the same args and rows
    tokenizer = AutoTokenizer.from_pretrained(setup.model)
    dtype = "auto" if recipe.model.dtype == "auto" else getattr(torch, recipe.model.dtype)  # as `train` loads it
    model = AutoModelForCausalLM.from_pretrained(setup.model, dtype=dtype)
    trainer = GRPOTrainer(model=model, processing_class=tokenizer, args=args, train_dataset=to_dataset(rows),
                          reward_funcs=[correctness_reward], callbacks=callbacks)
    trainer.train()


def _run_conciser(name: str, setup: Setup, out_dir: Path, callbacks: list) -> None:
    """`conciser train` itself; the only change is the step gate added to its trainer's callbacks."""
    import conciser.trainers.grpo as grpo
    from conciser.trainers.train import train

    base = grpo.ConciseGRPOTrainer

    class Gated(base):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            for cb in callbacks:
                self.add_callback(cb)

    grpo.ConciseGRPOTrainer = Gated  # train() imports it by name when called
    try:
        recipe, overrides = CONFIGS[name]
        train(recipe, [*overrides, *setup.overrides(recipe, out_dir)])
    finally:
        grpo.ConciseGRPOTrainer = base


def _gate(conn: Connection):
    """A callback that runs each optimizer step only when the coordinator says so."""
    from transformers import TrainerCallback

    class Gate(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):
            conn.send(("begin", state.global_step))
            if conn.recv() != "go":
                raise RuntimeError("the bench coordinator went away")

        def on_step_end(self, args, state, control, **kwargs):
            conn.send(("end", state.global_step))

        def on_train_end(self, args, state, control, **kwargs):
            conn.send(("logs", state.log_history))

    return Gate()


def _worker_main(conn: Connection, name: str, setup_json: str, out_dir: str) -> None:
    """One configuration's training run, in its own process (started by `_Worker`)."""
    import torch

    torch.set_num_threads(1)  # see the module docstring
    setup = Setup(**{**json.loads(setup_json), "extra": tuple(json.loads(setup_json)["extra"])})
    try:
        if CONFIGS[name] is None:
            _run_stock(setup, Path(out_dir), [_gate(conn)])
        else:
            _run_conciser(name, setup, Path(out_dir), [_gate(conn)])
        conn.send(("done",))
    except BaseException:
        import traceback

        conn.send(("error", traceback.format_exc()[-3000:]))


WORKER = "bench.trainer_overhead:_worker_main"
# --quick: one round (a round's start-up, four processes loading at once, takes about 40 s on 2 cores), so
# no round-to-round spread; 7 steps give 5 timed steps per configuration
QUICK_STEPS = 7


class _Worker:
    def __init__(self, name: str, setup: Setup, out_dir: Path, log_path: Path, env: dict[str, str] | None = None,
                 target: str = WORKER):
        setup_json = json.dumps({**asdict(setup), "extra": list(setup.extra)})
        self.log = open(log_path, "w")
        env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", "WANDB_MODE": "disabled",
               **(env or {})}
        self.proc, self.conn = spawn(target, name, setup_json, str(out_dir), stdout=self.log,
                                     stderr=subprocess.STDOUT, env=env)
        self.name = name

    def recv(self, what: str, timeout: float):
        if not self.conn.poll(timeout):
            raise RuntimeError(f"{self.name}: no {what!r} from its training process within {timeout:.0f} s "
                               f"(log: {self.log.name})")
        msg = self.conn.recv()
        if msg[0] == "error":
            raise RuntimeError(f"{self.name} failed:\n{msg[1]}")
        if msg[0] != what:
            raise RuntimeError(f"{self.name}: expected {what!r}, got {msg[0]!r}")
        return msg

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self.conn.close()
        self.log.close()


def run_round(configs: list[str], setup: Setup, work: Path, round_index: int, timeout: float = 900.0,
              env: Callable[[str], dict[str, str]] | None = None, target: str = WORKER) -> list[dict]:
    """One training run of every configuration, in lockstep: step k of each runs back to back (in an
    order rotated every step) while the others wait, so the machine's load falls on all alike.

    `env(name)`: extra environment variables for that configuration's process; `target`: the
    function its process runs (default `_worker_main`; the GPU check wraps it)."""
    workers = {name: _Worker(name, setup, work / f"r{round_index}-{name}", work / f"r{round_index}-{name}.log",
                             env=env(name) if env else None, target=target)
               for name in configs}
    steps: dict[str, list[float]] = {name: [] for name in configs}
    logs: dict[str, list] = {}
    try:
        for name in configs:  # model loading and trainer set-up (all four at once): not timed
            workers[name].recv("begin", timeout)
        for k in range(setup.steps):
            shift = (round_index + k) % len(configs)
            for name in configs[shift:] + configs[:shift]:
                w = workers[name]
                t0 = time.perf_counter()
                w.conn.send("go")
                w.recv("end", timeout)
                # The work between steps (logging the step's metrics, fetching the next batch) is part of
                # a step's cost, and must not overlap the next configuration's step: wait for it.
                if k < setup.steps - 1:
                    w.recv("begin", timeout)
                else:
                    logs[name] = w.recv("logs", timeout)[1]
                steps[name].append(time.perf_counter() - t0)
        out = []
        for name, w in workers.items():
            w.recv("done", timeout)
            trl = [e for e in logs[name] if "step_time" in e]
            out.append({"config": name, "round": round_index, "step_s": steps[name],
                        "trl_step_time": [e["step_time"] for e in trl],
                        "mean_length": [e.get("completions/mean_length") for e in trl]})
        return out
    finally:
        for w in workers.values():
            w.close()


def run(quick: bool = False, *, setup: Setup | None = None, configs: list[str] | None = None,
        out_dir: Path | None = None, write: bool = True, env: Callable[[str], dict[str, str]] | None = None,
        target: str = WORKER, timeout: float = 900.0, task: str = TASK) -> dict:
    """Rounds of every configuration in lockstep; returns (and by default writes) the results dict.
    Without `setup`: toy task `task`'s base (built and cached if missing). `env`, `target`, `timeout`: see
    `run_round`."""
    configs = configs or list(CONFIGS)
    if configs[0] != "stock":
        raise ValueError("the first configuration must be 'stock' (the ratios' denominator)")
    mach = {**machine(), "torch_threads": 1}
    with tempfile.TemporaryDirectory(prefix="bench-overhead-") as tmp:
        work = Path(tmp)
        if setup is None:
            base = _base(task, quick)
            setup = Setup(model=base, task=task, steps=QUICK_STEPS, rounds=1) if quick else Setup(model=base, task=task)
        log(f"trainer overhead: {len(configs)} configs x {setup.rounds} rounds x {setup.steps} steps in lockstep, "
            f"{setup.batch} completions/step, cap {setup.max_completion_length}, load {mach['load_avg_1m']}")
        runs = []
        for r in range(setup.rounds):
            t0 = time.perf_counter()
            runs += run_round(configs, setup, work, r, timeout=timeout, env=env, target=target)
            log(f"round {r + 1}/{setup.rounds} ({time.perf_counter() - t0:.0f} s): " + ", ".join(
                f"{x['config']} {statistics.median(_timed(x['step_s'])):.3f} s" for x in runs[-len(configs):]))
    result = summarize(runs, configs, setup, quick)
    result["machine"] = {**mach, "load_avg_1m_after": round(os.getloadavg()[0], 2)}
    if write:
        path = write_results("trainer_overhead", quick, result, to_markdown(result), out_dir)
        log(f"wrote {path}")
    return result


def _base(task: str, quick: bool = False) -> str:
    from conciser.trainers.toy_sft import base_config, ensure_toy_base

    return str(ensure_toy_base(base_config(task, quick=quick)))


def _bootstrap_ratio(xs: list[float], base: list[float], n: int = 2000) -> list[float]:
    """90% bootstrap interval of median(xs) / median(base), resampling the steps of each."""
    import random

    rng = random.Random(0)
    ratios = sorted(statistics.median(rng.choices(xs, k=len(xs))) / statistics.median(rng.choices(base, k=len(base)))
                    for _ in range(n))
    return [round(ratios[int(0.05 * n)], 3), round(ratios[int(0.95 * n) - 1], 3)]


def _timed(xs: list) -> list:
    """The steps that count: not the first (one-off start-up) nor the last (end-of-training work)."""
    return xs[1:-1] if len(xs) > 2 else xs[-1:]


def summarize(runs: list[dict], configs: list[str], setup: Setup, quick: bool) -> dict:
    per: dict[str, dict] = {}
    for name in configs:
        mine = [r for r in runs if r["config"] == name]
        steps = [t for r in mine for t in _timed(r["step_s"])]
        trl = [t for r in mine for t in _timed(r["trl_step_time"])]
        lengths = [x for r in mine for x in _timed(r["mean_length"]) if x is not None]
        q = statistics.quantiles(steps, n=4) if len(steps) >= 2 else [steps[0]] * 3
        per[name] = {"label": LABELS.get(name, name), "steps": len(steps), "median_step_s": statistics.median(steps),
                     "p25_step_s": q[0], "p75_step_s": q[2], "mean_step_s": statistics.fmean(steps),
                     "mean_completion_length": statistics.fmean(lengths) if lengths else None,
                     "median_trl_step_time_s": statistics.median(trl) if trl else None,
                     "round_medians": [statistics.median(_timed(r["step_s"])) for r in mine]}
    base = per[configs[0]]
    base_steps = [t for r in runs if r["config"] == configs[0] for t in _timed(r["step_s"])]
    for name, p in per.items():
        p["ratio"] = p["median_step_s"] / base["median_step_s"]
        mine = [t for r in runs if r["config"] == name for t in _timed(r["step_s"])]
        p["ratio_ci90"] = _bootstrap_ratio(mine, base_steps) if name != configs[0] else [1.0, 1.0]
        if p["median_trl_step_time_s"] and base["median_trl_step_time_s"]:
            p["ratio_trl_step_time"] = p["median_trl_step_time_s"] / base["median_trl_step_time_s"]
        # the spread: the same ratio round by round (each round ran every configuration back to back)
        p["round_ratios"] = [m / b for m, b in zip(p["round_medians"], base["round_medians"])]
    return {"bench": "trainer_overhead", "date": stamp(), "mode": "quick" if quick else "full",
            "setup": {k: v for k, v in setup.__dict__.items() if k != "extra"} | {"extra": list(setup.extra)},
            "configs": per, "runs": runs}


def to_markdown(r: dict) -> str:
    s, m = r["setup"], r["machine"]
    rows = []
    for name, p in r["configs"].items():
        spread = ", ".join(f"{x:.2f}" for x in p["round_ratios"])
        length = f"{p['mean_completion_length']:.1f}" if p["mean_completion_length"] is not None else "-"
        trl = f"{p['ratio_trl_step_time']:.3f}×" if p.get("ratio_trl_step_time") else "-"
        ci = "–".join(f"{x:.2f}" for x in p["ratio_ci90"])
        rows.append([p["label"], f"{p['median_step_s']:.3f}", f"{p['p25_step_s']:.3f}–{p['p75_step_s']:.3f}",
                     f"{p['mean_step_s']:.3f}", p["steps"], length, f"**{p['ratio']:.3f}×**", ci, spread, trl])
    return "\n".join([
        f"# Trainer overhead ({r['mode']})",
        "",
        f"{r['date']} · {m['cpus']} CPUs, load average {m['load_avg_1m']} before / {m.get('load_avg_1m_after')} after "
        f"· torch {m.get('torch')}, transformers {m.get('transformers')}, trl {m.get('trl')}",
        "",
        f"Model `{Path(s['model']).name}`; {s['batch']} completions a step ({s['batch'] // s['generations']} prompts x "
        f"{s['generations']}), cap {s['max_completion_length']} tokens, {s['n_train']} {s.get('task', 'toy')} prompts, learning rate 0 "
        f"(the policy stays the same, so every run does the same generation work). {s['rounds']} round{'s' if s['rounds'] != 1 else ''}; in each, the "
        f"four runs go in lockstep (step k of each back to back, order rotated every step), {s['steps']} steps per "
        "run, the first and the last not counted. Step = from the gate's go until the run is ready for its next step "
        "(optimizer and logging included); the last column is the same ratio from TRL's own `step_time`.",
        "",
        md_table(["configuration", "median step (s)", "p25–p75 (s)", "mean (s)", "steps", "mean completion tokens",
                  "ratio to stock (medians)", "90% interval", "ratio per round", "ratio (TRL step_time)"], rows),
    ])


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(prog="python -m bench.trainer_overhead", description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="1 round x 7 steps instead of 3 x 8, from the base's 1200-step quick build")
    ap.add_argument("--rounds", type=int, default=None)
    ap.add_argument("--steps", type=int, default=None, help="steps per run (the first and last are not counted)")
    ap.add_argument("--out", default=None, help="results folder (default bench/results)")
    ap.add_argument("--task", default=TASK, help=f"the toy task and base trained on (default {TASK}; or toy-chain)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    setup = None
    if args.rounds or args.steps:
        if args.quick:
            raise SystemExit("--rounds/--steps apply to the full setup; --quick fixes its own")
        setup = Setup(model=_base(args.task), task=args.task, **{k: v for k, v in (("rounds", args.rounds),
                                                                                    ("steps", args.steps)) if v})
    r = run(args.quick, setup=setup, out_dir=Path(args.out) if args.out else None, task=args.task)
    print(to_markdown(r))
    return r


if __name__ == "__main__":
    main()
