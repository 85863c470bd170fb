"""Trainer overhead: `conciser train` against stock TRL `GRPOTrainer`, same model, data, batch, steps.

    python -m bench.trainer_overhead            # the toy base, 64 completions a step (full: `make bench`)
    python -m bench.trainer_overhead --quick    # a tiny random model, 16 completions a step

Four configurations, each a real training run:

    stock        trl.GRPOTrainer with a plain correctness reward function (the toy grader, 1/0)
    correctness  conciser train toy/laser with alpha=0, wrong/format rewards 0: pure 1/0 correctness
    laser_d      conciser train toy/laser_d + advantage.estimator=batch (LASER-D, batch whitening,
                 its monitor set sampled every refresh_every steps)
    hapo         conciser train toy/hapo (per-problem history: state updated every step)

All four share the trainer block (batch, generations, cap, seed, steps) and the training prompts.
The learning rate is 0, so the policy, and with it the work of generating, stays the same in every
run and every step: a method that teaches shorter answers would otherwise look "faster" for a reason
that is not overhead (completion lengths are reported to show the work was equal). Rounds alternate
the order of the configurations, so load from other users of a shared machine falls on all of them;
the first step of every run (one-off start-up) is dropped. The measure is TRL's own `step_time`
(generation, scoring, loss, backward: everything conciser adds runs inside it); the result is the
median step time of each configuration over all its steps, divided by stock TRL's.

torch runs one intra-op thread here: on a 2-core machine shared with other users' torch jobs, two
threads per process oversubscribe the cores and OpenMP barriers stall single steps for seconds.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench._common import log, machine, md_table, stamp, write_results

# name -> (recipe, overrides on top of the shared ones); None = stock TRL
CONFIGS: dict[str, tuple[str, list[str]] | None] = {
    "stock": None,
    "correctness": ("toy/laser", ["rewards.params.alpha=0.0", "rewards.params.wrong_reward=0.0",
                                  "rewards.params.format_reward=0.0"]),
    "laser_d": ("toy/laser_d", ["advantage.estimator=batch"]),
    "hapo": ("toy/hapo", []),
}
LABELS = {"stock": "stock TRL GRPOTrainer, correctness reward",
          "correctness": "(a) conciser, correctness only",
          "laser_d": "(b) conciser, LASER-D + batch advantages",
          "hapo": "(c) conciser, HAPO (stateful)"}


@dataclass(frozen=True)
class Setup:
    """What every configuration shares."""

    model: str
    steps: int = 7                  # per run, the first dropped
    rounds: int = 3
    batch: int = 64                 # completions per step
    generations: int = 8
    max_completion_length: int = field(default_factory=lambda: _toy_cap())
    n_train: int = 128
    seed: int = 0
    extra: tuple[str, ...] = field(default_factory=tuple)

    def overrides(self, out_dir: Path) -> list[str]:
        return [f"model.name_or_path={self.model}", f"data.n_train={self.n_train}", "data.seed=0",
                f"trainer.output_dir={out_dir}", f"trainer.max_steps={self.steps}",
                f"trainer.per_device_train_batch_size={self.batch}", f"trainer.num_generations={self.generations}",
                f"trainer.max_completion_length={self.max_completion_length}", "trainer.learning_rate=0.0",
                "trainer.logging_steps=1", f"trainer.seed={self.seed}", *self.extra]


def _toy_cap() -> int:
    from conciser import toy

    return toy.DEFAULT_MAX_COMPLETION  # the toy recipes' and the eval's cap


def tiny_model(path: Path, seed: int = 0) -> str:
    """A random-init tiny toy model (seconds): generation runs to the cap, so the work is fixed."""
    import torch

    from conciser import toy
    from conciser.trainers.toy_sft import ToyBaseConfig, build_model

    cfg = ToyBaseConfig(hidden_size=64, num_layers=2, num_heads=2, num_kv_heads=1, intermediate_size=128, seed=seed)
    tokenizer = toy.build_tokenizer()
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


def _run_stock(setup: Setup, out_dir: Path) -> list[dict]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import GRPOTrainer

    from conciser.trainers.data import to_dataset
    from conciser.trainers.train import prepare

    recipe, overrides = CONFIGS["correctness"]
    _, rows, _, args = prepare(recipe, [*overrides, *setup.overrides(out_dir)])  # the same args and rows
    tokenizer = AutoTokenizer.from_pretrained(setup.model)
    model = AutoModelForCausalLM.from_pretrained(setup.model, dtype=torch.float32)
    trainer = GRPOTrainer(model=model, processing_class=tokenizer, args=args, train_dataset=to_dataset(rows),
                          reward_funcs=[correctness_reward])
    trainer.train()
    return trainer.state.log_history


def _run_conciser(name: str, setup: Setup, out_dir: Path) -> list[dict]:
    from conciser.trainers.train import train

    recipe, overrides = CONFIGS[name]
    out = train(recipe, [*overrides, *setup.overrides(out_dir)])
    return json.loads((out / "trainer_state.json").read_text())["log_history"]


def run_once(name: str, setup: Setup, work: Path) -> dict:
    """One training run of configuration `name`: its per-step times and completion lengths."""
    out_dir = work / f"{name}-{time.monotonic_ns()}"
    t0 = time.perf_counter()
    logs = _run_stock(setup, out_dir) if CONFIGS[name] is None else _run_conciser(name, setup, out_dir)
    steps = [e for e in logs if "step_time" in e]
    return {"config": name, "wall_s": time.perf_counter() - t0,
            "step_time": [e["step_time"] for e in steps],
            "mean_length": [e.get("completions/mean_length") for e in steps]}


def run(quick: bool = False, *, setup: Setup | None = None, configs: list[str] | None = None,
        out_dir: Path | None = None, write: bool = True) -> dict:
    """Alternating rounds of every configuration; returns (and by default writes) the results dict."""
    configs = configs or list(CONFIGS)
    if configs[0] != "stock":
        raise ValueError("the first configuration must be 'stock' (the ratios' denominator)")
    import torch

    mach = machine()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # see the module docstring: shared cores, OpenMP barriers
    mach["torch_threads"] = 1
    with tempfile.TemporaryDirectory(prefix="bench-overhead-") as tmp:
        work = Path(tmp)
        if setup is None:
            if quick:
                setup = Setup(model=tiny_model(work / "tiny"), steps=9, rounds=3, batch=16, generations=4,
                              max_completion_length=64, n_train=64)
            else:
                from conciser.trainers.toy_sft import ensure_toy_base

                setup = Setup(model=str(ensure_toy_base()))
        log(f"trainer overhead: {len(configs)} configs x {setup.rounds} rounds x {setup.steps} steps, "
            f"{setup.batch} completions/step, cap {setup.max_completion_length}, load {mach['load_avg_1m']}")
        runs = []
        for r in range(setup.rounds):
            order = configs[r % len(configs):] + configs[:r % len(configs)]
            for name in order:
                res = run_once(name, setup, work)
                res["round"] = r
                runs.append(res)
                log(f"round {r + 1}/{setup.rounds} {name}: median step "
                    f"{statistics.median(res['step_time'][1:] or res['step_time']):.3f} s, run {res['wall_s']:.0f} s")
    torch.set_num_threads(threads)
    result = summarize(runs, configs, setup, quick)
    result["machine"] = {**mach, "load_avg_1m_after": round(os.getloadavg()[0], 2)}
    if write:
        path = write_results("trainer_overhead", quick, result, to_markdown(result), out_dir)
        log(f"wrote {path}")
    return result


def summarize(runs: list[dict], configs: list[str], setup: Setup, quick: bool) -> dict:
    per: dict[str, dict] = {}
    for name in configs:
        mine = [r for r in runs if r["config"] == name]
        steps = [t for r in mine for t in (r["step_time"][1:] or r["step_time"])]  # first step of a run dropped
        lengths = [x for r in mine for x in r["mean_length"][1:] if x is not None]
        q = statistics.quantiles(steps, n=4) if len(steps) >= 2 else [steps[0]] * 3
        per[name] = {"label": LABELS.get(name, name), "steps": len(steps), "median_step_s": statistics.median(steps),
                     "p25_step_s": q[0], "p75_step_s": q[2], "mean_step_s": statistics.fmean(steps),
                     "mean_completion_length": statistics.fmean(lengths) if lengths else None,
                     "round_medians": [statistics.median(r["step_time"][1:] or r["step_time"]) for r in mine]}
    base = per[configs[0]]
    for name, p in per.items():
        p["ratio"] = p["median_step_s"] / base["median_step_s"]
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
        rows.append([p["label"], f"{p['median_step_s']:.3f}", f"{p['p25_step_s']:.3f}–{p['p75_step_s']:.3f}",
                     f"{p['mean_step_s']:.3f}", p["steps"], length, f"**{p['ratio']:.3f}×**", spread])
    return "\n".join([
        f"# Trainer overhead ({r['mode']})",
        "",
        f"{r['date']} · {m['cpus']} CPUs, load average {m['load_avg_1m']} before / {m.get('load_avg_1m_after')} after "
        f"· torch {m.get('torch')}, transformers {m.get('transformers')}, trl {m.get('trl')}",
        "",
        f"Model `{Path(s['model']).name}`; {s['batch']} completions a step ({s['batch'] // s['generations']} prompts x "
        f"{s['generations']}), cap {s['max_completion_length']} tokens, {s['n_train']} toy prompts, learning rate 0 "
        f"(the policy stays the same, so every run does the same generation work). {s['rounds']} rounds, each running "
        f"every configuration once in rotated order, {s['steps']} steps per run, the first dropped. Step time = TRL's "
        "`step_time`.",
        "",
        md_table(["configuration", "median step (s)", "p25–p75 (s)", "mean (s)", "steps", "mean completion tokens",
                  "ratio to stock (medians)", "ratio per round"], rows),
    ])


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(prog="python -m bench.trainer_overhead", description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="a tiny random model and small batches")
    ap.add_argument("--rounds", type=int, default=None)
    ap.add_argument("--steps", type=int, default=None, help="steps per run (the first is dropped)")
    ap.add_argument("--out", default=None, help="results folder (default bench/results)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    setup = None
    if args.rounds or args.steps:
        if args.quick:
            raise SystemExit("--rounds/--steps apply to the full setup; --quick fixes its own")
        from conciser.trainers.toy_sft import ensure_toy_base

        setup = Setup(model=str(ensure_toy_base()), **{k: v for k, v in (("rounds", args.rounds),
                                                                           ("steps", args.steps)) if v})
    r = run(args.quick, setup=setup, out_dir=Path(args.out) if args.out else None)
    print(to_markdown(r))
    return r


if __name__ == "__main__":
    main()
