"""Reference statistics: per-problem mean length and accuracy of the *starting* model, the one loader
for the rewards that score against them (o1_pruner, adaptthink, a_dlp).

They are written by the eval harness, sampling the starting model K times on the training problems:

    conciser reference-stats RECIPE [key=value ...] [--n 16]     # writes the recipe's training problems
                                                                 # and runs the eval harness on them
    conciser eval --model BASE --benchmark TRAIN.jsonl --n 16 --out REF      # the same, by hand

and read here from the eval harness's file format (documented at the top of `eval/run.py`; the
rewards layer never imports eval): `REF/<benchmark>/samples.jsonl`, one JSON line per sample with
`problem_id`, `sample`, `tokens` (completion tokens, EOS included, as the trainer counts lengths),
`finish_reason` and, once graded, `correct`; next to it `run.json` names the model that wrote them.

    stats = load_reference_stats("REF")          # REF, REF/<benchmark> or .../samples.jsonl
    stats.check(model="/path/to/base", problem_ids=train_ids, fix="...")   # before training
    stats["problem-7"]                           # ProblemStats(mean_length=812.5, accuracy=0.75, samples=16)

Per problem: `mean_length` is the mean of `tokens` over all K samples (right and wrong, as
O1-Pruner's `construct_dataset.py` averages), `accuracy` the fraction of samples that are solved in
the trainer's sense (`RolloutBatch.solved`): graded correct and finished (`finish_reason` is not
"length"). The trainer (`trainers/train.py`'s `prepare`) loads the file a reward names in
`LengthReward.reference_stats()`, cross-checks it against the recipe's model and training problems,
and hands the training problems' statistics to `use_reference()` before any model loads.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

from conciser.errors import MissingInput, UserError
from conciser.rewards.base import LengthReward

log = logging.getLogger(__name__)

SAMPLES_FILE = "samples.jsonl"


@dataclass(frozen=True)
class ProblemStats:
    """One problem's reference statistics over its K samples."""

    mean_length: float
    accuracy: float
    samples: int


@dataclass(frozen=True)
class ReferenceStats:
    """Per-problem statistics of the starting model, as read from `source` (written for `model`;
    None when the folder has no run.json / summary.json to say)."""

    problems: Mapping[str, ProblemStats]
    source: str
    model: str | None = None

    def __getitem__(self, problem_id: str) -> ProblemStats:
        try:
            return self.problems[problem_id]
        except KeyError:
            raise ValueError(f"reference statistics {self.source} have no samples of problem {problem_id!r}; "
                             f"they must cover every training problem (write them for this training set)") from None

    def __len__(self) -> int:
        return len(self.problems)

    @property
    def mean_accuracy(self) -> float:
        """Accuracy averaged over problems (each problem counts once, as a uniform draw of prompts does)."""
        return math.fsum(p.accuracy for p in self.problems.values()) / len(self.problems)

    def subset(self, problem_ids: Iterable[str]) -> ReferenceStats:
        """The statistics of `problem_ids` only (each must be present)."""
        return ReferenceStats({pid: self[pid] for pid in dict.fromkeys(problem_ids)}, self.source, self.model)

    def check(self, *, model: str | None, problem_ids: Iterable[str], fix: str) -> None:
        """UserError unless these statistics were written for `model` and cover every problem id.
        `fix` (appended to the message) says how to write the right file."""
        if model is not None and self.model is not None and self.model != model:
            raise UserError(f"reference statistics {self.source} were written for the model {self.model!r}, but "
                            f"this run starts from {model!r}; they must come from the model being trained. {fix}")
        if model is not None and self.model is None:
            log.warning("%s has no run.json naming the model that wrote it: cannot check it against %s",
                        self.source, model)
        ids = list(dict.fromkeys(problem_ids))
        missing = [pid for pid in ids if pid not in self.problems]
        if missing:
            shown = ", ".join(repr(p) for p in missing[:3]) + (", ..." if len(missing) > 3 else "")
            raise UserError(f"reference statistics {self.source} have no samples of {len(missing)} of the {len(ids)} "
                            f"training problems ({shown}); they must cover every training problem. {fix}")


def resolve_samples_path(path: str | Path) -> Path:
    """The samples.jsonl that `path` names: the file itself, a benchmark folder holding it, or an eval
    output folder holding exactly one `<benchmark>/samples.jsonl`."""
    p = Path(path).expanduser()
    if p.is_file():
        return p
    if (p / SAMPLES_FILE).is_file():
        return p / SAMPLES_FILE
    if p.is_dir():
        found = sorted(p.glob(f"*/{SAMPLES_FILE}"))
        if len(found) == 1:
            return found[0]
        if len(found) > 1:
            names = ", ".join(str(f.parent.name) for f in found)
            raise UserError(f"reference statistics {p} hold several benchmarks ({names}); point at one, "
                            f"e.g. {found[0].parent}")
    raise MissingInput(f"reference statistics {p} do not exist (no {SAMPLES_FILE} there)")


def load_reference_stats(path: str | Path) -> ReferenceStats:
    """Read the eval harness's samples of the starting model (see the module docstring) into
    per-problem statistics. UserError / MissingInput name the file and what is wrong with it."""
    if not str(path).strip():
        raise UserError("no reference statistics file given (empty path)")
    samples = resolve_samples_path(path)
    records = _read_records(samples)
    if not records:
        raise UserError(f"reference statistics {samples} hold no samples; re-run the conciser eval command that "
                        f"writes them")
    per: dict[str, list[tuple[int, bool]]] = {}
    for i, r in enumerate(records):
        where = f"{samples}: sample {i} (problem {r.get('problem_id')!r})"
        if "correct" not in r:
            raise UserError(f"{where} is not graded yet (no 'correct'); re-run the same conciser eval command: it "
                            f"resumes and grades what is missing")
        tokens = r.get("tokens")
        if isinstance(tokens, bool) or not isinstance(tokens, int) or tokens < 0:
            raise UserError(f"{where} has no token count ('tokens' must be an integer >= 0); write the file with "
                            f"conciser eval")
        solved = bool(r["correct"]) and r.get("finish_reason") != "length"
        per.setdefault(str(r["problem_id"]), []).append((tokens, solved))
    problems = {pid: ProblemStats(mean_length=math.fsum(n for n, _ in rows) / len(rows),
                                  accuracy=sum(ok for _, ok in rows) / len(rows), samples=len(rows))
                for pid, rows in per.items()}
    return ReferenceStats(problems, str(samples), _model_of(samples.parent))


def _read_records(path: Path) -> list[dict[str, Any]]:
    """The file's records, one per (problem_id, sample); a line cut off by a crash is skipped, as the
    eval harness does (re-running it regenerates that sample)."""
    records, seen, bad = [], set(), 0
    with open(path, encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                continue
            try:
                r = json.loads(line)
            except json.JSONDecodeError:
                bad += 1
                continue
            if not isinstance(r, dict) or "problem_id" not in r:
                raise UserError(f"{path}: a line has no 'problem_id'; this is not a conciser eval samples.jsonl")
            key = (str(r["problem_id"]), r.get("sample"))
            if key not in seen:
                seen.add(key)
                records.append(r)
    if bad:
        log.warning("%s: skipped %d unreadable line(s) (an interrupted write)", path, bad)
    return records


def _model_of(folder: Path) -> str | None:
    """The model named by the eval run's run.json (resolved path or hub id), else its summary.json."""
    for name in ("run.json", "summary.json"):
        f = folder / name
        if f.is_file():
            try:
                model = json.loads(f.read_text()).get("model")
            except (json.JSONDecodeError, AttributeError):
                continue
            if model:
                return str(model)
    return None


class ReferenceReward(LengthReward):
    """Base of the rewards scored against reference statistics: their Config has `reference_stats`
    (a path); the trainer loads it and calls `use_reference` before training (see the module docstring)."""

    def __init__(self, config: Any = None, **overrides: Any) -> None:
        super().__init__(config, **overrides)
        self._reference: ReferenceStats | None = None

    def reference_stats(self) -> str | None:
        return self.config.reference_stats or ""  # required: "" makes the trainer ask for it

    def use_reference(self, stats: ReferenceStats) -> None:
        self._reference = stats

    @property
    def reference(self) -> ReferenceStats:
        if self._reference is None:
            raise ValueError(f"reward {self.name!r} has no reference statistics: the trainer loads "
                             f"rewards.params.reference_stats before training; in Python call "
                             f"reward.use_reference(load_reference_stats(path))")
        return self._reference
