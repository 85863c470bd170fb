"""Training prompts for GRPO: the toy problems, a local JSONL file, or a datasets-hub dataset.

Every dataset is normalised to the columns the trainer and rewards use:
`prompt` (chat messages), `answer` (gold, a string) and `problem_id` (groups completions).
Rows are validated here, before any model is loaded: a row without an answer is an error that
names the row and the column to set.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from conciser import toy
from conciser.config import DataConfig, RecipeError
from conciser.errors import MissingInput


def _normalise(rows: list[dict], cfg: DataConfig, source: str) -> list[dict]:
    if cfg.prompt_template and "{problem}" not in cfg.prompt_template:
        raise RecipeError("data.prompt_template: must contain {problem} (write literal braces as {{ }})")
    out = []
    for i, row in enumerate(rows):
        for col in (cfg.prompt_column, cfg.answer_column):
            if row.get(col) in (None, ""):
                raise RecipeError(
                    f"{source}: row {i} has no '{col}' value. Every training row needs a prompt and a gold "
                    f"answer; fix the data, or point data.{'prompt' if col == cfg.prompt_column else 'answer'}_column "
                    f"at the right column (row keys: {', '.join(sorted(row))})."
                )
        prompt = row[cfg.prompt_column]
        if isinstance(prompt, str):
            if cfg.prompt_template:
                prompt = cfg.prompt_template.format(problem=prompt)
            prompt = [{"role": "user", "content": prompt}]
        pid = row.get(cfg.id_column)
        extra = {k: v for k, v in row.items() if k not in (cfg.prompt_column, cfg.answer_column, cfg.id_column)}
        out.append({**extra, "prompt": prompt, "answer": str(row[cfg.answer_column]),
                    "problem_id": str(pid if pid is not None else f"{Path(source).stem}-{i}")})
    if not out:
        raise RecipeError(f"{source}: the training set is empty")
    return out


def load_rows(cfg: DataConfig) -> list[dict]:
    """The validated training rows for `cfg` (no model needed)."""
    if cfg.dataset == "toy":
        return [p.to_row() for p in toy.train_problems(cfg.n_train, seed=cfg.seed)]
    path = Path(cfg.dataset)
    if path.suffix == ".jsonl":
        if not path.is_file():
            raise MissingInput(f"data.dataset: no such file '{path}' (give a .jsonl path, a hub id, or 'toy')")
        rows = []
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise RecipeError(f"{path}:{n}: not valid JSON ({exc})") from None
        return _normalise(rows, cfg, str(path))
    from datasets import load_dataset

    ds = load_dataset(cfg.dataset, split=cfg.split)
    return _normalise(list(ds), cfg, cfg.dataset)


def to_dataset(rows: list[dict]):
    from datasets import Dataset

    return Dataset.from_list(rows)


def attach_target_lengths(rows: list[dict], cfg: DataConfig, reward, max_completion_length: int) -> list[dict]:
    """Per-prompt token budgets for rewards that score against one (L1: `reward.target_prompt`).

    With `data.target_lengths=[lo, hi]` each row gets `target_length` n ~ U{lo..hi} (seeded by
    data.seed) and the reward's instruction ("Think for n tokens.") appended to its last user message;
    otherwise every row must already carry a `target_length`. Rewards without `target_prompt` take the
    rows as they are, and a `data.target_lengths` set for them is an error (it would change nothing)."""
    prompt = reward.target_prompt
    if prompt is None:
        if cfg.target_lengths is not None:
            raise RecipeError(f"data.target_lengths is set, but the {reward.name!r} reward has no per-prompt "
                              "budget (only l1_exact and l1_max do); remove data.target_lengths")
        return rows
    if cfg.target_lengths is None:
        missing = [i for i, r in enumerate(rows) if not isinstance(r.get("target_length"), int) or r["target_length"] < 1]
        if missing:
            raise RecipeError(
                f"rewards.method={reward.name} scores each completion against its prompt's token budget, but row "
                f"{missing[0]} (and {len(missing) - 1} more) has no positive integer 'target_length'. Set "
                "data.target_lengths=[lo, hi] to draw budgets and state them in the prompts (L1 uses [100, 4000]), "
                "or add a target_length column to the data.")
        return rows
    bounds = cfg.target_lengths
    if (not isinstance(bounds, (list, tuple)) or len(bounds) != 2 or not all(isinstance(b, int) for b in bounds)
            or not 1 <= bounds[0] <= bounds[1]):
        raise RecipeError(f"data.target_lengths: expected [lo, hi] with 1 <= lo <= hi (integers), got {bounds!r}")
    if bounds[1] > max_completion_length:
        raise RecipeError(f"data.target_lengths: a budget of {bounds[1]} tokens does not fit "
                          f"trainer.max_completion_length={max_completion_length}; lower hi or raise the cap")
    rng = random.Random(cfg.seed)
    out = []
    for row in rows:
        n = rng.randint(*bounds)
        messages = [dict(m) for m in row["prompt"]]
        last = max(i for i, m in enumerate(messages) if m["role"] == "user")
        messages[last]["content"] = f"{messages[last]['content']} {prompt.format(n=n)}"
        out.append({**row, "prompt": messages, "target_length": n})
    return out
