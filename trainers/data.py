"""Training prompts for GRPO: the toy problems, a local JSONL file, or a datasets-hub dataset.

Every dataset is normalised to the columns the trainer and rewards use:
`prompt` (chat messages), `answer` (gold, a string) and `problem_id` (groups completions).
Rows are validated here, before any model is loaded: a row without an answer is an error that
names the row and the column to set.
"""

from __future__ import annotations

import json
import logging
import random
from pathlib import Path

from conciser import toy
from conciser.config import DataConfig, RecipeError
from conciser.errors import MissingInput

log = logging.getLogger(__name__)


def _where(row: dict) -> str:
    return row.get("_where", "a row")


def _check_prompt(prompt, where: str, column: str) -> None:
    if isinstance(prompt, str):
        if not prompt.strip():
            raise RecipeError(f"{where}: '{column}' is empty")
        return
    if isinstance(prompt, list) and prompt and all(
            isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str) for m in prompt):
        if not any(m["role"] == "user" for m in prompt):
            raise RecipeError(f"{where}: '{column}' has no user message")
        return
    raise RecipeError(f"{where}: '{column}' must be a string or a list of chat messages "
                      f"({{role: ..., content: ...}}), got {type(prompt).__name__}: {str(prompt)[:60]!r}")


def _normalise(rows: list[dict], cfg: DataConfig, source: str) -> list[dict]:
    """Every row checked and put in the trainer's columns. Rows carry `_where` ("file:line", 1-based, as
    editors count) for messages; `to_dataset` drops it."""
    if cfg.prompt_template and "{problem}" not in cfg.prompt_template:
        raise RecipeError("data.prompt_template: must contain {problem} (write literal braces as {{ }})")
    out, seen = [], {}
    for i, row in enumerate(rows):
        where = row.pop("_where", f"{source} row {i + 1}")
        for col in (cfg.prompt_column, cfg.answer_column):
            if row.get(col) in (None, ""):
                raise RecipeError(
                    f"{where}: no '{col}' value. Every training row needs a prompt and a gold "
                    f"answer; fix the data, or point data.{'prompt' if col == cfg.prompt_column else 'answer'}_column "
                    f"at the right column (row keys: {', '.join(sorted(row))})."
                )
        prompt = row[cfg.prompt_column]
        _check_prompt(prompt, where, cfg.prompt_column)
        answer = row[cfg.answer_column]
        if isinstance(answer, (bool, list, dict)) or not isinstance(answer, (str, int, float)):
            raise RecipeError(f"{where}: '{cfg.answer_column}' must be a string or a number (the gold answer), "
                              f"got {type(answer).__name__}: {str(answer)[:60]!r}")
        if isinstance(prompt, str):
            if cfg.prompt_template:
                prompt = cfg.prompt_template.format(problem=prompt)
            prompt = [{"role": "user", "content": prompt}]
        pid = row.get(cfg.id_column)
        if pid is not None and (isinstance(pid, (bool, list, dict)) or not isinstance(pid, (str, int))):
            raise RecipeError(f"{where}: '{cfg.id_column}' must be a string or an integer, got {pid!r}")
        pid = str(pid if pid is not None else f"{Path(source).stem}-{i + 1}")
        if pid in seen:
            raise RecipeError(
                f"{where}: problem id {pid!r} is already used at {seen[pid]}. Ids group completions and key "
                f"per-problem state (HAPO's history, PALU's budgets), so they must be unique: fix the data, or "
                f"point data.id_column at a unique column (without one, rows are numbered)")
        seen[pid] = where
        extra = {k: v for k, v in row.items() if k not in (cfg.prompt_column, cfg.answer_column, cfg.id_column)}
        out.append({**extra, "prompt": prompt, "answer": str(answer), "problem_id": pid, "_where": where})
    if not out:
        raise RecipeError(f"{source}: the training set is empty")
    return out


def load_rows(cfg: DataConfig) -> list[dict]:
    """The validated training rows for `cfg` (no model needed)."""
    if cfg.dataset in toy.TASKS:
        return [p.to_row() for p in toy.task(cfg.dataset).train_problems(cfg.n_train, seed=cfg.seed)]
    path = Path(cfg.dataset)
    if path.suffix == ".jsonl":
        if not path.is_file():
            raise MissingInput(f"data.dataset: no such file '{path}' (give a .jsonl path, a hub id, or a toy task: {', '.join(toy.TASKS)})")
        rows = []
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if line.strip():
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise RecipeError(f"{path}:{n}: not valid JSON ({exc})") from None
                if not isinstance(row, dict):
                    raise RecipeError(f"{path}:{n}: a row must be a JSON object, got {type(row).__name__}")
                rows.append({**row, "_where": f"{path}:{n}"})
        return _normalise(rows, cfg, str(path))
    from datasets import load_dataset

    ds = load_dataset(cfg.dataset, split=cfg.split)
    return _normalise(list(ds), cfg, cfg.dataset)


def check_golds(rows: list[dict], cfg: DataConfig) -> list[dict]:
    """Parse every gold once before training: rows whose gold the grader cannot parse (every answer would be
    graded wrong) stop the run, listed with their line numbers, or are dropped with `data.drop_unparseable_golds`."""
    from conciser.rewards.grading import unparseable_golds

    golds = [r["answer"] for r in rows]
    bad = ([i for i, g in enumerate(golds) if not g.strip()] if cfg.grader == "toy" else unparseable_golds(golds))
    if not bad:
        return rows
    first = "; ".join(f"{_where(rows[i])}: {rows[i]['answer'][:40]!r}" for i in bad[:5])
    if not cfg.drop_unparseable_golds:
        raise RecipeError(f"{len(bad)} of {len(rows)} gold answers cannot be parsed by the {cfg.grader!r} grader, so "
                          f"every answer to them would be graded wrong (first: {first}); fix them, or set "
                          f"data.drop_unparseable_golds=true to train without those rows")
    log.warning("dropping %d of %d rows whose gold answer the %s grader cannot parse (first: %s)",
                len(bad), len(rows), cfg.grader, first)
    dropped = set(bad)
    kept = [r for i, r in enumerate(rows) if i not in dropped]
    if not kept:
        raise RecipeError(f"{cfg.dataset}: no row has a gold answer the {cfg.grader!r} grader can parse")
    return kept


def to_dataset(rows: list[dict]):
    from datasets import Dataset

    return Dataset.from_list([{k: v for k, v in r.items() if not k.startswith("_")} for r in rows])


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
                f"rewards.method={reward.name} scores each completion against its prompt's token budget, but "
                f"{_where(rows[missing[0]])} (and {len(missing) - 1} more) has no positive integer 'target_length'. Set "
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
