"""Scoring: the gold pre-flight, grading with the training grader, and the summary's extra blocks
(certaindex early stopping, AES against a baseline, the pinned protocol, wandb).

`check_golds` parses every gold once before anything is generated: an unparseable gold would grade
every sample wrong, silently. By default the run stops and lists them (count, first examples with
their line numbers); `drop_unparseable_golds` evaluates the rest and says how many were dropped.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path

from conciser.errors import UserError
from conciser.eval.benchmarks import Benchmark, Problem
from conciser.eval.config import EvalConfig

log = logging.getLogger(__name__)


# ---------------------------------------------------------------- golds


def _unparseable(bench: Benchmark, problems: list[Problem], cfg: EvalConfig) -> list[int]:
    golds = [p.answer for p in problems]
    if bench.grader == "math":
        from conciser.rewards.grading import unparseable_golds

        return unparseable_golds(golds, timeout=cfg.grading_timeout, workers=cfg.grading_workers)
    # Exact-match graders (the toy) compare strings: only an empty gold can never match.
    return [i for i, g in enumerate(golds) if not g.strip()]


def check_golds(bench: Benchmark, problems: list[Problem], cfg: EvalConfig) -> tuple[list[Problem], int]:
    """(the problems to evaluate, how many golds were unparseable). Raises a UserError listing them
    unless `cfg.drop_unparseable_golds`."""
    bad = _unparseable(bench, problems, cfg)
    if not bad:
        return problems, 0
    examples = "; ".join(f"{'line ' + str(problems[i].line) if problems[i].line else 'id ' + problems[i].id}: "
                         f"{problems[i].answer!r:.40}" for i in bad[:5])
    if not cfg.drop_unparseable_golds:
        raise UserError(f"{bench.name}: {len(bad)} of {len(problems)} gold answers cannot be parsed by the {bench.grader!r} "
                        f"grader (first: {examples}); every sample of them would be graded wrong. Fix the data, or pass "
                        "--drop-unparseable-golds to evaluate the rest")
    log.warning("%s: dropped %d problem(s) whose gold answer cannot be parsed (first: %s)", bench.name, len(bad), examples)
    drop = set(bad)
    return [p for i, p in enumerate(problems) if i not in drop], len(bad)


# ---------------------------------------------------------------- grading


def grade_records(records: list[dict], grader: str, *, prefill: str, timeout: float, workers: int | None,
                  progress: bool, extraction: str = "boxed", texts: list[str] | None = None) -> None:
    """Fill correct / extracted / timed_out / grade_error in place, with the training grader.
    The graded text is prefill + record["text"] unless `texts` are given."""
    from conciser.rewards.grading import get_grader

    if not records:
        return
    completions = texts if texts is not None else [prefill + r["text"] for r in records]
    grades = get_grader(grader)(golds=[r["answer"] for r in records], completions=completions,
                                timeout=timeout, workers=workers, progress=progress, extraction=extraction)
    for r, g in zip(records, grades):
        r.update(correct=bool(g.correct), extracted=g.extracted, timed_out=bool(g.timed_out), grade_error=g.error)


def equivalence(grader: str, timeout: float, workers: int | None):
    """pairs -> [b equals a] with the grader (a as gold), for clustering answers."""
    from conciser.rewards.grading import get_grader

    def equal(pairs: list[tuple[str, str]]) -> list[bool]:
        grades = get_grader(grader)(golds=[a for a, _ in pairs], completions=[f"\\boxed{{{b}}}" for _, b in pairs],
                                    timeout=timeout, workers=workers)
        return [g.correct for g in grades]

    return equal


# ---------------------------------------------------------------- summary blocks


def by_problem(records: list[dict]) -> list[list[dict]]:
    groups: dict[str, list[dict]] = {}
    for r in records:
        groups.setdefault(r["problem_id"], []).append(r)
    return [sorted(g, key=lambda r: r["sample"]) for g in groups.values()]


def early_stop_block(cfg: EvalConfig, records: list[dict], n: int, equal) -> dict:
    """Certaindex keys for the summary, and its tau sweep when asked; plain maj@n on the same
    samples when every problem has all n (a full run serves both)."""
    from conciser.eval.voting import early_stop, pair_verdicts

    groups = by_problem(records)
    same = pair_verdicts([[r.get("extracted") for r in g] for g in groups], equal)
    k = cfg.resolved_round()
    out: dict = {"early_stop": cfg.early_stop, "certaindex_round": k}
    full = all(len(g) >= n for g in groups)
    full_tokens = sum(sum(r["tokens"] for r in g[:n]) for g in groups) / max(1, len(groups)) if full else None
    short = [g[0]["problem_id"] for g in groups if len(g) < n]
    if cfg.tau_sweep and short:
        raise UserError(f"--tau-sweep needs all n={n} samples of every problem; {len(short)} have fewer "
                        "(run without --rescore to generate them)")
    if cfg.early_stop:
        try:
            res = early_stop(groups, tau=cfg.resolved_tau(), k=k, n=n, same=same)
        except ValueError as exc:   # only after --rescore of an incomplete run
            raise UserError(f"--early-stop: {exc} (run without --rescore to generate them)") from None
        out.update(certaindex_tau=cfg.resolved_tau(), early_stop_accuracy=round(res["accuracy"], 6),
                   samples_used=round(res["samples_used"], 6), tokens_used=round(res["tokens_used"], 6))
    out["full_tokens"] = round(full_tokens, 6) if full else None
    if cfg.early_stop and full:
        out["tokens_used_fraction"] = round(out["tokens_used"] / full_tokens, 6) if full_tokens else None
    if cfg.tau_sweep:
        sweep = []
        for tau in sorted(set(cfg.tau_sweep)):
            res = early_stop(groups, tau=tau, k=k, n=n, same=same)
            sweep.append({"tau": tau, "accuracy": round(res["accuracy"], 6), "samples_used": round(res["samples_used"], 6),
                          "tokens_used": round(res["tokens_used"], 6),
                          "tokens_used_fraction": round(res["tokens_used"] / full_tokens, 6) if full_tokens else None})
        out["certaindex_sweep"] = sweep
    return out


def find_summary(run: str | Path, benchmark: str) -> dict | None:
    """The summary of `benchmark` in a run folder / benchmark folder / summary.json (None if absent)."""
    p = Path(run)
    for cand in (p, p / "summary.json", p / benchmark / "summary.json"):
        if cand.is_file():
            s = json.loads(cand.read_text())
            if s.get("benchmark") == benchmark:
                return s
    return None


def aes_block(cfg: EvalConfig, summary: dict) -> dict:
    base = find_summary(cfg.baseline, summary["benchmark"])
    if base is None:
        log.warning("baseline %s has no %s summary: no AES", cfg.baseline, summary["benchmark"])
        return {}
    from conciser.eval.metrics import aes

    out = {"aes_baseline": str(cfg.baseline), "aes_alpha": cfg.aes_alpha, "aes_beta": cfg.aes_beta, "aes_gamma": cfg.aes_gamma}
    try:
        out.update(aes(accuracy=summary["accuracy"], tokens=summary["mean_tokens"], base_accuracy=base["accuracy"],
                       base_tokens=base["mean_tokens"] or 0, alpha=cfg.aes_alpha, beta=cfg.aes_beta, gamma=cfg.aes_gamma))
    except ValueError as exc:   # a baseline with zero accuracy or tokens has no relative change
        log.warning("no AES against %s: %s", cfg.baseline, exc)
        out.update(aes=None, aes_delta_length=None, aes_delta_accuracy=None)
    return out


def log_wandb(cfg: EvalConfig, results: dict[str, dict]) -> None:
    import wandb

    run = wandb.init(project=cfg.wandb_project, name=cfg.wandb_run_name or cfg.resolved_out().name, job_type="eval",
                     config={k: v for k, v in dataclasses.asdict(cfg).items() if k != "vllm_args"} | {"out_dir": str(cfg.resolved_out())})
    flat = {}
    for name, s in results.items():
        for k, v in s.items():
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                flat[f"eval/{name}/{k}"] = v
            elif k == "by_level":
                for lv, d in v.items():
                    for kk, vv in d.items():
                        flat[f"eval/{name}/level_{lv}/{kk}"] = vv
    run.log(flat)
    run.summary.update(flat)
    run.finish()
