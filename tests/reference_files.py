"""Reference-statistics files for tests, in the eval harness's format (`from reference_files import write_reference`)."""

from __future__ import annotations

import json
from pathlib import Path


def write_reference(folder, samples: dict[str, list[tuple]], model: str | None = "base-model",
                    lines: list[str] | None = None) -> Path:
    """`folder/samples.jsonl` (+ run.json naming `model` unless None) with, per problem id, samples given as
    (tokens, correct) or (tokens, correct, finish_reason); `lines` are appended verbatim. Returns the file."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for pid, rows in samples.items():
        for j, row in enumerate(rows):
            tokens, correct, finish = (*row, "stop")[:3]
            out.append(json.dumps({"benchmark": folder.name, "problem_id": pid, "sample": j, "tokens": tokens,
                                   "finish_reason": finish, "text": "", "correct": correct}))
    (folder / "samples.jsonl").write_text("\n".join(out + list(lines or [])) + "\n")
    if model is not None:
        (folder / "run.json").write_text(json.dumps({"model": model, "benchmark": folder.name}))
    return folder / "samples.jsonl"
