"""Budget sweep: accuracy as a function of the thinking budget, from one generation.

    conciser eval --model M --benchmark toy --budgets 16,24,32,48,64,96,128,160

Every sample is generated once, capped at the largest budget. For each budget B, a sample whose
thinking ended within its first B tokens (it closed the thinking tag, or stopped) keeps its own
answer and verdict. Any other sample is cut at B tokens and its answer is forced: the thinking is
closed and the answer box opened with the benchmark's probe text (Dynasor-CoT's, the toy's own
"</think>\\boxed{"), and a short continuation (`budget_answer_tokens`) is generated from
prompt + the first B tokens + probe. A model without a thinking tag gets the same cut and probe.
Only these short continuations are generated per budget, all in one batched pass (the transformers
backend re-reads the prefix; vLLM's prefix caching shares it between budgets and samples).

Outputs beside samples.jsonl: `budget_samples.jsonl` (one line per forced (sample, budget):
the forced ids and text, tokens used, verdict; appended as they finish, so a killed sweep resumes)
and `budget_curve.json`: a list of {budget, accuracy, mean_tokens, forced_rate[, by_level]}, where
tokens are those actually used (thinking + probe + forced answer). `budget_auc` is the area under
accuracy vs log2(budget), divided by the log2 range: a mean accuracy in [0, 1].
"""

from __future__ import annotations

import json
import math
import time
from collections import defaultdict
from pathlib import Path

from conciser.eval.benchmarks import Benchmark
from conciser.eval.generate import Appender, Prompts, read_samples, sample_seed, write_samples

THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
BUDGET_FILE, CURVE_FILE = "budget_samples.jsonl", "budget_curve.json"


def budget_auc(curve: list[dict]) -> float | None:
    """Trapezoid area under accuracy vs log2(budget) over the budget range, normalised by its width."""
    pts = sorted((math.log2(c["budget"]), c["accuracy"]) for c in curve)
    if not pts:
        return None
    if len(pts) == 1:
        return round(pts[0][1], 6)
    area = sum((x2 - x1) * (y1 + y2) / 2 for (x1, y1), (x2, y2) in zip(pts, pts[1:]))
    return round(area / (pts[-1][0] - pts[0][0]), 6)


class BudgetSweep:
    """The forced (sample, budget) rows of one benchmark: which are needed, their generation, their
    grading, and the curve. `records` are the main samples (with token_ids), capped at max(budgets)."""

    def __init__(self, out: Path, bench: Benchmark, budgets: list[int], prompts: Prompts, index: dict[str, int],
                 tokenizer, *, seed: int, answer_tokens: int):
        self.path = out / BUDGET_FILE
        self.curve_path = out / CURVE_FILE
        self.bench, self.budgets, self.prompts, self.index = bench, sorted(set(budgets)), prompts, index
        self.tokenizer, self.seed, self.answer_tokens = tokenizer, seed, answer_tokens
        self.rows = read_samples(self.path, key=lambda r: (r.get("problem_id"), r.get("sample"), r.get("budget")))
        self._close: dict[tuple[str, int], int] = {}
        self.generated = 0
        self.seconds = 0.0

    # ---- which samples are cut at which budget

    def _think_closed_at(self, r: dict) -> int:
        """Tokens after which the sample's text first contains </think> (len + 1 if never)."""
        key = (r["problem_id"], r["sample"])
        if key not in self._close:
            ids, pre = r["token_ids"], self.prompts.think_prefill
            text = lambda t: pre + self.tokenizer.decode(ids[:t], skip_special_tokens=True)  # noqa: E731
            if THINK_CLOSE not in text(len(ids)):
                self._close[key] = len(ids) + 1
            else:   # smallest prefix that contains it (decoding more tokens never removes it)
                lo, hi = 1, len(ids)
                while lo < hi:
                    mid = (lo + hi) // 2
                    lo, hi = (lo, mid) if THINK_CLOSE in text(mid) else (mid + 1, hi)
                self._close[key] = lo
        return self._close[key]

    def forced(self, r: dict, budget: int) -> bool:
        """True when the sample's thinking did not end within `budget` tokens: it is cut there."""
        if len(r["token_ids"]) <= budget and r["finish_reason"] != "length":
            return False
        return self._think_closed_at(r) > budget

    def _probe(self, r: dict, budget: int) -> str:
        text = self.prompts.think_prefill + self.tokenizer.decode(r["token_ids"][:budget], skip_special_tokens=True)
        probe = self.bench.probe
        if THINK_OPEN in text and THINK_CLOSE not in probe:
            probe = f"\n\n{THINK_CLOSE}\n\n{probe}"   # close the thinking first, as Dynasor's exit does
        return probe

    # ---- generation

    def todo(self, records: list[dict]) -> list[tuple[dict, int]]:
        have = {(w["problem_id"], w["sample"], w["budget"]) for w in self.rows}
        return [(r, b) for r in records for b in self.budgets
                if self.forced(r, b) and (r["problem_id"], r["sample"], b) not in have]

    def generate(self, backend, records: list[dict], *, temperature: float, top_p: float, progress: bool) -> int:
        from conciser.eval.backends import Request

        todo = self.todo(records)
        if not todo:
            return 0
        by_key, reqs = {}, []
        for r, b in todo:
            probe_ids = list(self.tokenizer(self._probe(r, b), add_special_tokens=False).input_ids)
            key = f"{r['problem_id']}\t{r['sample']}\t{b}"
            by_key[key] = (r, b, probe_ids)
            reqs.append(Request(key=key, prompt_ids=self.prompts.ids[self.index[r["problem_id"]]] + r["token_ids"][:b] + probe_ids,
                                max_tokens=self.answer_tokens, group=r["problem_id"],
                                seed=sample_seed(self.seed, self.bench.name, r["problem_id"], r["sample"], f"|budget{b}")))
        appender = Appender(self.path)

        def done(g) -> None:
            r, b, probe_ids = by_key[g.key]
            ids = probe_ids + list(g.token_ids)
            row = {"problem_id": r["problem_id"], "sample": r["sample"], "budget": b, "answer": r["answer"],
                   "tokens": b + len(ids), "forced_tokens": len(probe_ids), "finish_reason": g.finish_reason,
                   "text": self.tokenizer.decode(ids, skip_special_tokens=True), "ids": ids}
            self.rows.append(row)
            appender(row)

        t0 = time.time()
        try:
            backend.generate(reqs, temperature=temperature, top_p=top_p, progress=progress,
                             desc=f"{self.bench.name} forced answers", on_done=done)
        finally:
            appender.close()
            self.seconds += time.time() - t0
        self.generated += len(todo)
        return len(todo)

    # ---- grading and the curve

    def grade(self, records: list[dict], grade_fn, *, rescore: bool) -> None:
        """Grade the forced rows (the cut thinking + probe + forced answer) with `grade_fn(rows, texts)`."""
        main = {(r["problem_id"], r["sample"]): r for r in records}
        rows = [w for w in self.rows if (rescore or "correct" not in w) and (w["problem_id"], w["sample"]) in main]
        if not rows:
            return
        texts = [self.prompts.think_prefill + self.tokenizer.decode(
            main[(w["problem_id"], w["sample"])]["token_ids"][:w["budget"]] + w["ids"], skip_special_tokens=True)
            for w in rows]
        grade_fn(rows, texts)
        self.rows.sort(key=lambda w: (self.index.get(w["problem_id"], len(self.index)), w["problem_id"], w["sample"], w["budget"]))
        write_samples(self.path, self.rows)

    def curve(self, records: list[dict]) -> list[dict]:
        """Per budget: accuracy (avg@n), mean tokens used, forced rate and by_level, over `records`."""
        rows = {(w["problem_id"], w["sample"], w["budget"]): w for w in self.rows}
        out = []
        for b in self.budgets:
            per_problem: dict[str, list[tuple[bool, int]]] = defaultdict(list)
            levels: dict[str, object] = {}
            forced = 0
            for r in records:
                if self.forced(r, b):
                    w = rows.get((r["problem_id"], r["sample"], b))
                    if w is None or "correct" not in w:
                        raise ValueError(f"budget {b}: sample {r['problem_id']}/{r['sample']} has no graded forced answer")
                    per_problem[r["problem_id"]].append((bool(w["correct"]), w["tokens"]))
                    forced += 1
                else:
                    per_problem[r["problem_id"]].append((bool(r["correct"]), r["tokens"]))
                levels[r["problem_id"]] = r.get("level")
            entry = _stats(per_problem)
            entry = {"budget": b, **entry, "forced_rate": round(forced / max(1, len(records)), 6)}
            if per_problem and all(levels[p] is not None for p in per_problem):
                by_level = {}
                for lv in sorted({levels[p] for p in per_problem}, key=str):
                    by_level[str(lv)] = _stats({p: v for p, v in per_problem.items() if levels[p] == lv})
                entry["by_level"] = by_level
            out.append(entry)
        return out

    def save_curve(self, curve: list[dict]) -> None:
        self.curve_path.write_text(json.dumps(curve, indent=2) + "\n")


def _stats(per_problem: dict[str, list[tuple[bool, int]]]) -> dict:
    n = max(1, len(per_problem))
    samples = [x for v in per_problem.values() for x in v]
    return {"n_problems": len(per_problem),
            "accuracy": round(sum(sum(c for c, _ in v) / len(v) for v in per_problem.values()) / n, 6),
            "mean_tokens": round(sum(t for _, t in samples) / max(1, len(samples)), 6)}
