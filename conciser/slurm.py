"""`conciser slurm render|submit`: Slurm jobs from a recipe and a small site file.

    conciser slurm render recipes/r1-distill-qwen-1.5b/dler.yaml --nodes 2 --site site.yaml > dler.sbatch
    conciser slurm render r1-distill-qwen-1.5b/dler --job eval --site site.yaml      # eval array job
    conciser slurm submit r1-distill-qwen-1.5b/dler --nodes 2 --site site.yaml --with-eval

`--nodes N` counts *training* nodes: when the recipe uses vLLM, the job asks for N + 1 nodes and the
last one serves vLLM (`--colocate` keeps vLLM inside the training processes instead). The site file
(slurm/site.example.yaml) holds what differs between clusters: partition, account, GPUs per node,
modules, environment set-up, paths. Nothing cluster-specific is hard-coded here.

The scripts call `conciser launch-info` at run time (processes, batch, layout, last checkpoint), so
they never parse YAML. `slurm/train.sbatch` and `slurm/eval.sbatch` are the generic renders (no
recipe baked in; `sbatch --nodes=3 slurm/train.sbatch RECIPE [key=value ...]`); a test keeps them
identical to `conciser slurm render --generic`.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as _dt
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from conciser.errors import MissingInput, UserError, did_you_mean
from conciser.launch import launch_info, resolve_accelerate_config, summary_line


@dataclass
class Site:
    """What differs between clusters (all optional; see slurm/site.example.yaml)."""

    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    constraint: str | None = None
    time: str = "2-00:00:00"             # training job wall time (requeued jobs resume)
    eval_time: str = "12:00:00"          # per benchmark (array task)
    gpus_per_node: int = 8
    cpus_per_task: int | None = None     # one task per node: all the node's CPUs for its processes
    mem: str | None = None               # e.g. "0" (all of the node's memory)
    extra_sbatch: list[str] = field(default_factory=list)   # more #SBATCH options, e.g. "--reservation=x"
    modules: list[str] = field(default_factory=list)        # `module load` each
    setup: list[str] = field(default_factory=list)          # shell lines run before anything else
    env: dict[str, str] = field(default_factory=dict)       # exported variables
    workdir: str | None = None           # job working directory (relative recipe paths resolve here)
    log_dir: str = "logs"                # job logs, vLLM server log, rendered scripts of `submit`
    accelerate: str = "zero3"            # default accelerate config for training
    master_port: int = 29500             # rendezvous port on the first training node
    vllm_port: int = 8000                # vLLM server port on the server node
    vllm_health_timeout: int = 1800      # seconds to wait for the vLLM server (model download + load)


def load_site(path: str | Path | None) -> Site:
    if path is None:
        return Site()
    p = Path(path)
    if not p.is_file():
        raise MissingInput(f"--site {path}: no such file; start from slurm/site.example.yaml")
    try:
        raw = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as exc:
        raise UserError(f"{p}: not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise UserError(f"{p}: expected a mapping of site keys (see slurm/site.example.yaml)")
    valid = [f.name for f in dataclasses.fields(Site)]
    for key in raw:
        if key not in valid:
            raise UserError(f"{p}: unknown site key '{key}'{did_you_mean(key, valid)}")
    for key in ("extra_sbatch", "modules", "setup"):
        if raw.get(key) is not None and not isinstance(raw[key], list):
            raise UserError(f"{p}: '{key}' must be a list of strings")
    if raw.get("env") is not None and not isinstance(raw["env"], dict):
        raise UserError(f"{p}: 'env' must be a mapping NAME: value")
    site = Site(**{k: v for k, v in raw.items() if v is not None})
    if site.gpus_per_node < 1:
        raise UserError(f"{p}: gpus_per_node must be >= 1")
    return site


# ------------------------------------------------------------------ templates
# @@NAME@@ placeholders are filled by _fill; everything else is plain bash (shellcheck-clean).

TRAIN_TEMPLATE = r'''#!/bin/bash
@@SBATCH@@
#
# conciser GRPO training on Slurm: N training nodes + 1 vLLM server node.
@@ABOUT@@
#
# Layout: when the recipe uses vLLM (trainer.use_vllm) and the job has more than one node, the LAST
# node runs `vllm serve` with TRL's weight-transfer flags and the other nodes train with
# trainer.vllm_mode=server set explicitly (TRL 1.x defaults to colocate, which would silently run
# vLLM on the training GPUs and leave the server idle). A one-node job keeps the recipe's mode
# (colocate). The first training node is the rendezvous (MASTER_ADDR) of `accelerate launch`.
# Requeue: a preempted or requeued job resumes from the newest complete checkpoint in the output dir
# (its checkpoint_complete.json, written last, lists every file); a fresh run gets no --resume.
# No YAML is parsed here: `conciser launch-info` reports what the recipe needs.
# Knobs (environment at submit time; CONCISER_* without JOB_ are launch-info's outputs):
# CONCISER_JOB_ACCELERATE, CONCISER_JOB_GPUS_PER_NODE, CONCISER_JOB_VLLM_LAYOUT (auto|server|colocate),
# CONCISER_JOB_VLLM_TP, CONCISER_JOB_HEALTH_TIMEOUT, CONCISER_JOB_HEALTH_INTERVAL, CONCISER_JOB_MASTER_PORT,
# CONCISER_JOB_VLLM_PORT, CONCISER_JOB_LOG_DIR (generic script).

# CONCISER_* come from `eval "$(conciser launch-info ...)"`; the site set-up may source files.
# shellcheck disable=SC2154,SC1090,SC1091
set -euo pipefail

# ---- what to run ----
@@ARGS@@
ACCELERATE=${CONCISER_JOB_ACCELERATE:-@@ACCELERATE@@}
GPUS_PER_NODE=${CONCISER_JOB_GPUS_PER_NODE:-@@GPUS@@}
VLLM_LAYOUT=${CONCISER_JOB_VLLM_LAYOUT:-@@LAYOUT@@}
VLLM_TP=${CONCISER_JOB_VLLM_TP:-@@VLLM_TP@@}
MASTER_PORT=${CONCISER_JOB_MASTER_PORT:-@@MASTER_PORT@@}
VLLM_PORT=${CONCISER_JOB_VLLM_PORT:-@@VLLM_PORT@@}
HEALTH_TIMEOUT=${CONCISER_JOB_HEALTH_TIMEOUT:-@@HEALTH_TIMEOUT@@}
HEALTH_INTERVAL=${CONCISER_JOB_HEALTH_INTERVAL:-10}
LOG_DIR=@@LOG_DIR@@

# ---- site set-up ----
@@SETUP@@
export PYTHONUNBUFFERED=1 TORCH_NCCL_ASYNC_ERROR_HANDLING=1 ACCELERATE_LOG_LEVEL=info
# Slurm >= 22.05 job steps do not inherit --cpus-per-task: without this every node's processes share 1 CPU.
if [[ -n "${SLURM_CPUS_PER_TASK:-}" ]]; then export SRUN_CPUS_PER_TASK=$SLURM_CPUS_PER_TASK; fi

mkdir -p "$LOG_DIR"
mapfile -t NODES < <(scontrol show hostnames "$SLURM_JOB_NODELIST")
NUM_NODES=${#NODES[@]}
echo "conciser: job ${SLURM_JOB_ID:-?} (restart ${SLURM_RESTART_COUNT:-0}) on $NUM_NODES node(s): ${NODES[*]}"

INFO=$(conciser launch-info "$RECIPE" "${OVERRIDES[@]}" --allocated-nodes "$NUM_NODES" \
  --gpus-per-node "$GPUS_PER_NODE" --accelerate "$ACCELERATE" --vllm-layout "$VLLM_LAYOUT") || {
  echo "error: 'conciser launch-info $RECIPE' failed (message above); fix the recipe or its overrides" >&2
  exit 2
}
eval "$INFO"
VLLM_TP=${VLLM_TP:-$CONCISER_VLLM_TENSOR_PARALLEL_SIZE}

TRAIN_NODES=("${NODES[@]:0:CONCISER_TRAIN_NODES}")
MASTER_ADDR=${TRAIN_NODES[0]}
export MASTER_ADDR MASTER_PORT
TRAIN_ARGS=("${OVERRIDES[@]}")
echo "conciser: $CONCISER_TRAIN_NODES training node(s) x $CONCISER_PROCESSES_PER_NODE = $CONCISER_NUM_PROCESSES processes," \
  "gradient accumulation $CONCISER_GRADIENT_ACCUMULATION_STEPS, $CONCISER_COMPLETIONS_PER_STEP completions" \
  "($CONCISER_PROMPTS_PER_STEP prompts) per optimizer step; rendezvous $MASTER_ADDR:$MASTER_PORT; vLLM: $CONCISER_VLLM_MODE"

VLLM_PID=""
# shellcheck disable=SC2317,SC2329  # called by the EXIT trap (SC2329 since shellcheck 0.11)
cleanup() {
  if [[ -n "$VLLM_PID" ]]; then
    kill "$VLLM_PID" 2>/dev/null || true
    wait "$VLLM_PID" 2>/dev/null || true
  fi
}
trap cleanup EXIT

wait_for_vllm() {  # URL: poll the server's /health until it answers, it dies, or HEALTH_TIMEOUT passes
  local start=$SECONDS
  echo "conciser: waiting for the vLLM server at $1 (timeout ${HEALTH_TIMEOUT}s)"
  until curl -sf -o /dev/null --max-time 10 "$1"; do
    if ! kill -0 "$VLLM_PID" 2>/dev/null; then
      echo "error: the vLLM server on $VLLM_NODE exited before it became healthy; see $VLLM_LOG" >&2
      return 1
    fi
    if (( SECONDS - start >= HEALTH_TIMEOUT )); then
      echo "error: the vLLM server on $VLLM_NODE did not answer $1 within ${HEALTH_TIMEOUT}s; see $VLLM_LOG" \
        "(model download, GPU memory, port $VLLM_PORT in use). If the model only loads slowly, raise" \
        "CONCISER_JOB_HEALTH_TIMEOUT (site: vllm_health_timeout)." >&2
      return 1
    fi
    sleep "$HEALTH_INTERVAL"
  done
  echo "conciser: vLLM server ready after $((SECONDS - start)) s"
}

if [[ "$CONCISER_VLLM_SERVER" == 1 ]]; then
  command -v curl >/dev/null || { echo "error: curl is needed to wait for the vLLM server; install it or load its module" >&2; exit 2; }
  VLLM_NODE=${NODES[NUM_NODES - 1]}
  VLLM_LOG="$LOG_DIR/vllm-${SLURM_JOB_ID:-0}.log"
  SCALE_OUT=()
  if [[ "$CONCISER_VLLM_SCALE_OUT" == 1 ]]; then SCALE_OUT=(--enable-scale-out); fi
  echo "conciser: starting vllm serve $CONCISER_MODEL on $VLLM_NODE:$VLLM_PORT (tensor parallel $VLLM_TP; log $VLLM_LOG)"
  # TRL's server mode needs the weight-transfer engine (NCCL), processed logprobs and dev-mode endpoints.
  srun --nodes=1 --ntasks=1 --nodelist="$VLLM_NODE" --kill-on-bad-exit=1 \
    env VLLM_SERVER_DEV_MODE=1 vllm serve "$CONCISER_MODEL" --host 0.0.0.0 --port "$VLLM_PORT" \
    --tensor-parallel-size "$VLLM_TP" --max-model-len "$CONCISER_VLLM_MAX_MODEL_LEN" \
    --gpu-memory-utilization "$CONCISER_VLLM_GPU_MEMORY_UTILIZATION" --dtype "$CONCISER_DTYPE" \
    --weight-transfer-config '{"backend": "nccl"}' --logprobs-mode processed_logprobs --max-logprobs -1 \
    "${SCALE_OUT[@]}" >"$VLLM_LOG" 2>&1 &
  VLLM_PID=$!
  wait_for_vllm "http://$VLLM_NODE:$VLLM_PORT/health"
  TRAIN_ARGS+=(trainer.use_vllm=true trainer.vllm_mode=server "trainer.vllm_server_host=$VLLM_NODE"
               "trainer.vllm_server_port=$VLLM_PORT")
fi

if [[ -n "$CONCISER_LAST_CHECKPOINT" ]]; then
  echo "conciser: resuming from $CONCISER_LAST_CHECKPOINT"
  TRAIN_ARGS+=(--resume "$CONCISER_LAST_CHECKPOINT")
fi

TRAIN_NODELIST=$(IFS=,; echo "${TRAIN_NODES[*]}")
START=$SECONDS
set +e
# One task per training node; SLURM_PROCID (the machine rank) must expand on that node, not here.
# shellcheck disable=SC2016
srun --nodes="$CONCISER_TRAIN_NODES" --ntasks="$CONCISER_TRAIN_NODES" --ntasks-per-node=1 \
  --nodelist="$TRAIN_NODELIST" --kill-on-bad-exit=1 --wait=60 \
  bash -c 'exec accelerate launch --config_file "$1" --num_machines "$2" --num_processes "$3" \
    --machine_rank "$SLURM_PROCID" --main_process_ip "$MASTER_ADDR" --main_process_port "$MASTER_PORT" \
    --rdzv_backend c10d --max_restarts 0 -m conciser.cli train "${@:4}"' \
  conciser-train "$CONCISER_ACCELERATE_CONFIG" "$CONCISER_TRAIN_NODES" "$CONCISER_NUM_PROCESSES" \
  "$RECIPE" "${TRAIN_ARGS[@]}"
RC=$?
set -e
echo "conciser: training exited with status $RC after $((SECONDS - START)) s"
exit "$RC"
'''

EVAL_TEMPLATE = r'''#!/bin/bash
@@SBATCH@@
#
# conciser evaluation on Slurm: one array task per benchmark, one node each (vLLM, one replica per GPU).
@@ABOUT@@
#
# The model defaults to the recipe's output dir (the trained model); benchmarks, samples per problem,
# temperature and token cap come from the recipe's eval block (`conciser launch-info`). Outputs go to
# OUT/<benchmark>/ (samples.jsonl, summary.json); re-running a task resumes it.
# Knobs (environment at submit time; CONCISER_* without JOB_ are launch-info's outputs):
# CONCISER_JOB_MODEL, CONCISER_JOB_BENCHMARKS ("a b c"), CONCISER_JOB_N, CONCISER_JOB_OUT, CONCISER_JOB_GPUS_PER_NODE.

# CONCISER_* come from `eval "$(conciser launch-info ...)"`; the site set-up may source files.
# shellcheck disable=SC2154,SC1090,SC1091
set -euo pipefail

# ---- what to run ----
@@ARGS@@
MODEL=${CONCISER_JOB_MODEL:-@@MODEL@@}
BENCHMARK_LIST=${CONCISER_JOB_BENCHMARKS:-@@BENCHMARKS@@}
N=${CONCISER_JOB_N:-@@N@@}
OUT=${CONCISER_JOB_OUT:-@@OUT@@}
GPUS_PER_NODE=${CONCISER_JOB_GPUS_PER_NODE:-@@GPUS@@}

# ---- site set-up ----
@@SETUP@@
export PYTHONUNBUFFERED=1

INFO=$(conciser launch-info "$RECIPE" "${OVERRIDES[@]}" --gpus-per-node "$GPUS_PER_NODE") || {
  echo "error: 'conciser launch-info $RECIPE' failed (message above); fix the recipe or its overrides" >&2
  exit 2
}
eval "$INFO"
read -ra BENCHMARKS <<< "${BENCHMARK_LIST:-$CONCISER_EVAL_BENCHMARKS}"
TASK=${SLURM_ARRAY_TASK_ID:-0}
if (( TASK >= ${#BENCHMARKS[@]} )); then
  echo "error: array task $TASK, but there are ${#BENCHMARKS[@]} benchmarks (${BENCHMARKS[*]});" \
    "submit with --array=0-$(( ${#BENCHMARKS[@]} - 1 ))" >&2
  exit 2
fi
BENCHMARK=${BENCHMARKS[TASK]}
MODEL=${MODEL:-$CONCISER_OUTPUT_DIR}
OUT=${OUT:-$CONCISER_OUTPUT_DIR/eval}
ARGS=(--model "$MODEL" --benchmark "$BENCHMARK" --n "${N:-$CONCISER_EVAL_N}" --backend vllm
      --data-parallel-size "$GPUS_PER_NODE" --out "$OUT")
if [[ -n "$CONCISER_EVAL_MAX_NEW_TOKENS" ]]; then ARGS+=(--max-new-tokens "$CONCISER_EVAL_MAX_NEW_TOKENS"); fi
if [[ -n "$CONCISER_EVAL_TEMPERATURE" ]]; then ARGS+=(--temperature "$CONCISER_EVAL_TEMPERATURE"); fi
echo "conciser: array task $TASK: $BENCHMARK on $MODEL -> $OUT/$BENCHMARK"
exec conciser eval "${ARGS[@]}"
'''

GENERIC_TRAIN_ARGS = '''if [[ $# -lt 1 ]]; then
  echo "usage: sbatch --nodes=N+1 slurm/train.sbatch RECIPE [key=value ...]" >&2
  exit 2
fi
RECIPE=$1
shift
OVERRIDES=("$@")'''

GENERIC_EVAL_ARGS = '''if [[ $# -lt 1 ]]; then
  echo "usage: sbatch --array=0-K slurm/eval.sbatch RECIPE [key=value ...]   (K+1 = number of benchmarks)" >&2
  exit 2
fi
RECIPE=$1
shift
OVERRIDES=("$@")'''


def _fill(template: str, values: dict[str, str]) -> str:
    out = template
    for key, value in values.items():
        out = out.replace(f"@@{key}@@", value)
    if "@@" in out:
        missing = sorted({part.split("@@")[0] for part in out.split("@@")[1::2]})
        raise RuntimeError(f"slurm template: unfilled placeholders {missing}")
    return out


def _q(value: Any) -> str:
    return shlex.quote(str(value))


def _sbatch_lines(options: list[str]) -> str:
    return "\n".join(f"#SBATCH {opt}" for opt in options)


def _site_options(site: Site, time: str) -> list[str]:
    opts = [f"--time={time}"]
    for key in ("partition", "account", "qos", "constraint"):
        if getattr(site, key):
            opts.append(f"--{key}={getattr(site, key)}")
    if site.cpus_per_task:
        opts.append(f"--cpus-per-task={site.cpus_per_task}")
    if site.mem is not None:
        opts.append(f"--mem={site.mem}")
    if site.workdir:
        opts.append(f"--chdir={site.workdir}")
    return opts + list(site.extra_sbatch)


def _setup_block(site: Site) -> str:
    lines = [f"module load {_q(m)}" for m in site.modules]
    lines += list(site.setup)
    lines += [f"export {k}={_q(v)}" for k, v in site.env.items()]
    return "\n".join(lines) if lines else "# (none: the environment `sbatch` was called from is used)"


def _log_dir(site: Site) -> Path:
    p = Path(site.log_dir)
    if not p.is_absolute():
        p = Path(site.workdir or ".") / p
    return p.resolve()


def _recipe_arg(recipe: str) -> str:
    """A recipe file becomes an absolute path (the job may run elsewhere); a bundled name stays a name."""
    p = Path(recipe)
    return str(p.resolve()) if p.is_file() else recipe


def job_name(recipe_source: str) -> str:
    p = Path(recipe_source)
    return f"conciser-{p.parent.name}-{p.stem}"


def _args_block(recipe: str, overrides: list[str]) -> str:
    return f"RECIPE={_q(_recipe_arg(recipe))}\nOVERRIDES=({''.join(_q(o) + ' ' for o in overrides)}\"$@\")"


LAYOUT = "# Layout: "


def node_layout(train_nodes: int, server: bool) -> str:
    """ "2 training nodes + 1 vLLM node = 3 nodes" (what --nodes N becomes)."""
    plural = "s" if train_nodes != 1 else ""
    if not server:
        return f"{train_nodes} training node{plural} (vLLM colocated or off) = {train_nodes} node{plural}"
    return f"{train_nodes} training node{plural} + 1 vLLM node = {train_nodes + 1} nodes"


def render_train(recipe: str | None, overrides: list[str] | None = None, *, nodes: int = 1,
                 site: Site | None = None, accelerate: str | None = None, colocate: bool = False,
                 vllm_tp: int | None = None) -> str:
    """The training job script. recipe=None gives the generic script (recipe from the command line)."""
    site = site or Site()
    overrides = list(overrides or [])
    accelerate = accelerate or site.accelerate
    resolve_accelerate_config(accelerate)  # fail now, not on the cluster
    if recipe is None:
        about = ("# Generic script: sbatch --nodes=3 slurm/train.sbatch recipes/r1-distill-qwen-1.5b/dler.yaml"
                 " [key=value ...]\n# (2 training nodes + 1 vLLM node). `conciser slurm render RECIPE --nodes N"
                 " --site SITE` writes\n# one with your site's settings and the recipe baked in.")
        header = ["--job-name=conciser-train", "--nodes=3", "--ntasks-per-node=1", f"--gres=gpu:{site.gpus_per_node}",
                  "--exclusive", "--requeue", "--open-mode=append", "--output=slurm-%x-%j.out",
                  *_site_options(site, site.time)]
        args, log_dir = GENERIC_TRAIN_ARGS, '"${CONCISER_JOB_LOG_DIR:-logs}"'
    else:
        if nodes < 1:
            raise UserError(f"--nodes {nodes}: the number of training nodes must be >= 1")
        info = launch_info(recipe, overrides, nodes=nodes, gpus_per_node=site.gpus_per_node, accelerate=accelerate,
                           vllm_layout="colocate" if colocate else "server")
        server = info["vllm_server"]
        total = nodes + (1 if server else 0)
        layout = "colocate" if colocate else ("auto" if server else "colocate")
        about = (f"# Rendered by `conciser slurm render` on {_dt.date.today().isoformat()} for {info['recipe']}\n"
                 f"{LAYOUT}{node_layout(nodes, server)}\n"
                 f"# overrides: {' '.join(overrides) or '(none)'}; accelerate: {accelerate}\n"
                 f"# {total} node(s): {summary_line(info)}.\n"
                 f"# Submit: sbatch THIS_FILE [key=value ...]   (extra overrides are appended)")
        header = [f"--job-name={job_name(info['recipe'])}", f"--nodes={total}", "--ntasks-per-node=1",
                  f"--gres=gpu:{site.gpus_per_node}", "--exclusive", "--requeue", "--open-mode=append",
                  f"--output={_log_dir(site)}/%x-%j.out", *_site_options(site, site.time)]
        args, log_dir = _args_block(recipe, overrides), _q(str(_log_dir(site)))
    return _fill(TRAIN_TEMPLATE, {
        "SBATCH": _sbatch_lines(header), "ABOUT": about, "ARGS": args, "ACCELERATE": _q(accelerate),
        "GPUS": str(site.gpus_per_node), "LAYOUT": "auto" if recipe is None else layout,
        "VLLM_TP": "" if vllm_tp is None else str(vllm_tp), "MASTER_PORT": str(site.master_port),
        "VLLM_PORT": str(site.vllm_port), "HEALTH_TIMEOUT": str(site.vllm_health_timeout), "LOG_DIR": log_dir,
        "SETUP": _setup_block(site),
    })


def check_benchmark_names(names: list[str]) -> None:
    """Benchmark names the eval job will accept: bundled names, .jsonl files, hf:<id> (checked here, not
    after hours of training)."""
    from conciser.eval.benchmarks import known_benchmarks

    known = known_benchmarks()
    for name in names:
        if name not in known and not name.endswith(".jsonl") and not name.startswith("hf:"):
            raise UserError(f"eval.benchmarks: unknown benchmark {name!r}{did_you_mean(name, known)} (or a .jsonl "
                            f"file, or hf:<dataset id>)")


def render_eval(recipe: str | None, overrides: list[str] | None = None, *, site: Site | None = None,
                model: str | None = None, benchmarks: list[str] | None = None, n: int | None = None,
                out: str | None = None) -> str:
    """The evaluation array job (one task per benchmark). recipe=None gives the generic script."""
    site = site or Site()
    overrides = list(overrides or [])
    if recipe is None:
        about = ("# Generic script: sbatch --array=0-4 slurm/eval.sbatch recipes/r1-distill-qwen-1.5b/dler.yaml\n"
                 "# (tasks 0..4 = the recipe's 5 eval benchmarks; CONCISER_JOB_MODEL=PATH evaluates another model).")
        header = ["--job-name=conciser-eval", "--nodes=1", "--ntasks-per-node=1", f"--gres=gpu:{site.gpus_per_node}",
                  "--exclusive", "--requeue", "--open-mode=append", "--array=0-4", "--output=slurm-%x-%A_%a.out",
                  *_site_options(site, site.eval_time)]
        args = GENERIC_EVAL_ARGS
    else:
        info = launch_info(recipe, overrides, nodes=1, gpus_per_node=site.gpus_per_node)
        names = benchmarks or info["eval_benchmarks"]
        if not names:
            raise UserError(f"{info['recipe']}: the eval block lists no benchmarks; set eval.benchmarks or pass --benchmarks")
        check_benchmark_names(names)
        about = (f"# Rendered by `conciser slurm render --job eval` on {_dt.date.today().isoformat()} for "
                 f"{info['recipe']}\n# model: {model or info['output_dir']}; benchmarks: {' '.join(names)} "
                 f"(array tasks 0-{len(names) - 1}); n={n or info['eval_n']}")
        header = [f"--job-name={job_name(info['recipe'])}-eval", "--nodes=1", "--ntasks-per-node=1",
                  f"--gres=gpu:{site.gpus_per_node}", "--exclusive", "--requeue", "--open-mode=append",
                  f"--array=0-{len(names) - 1}", f"--output={_log_dir(site)}/%x-%A_%a.out",
                  *_site_options(site, site.eval_time)]
        args = _args_block(recipe, overrides)
        benchmarks = names
    return _fill(EVAL_TEMPLATE, {
        "SBATCH": _sbatch_lines(header), "ABOUT": about, "ARGS": args,
        "MODEL": _q(model) if model else "", "BENCHMARKS": _q(" ".join(benchmarks)) if benchmarks else "",
        "N": str(n) if n else "", "OUT": _q(out) if out else "", "GPUS": str(site.gpus_per_node),
        "SETUP": _setup_block(site),
    })


# ------------------------------------------------------------------ CLI

def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=["render", "submit"],
                        help="render: print the job script; submit: write it next to the logs and sbatch it")
    parser.add_argument("recipe", nargs="?", help="recipe file or bundled name (omit with --generic)")
    parser.add_argument("overrides", nargs="*", help="dotted key=value overrides baked into the job")
    parser.add_argument("--job", choices=["train", "eval"], default="train", help="which job (default train)")
    parser.add_argument("--nodes", type=int, default=1, help="training nodes; +1 node for the vLLM server")
    parser.add_argument("--site", default=None, help="site file (see slurm/site.example.yaml)")
    parser.add_argument("--accelerate", default=None, metavar="NAME|PATH",
                        help="accelerate config (default: the site's, else zero3)")
    parser.add_argument("--colocate", action="store_true", help="no server node: vLLM inside the training processes")
    parser.add_argument("--vllm-tp", type=int, default=None,
                        help="tensor parallel size of the vLLM server (default: trainer.vllm_tensor_parallel_size)")
    g = parser.add_argument_group("eval job")
    g.add_argument("--model", default=None, help="model to evaluate (default: the recipe's output dir)")
    g.add_argument("--benchmarks", default=None, help="comma-separated (default: the recipe's eval.benchmarks)")
    g.add_argument("--n", type=int, default=None, help="samples per problem (default: the recipe's eval.n)")
    g.add_argument("--out", default=None, help="eval output folder (default: <output_dir>/eval)")
    g = parser.add_argument_group("output")
    g.add_argument("-o", "--output", default=None, help="render: write here instead of stdout; "
                   "submit: script path (default <log_dir>/<job name>-<time>.sbatch)")
    g.add_argument("--with-eval", action="store_true", help="submit: also submit the eval job, after training succeeds")
    g.add_argument("--generic", action="store_true", help="render the generic script (slurm/train.sbatch, eval.sbatch)")


def _render(args: argparse.Namespace, job: str, site: Site) -> str:
    recipe = None if args.generic else args.recipe
    if recipe is None and not args.generic:
        raise UserError("give a RECIPE (or --generic for the recipe-less script)")
    if job == "train":
        return render_train(recipe, args.overrides, nodes=args.nodes, site=site, accelerate=args.accelerate,
                            colocate=args.colocate, vllm_tp=args.vllm_tp)
    benchmarks = [b.strip() for b in args.benchmarks.split(",") if b.strip()] if args.benchmarks else None
    return render_eval(recipe, args.overrides, site=site, model=args.model, benchmarks=benchmarks, n=args.n,
                       out=args.out)


def _sbatch(argv: list[str]) -> str:
    try:
        proc = subprocess.run(["sbatch", *argv], capture_output=True, text=True)
    except FileNotFoundError:
        raise MissingInput("sbatch not found: run `conciser slurm submit` on a Slurm login node, "
                                "or `conciser slurm render` and copy the script there") from None
    if proc.returncode:
        raise UserError(f"sbatch {' '.join(argv)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc.stdout.strip().split(";")[0]   # --parsable: "jobid[;cluster]"


def _announce(text: str, site: Site) -> None:
    """On stderr: the node layout a --nodes N job really asks for, and a missing partition/account."""
    layout = next((line[len(LAYOUT):] for line in text.splitlines() if line.startswith(LAYOUT)), None)
    if layout:
        print(f"conciser slurm: {layout}", file=sys.stderr)
    if not (site.partition or site.account):
        print("conciser slurm: warning: no site file gives a partition or account (--site SITE, see "
              "slurm/site.example.yaml); the job goes to the cluster's defaults", file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    site = load_site(args.site)
    if args.action == "render":
        text = _render(args, args.job, site)
        _announce(text, site)
        if args.output:
            Path(args.output).write_text(text)
            Path(args.output).chmod(0o755)
            print(f"wrote {args.output}", file=sys.stderr)
        else:
            sys.stdout.write(text)
        return 0
    if args.generic:
        raise UserError("submit needs a RECIPE (--generic is for render)")
    if args.recipe is None:
        raise UserError("give a RECIPE to submit")
    log_dir = _log_dir(site)
    log_dir.mkdir(parents=True, exist_ok=True)  # Slurm does not create the --output folder
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    jobs = [args.job] + (["eval"] if args.with_eval and args.job == "train" else [])
    texts = {job: _render(args, job, site) for job in jobs}  # every job checked before any is submitted
    job_id = None
    for job in jobs:
        text = texts[job]
        _announce(text, site)
        name = next(line.split("=", 1)[1] for line in text.splitlines() if line.startswith("#SBATCH --job-name="))
        path = Path(args.output) if args.output and job == args.job else log_dir / f"{name}-{stamp}.sbatch"
        path.write_text(text)
        path.chmod(0o755)
        deps = [f"--dependency=afterok:{job_id}"] if job_id and job == "eval" else []
        job_id = _sbatch(["--parsable", *deps, str(path)])
        print(f"submitted {job} job {job_id}: {path}")
    return 0


if __name__ == "__main__":  # python -m conciser.slurm ... (same as `conciser slurm ...`)
    from conciser.cli import main

    sys.exit(main(["slurm", *sys.argv[1:]]))
