"""Export a training checkpoint as a standalone HF model that `vllm serve` loads as is.

    conciser export CHECKPOINT OUT [--tokenizer DIR] [--base-model DIR] [--dtype auto|float32|bfloat16|float16]

CHECKPOINT is a TRL/transformers Trainer checkpoint (`.../checkpoint-N`) or any HF model folder.
Its kind is detected from its files:

  peft   `adapter_config.json` + adapter weights: the adapters are merged into their base model
         (`--base-model`, default the adapter config's `base_model_name_or_path`, which must be a
         local folder here) with peft's `merge_and_unload`, in float32, then cast. Needs `peft`.
  zero   DeepSpeed ZeRO shards (`global_stepN/` with `latest` naming the tag): the fp32 master
         weights are consolidated with DeepSpeed's `get_fp32_state_dict_from_zero_checkpoint` into
         a model built from the checkpoint's `config.json`. Preferred over any weights file next
         to them: under ZeRO-3 the Trainer's own weights file is a 16-bit copy, or absent.
  hf     model weights (`model.safetensors`, shards, or `pytorch_model*.bin`) + `config.json`.

OUT receives the weights as safetensors (in `--dtype`; `auto` = the dtype in config.json, float32
if none), `config.json`, `generation_config.json` and the tokenizer with its chat template; nothing
of the training state (optimizer, scheduler, RNG, reward state) is copied. The tokenizer comes from
`--tokenizer` when given, else from the checkpoint, else from `--base-model`; the generation config
from the checkpoint, else `--base-model`, else it is derived from the model config. OUT is written as
`OUT.partial` and renamed when complete. `conciser_export.json` in OUT records where it came from.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

from conciser.errors import MissingInput, UserError
from conciser.trainers.merge import publish, staging_dir

log = logging.getLogger(__name__)

DTYPES = ("auto", "float32", "bfloat16", "float16")
TOKENIZER_MARKERS = ("tokenizer_config.json", "tokenizer.json")
WEIGHT_GLOBS = ("model.safetensors", "model-*.safetensors", "model.safetensors.index.json", "pytorch_model*.bin")
INFO_NAME = "conciser_export.json"


def detect_kind(checkpoint: Path) -> str:
    """"peft", "zero" or "hf" (see the module docstring); FileNotFoundError if it is none of them."""
    checkpoint = Path(checkpoint)
    if not checkpoint.is_dir():
        raise MissingInput(f"checkpoint {checkpoint} is not a directory; give a checkpoint folder "
                                "(e.g. runs/NAME/checkpoint-500) or an HF model folder")
    if (checkpoint / "adapter_config.json").is_file():
        return "peft"
    if _zero_tags(checkpoint):
        return "zero"
    if any(any(checkpoint.glob(g)) for g in WEIGHT_GLOBS):
        return "hf"
    raise MissingInput(
        f"{checkpoint} holds no model weights: no adapter_config.json (PEFT), no DeepSpeed global_step*/ "
        f"shards and no model.safetensors / pytorch_model.bin; its files: {sorted(p.name for p in checkpoint.iterdir())[:20]}")


def _zero_tags(checkpoint: Path) -> list[str]:
    return sorted(p.name for p in checkpoint.glob("global_step*")
                  if p.is_dir() and any(p.glob("*model_states.pt")))


def _has_tokenizer(folder: Path | None) -> bool:
    return folder is not None and any((folder / f).is_file() for f in TOKENIZER_MARKERS)


def _torch_dtype(name: str, config):
    import torch

    if name == "auto":
        name = getattr(config, "dtype", None) or getattr(config, "torch_dtype", None) or "float32"
        name = str(name).replace("torch.", "")
    return getattr(torch, name)


def _config_source(checkpoint: Path, base_model: Path | None) -> Path:
    if (checkpoint / "config.json").is_file():
        return checkpoint
    if base_model is not None and (base_model / "config.json").is_file():
        log.info("the checkpoint has no config.json; using %s/config.json", base_model)
        return base_model
    raise MissingInput(f"{checkpoint} has no config.json; pass --base-model DIR (the model the run started from)")


def _load_hf(checkpoint: Path, dtype: str):
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(checkpoint)
    return AutoModelForCausalLM.from_pretrained(checkpoint, dtype=_torch_dtype(dtype, config))


def _load_zero(checkpoint: Path, dtype: str, base_model: Path | None, tag: str | None):
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    try:
        from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint
    except ImportError as exc:
        raise UserError(f"{checkpoint} is a DeepSpeed ZeRO checkpoint and exporting it needs deepspeed "
                         f"({exc}); install it: pip install 'conciser[deepspeed]'") from None
    tags = _zero_tags(checkpoint)
    if tag is None and not (checkpoint / "latest").is_file():
        if len(tags) > 1:
            raise UserError(f"{checkpoint} has several ZeRO tags {tags} and no 'latest' file; pass --tag")
        tag = tags[0]
    if tag is not None and tag not in tags:
        raise MissingInput(f"no ZeRO shards for tag {tag!r} in {checkpoint}; the tags there: {tags}")
    config = AutoConfig.from_pretrained(_config_source(checkpoint, base_model))
    log.info("consolidating ZeRO shards of %s (tag %s)", checkpoint, tag or (checkpoint / "latest").read_text().strip())
    state_dict = get_fp32_state_dict_from_zero_checkpoint(str(checkpoint), tag=tag)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    _, unexpected = model.load_state_dict(state_dict, strict=False, assign=True)
    model.tie_weights()
    missing = [n for n, p in model.named_parameters() if p.is_meta]
    if missing or unexpected:
        raise UserError(
            f"the ZeRO state dict does not fit the model built from config.json: missing {missing[:5]}, "
            f"unexpected {unexpected[:5]}; export with the config of the trained model (--base-model DIR)")
    # Non-persistent buffers (e.g. rotary frequencies) were created on the meta device and are not saved.
    return model.to(_torch_dtype(dtype, config))


def _load_peft(checkpoint: Path, dtype: str, base_model: Path):
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    try:
        from peft import PeftModel
    except ImportError:
        raise UserError(f"{checkpoint} holds PEFT adapters and merging them needs peft; install it: "
                         "pip install peft") from None
    base = base_model
    config = AutoConfig.from_pretrained(base)
    # Merge in float32: B·A added to a 16-bit weight would lose the small updates to rounding.
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    model = PeftModel.from_pretrained(model, str(checkpoint)).merge_and_unload()
    return model.to(_torch_dtype(dtype, config)), base


def export_checkpoint(checkpoint: Path, out: Path, *, tokenizer: Path | None = None, base_model: Path | None = None,
                      dtype: str = "auto", tag: str | None = None, max_shard_size: str = "5GB",
                      overwrite: bool = False) -> dict:
    """Write the model in `checkpoint` to `out` as a standalone HF model; return the export record."""
    checkpoint, out = Path(checkpoint), Path(out)
    tokenizer = Path(tokenizer) if tokenizer else None
    base_model = Path(base_model) if base_model else None
    if dtype not in DTYPES:
        raise UserError(f"--dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    kind = detect_kind(checkpoint)
    if kind == "peft" and base_model is None:
        named = json.loads((checkpoint / "adapter_config.json").read_text()).get("base_model_name_or_path")
        if not named:
            raise MissingInput(f"{checkpoint}/adapter_config.json names no base model; pass --base-model DIR")
        base_model = Path(named)
    if kind == "peft" and not (base_model / "config.json").is_file():
        raise MissingInput(
            f"the adapters' base model {str(base_model)!r} is not a local model folder (no config.json); "
            "pass --base-model DIR")
    tok_src = tokenizer or (checkpoint if _has_tokenizer(checkpoint) else None) or (base_model if _has_tokenizer(base_model) else None)
    if tok_src is None:
        raise MissingInput(f"{checkpoint} has no tokenizer; pass --tokenizer DIR (e.g. the model the run started from)")
    if not _has_tokenizer(tok_src):
        raise MissingInput(f"--tokenizer {tok_src} holds no tokenizer (no tokenizer_config.json / tokenizer.json)")
    from transformers import AutoTokenizer, GenerationConfig  # after the input checks: they cost nothing
    tmp = staging_dir(out, (checkpoint,), overwrite)
    t0 = time.time()
    try:
        if kind == "peft":
            model, base_model = _load_peft(checkpoint, dtype, base_model)
        elif kind == "zero":
            model = _load_zero(checkpoint, dtype, base_model, tag)
        else:
            model = _load_hf(checkpoint, dtype)
        gen_src = next((d for d in (checkpoint, base_model) if d is not None and (d / "generation_config.json").is_file()), None)
        if gen_src is not None:
            model.generation_config = GenerationConfig.from_pretrained(gen_src)
        else:
            model.generation_config = GenerationConfig.from_model_config(model.config)
            log.info("no generation_config.json in the checkpoint or base model; derived one from config.json")
        model.save_pretrained(tmp, max_shard_size=max_shard_size)
        tok = AutoTokenizer.from_pretrained(tok_src)
        if not tok.chat_template:
            log.warning("the tokenizer from %s has no chat template: vLLM's /v1/chat/completions will refuse requests; "
                        "pass --tokenizer DIR of a model with one", tok_src)
        tok.save_pretrained(tmp)
        info = {
            "checkpoint": str(checkpoint.resolve()), "kind": kind, "dtype": str(model.dtype).replace("torch.", ""),
            "tokenizer_from": str(Path(tok_src).resolve()), "generation_config_from": str(gen_src) if gen_src else "config.json",
            "base_model": str(base_model) if kind == "peft" else None,
            "parameters": sum(p.numel() for p in model.parameters()), "seconds": round(time.time() - t0, 2),
        }
        (tmp / INFO_NAME).write_text(json.dumps(info, indent=2))
    except BaseException:
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
        raise
    publish(tmp, out)
    return info


# ---------------------------------------------------------------- CLI

def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", metavar="CHECKPOINT", help="a Trainer checkpoint folder (checkpoint-N) or an HF model folder")
    parser.add_argument("out", metavar="OUT", help="output folder for the standalone HF model")
    parser.add_argument("--tokenizer", help="take the tokenizer (and chat template) from this folder instead of the checkpoint")
    parser.add_argument("--base-model", help="the model the run started from: the base of PEFT adapters, and the source of "
                                             "config / generation config / tokenizer when the checkpoint lacks them")
    parser.add_argument("--dtype", choices=DTYPES, default="auto", help="dtype of the exported weights (default: config.json's)")
    parser.add_argument("--tag", help="DeepSpeed checkpoint tag (e.g. global_step500) when there is no 'latest' file")
    parser.add_argument("--max-shard-size", default="5GB", help="largest safetensors shard (default 5GB)")
    parser.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")


def run(args: argparse.Namespace) -> int:
    info = export_checkpoint(Path(args.checkpoint), Path(args.out), tokenizer=args.tokenizer, base_model=args.base_model,
                             dtype=args.dtype, tag=args.tag, max_shard_size=args.max_shard_size, overwrite=args.overwrite)
    print(f"exported {info['kind']} checkpoint {args.checkpoint} -> {args.out} ({info['parameters']:,} parameters, "
          f"{info['dtype']}; tokenizer from {info['tokenizer_from']})")
    print(f"serve it: vllm serve {args.out}")
    return 0
