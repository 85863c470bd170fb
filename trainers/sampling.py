"""Dynamic sampling (DAPO / DLER, methods-core §2.4): keep only groups that carry a learning signal.

A group whose scores are all equal (all wrong, all right, all truncated) has zero advantage under
group-relative estimators and only dilutes the batch. The trainer drops such groups, generates more
groups from *new* prompts, and repeats until it has as many groups as one generation batch, at most
`sampling.max_gen_batches` generation batches per step; past the cap it raises
`DynamicSamplingError` (verl's recipe errors the same way: "Generated too many"), or, with
`sampling.on_exhausted=fill`, tops the batch up with groups it had dropped (see `fill_flags`).

Every decision here is taken on gathered, global data, so all ranks loop the same number of times
(generation and gathers are collectives). The pieces:

* `keep_groups` -- which groups of one generation batch survive (the rule, incl. ConciseR's
  keep-all-correct exception, methods-more §4);
* `Refill` -- the new prompts of each extra generation batch: the same draw on every rank, seeded by
  (seed, draw number), so a resumed run continues the sequence from the checkpointed draw count;
* `gather_rows` / `concat_rows` / `take_rows` / `trim_padding` -- moving per-completion tensors
  between ranks: the kept rows of all generation batches are gathered, the first G * prompts are
  kept, and each rank takes its slice (a group may straddle ranks, as in TRL).
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass
from typing import Any, Sequence

import torch
import torch.nn.functional as F

# Per-completion tensors whose first dimension is the completion; how each is padded across ranks.
LEFT_PADDED = ("prompt_ids", "prompt_mask")


class DynamicSamplingError(RuntimeError):
    """Dynamic sampling hit `sampling.max_gen_batches` before the batch was full."""


def keep_groups(scores: Sequence[float], group_size: int, solved: Sequence[bool] | None = None,
                keep_all_correct: bool = False, tol: float = 1e-9) -> list[bool]:
    """One flag per group (contiguous blocks of `group_size`): keep unless all its scores are equal.

    Groups of one completion are always kept (verl). With `keep_all_correct`, a group whose
    completions are all solved is kept even when its scores are equal (ConciseR).
    """
    if len(scores) % group_size:
        raise ValueError(f"{len(scores)} scores do not split into groups of {group_size}")
    out = []
    for start in range(0, len(scores), group_size):
        block = scores[start:start + group_size]
        varied = max(block) - min(block) > tol
        all_solved = solved is not None and all(solved[start:start + group_size])
        out.append(group_size == 1 or varied or (keep_all_correct and all_solved))
    return out


def fill_flags(flags: Sequence[bool], missing: int) -> list[bool]:
    """The groups of one generation batch that top up a batch `missing` groups short: the first
    `missing` of those `flags` dropped (all-equal groups: they train as without dynamic sampling)."""
    dropped = [g for g, ok in enumerate(flags) if not ok]
    if missing > len(dropped):
        raise ValueError(f"{missing} groups missing but only {len(dropped)} dropped groups to fill with")
    chosen = set(dropped[:missing])
    return [g in chosen for g in range(len(flags))]


@dataclass
class SamplingStats:
    """Dynamic-sampling counters; checkpointed so a resume continues the refill sequence."""

    draws: int = 0                 # refill draws made so far (the next draw's seed offset)
    generation_batches: int = 0    # generation batches generated in total
    groups_seen: int = 0
    groups_kept: int = 0           # groups that passed the filter (before cutting to the batch size)
    steps: int = 0
    filled_steps: int = 0          # steps topped up with dropped groups (on_exhausted=fill)

    def state_dict(self) -> dict[str, int]:
        return asdict(self)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for key, value in state.items():
            if key not in self.__dataclass_fields__:
                raise ValueError(f"sampling state: unknown key {key!r}")
            setattr(self, key, int(value))


class Refill:
    """New prompts for refills: `n_prompts` dataset rows per draw, each repeated G times, identical
    on every rank (seeded by `seed` and the draw number); each rank keeps its slice."""

    def __init__(self, dataset, group_size: int, seed: int) -> None:
        if not hasattr(dataset, "__getitem__") or not hasattr(dataset, "__len__"):
            raise ValueError("sampling.dynamic needs an indexable training dataset (not an iterable one) "
                             "to draw refill prompts from")
        self.dataset, self.group_size, self.seed = dataset, group_size, seed

    def rows(self, draw: int, n_prompts: int, rank: int, n_local: int) -> list[dict]:
        rng = random.Random(self.seed * 1_000_003 + draw)
        n = len(self.dataset)
        index = rng.sample(range(n), n_prompts) if n_prompts <= n else [rng.randrange(n) for _ in range(n_prompts)]
        flat = [i for i in index for _ in range(self.group_size)]
        return [self.dataset[i] for i in flat[rank * n_local:(rank + 1) * n_local]]


def _pad_to(t: torch.Tensor, width: int, value: float, left: bool) -> torch.Tensor:
    extra = width - t.size(1)
    if extra <= 0:
        return t
    return F.pad(t, (extra, 0) if left else (0, extra), value=value)


def pad_values(pad_token_id: int) -> dict[str, float]:
    """Padding per key (anything not listed pads with 0): token ids with the pad id, IS ratios with 1."""
    return {"prompt_ids": pad_token_id, "completion_ids": pad_token_id, "importance_sampling_ratio": 1.0}


def row_keys(out: dict[str, Any], n_rows: int) -> list[str]:
    """The per-completion tensor keys of a TRL batch dict (first dimension = completions)."""
    return [k for k, v in out.items() if isinstance(v, torch.Tensor) and v.dim() >= 1 and v.size(0) == n_rows]


def gather_rows(accelerator, out: dict[str, Any], keys: Sequence[str], pads: dict[str, float]) -> dict[str, torch.Tensor]:
    """Every rank's per-completion tensors, padded to a common width and concatenated in rank order."""
    gathered = {}
    for key in keys:
        t = out[key]
        if t.dim() >= 2:
            t = accelerator.pad_across_processes(t, dim=1, pad_index=pads.get(key, 0), pad_first=key in LEFT_PADDED)
        gathered[key] = accelerator.gather(t.contiguous())
    return gathered


def concat_rows(parts: Sequence[dict[str, torch.Tensor]], pads: dict[str, float]) -> dict[str, torch.Tensor]:
    """Concatenate row dicts along the completion dimension, padding widths to match."""
    out = {}
    for key in parts[0]:
        ts = [p[key] for p in parts]
        if ts[0].dim() >= 2:
            width = max(t.size(1) for t in ts)
            ts = [_pad_to(t, width, pads.get(key, 0), key in LEFT_PADDED) for t in ts]
        out[key] = torch.cat(ts, dim=0)
    return out


def take_rows(rows: dict[str, torch.Tensor], index: torch.Tensor | Sequence[int]) -> dict[str, torch.Tensor]:
    index = torch.as_tensor(index, dtype=torch.long)
    return {k: v[index.to(v.device)] for k, v in rows.items()}


def trim_padding(rows: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Drop prompt columns no row uses (left) and completion columns no row uses (right)."""
    out = dict(rows)
    if "prompt_mask" in rows:
        used = rows["prompt_mask"].sum(0).nonzero()
        start = int(used[0]) if used.numel() else rows["prompt_mask"].size(1)
        for key in LEFT_PADDED:
            if key in out:
                out[key] = out[key][:, start:]
    if "completion_mask" in rows:
        width = rows["completion_mask"].size(1)
        used = rows["completion_mask"].sum(0).nonzero()
        end = int(used[-1]) + 1 if used.numel() else 1
        for key, v in rows.items():
            if key not in LEFT_PADDED and v.dim() >= 2 and v.size(1) == width:
                out[key] = v[:, :end]
    return out
