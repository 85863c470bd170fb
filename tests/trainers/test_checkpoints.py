"""Checkpoints that are complete and found: the completion marker, one last-complete rule for --resume and
launch-info, and real `conciser train` runs SIGKILLed at every point of saving a checkpoint, each resumed to
the same final weights and reward state as an uninterrupted run.

Run: .venv/bin/pytest tests/trainers/test_checkpoints.py   (~2-4 min: eleven short training processes)
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from conciser.trainers.checkpoints import MARKER, incomplete_reason, last_complete_checkpoint, mark_complete

SCRIPT = Path(__file__).with_name("ckpt_kill_script.py")
POINTS = ["start", "weights", "trl", "marker", "after"]


def _folder(root: Path, step: int, files: dict[str, str], complete: bool) -> Path:
    folder = root / f"checkpoint-{step}"
    folder.mkdir(parents=True)
    for name, text in files.items():
        (folder / name).write_text(text)
    if complete:
        mark_complete(folder, step)
    return folder


def test_only_marked_folders_whose_files_are_intact_are_complete(tmp_path, caplog):
    assert last_complete_checkpoint(tmp_path / "missing") is None
    a = _folder(tmp_path, 10, {"model.safetensors": "w" * 10, "trainer_state.json": "{}"}, complete=True)
    b = _folder(tmp_path, 20, {"model.safetensors": "w" * 10, "trainer_state.json": "{}"}, complete=True)
    c = _folder(tmp_path, 30, {"model.safetensors": "w", "trainer_state.json": "{}"}, complete=False)
    assert json.loads((a / MARKER).read_text())["files"] == {"model.safetensors": 10, "trainer_state.json": 2}
    assert incomplete_reason(a) is None and "no checkpoint_complete.json" in incomplete_reason(c)
    assert last_complete_checkpoint(tmp_path) == b
    assert "skipping" in caplog.text and "checkpoint-30" in caplog.text
    (b / "model.safetensors").write_text("w" * 9)          # a file changed after the marker
    assert "has 9 bytes, 10 when the checkpoint was saved" in incomplete_reason(b)
    assert last_complete_checkpoint(tmp_path) == a
    (a / "trainer_state.json").unlink()
    assert incomplete_reason(a) == "trainer_state.json is missing" and last_complete_checkpoint(tmp_path) is None


def _train(point: str, out: Path, model: Path, *extra: str, step: int = 2) -> subprocess.CompletedProcess:
    argv = ["train", "toy/hapo", f"model.name_or_path={model}", f"trainer.output_dir={out}", "trainer.max_steps=3",
            "trainer.save_steps=1", "trainer.per_device_train_batch_size=8", "trainer.num_generations=4",
            "trainer.max_completion_length=64", "trainer.logging_steps=1", "data.n_train=8", *extra]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled", "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, str(SCRIPT), point, str(step), *argv], capture_output=True, text=True,
                          env=env, timeout=900)


def _final(out: Path) -> tuple[dict, dict]:
    weights = load_file(str(out / "model.safetensors"))
    reward = json.loads((out / "checkpoint-3" / "reward_state.json").read_text())["reward"]
    return weights, reward


@pytest.mark.multiprocess
@pytest.mark.timeout(1800)
def test_a_kill_anywhere_in_saving_resumes_to_the_uninterrupted_result(tiny_sft_toy_model, tmp_path):
    from conciser.launch import launch_info

    runs = {p: tmp_path / p for p in ["none", *POINTS]}
    with ThreadPoolExecutor(max_workers=3) as pool:  # independent runs: overlap their start-up
        killed = dict(zip(runs, pool.map(lambda p: _train(p, runs[p], tiny_sft_toy_model), runs)))
    assert killed["none"].returncode == 0, killed["none"].stderr[-3000:]
    for point in POINTS:
        assert killed[point].returncode == -signal.SIGKILL, (point, killed[point].stderr[-3000:])

    # what each kill left, and both readers agree on it
    for point in POINTS:
        out = runs[point]
        expected = out / ("checkpoint-2" if point == "after" else "checkpoint-1")
        assert last_complete_checkpoint(out) == expected, point
        info = launch_info("toy/hapo", [f"trainer.output_dir={out}"], nodes=1, gpus_per_node=1)
        assert info["last_checkpoint"] == str(expected.resolve()), point
        if point in ("trl", "marker"):  # TRL's files are all there; the old rule would have taken it
            assert (out / "checkpoint-2" / "trainer_state.json").is_file()
            assert incomplete_reason(out / "checkpoint-2") is not None

    with ThreadPoolExecutor(max_workers=3) as pool:
        resumed = dict(zip(POINTS, pool.map(lambda p: _train("none", runs[p], tiny_sft_toy_model, "--resume"),
                                            POINTS)))
    weights, reward = _final(runs["none"])
    assert reward["history"], "HAPO's history should not be empty"
    start = load_file(str(tiny_sft_toy_model / "model.safetensors"))
    assert not all(torch.equal(start[k], weights[k]) for k in weights), "training should move the weights"
    for point in POINTS:
        assert resumed[point].returncode == 0, (point, resumed[point].stderr[-3000:])
        assert "resuming from" in resumed[point].stderr
        got_weights, got_reward = _final(runs[point])
        assert got_reward == reward, point
        assert all(torch.equal(weights[k], got_weights[k]) for k in weights), point


def test_resume_from_an_incomplete_folder_names_the_last_complete_one(tmp_path, caplog):
    from conciser.trainers.train import resume_checkpoint

    assert resume_checkpoint(None, tmp_path) is None and not caplog.text
    good = _folder(tmp_path, 4, {"trainer_state.json": "{}"}, complete=True)
    assert resume_checkpoint(None, tmp_path) is None  # a fresh run into a folder of checkpoints: warned
    assert "already holds checkpoint-4 from an earlier run" in caplog.text and "--resume" in caplog.text
    half = _folder(tmp_path, 8, {"trainer_state.json": "{}"}, complete=False)
    assert resume_checkpoint("last", tmp_path) == str(good)
    with pytest.raises(FileNotFoundError, match=f"--resume {half}: not a complete checkpoint .*last complete one "
                                                f"there is {good}"):
        resume_checkpoint(str(half), tmp_path)
    assert resume_checkpoint(str(good), tmp_path) == str(good)
