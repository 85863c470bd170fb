"""Benchmark registry: the bundled offline test sets, the toy benchmark, and user data.

    load_benchmark("math500")                                  # bundled (eval/data/math500.jsonl)
    load_benchmark("toy")                                      # conciser.toy.eval_problems(250)
    load_benchmark("toy-scan")                                  # another toy task (conciser.toy.TASKS)
    load_benchmark("my_set.jsonl", columns={"question": "prompt", "answer": "gold"})
    load_benchmark("hf:owner/name", split="test", columns={...})   # datasets.load_dataset: the hub, its
                                                               # cache, or a local dataset folder

A benchmark is its problems plus how to ask and grade them: a prompt template (R1 style for math,
the bare toy prompt for the toy), the grader name from `conciser.rewards.grading.GRADERS`, and the
default generation cap of its suite. A benchmark may also pin its sampling protocol (`pinned`: n,
temperature, top_p, as the papers report it, e.g. AIME at n=16); command-line values override it.
Sources and licences of the bundled files: `eval/data/SOURCES.md`.

Data files are checked row by row: the question must be text, the answer text or a number (a
list or mapping in either is an error naming its line), ids must be unique (a repeated id is an
error: de-duplicating silently would change what is measured). Line numbers are 1-based JSONL lines.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from conciser.errors import UserError

DATA_DIR = Path(__file__).parent / "data"

# DeepSeek-R1's recommended directive; Qwen2.5-Math's evaluation and LASER append it on a new line.
R1_TEMPLATE = "{problem}\nPlease reason step by step, and put your final answer within \\boxed{{}}."
PLAIN_TEMPLATE = "{problem}"
TEMPLATES = {"r1": R1_TEMPLATE, "plain": PLAIN_TEMPLATE}

# The field's default cap for R1-style models (open-r1/lighteval, LASER, DeepScaleR: 32768).
MATH_MAX_NEW_TOKENS = 32768


@dataclass(frozen=True)
class Problem:
    """One benchmark item. `question` is the raw problem text, before the template."""

    id: str
    question: str
    answer: str
    solution: str | None = None
    meta: dict = field(default_factory=dict)   # level, subject, minimal_tokens, ... (JSON-able)
    line: int | None = None                    # 1-based line of its data file (JSONL), for messages


@dataclass(frozen=True)
class Benchmark:
    name: str
    problems: list[Problem]
    grader: str = "math"                    # key of conciser.rewards.grading.GRADERS
    template: str = R1_TEMPLATE             # str.format template with {problem}
    max_new_tokens: int = MATH_MAX_NEW_TOKENS
    source: str = ""                        # where the problems came from (recorded in the summary)
    probe: str = "... Oh, I suddenly got the answer to the whole problem, **Final Answer**\n\n\\[ \\boxed{"
    exit_suffix: str = "\n\nOh, I have got the answer to the whole problem, **Final Answer:** \\[ \\boxed{{{answer}}} \\]"
    pinned: dict = field(default_factory=dict)  # sampling protocol the benchmark pins: n, temperature, top_p

    def user_message(self, p: Problem) -> str:
        return self.template.format(problem=p.question)


@dataclass(frozen=True)
class _Bundled:
    file: str
    description: str
    pinned: dict = field(default_factory=dict)


# What the length-efficiency papers report on the small competition sets (LASER and the Qwen2.5-Math
# harness: avg@16 at temperature 0.6, top-p 0.95); one sample of 30 problems is too noisy to compare.
_AVG16 = {"n": 16, "temperature": 0.6, "top_p": 0.95}


BUNDLED: dict[str, _Bundled] = {
    "math500": _Bundled("math500.jsonl", "MATH-500 (PRM800K test split of MATH), 500 problems"),
    "aime24": _Bundled("aime24.jsonl", "AIME 2024 I+II, 30 problems", _AVG16),
    "aime25": _Bundled("aime25.jsonl", "AIME 2025 I+II, 30 problems", _AVG16),
    "amc23": _Bundled("amc23.jsonl", "AMC 12 2023 (Qwen2.5-Math numeric version), 40 problems", _AVG16),
    "gsm8k": _Bundled("gsm8k.jsonl", "GSM8K test split, 1319 problems"),
    "minerva": _Bundled("minerva.jsonl", "Minerva Math (OCW subset), 272 problems"),
    "olympiadbench": _Bundled("olympiadbench.jsonl", "OlympiadBench OE_TO_maths_en_COMP, 675 problems"),
}
TOY_PROBLEMS = 250


def _toy_tasks() -> tuple[str, ...]:
    from conciser import toy

    return toy.TASKS


def known_benchmarks() -> list[str]:
    return [*_toy_tasks(), *BUNDLED]


def _toy(name: str = "toy") -> Benchmark:
    from conciser import toy

    task = toy.task(name)
    problems = [
        Problem(id=p.id, question=p.prompt, answer=p.answer, solution=task.minimal_trace(p),
                meta={"level": p.level, "minimal_tokens": p.minimal_tokens})
        for p in task.eval_problems(TOY_PROBLEMS)
    ]
    return Benchmark(
        name=name, problems=problems, grader="toy", template=PLAIN_TEMPLATE,
        max_new_tokens=task.DEFAULT_MAX_COMPLETION,
        source=f"{task.__name__}.eval_problems({TOY_PROBLEMS}) (seed {task.EVAL_SEED})",
        # The toy vocabulary has no "Final Answer" words: its probe closes thinking and opens the box,
        # written exactly as the toy's own traces write it.
        **_toy_probe(problems[0], toy),
    )


def _toy_probe(p: Problem, toy) -> dict:
    """Dynasor probe/exit text for the toy, cut from a minimal trace ("</think>\\boxed{" + answer + "}")."""
    m = p.solution
    i = m.rindex(toy.THINK_CLOSE)
    j = m.index("\\boxed{", i) + len("\\boxed{")
    k = m.index(p.answer, j) + len(p.answer)
    end = m.rindex(toy.EOS) if toy.EOS in m else len(m)
    esc = lambda t: t.replace("{", "{{").replace("}", "}}")  # noqa: E731
    return {"probe": m[i:j], "exit_suffix": esc(m[i:j]) + "{answer}" + esc(m[k:end])}


_META_SKIP = {"problem", "answer", "solution", "solutions", "id"}


def _where(name: str, line: int | None, i: int) -> str:
    return f"{name}:{line}" if line is not None else f"benchmark {name}: row {i + 1}"


def _rows_to_problems(rows, *, name: str, columns: dict[str, str], lines: list[int] | None = None) -> list[Problem]:
    """Problems of `rows`; `lines[i]` is row i's 1-based line in its file (messages cite it)."""
    q_col, a_col = columns.get("question", "problem"), columns.get("answer", "answer")
    id_col, s_col = columns.get("id", "id"), columns.get("solution", "solution")
    problems, seen = [], {}
    for i, row in enumerate(rows):
        line = lines[i] if lines is not None else None
        at = _where(name, line, i)
        if not isinstance(row, dict):
            raise UserError(f"{at}: a row must be a JSON object with {q_col!r} and {a_col!r}, got {type(row).__name__}")
        if i == 0:
            missing = [c for c in (q_col, a_col) if c not in row]
            if missing:
                raise UserError(
                    f"benchmark {name}: column(s) {missing} not found; the rows have {sorted(row)}. "
                    f"Map them with --columns question=COL,answer=COL (Python: columns={{'question': ..., 'answer': ...}})")
        if row.get(a_col) is None or row.get(q_col) is None:
            raise UserError(f"{at}: no {a_col!r} or {q_col!r} value")
        question, answer = row[q_col], row[a_col]
        if not isinstance(question, str):
            raise UserError(f"{at}: column {q_col!r} must be text, got {type(question).__name__} {question!r:.60}")
        if isinstance(answer, bool) or not isinstance(answer, (str, int, float)):
            raise UserError(f"{at}: column {a_col!r} must be text or a number, got {type(answer).__name__} "
                            f"{answer!r:.60}; map a single-answer column with --columns answer=COL")
        raw_id = row.get(id_col)
        if raw_id is not None and (isinstance(raw_id, bool) or not isinstance(raw_id, (str, int))):
            raise UserError(f"{at}: column {id_col!r} must be text or an integer, got {type(raw_id).__name__}")
        pid = str(raw_id) if raw_id is not None else str(i)
        if pid in seen:
            raise UserError(f"{at}: duplicate id {pid!r} in column {id_col!r} (first at "
                            f"{_where(name, seen[pid][0], seen[pid][1])}); ids must be unique: fix the data or map "
                            "a unique column with --columns id=COL")
        seen[pid] = (line, i)
        meta = {k: v for k, v in row.items()
                if k not in _META_SKIP | {q_col, a_col, id_col, s_col} and isinstance(v, (str, int, float, bool))}
        if "level" in row and isinstance(row["level"], str) and row["level"].isdigit():
            meta["level"] = int(row["level"])
        problems.append(Problem(id=pid, question=question, answer=str(answer).strip(),
                                solution=row.get(s_col) if isinstance(row.get(s_col), str) else None, meta=meta,
                                line=line))
    if not problems:
        raise UserError(f"benchmark {name}: no rows")
    return problems


def read_jsonl_lines(path: Path) -> tuple[list, list[int]]:
    """(rows, their 1-based line numbers); blank lines are skipped, a bad line is an error naming it."""
    rows, lines = [], []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise UserError(f"{path}:{lineno}: not valid JSON ({exc})") from None
                lines.append(lineno)
    return rows, lines


def read_jsonl(path: Path) -> list[dict]:
    return read_jsonl_lines(path)[0]


def load_benchmark(
    spec: str,
    *,
    columns: dict[str, str] | None = None,
    split: str = "test",
    grader: str | None = None,
    template: str | None = None,
    max_new_tokens: int | None = None,
) -> Benchmark:
    """Resolve `spec`: a bundled name, a toy task ("toy", "toy-scan", ...), a local .jsonl/.json file, or "hf:<dataset id>".

    `columns` maps the roles question/answer/id/solution to column names (defaults: problem, answer,
    id, solution). `template` is a format string with {problem} or a key of TEMPLATES ("r1", "plain").
    """
    columns = dict(columns or {})
    bad = set(columns) - {"question", "answer", "id", "solution"}
    if bad:
        raise UserError(f"unknown column role(s) {sorted(bad)}; the roles are question, answer, id, solution")
    if spec in _toy_tasks():
        bench = _toy(spec)
    elif spec in BUNDLED:
        b = BUNDLED[spec]
        rows, lines = read_jsonl_lines(DATA_DIR / b.file)
        bench = Benchmark(name=spec, problems=_rows_to_problems(rows, name=b.file, columns={}, lines=lines),
                          source=f"bundled eval/data/{b.file}: {b.description}", pinned=dict(b.pinned))
    elif spec.startswith("hf:"):
        import datasets  # needs the hub (or its local cache); not reachable offline

        ds_id = spec[3:]
        rows = datasets.load_dataset(ds_id, split=split)
        bench = Benchmark(name=ds_id.rstrip("/").rsplit("/", 1)[-1], problems=_rows_to_problems(rows, name=spec, columns=columns),
                          source=f"datasets.load_dataset({ds_id!r}, split={split!r})")
    elif spec.endswith((".jsonl", ".json")) or Path(spec).exists():
        path = Path(spec)
        if not path.is_file():
            raise UserError(f"benchmark file {spec} does not exist; give a path to a JSONL file with one problem per line")
        lines = None
        if path.suffix == ".jsonl":
            rows, lines = read_jsonl_lines(path)
        else:
            try:
                rows = json.loads(path.read_text(encoding="utf-8"))
            except json.JSONDecodeError as exc:
                raise UserError(f"{path}: not valid JSON ({exc})") from None
        if not isinstance(rows, list):
            raise UserError(f"{path}: expected a list of rows (or a .jsonl file), got a JSON {type(rows).__name__}")
        bench = Benchmark(name=path.stem, problems=_rows_to_problems(rows, name=spec, columns=columns, lines=lines),
                          source=f"local file {path.resolve()}")
    else:
        raise UserError(
            f"unknown benchmark {spec!r}; known: {', '.join(known_benchmarks())}. "
            "For your own data pass a .jsonl path (with --columns question=...,answer=...) or hf:<dataset id>")
    changes = {}
    if grader is not None:
        changes["grader"] = grader
    if template is not None:
        template = TEMPLATES.get(template, template)
        if "{problem}" not in template:
            raise UserError(f"--template: {template!r} has no {{problem}} placeholder; or use one of {sorted(TEMPLATES)}")
        changes["template"] = template
    if max_new_tokens is not None:
        changes["max_new_tokens"] = int(max_new_tokens)
    if changes:
        import dataclasses

        bench = dataclasses.replace(bench, **changes)
    return bench
