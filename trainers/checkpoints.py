"""Which checkpoints are complete: one answer for `conciser train --resume`, `launch-info` and Slurm.

A checkpoint folder is written file by file (TRL's weights, optimizer, scheduler, RNG state,
trainer_state.json, then our reward_state.json), and a job can be killed at any moment of it. So the
trainer writes `checkpoint_complete.json` last, atomically (a temporary file renamed), listing every
file of the folder with its size. A folder is complete only when that marker is there and every file
it lists is there with that size; anything else is skipped (with a one-line notice) and the previous
complete checkpoint is used. A kill while saving therefore leaves either the previous or the new
checkpoint usable, never a half-written one that `--resume` would pick.

This module imports nothing heavy: `launch-info` runs on login nodes.
"""

from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path

log = logging.getLogger(__name__)

MARKER = "checkpoint_complete.json"
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")


def mark_complete(folder: str | Path, step: int) -> Path:
    """Write the completion marker of `folder` (call it after every file of the checkpoint is written)."""
    folder = Path(folder)
    files = {str(p.relative_to(folder)): p.stat().st_size for p in sorted(folder.rglob("*"))
             if p.is_file() and p.name != MARKER and not p.name.endswith(".tmp")}
    tmp = folder / (MARKER + ".tmp")
    tmp.write_text(json.dumps({"step": step, "files": files}, indent=1))
    os.replace(tmp, folder / MARKER)  # atomic: the marker is either absent or whole
    return folder / MARKER


def incomplete_reason(folder: str | Path) -> str | None:
    """Why `folder` is not a complete checkpoint (None when it is)."""
    folder = Path(folder)
    marker = folder / MARKER
    if not folder.is_dir():
        return "not a folder"
    if not marker.is_file():
        return f"no {MARKER} (saving was interrupted, or it was not written by conciser)"
    try:
        listed = json.loads(marker.read_text())["files"]
    except (ValueError, KeyError, TypeError):
        return f"{MARKER} is unreadable"
    for name, size in listed.items():
        path = folder / name
        if not path.is_file():
            return f"{name} is missing"
        if path.stat().st_size != size:
            return f"{name} has {path.stat().st_size} bytes, {size} when the checkpoint was saved"
    return None


def checkpoints(output_dir: str | Path) -> list[tuple[int, Path]]:
    """(step, folder) of every checkpoint-N folder in output_dir, oldest first."""
    out = Path(output_dir)
    if not out.is_dir():
        return []
    return sorted((int(m.group(1)), p) for p in out.iterdir() if p.is_dir() and (m := _CHECKPOINT.match(p.name)))


def last_complete_checkpoint(output_dir: str | Path, notice: bool = True) -> Path | None:
    """The newest complete checkpoint-N folder of `output_dir` (None if there is none); newer incomplete
    ones are skipped, each with a one-line notice."""
    for _, folder in reversed(checkpoints(output_dir)):
        reason = incomplete_reason(folder)
        if reason is None:
            return folder
        if notice:
            log.warning("skipping %s: incomplete (%s)", folder, reason)
    return None
