"""The same rollouts scored in 1 and in 2 processes give identical rewards, advantages and reward state,
on both ranks; one real training step with dynamic sampling runs in 2 ranks.

`accelerate launch --num_processes 2 --cpu` (accelerate 1.15) silently starts one process (DESIGN §6),
so the processes come from `torchrun` (gloo), and the test checks that the trainer really saw 2 ranks
(TrainingArguments needs `use_cpu=True` for accelerate to form the CPU process group).
Run: .venv/bin/pytest tests/trainers/test_multiprocess.py   (~1 min)
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.multiprocess

SCRIPT = Path(__file__).with_name("mp_score_script.py")


def _run(n: int, model_dir, out: Path) -> list[dict]:
    out.mkdir()
    torchrun = Path(sys.executable).with_name("torchrun")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.run([str(torchrun), "--standalone", "--nproc_per_node", str(n), str(SCRIPT), str(model_dir), str(out)],
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return [json.loads((out / f"rank{r}.json").read_text()) for r in range(n)]


def test_two_ranks_score_exactly_like_one(tiny_toy_model, tmp_path):
    (single,) = _run(1, tiny_toy_model, tmp_path / "one")
    ranks = _run(2, tiny_toy_model, tmp_path / "two")
    assert [r["rank"] for r in ranks] == [0, 1]
    for r in ranks:  # both processes really were ranks of one 2-process gloo group inside the trainer
        assert r["world"] == 2 and r["backend"] == "gloo"
        assert {tuple(s) for s in r["accelerator_seen"]} == {(2, r["rank"])}
    assert single["world"] == 1
    one = single["results"]
    for rank in ranks:
        two = rank["results"]
        for name in ("hapo+batch", "laser_d+group", "drpo+drpo", "dler+batch+dynamic"):
            for field in ("rewards", "advantages", "state", "sampling"):
                assert two[name][field] == one[name][field], f"{name} {field} differs (rank {rank['rank']})"
        train1, train2 = one["train"], two["train"]
        assert train2["global_step"] == train1["global_step"] == 1
        assert train2["state"] == train1["state"] and train2["sampling"] == train1["sampling"]
        assert train2["param_sum"] == pytest.approx(train1["param_sum"], rel=1e-6)  # DDP reduction order only
    # the comparison is not vacuous: groups straddle ranks, state moved, refills happened
    assert one["dler+batch+dynamic"]["sampling"]["draws"] >= 1
    assert one["hapo+batch"]["state"]["history"]
    assert any(a not in (0.0, 1.0, -1.0) for a in one["drpo+drpo"]["advantages"][0])
