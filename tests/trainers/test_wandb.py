"""wandb in offline mode records the `length/` metrics of a short `conciser train --wandb` run.

The offline run file (`run-*.wandb`) is a LevelDB-style log of protobuf records (wandb 0.31 reads it in
Go only), so the test reads it with a 20-line reader. Run: .venv/bin/pytest tests/trainers/test_wandb.py
"""

import struct
import time

import pytest

wandb = pytest.importorskip("wandb")


def read_wandb_history(path) -> dict[str, str]:
    """key -> last value_json of the history records in an offline `.wandb` file."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = path.read_bytes()
    assert data[:4] == b":W&B", "not a wandb run file"
    block, pos, pending, out = 32768, 7, b"", {}
    while pos + 7 <= len(data):
        left = block - pos % block
        if left < 7:  # block trailer
            pos += left
            continue
        length, kind = struct.unpack("<HB", data[pos + 4:pos + 7])
        if kind == 0:
            break
        pending += data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # full record, or the last piece of one
            record = pb.Record()
            record.ParseFromString(pending)
            pending = b""
            if record.WhichOneof("record_type") == "history":
                for item in record.history.item:
                    out[item.key or "/".join(item.nested_key)] = item.value_json
    return out


def wait_for_history(path, key: str, timeout: float = 60.0) -> dict[str, str]:
    """The file's history once it holds `key`, or as it stands after `timeout` seconds.

    wandb's writer runs in its own service process and may still be writing when `finish` returns
    (CI, on a loaded machine, read the file before any history record had landed)."""
    deadline = time.monotonic() + timeout
    while True:
        history = read_wandb_history(path)
        if key in history or time.monotonic() > deadline:
            return history
        time.sleep(0.5)


def test_offline_wandb_run_records_length_metrics(tiny_sft_toy_model, tmp_path, monkeypatch):
    from conciser.trainers.train import train

    # wandb reads its environment once per process; an earlier test (in a full run) may have set it
    # up already, which would silently ignore the settings below.
    wandb.teardown()
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("WANDB_SILENT", "true")
    train("toy/laser", [f"model.name_or_path={tiny_sft_toy_model}", f"trainer.output_dir={tmp_path / 'run'}",
                        "trainer.max_steps=1", "trainer.per_device_train_batch_size=8", "trainer.num_generations=4",
                        "trainer.max_completion_length=48", "data.n_train=8", "rewards.method=kimi",
                        "rewards.params={}", "advantage.estimator=batch"], wandb=True)
    wandb.finish()
    wandb.teardown()  # stops wandb's service process, which closes the run file
    files = list(tmp_path.glob("wandb/offline-run-*/run-*.wandb"))
    assert len(files) == 1
    history = wait_for_history(files[0], "train/length/budget")
    # If it fails, say what wandb's writer did (CI once found no history record at all).
    logs = sorted(files[0].parent.glob("logs/debug-*.log"))
    why = (f"run file {files[0].stat().st_size} bytes; " +
           "; ".join(f"{f.name}: {f.read_text()[-1500:]}" for f in logs))
    for key in ("length/mean", "length/truncated_frac", "length/budget", "correct/frac", "advantage/abs_mean"):
        assert f"train/{key}" in history, f"train/{key} not in {sorted(history)}; {why}"
    assert float(history["train/length/budget"]) == 48
