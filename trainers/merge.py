"""DLER's update-selective merging: keep only the largest updates of a fine-tuned model, scaled down.

    conciser merge --base B --tuned T [--keep 0.25] [--scale 0.7] [--granularity tensor|global] OUT

With Δ = θ_tuned − θ_base, the merged model is

    θ_merged = θ_base + scale · mask_topk(|Δ|) ⊙ Δ

where the mask keeps the `keep` fraction of entries with the largest |Δ| (DLER, methods-core §2.7:
keep 0.25, scale 0.7; inspired by the TIES "trim" step, with no sign election since there is one
fine-tuned model). `--granularity tensor` (the default, TIES/mergekit practice) ranks entries within
each tensor and keeps round(keep · n) of its n entries; `global` ranks all entries of all tensors
together and keeps round(keep · N) of them. Ties at the threshold are broken by position, so exactly
that many entries are kept. Where the mask keeps an entry and scale is 1, the tuned value is copied
bit for bit, so keep=1, scale=1 reproduces the tuned model exactly and keep=0 the base.

Both inputs must be HF model folders with safetensors weights (`conciser export` makes one from a
training checkpoint, including DeepSpeed ZeRO shards and PEFT adapters) and the same architecture:
the same config structure and the same tensor names and shapes; anything else is refused with the
offending key or tensor named. The merge streams tensors from the safetensors files (a few tensors
in memory at a time; `global` reads the inputs three times). The output holds the tuned model's
config, generation config and tokenizer (the base's tokenizer if the tuned folder has none), weights
in the tuned model's dtype, and `merge_report.json` with the kept counts overall and per tensor.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from conciser.errors import MissingInput, UserError

log = logging.getLogger(__name__)

GRANULARITIES = ("tensor", "global")
# config.json keys that fix the shape of the network; a mismatch is refused before any tensor is read.
STRUCTURAL_KEYS = ("architectures", "model_type", "hidden_size", "num_hidden_layers", "num_attention_heads",
                   "num_key_value_heads", "intermediate_size", "vocab_size", "tie_word_embeddings", "head_dim")
# Small files copied from the tuned model (config, generation config, tokenizer, chat template).
MODEL_FILES = ("config.json", "generation_config.json")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
                   "chat_template.jinja", "chat_template.json", "tokenizer.model", "vocab.json", "merges.txt")
MAX_SHARD_BYTES = 5 * 1024**3
REPORT_NAME = "merge_report.json"


# ---------------------------------------------------------------- reading HF safetensors folders

def weight_files(model_dir: Path) -> dict[str, Path]:
    """tensor name -> safetensors file, from the index of a sharded model or the single file."""
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise MissingInput(f"{model_dir} is not a directory; give the folder of an HF model (with config.json)")
    index = model_dir / "model.safetensors.index.json"
    if index.is_file():
        weight_map = json.loads(index.read_text())["weight_map"]
        return {name: model_dir / f for name, f in weight_map.items()}
    single = model_dir / "model.safetensors"
    if single.is_file():
        from safetensors import safe_open

        with safe_open(single, "pt") as f:
            return {name: single for name in f.keys()}
    if (model_dir / "adapter_config.json").is_file():
        raise UserError(f"{model_dir} holds PEFT adapters, not full weights; merge the adapters into their base "
                         f"first: conciser export {model_dir} OUT")
    if any(model_dir.glob("pytorch_model*.bin")) or any(model_dir.glob("global_step*")):
        raise UserError(f"{model_dir} has no safetensors weights (only .bin files or DeepSpeed shards); "
                         f"convert it first: conciser export {model_dir} OUT")
    raise MissingInput(f"no model.safetensors or model.safetensors.index.json in {model_dir}; "
                            "give the folder of an HF model saved with save_pretrained (or conciser export)")


class TensorReader:
    """Reads tensors by name from a model folder's safetensors files, keeping the files open."""

    def __init__(self, model_dir: Path):
        self.dir = Path(model_dir)
        self.files = weight_files(self.dir)
        self._open: dict[Path, object] = {}

    def _handle(self, name: str):
        from safetensors import safe_open

        path = self.files[name]
        if path not in self._open:
            self._open[path] = safe_open(path, "pt")
        return self._open[path]

    def shape_dtype(self, name: str) -> tuple[tuple[int, ...], str]:
        sl = self._handle(name).get_slice(name)
        return tuple(sl.get_shape()), sl.get_dtype()

    def get(self, name: str):
        return self._handle(name).get_tensor(name)

    def close(self) -> None:
        self._open.clear()


def _read_config(model_dir: Path) -> dict:
    path = Path(model_dir) / "config.json"
    if not path.is_file():
        raise MissingInput(f"{path} not found; give the folder of an HF model (with config.json)")
    return json.loads(path.read_text())


def _structure(config: dict) -> dict:
    """The structural keys of a config, including those of a nested text_config (multimodal models)."""
    out = {k: config[k] for k in STRUCTURAL_KEYS if k in config}
    for k, v in (config.get("text_config") or {}).items():
        if k in STRUCTURAL_KEYS:
            out[f"text_config.{k}"] = v
    return out


def check_compatible(base: TensorReader, tuned: TensorReader) -> None:
    """Raise ValueError naming the first config key or tensor in which the two models differ."""
    b_cfg, t_cfg = _structure(_read_config(base.dir)), _structure(_read_config(tuned.dir))
    for key in sorted(set(b_cfg) | set(t_cfg)):
        if b_cfg.get(key) != t_cfg.get(key):
            raise UserError(
                f"architectures differ: config.json {key} is {b_cfg.get(key)!r} in the base ({base.dir}) but "
                f"{t_cfg.get(key)!r} in the tuned model ({tuned.dir}); merge a model with the base it was fine-tuned from")
    only_b, only_t = sorted(set(base.files) - set(tuned.files)), sorted(set(tuned.files) - set(base.files))
    if only_b or only_t:
        name, side = (only_b[0], "the base only") if only_b else (only_t[0], "the tuned model only")
        raise UserError(f"architectures differ: tensor {name!r} is in {side} ({len(only_b)} base-only, {len(only_t)} "
                         "tuned-only tensors); merge a model with the base it was fine-tuned from")
    for name in sorted(base.files):
        (b_shape, b_dtype), (t_shape, t_dtype) = base.shape_dtype(name), tuned.shape_dtype(name)
        if b_shape != t_shape:
            raise UserError(f"architectures differ: tensor {name!r} has shape {b_shape} in the base but {t_shape} in "
                             "the tuned model; merge a model with the base it was fine-tuned from")
        if _is_float(b_dtype) != _is_float(t_dtype):
            raise UserError(f"tensor {name!r} is {b_dtype} in the base but {t_dtype} in the tuned model")


def _is_float(st_dtype: str) -> bool:
    return st_dtype in ("F64", "F32", "F16", "BF16") or st_dtype.startswith("F8")


_ST_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1}


# ---------------------------------------------------------------- the merge

@dataclass(frozen=True)
class MergeConfig:
    keep: float = 0.25            # fraction of entries of Δ kept (largest |Δ|)
    scale: float = 0.7            # factor on the kept Δ
    granularity: str = "tensor"   # "tensor": rank within each tensor; "global": one ranking over all tensors

    def __post_init__(self):
        if not 0.0 <= self.keep <= 1.0:
            raise UserError(f"--keep must be a fraction in [0, 1], got {self.keep} (DLER uses 0.25)")
        if not math.isfinite(self.scale):
            raise UserError(f"--scale must be a finite number, got {self.scale} (DLER uses 0.7)")
        if self.granularity not in GRANULARITIES:
            raise UserError(f"--granularity must be one of {', '.join(GRANULARITIES)}, got {self.granularity!r}")


def n_kept(keep: float, n: int) -> int:
    """How many of n entries a keep fraction keeps: round(keep · n), halves rounded up."""
    return min(n, int(math.floor(keep * n + 0.5)))


def _delta(base, tuned, name: str):
    """Δ in float32 (float64 if either side is), refusing NaN/inf."""
    import torch

    work = torch.float64 if torch.float64 in (base.dtype, tuned.dtype) else torch.float32
    b, t = base.to(work), tuned.to(work)
    if not (torch.isfinite(b).all() and torch.isfinite(t).all()):
        raise UserError(f"tensor {name!r} has NaN or inf entries in the base or the tuned model; cannot rank its update")
    return b, t, t - b


def topk_mask(absd, k: int, threshold=None, ties: int | None = None):
    """Boolean mask of the k largest entries of `absd` (ties at the k-th value broken by position).

    With `threshold`/`ties` given (global mode) the mask is `absd > threshold` plus the first `ties`
    entries equal to it instead, and k is ignored.
    """
    import torch

    flat = absd.reshape(-1)
    n = flat.numel()
    if threshold is None:
        if k <= 0:
            return torch.zeros_like(absd, dtype=torch.bool)
        if k >= n:
            return torch.ones_like(absd, dtype=torch.bool)
        threshold = torch.kthvalue(flat, n - k + 1).values
        mask = flat > threshold
        ties = k - int(mask.sum())
    else:
        mask = flat > threshold
    if ties and ties > 0:
        eq = (flat == threshold).nonzero().reshape(-1)[:ties]
        mask[eq] = True
    return mask.reshape(absd.shape)


def _global_threshold(base: TensorReader, tuned: TensorReader, names: list[str], k_total: int):
    """The k_total-th largest |Δ| over all float tensors, found in two streaming passes.

    |Δ| as float32 is non-negative, so its bit pattern read as int32 orders like its value: pass 1
    counts entries per bucket of the top 16 bits, pass 2 collects only the bucket holding the k-th
    largest and ranks it exactly. Returns (threshold, number of ties at the threshold to keep).
    """
    import torch

    counts = torch.zeros(1 << 16, dtype=torch.int64)
    for name in names:
        _, _, d = _delta(base.get(name), tuned.get(name), name)
        bits = d.abs().to(torch.float32).reshape(-1).view(torch.int32) >> 16
        counts += torch.bincount(bits, minlength=1 << 16)
    from_top = counts.flip(0).cumsum(0)
    bucket = (1 << 16) - 1 - int((from_top >= k_total).nonzero()[0])
    above = int(counts[bucket + 1:].sum())
    vals = []
    for name in names:
        _, _, d = _delta(base.get(name), tuned.get(name), name)
        a = d.abs().to(torch.float32).reshape(-1)
        vals.append(a[(a.view(torch.int32) >> 16) == bucket])
    vals = torch.cat(vals)
    rank = k_total - above                                   # 1-based rank from the top within the bucket
    threshold = torch.kthvalue(vals, vals.numel() - rank + 1).values
    ties = k_total - above - int((vals > threshold).sum())
    return threshold, ties


def _plan_shards(reader: TensorReader, names: list[str]) -> list[list[str]]:
    shards, cur, size = [], [], 0
    for name in names:
        shape, dtype = reader.shape_dtype(name)
        nbytes = math.prod(shape) * _ST_BYTES.get(dtype, 4)
        if cur and size + nbytes > MAX_SHARD_BYTES:
            shards.append(cur)
            cur, size = [], 0
        cur.append(name)
        size += nbytes
    if cur:
        shards.append(cur)
    return shards


def staging_dir(out_dir: Path, inputs: tuple[Path, ...], overwrite: bool) -> Path:
    """A fresh `OUT.partial` folder to write into; `publish` renames it to OUT when complete, so a
    half-written model is never left where a server would load it."""
    out_dir = Path(out_dir)
    for src in inputs:
        if out_dir.resolve() == Path(src).resolve():
            raise UserError(f"output {out_dir} is one of the inputs; give a new folder")
    if out_dir.exists() and any(out_dir.iterdir()) and not overwrite:
        raise UserError(f"output folder {out_dir} exists and is not empty; give a new folder or pass --overwrite")
    tmp = out_dir.with_name(out_dir.name + ".partial")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    return tmp


def publish(tmp: Path, out_dir: Path) -> None:
    if out_dir.exists():
        shutil.rmtree(out_dir)
    tmp.rename(out_dir)


def merge_models(base_dir: Path, tuned_dir: Path, out_dir: Path, cfg: MergeConfig = MergeConfig(),
                 progress: bool = True, overwrite: bool = False) -> dict:
    """Merge `tuned_dir` into `base_dir` (see the module docstring); write an HF model to `out_dir`.

    Returns the report (also written to `out_dir/merge_report.json`).
    """
    base_dir, tuned_dir, final_dir = Path(base_dir), Path(tuned_dir), Path(out_dir)
    base, tuned = TensorReader(base_dir), TensorReader(tuned_dir)
    check_compatible(base, tuned)
    tmp = staging_dir(final_dir, (base_dir, tuned_dir), overwrite)
    try:
        t0 = time.time()
        names = sorted(tuned.files)
        float_names = {n for n in names if _is_float(tuned.shape_dtype(n)[1])}
        total = sum(math.prod(base.shape_dtype(n)[0]) for n in float_names)
        k_total = n_kept(cfg.keep, total)
        threshold, ties = None, None
        if cfg.granularity == "global" and 0 < k_total < total:
            log.info("global ranking: finding the %d-th largest |delta| of %d entries", k_total, total)
            threshold, ties = _global_threshold(base, tuned, sorted(float_names), k_total)
        per_tensor = _write_merged(base, tuned, names, float_names, cfg, tmp, progress,
                                   global_rank=(k_total, total, threshold, ties))
        copied = _copy_side_files(base_dir, tuned_dir, tmp)
        kept = sum(v["kept"] for v in per_tensor.values())
        report = {
            "base": str(base_dir), "tuned": str(tuned_dir), "out": str(final_dir),
            "keep": cfg.keep, "scale": cfg.scale, "granularity": cfg.granularity,
            "parameters": total, "kept": kept, "kept_fraction": kept / total if total else 0.0,
            "kept_nonzero": sum(v["kept_nonzero"] for v in per_tensor.values()),
            "changed_in_tuned": sum(v["changed"] for v in per_tensor.values()),
            "threshold": float(threshold) if threshold is not None else None,
            "files_copied": copied, "seconds": round(time.time() - t0, 2),
            "per_tensor": per_tensor,
        }
        (tmp / REPORT_NAME).write_text(json.dumps(report, indent=2))
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        base.close()
        tuned.close()
    publish(tmp, final_dir)
    return report


def _write_merged(base: TensorReader, tuned: TensorReader, names: list[str], float_names: set[str],
                  cfg: MergeConfig, out_dir: Path, progress: bool, global_rank: tuple) -> dict:
    """Stream the merged tensors into safetensors shards in `out_dir`; return per-tensor counts."""
    import torch
    from safetensors.torch import save_file
    from tqdm.auto import tqdm

    k_total, total, threshold, ties = global_rank
    shards = _plan_shards(tuned, names)
    weight_map, per_tensor = {}, {}
    bar = tqdm(total=len(names), desc="merge", disable=not progress)
    for i, shard in enumerate(shards):
        fname = "model.safetensors" if len(shards) == 1 else f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
        tensors = {}
        for name in shard:
            b_raw, t_raw = base.get(name), tuned.get(name)
            weight_map[name] = fname
            bar.update()
            if name not in float_names:          # integer buffers: nothing to merge
                if not torch.equal(b_raw, t_raw):
                    log.warning("non-float tensor %s differs between base and tuned; the tuned value is kept", name)
                tensors[name] = t_raw.contiguous()
                continue
            b, t, d = _delta(b_raw, t_raw, name)
            absd = d.abs()
            if cfg.granularity == "tensor":
                mask = topk_mask(absd, n_kept(cfg.keep, d.numel()))
            elif k_total == 0:
                mask = torch.zeros_like(absd, dtype=torch.bool)
            elif k_total == total:
                mask = torch.ones_like(absd, dtype=torch.bool)
            else:   # compare in float32, as the threshold was found
                absd32 = absd.to(torch.float32)
                mask = topk_mask(absd32, 0, threshold=threshold, ties=ties)
                ties -= int((mask & (absd32 == threshold)).sum())
            # Where kept with scale 1 the tuned value itself is copied: b + (t - b) can differ from t in the last bit.
            kept_values = t if cfg.scale == 1.0 else b + cfg.scale * d
            tensors[name] = torch.where(mask, kept_values, b).to(t_raw.dtype).contiguous()
            nonzero = d != 0
            per_tensor[name] = {"numel": d.numel(), "kept": int(mask.sum()),
                                "kept_nonzero": int((mask & nonzero).sum()), "changed": int(nonzero.sum())}
        save_file(tensors, str(out_dir / fname), metadata={"format": "pt"})
    bar.close()
    if len(shards) > 1:
        size = sum((out_dir / f).stat().st_size for f in set(weight_map.values()))
        (out_dir / "model.safetensors.index.json").write_text(json.dumps(
            {"metadata": {"total_size": size}, "weight_map": weight_map}, indent=2))
    return per_tensor


def _copy_side_files(base_dir: Path, tuned_dir: Path, out_dir: Path) -> list[str]:
    """Config and generation config from the tuned model; its tokenizer, else the base's."""
    copied = []
    for f in MODEL_FILES:
        if (tuned_dir / f).is_file():
            shutil.copy2(tuned_dir / f, out_dir / f)
            copied.append(f"tuned/{f}")
    tok_src = tuned_dir if any((tuned_dir / f).is_file() for f in TOKENIZER_FILES[:2]) else base_dir
    if tok_src is base_dir:
        log.info("the tuned model has no tokenizer; copying the base's")
    for f in TOKENIZER_FILES:
        if (tok_src / f).is_file():
            shutil.copy2(tok_src / f, out_dir / f)
            copied.append(f"{'tuned' if tok_src is tuned_dir else 'base'}/{f}")
    return copied


# ---------------------------------------------------------------- CLI

def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("out", metavar="OUT", help="output folder for the merged HF model")
    parser.add_argument("--base", required=True, help="the base model folder (HF format, safetensors)")
    parser.add_argument("--tuned", required=True, help="the fine-tuned model folder (e.g. from conciser export)")
    parser.add_argument("--keep", type=float, default=0.25, help="fraction of entries of the update kept, largest |delta| first (default 0.25)")
    parser.add_argument("--scale", type=float, default=0.7, help="factor applied to the kept update (default 0.7)")
    parser.add_argument("--granularity", choices=GRANULARITIES, default="tensor",
                        help="rank |delta| within each tensor (default) or over all tensors at once")
    parser.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    cfg = MergeConfig(keep=args.keep, scale=args.scale, granularity=args.granularity)
    report = merge_models(Path(args.base), Path(args.tuned), Path(args.out), cfg, progress=not args.no_progress,
                          overwrite=args.overwrite)
    print(f"merged {args.tuned} into {args.base} (keep {cfg.keep}, scale {cfg.scale}, {cfg.granularity} ranking): "
          f"kept {report['kept']:,} of {report['parameters']:,} parameters ({report['kept_fraction']:.2%}; "
          f"{report['kept_nonzero']:,} with a non-zero update, of {report['changed_in_tuned']:,} updated in the tuned model)")
    print(f"wrote {args.out} (report: {Path(args.out) / REPORT_NAME})")
    return 0
