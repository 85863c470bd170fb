"""`conciser train --accelerate`: the accelerate command it builds, the arguments it forwards, the bundled
accelerate/DeepSpeed configs (accepted by accelerate, batch settings left to the recipe), and a real
2-process CPU run of a toy recipe that must really see 2 ranks (accelerate 1.15's `--cpu` path silently
starts one).

    python -m pytest -q tests/test_launch.py
"""

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from unittest import mock

import pytest

from conciser.launch import (accelerate_config_names, build_accelerate_command,
                             forwarded_argv, hardware_independent_validation, maybe_relaunch,
                             resolve_accelerate_config)
from conciser import train_cli as train

REPO = Path(__file__).resolve().parents[1]


def _train_parser():
    parser = argparse.ArgumentParser(prog="conciser train")
    train.add_arguments(parser)  # includes the launch flags (conciser.launch.add_launch_arguments)
    return parser


def test_bundled_configs():
    assert {"single_gpu", "ddp", "zero2", "zero2_offload", "zero3", "zero3_offload", "multi_node",
            "cpu_ddp"} <= set(accelerate_config_names())
    with pytest.raises(FileNotFoundError, match="bundled: .*zero3"):
        resolve_accelerate_config("zero4")


@pytest.mark.parametrize("name", accelerate_config_names())
def test_accelerate_reads_every_bundled_config(name):
    from accelerate.commands.config.config_args import load_config_from_file

    cfg = load_config_from_file(str(resolve_accelerate_config(name)))
    assert cfg.distributed_type.value in ("NO", "MULTI_GPU", "DEEPSPEED")
    if cfg.distributed_type.value == "DEEPSPEED":
        # Batch, accumulation, clipping and precision come from the recipe ("auto"), never from here.
        assert not {"gradient_accumulation_steps", "gradient_clipping"} & set(cfg.deepspeed_config)
        assert cfg.mixed_precision in (None, "no")


def test_command_for_a_multi_machine_zero3_run():
    cmd, env = build_accelerate_command(["train", "toy/laser", "trainer.max_steps=2"], "zero3", num_processes=16,
                                        num_machines=2, machine_rank=1, main_process_ip="node0", python="py")
    assert cmd[:3] == ["py", "-m", "accelerate.commands.launch"]
    opts = dict(zip(cmd[3:cmd.index("-m", 3):2], cmd[4:cmd.index("-m", 3):2]))
    assert opts == {"--config_file": str(resolve_accelerate_config("zero3")), "--num_processes": "16",
                    "--num_machines": "2", "--machine_rank": "1", "--main_process_ip": "node0",
                    "--main_process_port": "29500", "--rdzv_backend": "c10d"}
    assert cmd[cmd.index("-m", 3):] == ["-m", "conciser.cli", "train", "toy/laser", "trainer.max_steps=2"]
    assert env.get("ACCELERATE_USE_CPU") == os.environ.get("ACCELERATE_USE_CPU")   # GPU configs: untouched


def test_process_counts_and_errors():
    cmd, env = build_accelerate_command(["train", "x"], "cpu_ddp")
    assert cmd[cmd.index("--num_processes") + 1] == "2" and env["ACCELERATE_USE_CPU"] == "true"
    with mock.patch("conciser.launch.detect_gpus", return_value=4):
        cmd, _ = build_accelerate_command(["train", "x"], "zero2", num_machines=2, main_process_ip="n0")
    assert cmd[cmd.index("--num_processes") + 1] == "8"
    with mock.patch("conciser.launch.detect_gpus", return_value=0), pytest.raises(ValueError, match="cpu_ddp"):
        build_accelerate_command(["train", "x"], "ddp")
    with pytest.raises(ValueError, match="--main-process-ip"):
        build_accelerate_command(["train", "x"], "zero3", num_processes=16, num_machines=2)
    with pytest.raises(ValueError, match="multiple of --num-machines"):
        build_accelerate_command(["train", "x"], "zero3", num_processes=15, num_machines=2, main_process_ip="n0")


def test_forwarded_arguments_round_trip():
    parser = _train_parser()
    args = parser.parse_args(["toy/laser", "a.b=1", "trainer.max_steps=3", "--resume", "--wandb",
                              "--accelerate", "zero3", "--num-processes", "4", "--num-machines", "1"])
    argv = forwarded_argv(parser, args)
    assert argv == ["toy/laser", "a.b=1", "trainer.max_steps=3", "--resume", "--wandb"]
    again = parser.parse_args(argv)
    assert (again.recipe, again.overrides, again.resume, again.wandb, again.accelerate) == \
        ("toy/laser", ["a.b=1", "trainer.max_steps=3"], "last", True, None)   # no second relaunch
    args = parser.parse_args(["toy/laser", "--resume", "runs/x/checkpoint-4", "--accelerate", "cpu_ddp"])
    assert forwarded_argv(parser, args) == ["toy/laser", "--resume", "runs/x/checkpoint-4"]


def test_maybe_relaunch(capsys):
    parser = _train_parser()
    assert maybe_relaunch(parser.parse_args(["toy/laser"])) is None          # no --accelerate: run in-process
    args = parser.parse_args(["toy/laser", "trainer.max_steps=1", "--accelerate", "cpu_ddp", "--launch-dry-run"])
    assert maybe_relaunch(args) == 0
    printed = capsys.readouterr().out
    assert "accelerate.commands.launch --config_file" in printed and "cpu_ddp.yaml" in printed
    assert printed.strip().endswith("-m conciser.cli train toy/laser trainer.max_steps=1")


@pytest.mark.parametrize("name", ["ddp", "zero2", "zero2_offload", "zero3", "zero3_offload", "multi_node"])
def test_multi_node_rendezvous_is_the_first_node(name):
    """The accelerate arguments slurm/train.sbatch passes become torchrun's c10d rendezvous at the first node
    (with --same_network torchrun would ignore the address and every node would wait on localhost)."""
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser
    from accelerate.utils.launch import prepare_deepspeed_cmd_env, prepare_multi_gpu_env

    args = launch_command_parser().parse_args([
        "--config_file", str(resolve_accelerate_config(name)), "--num_machines", "2", "--num_processes", "16",
        "--machine_rank", "1", "--main_process_ip", "gpu-a", "--main_process_port", "29555",
        "--rdzv_backend", "c10d", "--max_restarts", "0", "-m", "conciser.cli", "train", "x"])
    args, defaults, _ = _validate_launch_command(args)
    if args.use_deepspeed:
        pytest.importorskip("deepspeed")
        args.deepspeed_fields_from_accelerate_config = ",".join(defaults.deepspeed_config)
        cmd, _ = prepare_deepspeed_cmd_env(args)
        assert cmd is None                                   # torchrun ("standard"), not pdsh/ssh
    else:
        prepare_multi_gpu_env(args)
    assert (args.nnodes, args.node_rank, args.nproc_per_node) == ("2", 1, "8")
    assert args.rdzv_backend == "c10d" and args.rdzv_endpoint == "gpu-a:29555"


def _grpo_config(**kw):
    from trl import GRPOConfig

    return GRPOConfig(output_dir="unused", bf16=True, per_device_train_batch_size=2, gradient_accumulation_steps=16,
                      num_generations=8, steps_per_generation=64, max_grad_norm=0.5, report_to="none", **kw)


@pytest.mark.parametrize("name", ["zero2", "zero2_offload", "zero3", "zero3_offload", "multi_node"])
def test_deepspeed_settings_come_from_the_recipe(name):
    """What accelerate launch exports for the config, then what the Trainer fills in: no mismatches."""
    pytest.importorskip("deepspeed")
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser
    from accelerate.utils.launch import prepare_deepspeed_cmd_env
    from transformers.integrations.deepspeed import HfTrainerDeepSpeedConfig

    args = launch_command_parser().parse_args([
        "--config_file", str(resolve_accelerate_config(name)), "--num_processes", "16", "--num_machines", "2",
        "--machine_rank", "0", "--main_process_ip", "10.0.0.1", "-m", "conciser.cli", "train", "x"])
    args, defaults, _ = _validate_launch_command(args)
    args.deepspeed_fields_from_accelerate_config = ",".join(defaults.deepspeed_config)
    _, env = prepare_deepspeed_cmd_env(args)
    launched = {k: v for k, v in env.items() if k.startswith("ACCELERATE_")}
    with mock.patch.dict(os.environ, launched), hardware_independent_validation(world_size=16):
        cfg = _grpo_config()
        ds = HfTrainerDeepSpeedConfig(cfg.deepspeed_plugin.hf_ds_config.config)
        ds.trainer_config_process(cfg)
    assert ds.mismatches == []
    c = ds.config
    assert (c["train_micro_batch_size_per_gpu"], c["gradient_accumulation_steps"], c["train_batch_size"]) == (2, 16, 512)
    assert c["gradient_clipping"] == 0.5 and c["bf16"]["enabled"] is True


@pytest.mark.parametrize("name", ["zero2", "zero3", "zero3_offload"])
def test_deepspeed_jsons_for_torchrun(name):
    """configs/deepspeed/*.json (trainer.deepspeed=..., e.g. under torchrun) leave batch settings "auto"."""
    pytest.importorskip("deepspeed")
    path = REPO / "configs" / "deepspeed" / f"{name}.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("ACCELERATE_")}
    with mock.patch.dict(os.environ, env, clear=True), hardware_independent_validation(world_size=16):
        cfg = _grpo_config(deepspeed=str(path))
    ds = cfg.hf_deepspeed_config
    assert ds.mismatches == []
    assert (ds.config["train_micro_batch_size_per_gpu"], ds.config["gradient_accumulation_steps"]) == (2, 16)
    assert ds.config["bf16"]["enabled"] is True and ds.config["zero_optimization"]["stage"] == int(name[4])


# Records, in every process that torchrun starts, its rank and the torch.distributed group it ended with.
RANK_RECORDER = '''
import atexit, json, os, sys
_out = os.environ.get("CONCISER_TEST_RANK_DIR")
if _out and "RANK" in os.environ:
    def _record():
        info = {"rank": int(os.environ["RANK"]), "world_size": int(os.environ["WORLD_SIZE"])}
        dist = sys.modules.get("torch.distributed")
        try:
            if dist is not None and dist.is_initialized():
                info.update(dist_world_size=dist.get_world_size(), backend=dist.get_backend())
        except Exception:
            pass
        with open(os.path.join(_out, "rank-%d-%d.json" % (info["rank"], os.getpid())), "w") as f:
            json.dump(info, f)
    atexit.register(_record)
'''


@pytest.mark.multiprocess
@pytest.mark.timeout(900)
def test_two_process_cpu_run_through_the_accelerate_wrapping(tiny_sft_toy_model, tmp_path):
    hook, ranks, out = tmp_path / "hook", tmp_path / "ranks", tmp_path / "run"
    hook.mkdir()
    ranks.mkdir()
    (hook / "sitecustomize.py").write_text(RANK_RECORDER)
    env = {**os.environ, "CONCISER_TEST_RANK_DIR": str(ranks),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(hook), os.environ.get("PYTHONPATH")])),
           "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled", "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "conciser.cli", "train", "toy/laser",
           f"model.name_or_path={tiny_sft_toy_model}", f"trainer.output_dir={out}", "trainer.max_steps=1",
           "trainer.per_device_train_batch_size=4", "trainer.num_generations=4", "trainer.max_completion_length=16",
           "rewards.params.target_length=16",
           "trainer.use_vllm=false", "trainer.report_to=none", "trainer.logging_steps=1", "data.n_train=8",
           "--accelerate", "cpu_ddp"]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=840)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-5000:]
    seen = [json.loads(p.read_text()) for p in ranks.glob("rank-*.json")]
    assert sorted(s["rank"] for s in seen) == [0, 1], f"expected ranks 0 and 1, saw {seen}"
    assert all(s["world_size"] == 2 for s in seen)
    assert all(s.get("dist_world_size") == 2 and s.get("backend") == "gloo" for s in seen), seen
    assert (out / "recipe.resolved.yaml").is_file() and (out / "trainer_state.json").is_file()
    assert json.loads((out / "trainer_state.json").read_text())["global_step"] == 1
