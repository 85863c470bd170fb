"""Training prompts for GRPO: the toy problems, a local JSONL file, or a datasets-hub dataset.

Every dataset is normalised to the columns the trainer and rewards use:
`prompt` (chat messages), `answer` (gold, a string) and `problem_id` (groups completions).
Rows are validated here, before any model is loaded: a row without an answer is an error that
names the row and the column to set.
"""

from __future__ import annotations

import json
from pathlib import Path

from conciser import toy
from conciser.config import DataConfig, RecipeError


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
            raise FileNotFoundError(f"data.dataset: no such file '{path}' (give a .jsonl path, a hub id, or 'toy')")
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
