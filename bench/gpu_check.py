"""One-command GPU check: does a bf16 GRPO step of conciser cost what stock TRL's does, with and
without DeepSpeed ZeRO-2, and how fast does `conciser eval` generate?

    make gpu-check                                   # on a CUDA machine (wheels: bench/gpu_check.md)
    python -m bench.gpu_check                        # the same, with everything already installed
    python -m bench.gpu_check --dry-run              # the same code path on CPU, a tiny toy model (make test)

On one CUDA GPU, with a model of Qwen2.5-0.5B's shape (Qwen2 architecture, 24 layers, hidden 896,
151,936-token vocabulary) built from its config with random weights (nothing is downloaded), bf16:

  (a) stock TRL `GRPOTrainer` with a correctness reward vs `conciser train` with LASER-D + batch
      advantages vs with HAPO: same model, prompts, batch, cap, seed and steps, learning rate 0,
      transformers generation, the three runs in lockstep exactly as `bench/trainer_overhead.py` runs
      them on CPU (step k of each back to back, order rotated every step; medians per configuration);
  (b) the same three under DeepSpeed ZeRO-2 through accelerate on the one GPU: each process gets the
      environment `accelerate launch --config_file configs/accelerate/zero2.yaml --num_processes 1`
      would give it (computed by accelerate's own launcher code) plus torchrun's rank variables;
  (c) tokens/s of `conciser eval` (transformers backend, bf16) on the same model.

A random model never writes an answer, so every reward is the same and every completion runs to the
cap: every configuration does the same generation work, which is what a cost comparison needs.
Results: `bench/results/gpu_check.{md,json}` (the dry run writes `runs/gpu_check_dry_run/`). The
plan below fits in about 5 minutes on one H100 (budget: 10).

Installing on an offline GPU box that has torch, transformers, accelerate and peft but not trl,
datasets, math-verify or deepspeed: `bench/gpu_check.md` (wheels prepared beforehand with
`bench/gpu_wheels.sh`). `--wheels DIR` installs them and conciser itself into `--site`
(pip --target, nothing else on the box changes) and runs the check from there.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CONFIGS = ["stock", "laser_d", "hapo"]   # trainer_overhead.CONFIGS names; stock first (the denominator)
MODES = ("plain", "zero2")
NEEDED = {"plain": ["trl", "datasets", "math_verify"], "zero2": ["deepspeed"]}

# Qwen2.5-0.5B's config.json, less what only names files.
QWEN25_05B = dict(vocab_size=151936, hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
                  num_attention_heads=14, num_key_value_heads=2, max_position_embeddings=32768,
                  rope_theta=1000000.0, rms_norm_eps=1e-6, tie_word_embeddings=True, hidden_act="silu",
                  max_window_layers=21, attention_dropout=0.0)


@dataclass(frozen=True)
class Plan:
    """How much work each part does (the GPU plan fits 10 minutes of one H100; the dry run seconds)."""

    steps: int                  # per training run; the first and the last are not counted
    rounds: int                 # lockstep rounds per mode
    batch: int                  # completions per step
    generations: int            # completions per prompt
    max_completion_length: int  # the cap every random-model completion runs to
    n_train: int                # toy prompts
    eval_benchmark: str
    eval_problems: int
    eval_max_new_tokens: int
    eval_batch: int


GPU_PLAN = Plan(steps=6, rounds=1, batch=32, generations=8, max_completion_length=256, n_train=64,
                eval_benchmark="math500", eval_problems=64, eval_max_new_tokens=512, eval_batch=64)
DRY_PLAN = Plan(steps=2, rounds=1, batch=4, generations=2, max_completion_length=64, n_train=8,
                eval_benchmark="toy", eval_problems=4, eval_max_new_tokens=12, eval_batch=4)


# ---------------------------------------------------------------- the model

def shaped_tokenizer(vocab_size: int):
    """The toy tokenizer, its vocabulary padded with filler tokens so that it decodes every id a
    `vocab_size` model can sample (the added special tokens stay inside that range)."""
    from transformers import Qwen2Tokenizer

    from conciser import toy

    base = toy.build_tokenizer()
    state = json.loads(base.backend_tokenizer.to_str())["model"]
    vocab = dict(state["vocab"])
    added = [t for _, t in sorted(base.added_tokens_decoder.items()) if t.content not in vocab]
    for i in range(vocab_size - len(added) - len(vocab)):
        vocab[f"<filler{i}>"] = len(vocab)
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in state["merges"]]
    tok = Qwen2Tokenizer(vocab=vocab, merges=merges, unk_token=None, eos_token=base.eos_token,
                         pad_token=base.pad_token, bos_token=None, model_max_length=4096)
    # The toy's added tokens (chat roles, think tags) keep their kind, with ids at the top of the range.
    tok.add_special_tokens({"additional_special_tokens": [t for t in added if t.special]})
    tok.add_tokens([t for t in added if not t.special])
    tok.chat_template = base.chat_template
    tok.padding_side = "left"
    assert len(tok) <= vocab_size, (len(tok), vocab_size)
    return tok


def qwen_shaped_model(path: Path, seed: int = 0) -> str:
    """A Qwen2.5-0.5B-shaped model with random weights (bf16) and a tokenizer covering its vocabulary."""
    import torch
    from transformers import AutoModelForCausalLM, Qwen2Config

    tok = shaped_tokenizer(QWEN25_05B["vocab_size"])
    config = Qwen2Config(**QWEN25_05B, bos_token_id=None, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    model.generation_config.eos_token_id = tok.eos_token_id
    model.generation_config.pad_token_id = tok.pad_token_id
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return str(path)


# ---------------------------------------------------------------- training, in lockstep

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def zero2_env() -> dict[str, str]:
    """What `accelerate launch --config_file configs/accelerate/zero2.yaml --num_processes 1` exports
    for its process (accelerate's own launcher code), plus the rank variables torchrun would set."""
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser
    from accelerate.utils.launch import prepare_deepspeed_cmd_env

    from conciser.launch import resolve_accelerate_config

    port = _free_port()
    args = launch_command_parser().parse_args([
        "--config_file", str(resolve_accelerate_config("zero2")), "--num_processes", "1", "--num_machines", "1",
        "--main_process_port", str(port), "-m", "conciser.cli", "train", "unused"])
    args, defaults, _ = _validate_launch_command(args)
    args.deepspeed_fields_from_accelerate_config = ",".join(defaults.deepspeed_config)
    _, env = prepare_deepspeed_cmd_env(args)
    return {**{k: v for k, v in env.items() if k.startswith("ACCELERATE_")},
            "RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "1", "LOCAL_WORLD_SIZE": "1",
            "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}


MARKERS = "CONCISER_GPU_CHECK_MARKERS"  # a folder where each training process says how it trained


def _worker_main(conn, name: str, setup_json: str, out_dir: str) -> None:
    """A training process of the check: trainer_overhead's, recording what its accelerator set up
    (DeepSpeed or not, ZeRO stage, device, precision), with DeepSpeed's shared-memory collective build
    skipped on CPU (one rank needs none; its JIT build takes a minute on a fresh machine)."""
    import torch
    import transformers

    if os.environ.get("ACCELERATE_USE_DEEPSPEED") == "true" and not torch.cuda.is_available():
        import deepspeed.comm.torch  # noqa: F401  (the module whose attribute is replaced)

        sys.modules["deepspeed.comm.torch"].build_shm_op = lambda: None
    create = transformers.Trainer.create_accelerator_and_postprocess

    def recording(self) -> None:
        create(self)
        plugin = self.accelerator.state.deepspeed_plugin
        Path(os.environ[MARKERS], f"{name}.json").write_text(json.dumps({
            "deepspeed": self.is_deepspeed_enabled, "zero_stage": plugin.zero_stage if plugin else None,
            "device": str(self.accelerator.device), "mixed_precision": str(self.accelerator.mixed_precision),
            "model_dtype": str(self.model.dtype)}))

    transformers.Trainer.create_accelerator_and_postprocess = recording
    from bench.trainer_overhead import _worker_main as overhead_worker

    overhead_worker(conn, name, setup_json, out_dir)


def check_training(mode: str, model: str, plan: Plan, gpu: bool, work: Path) -> tuple[dict, dict]:
    """(a) or (b): the three configurations in lockstep; trainer_overhead's summary of them, and what
    each process's accelerator set up."""
    from bench.trainer_overhead import Setup, run

    extra = ("model.dtype=bfloat16", "trainer.bf16=true") if gpu else ()
    # task "toy": the models here carry the chain task's tokenizer (`shaped_tokenizer`, `tiny_model(task="toy")`)
    setup = Setup(model=model, task="toy", steps=plan.steps, rounds=plan.rounds, batch=plan.batch,
                  generations=plan.generations, max_completion_length=plan.max_completion_length,
                  n_train=plan.n_train, extra=extra)
    markers = work / f"markers-{mode}"
    markers.mkdir()

    def env(name: str) -> dict[str, str]:
        return {MARKERS: str(markers), **(zero2_env() if mode == "zero2" else {})}

    r = run(setup=setup, configs=list(CONFIGS), write=False, env=env, target="bench.gpu_check:_worker_main",
            timeout=600.0)
    return r, {p.stem: json.loads(p.read_text()) for p in sorted(markers.glob("*.json"))}


def check_eval(model: str, plan: Plan, gpu: bool, work: Path) -> dict:
    """(c): `conciser eval`'s transformers backend on the model: generated tokens per second."""
    from conciser.eval.run import evaluate

    s = evaluate(model, benchmark=plan.eval_benchmark, n=1, limit=plan.eval_problems,
                 max_new_tokens=plan.eval_max_new_tokens, batch_size=plan.eval_batch, out_dir=work / "eval",
                 progress=False, print_table=False, dtype="bfloat16" if gpu else None)
    tokens = s["mean_tokens"] * s["n_samples"]
    return {"benchmark": plan.eval_benchmark, "samples": s["n_samples"], "batch_size": plan.eval_batch,
            "max_new_tokens": plan.eval_max_new_tokens, "generated_tokens": round(tokens),
            "generation_s": round(s["generation_seconds"], 3),
            "tokens_per_s": round(tokens / s["generation_seconds"], 1) if s["generation_seconds"] else None}


# ---------------------------------------------------------------- the check

def versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": sys.version.split()[0]}
    for dist in ("torch", "transformers", "accelerate", "peft", "trl", "datasets", "math-verify", "deepspeed"):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            out[dist] = None
    return out


def missing(modes: tuple[str, ...]) -> list[str]:
    import importlib.util

    return [m for mode in ("plain", *modes) for m in NEEDED[mode] if importlib.util.find_spec(m) is None]


def run(dry_run: bool = False, *, plan: Plan | None = None, modes: tuple[str, ...] = MODES,
        out_dir: Path | None = None) -> dict:
    """Run the check; writes gpu_check.{md,json} (dry run: gpu_check.dry-run.*) and returns the results."""
    import torch

    import conciser
    from bench._common import RESULTS, log, machine

    gpu = not dry_run
    if gpu and not torch.cuda.is_available():
        raise SystemExit("gpu_check: no CUDA device; on a CPU machine run `python -m bench.gpu_check --dry-run`")
    if lost := missing(modes):
        raise SystemExit(f"gpu_check: not installed: {', '.join(sorted(set(lost)))}. On an offline GPU box, prepare "
                         "the wheels with bench/gpu_wheels.sh and run `make gpu-check` (see bench/gpu_check.md).")
    plan = plan or (DRY_PLAN if dry_run else GPU_PLAN)
    out_dir = Path(out_dir) if out_dir else (REPO / "runs" / "gpu_check_dry_run" if dry_run else RESULTS)
    t_start = time.perf_counter()
    result: dict = {"bench": "gpu_check", "dry_run": dry_run, "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
                    "device": torch.cuda.get_device_name(0) if gpu else "cpu", "versions": versions(),
                    "machine": machine(), "plan": asdict(plan), "modes": {},
                    "conciser": str(Path(conciser.__file__).resolve().parent)}  # the copy that ran
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
        work = Path(tmp)
        t0 = time.perf_counter()
        if gpu:
            model = qwen_shaped_model(work / "model")
        else:
            from bench.trainer_overhead import tiny_model

            model = tiny_model(work / "model", task="toy")
        result["model"] = {"shape": "Qwen2.5-0.5B (random weights, bf16)" if gpu else "tiny toy (random weights)",
                           "build_s": round(time.perf_counter() - t0, 1)}
        log(f"gpu_check: model built in {result['model']['build_s']} s on {result['device']}")
        for mode in modes:
            t0 = time.perf_counter()
            r, accel = check_training(mode, model, plan, gpu, work)
            result["modes"][mode] = {"wall_s": round(time.perf_counter() - t0, 1), "accelerator": accel,
                                     "configs": {k: {x: v[x] for x in ("median_step_s", "ratio", "ratio_ci90",
                                                                      "mean_completion_length", "round_ratios",
                                                                      "median_trl_step_time_s", "steps")}
                                                 for k, v in r["configs"].items()}}
            log(f"gpu_check: {mode} done in {result['modes'][mode]['wall_s']} s: " + ", ".join(
                f"{k} {v['ratio']:.3f}x" for k, v in r["configs"].items()))
        t0 = time.perf_counter()
        result["eval"] = check_eval(model, plan, gpu, work)
        result["eval"]["wall_s"] = round(time.perf_counter() - t0, 1)
    result["wall_s"] = round(time.perf_counter() - t_start, 1)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = "gpu_check.dry-run" if dry_run else "gpu_check"
    (out_dir / f"{stem}.json").write_text(json.dumps(result, indent=2) + "\n")
    (out_dir / f"{stem}.md").write_text(to_markdown(result) + "\n")
    log(f"gpu_check: {result['wall_s']} s in all; wrote {out_dir / stem}.md")
    return result


LABELS = {"stock": "stock TRL GRPOTrainer, correctness reward", "laser_d": "conciser, LASER-D + batch advantages",
          "hapo": "conciser, HAPO"}


def to_markdown(r: dict) -> str:
    from bench._common import md_table

    p, v = r["plan"], r["versions"]
    lines = [f"# GPU check{' (dry run on CPU: not a measurement)' if r['dry_run'] else ''}", "",
             f"{r['date']} · {r['device']} · " + ", ".join(f"{k} {x}" for k, x in v.items() if x) +
             f" · {r['wall_s']} s in all", "",
             f"Model: {r['model']['shape']}. Each step: {p['batch']} completions ({p['batch'] // p['generations']} "
             f"prompts x {p['generations']}), cap {p['max_completion_length']} tokens, learning rate 0; {p['rounds']} "
             f"lockstep round(s) of {p['steps']} steps per mode, the first and last step not counted. Ratios are "
             "median step time over stock TRL's (1.00 = the same cost).", ""]
    plain = r["modes"].get("plain", {}).get("configs", {})
    for mode, title in (("plain", "(a) bf16, no DeepSpeed"), ("zero2", "(b) DeepSpeed ZeRO-2 through accelerate")):
        if mode not in r["modes"]:
            continue
        rows = []
        for name, c in r["modes"][mode]["configs"].items():
            vs_plain = (f"{c['median_step_s'] / plain[name]['median_step_s']:.2f}×"
                        if mode != "plain" and name in plain else "")
            rows.append([LABELS.get(name, name), f"{c['median_step_s']:.3f}", f"**{c['ratio']:.3f}×**",
                         "–".join(f"{x:.2f}" for x in c["ratio_ci90"]), c["steps"],
                         f"{c['mean_completion_length']:.1f}" if c["mean_completion_length"] else "-", vs_plain])
        accel = r["modes"][mode].get("accelerator", {})
        how = sorted({f"DeepSpeed ZeRO-{a['zero_stage']}" if a["deepspeed"] else "no DeepSpeed" for a in accel.values()}
                     | {f"{a['device']}, model {a['model_dtype'].replace('torch.', '')}, mixed precision "
                        f"{a['mixed_precision']}" for a in accel.values()})
        lines += [f"## {title}", "", f"As the trainers set up: {'; '.join(how)}.", "",
                  md_table(["configuration", "median step (s)", "ratio to stock", "90% interval",
                            "steps", "mean completion tokens", "step vs (a)"], rows), ""]
    e = r["eval"]
    lines += ["## (c) `conciser eval`, transformers backend", "",
              md_table(["benchmark", "samples", "batch", "max new tokens", "generated tokens", "seconds", "tokens/s"],
                       [[e["benchmark"], e["samples"], e["batch_size"], e["max_new_tokens"], e["generated_tokens"],
                         e["generation_s"], f"**{e['tokens_per_s']}**"]])]
    return "\n".join(lines)


# ---------------------------------------------------------------- installing on the box

def install(wheels: Path | None, site: Path) -> None:
    """conciser and the prepared wheels into `site` (pip --target: nothing else on the box changes).
    Without a wheel folder only conciser is installed (the check then says what is missing, if anything)."""
    wheel_files = sorted(str(w) for w in Path(wheels).glob("*.whl")) if wheels and Path(wheels).is_dir() else []
    if wheels and not wheel_files:
        print(f"gpu_check: no wheels in {wheels} (bench/gpu_check.md says how to prepare them); installing "
              "conciser alone", file=sys.stderr)
    cmd = [sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check", "--no-index", "--no-deps",
           "--no-build-isolation", "--no-compile", "--upgrade", "--target", str(site), str(REPO), *wheel_files]
    done = subprocess.run(cmd, capture_output=True, text=True)  # setuptools' build warnings are noise here
    if done.returncode != 0:
        raise SystemExit(f"gpu_check: installing into {site} failed:\n{done.stdout}{done.stderr}")


def main(argv: list[str] | None = None) -> dict | int:
    ap = argparse.ArgumentParser(prog="python -m bench.gpu_check", description=__doc__.split("\n")[0])
    ap.add_argument("--dry-run", action="store_true", help="the same code path on CPU with a tiny toy model")
    ap.add_argument("--wheels", type=Path, default=None,
                    help="install these prepared wheels and conciser into --site first, then run from there")
    ap.add_argument("--site", type=Path, default=None,
                    help="where --wheels installs (default: a folder under the system's temp dir)")
    ap.add_argument("--modes", default=",".join(MODES), help=f"comma-separated subset of {', '.join(MODES)}")
    ap.add_argument("--steps", type=int, default=None, help="steps per training run (default: the plan's)")
    ap.add_argument("--out", type=Path, default=None, help="results folder (default bench/results)")
    args = ap.parse_args(argv)
    modes = tuple(m for m in args.modes.split(",") if m)
    if bad := sorted(set(modes) - set(MODES)):
        ap.error(f"unknown mode(s) {bad}; choose from {', '.join(MODES)}")
    if args.wheels is not None or args.site is not None:
        # Install, then run the check from the site folder: the repository's own `conciser/` folder
        # must not shadow the installed package (which maps conciser.rewards etc. to their folders).
        site = (args.site or Path(tempfile.gettempdir()) / "conciser-gpu-site").resolve()
        install(args.wheels, site)
        rest = [a for a in (["--dry-run"] if args.dry_run else []) + ["--modes", ",".join(modes)]]
        if args.steps:
            rest += ["--steps", str(args.steps)]
        rest += ["--out", str((args.out or (REPO / "runs" / "gpu_check_dry_run" if args.dry_run else
                                            REPO / "bench" / "results")).resolve())]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(REPO)])}
        return subprocess.run([sys.executable, "-m", "bench.gpu_check", *rest], cwd=site, env=env).returncode
    plan = DRY_PLAN if args.dry_run else GPU_PLAN
    if args.steps:
        plan = Plan(**{**asdict(plan), "steps": args.steps})
    r = run(args.dry_run, plan=plan, modes=modes, out_dir=args.out)
    print(to_markdown(r))
    return r


if __name__ == "__main__":
    out = main()
    sys.exit(out if isinstance(out, int) else 0)
