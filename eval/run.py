"""Evaluate a model on benchmarks: generate, grade with the training grader, summarise, save.

    from conciser.eval.run import evaluate
    summary = evaluate("path/to/model", benchmark="toy", n=4)          # transformers backend
    summary = evaluate("path/to/model", benchmark="math500", n=16, backend="vllm", out_dir="runs/eval/base")
    summary = evaluate(model, "toy", budgets=[16, 32, 64, 160])         # + budget_curve.json
    summary = evaluate(model, "toy", n=16, early_stop="certaindex", tau=0.8, round_size=4)

Options: `conciser.eval.config.EvalConfig` (one documented field per option; the CLI is built from it).
Per benchmark, `OUT/<benchmark>/` holds
  run.json       the generation settings; a re-run into the same folder must match them
  samples.jsonl  one line per sample, appended as samples finish (crash-safe): benchmark,
                 problem_id, sample, seed, answer (gold), text, prompt_tokens, tokens,
                 finish_reason ("stop" | "length" | "early_exit"), then after grading correct,
                 extracted, timed_out, grade_error; with --early-exit also probe_tokens, probes;
                 with --budgets also token_ids (the sweep cuts them)
  budget_samples.jsonl, budget_curve.json   with --budgets (see eval/budget.py)
  summary.json   the summary below
Re-running the same command resumes: only missing (problem, sample) pairs (and forced budget
answers) are generated, and samples already graded keep their verdict (`rescore=True` re-grades
all, without generating, e.g. with another `extraction`). Every sample has its own seed, so a
sample is the same whether generated in one go, in certaindex rounds, or after a crash, and `n`
can be raised later. Certaindex early stopping and budgets are not part of the run's identity: an
early-stopped run reads (and extends) the samples of a plain run with the same settings.

Summary keys (flat; None where undefined):
  benchmark, model, backend, n, n_problems, n_samples
  accuracy            avg@n: mean over problems of the fraction of correct samples (R1's "pass@1")
  accuracy_stderr     standard error of accuracy over problems
  pass@K              unbiased pass@k for each K in `ks` (default 1, 2, 4, ... up to n)
  maj@K, lfvote@K     majority vote over the first K samples (answers clustered by equivalence), and
                      the length-filtered vote (eval/voting.py), for K > 1
  mean_tokens, median_tokens, p90_tokens                       all samples (generated token ids)
  mean_tokens_correct, ..._incorrect (and median/p90 of each)  correct / incorrect samples
  max_tokens_seen, truncation_rate (finish "length"), no_answer_rate
  accuracy_per_1k_tokens   accuracy / (mean_tokens / 1000)
  grading_timeouts, grading_errors   samples whose grading timed out / whose grader failed
  gold_unparseable    golds that could not be parsed (their problems were dropped; else the run stopped)
  extraction          "boxed" | "lenient": how answers were read
  protocol            where n / temperature / top_p / max_new_tokens came from: "command line",
                      "benchmark" (pinned, e.g. AIME avg@16), "budgets" or "default"
  budgets, budget_auc                   with --budgets (the curve is in budget_curve.json)
  early_stop, certaindex_tau, certaindex_round, early_stop_accuracy, samples_used, tokens_used
                      (means per problem), full_tokens (per problem, all n samples; None unless every
                      problem has all n), tokens_used_fraction, certaindex_sweep [{tau, accuracy,
                      samples_used, tokens_used, tokens_used_fraction}]   with --early-stop / --tau-sweep
                      (then accuracy, pass@k, maj@k are over the samples present: k <= the fewest)
  length_deviation, length_score, length_by_target   samples with a target length (eval/metrics.py)
  aes, aes_delta_length, aes_delta_accuracy, aes_baseline, aes_alpha, aes_beta, aes_gamma
                      only with `baseline=RUN` (AES of O1-Pruner; defaults alpha=1, beta=3, gamma=5)
  mean_probe_tokens, mean_total_tokens, early_exit_rate, dynasor_window, dynasor_chunk
                      only with early_exit="dynasor" (mean_tokens is then the main trajectory)
  mean_minimal_tokens, tokens_over_minimal   toy only: mean tokens / mean minimal tokens (1.0 = limit)
  by_level            {level (a string, as in JSON): {n_problems, accuracy, mean_tokens,
                      truncation_rate[, mean_minimal_tokens]}} when problems have a level (toy, MATH-500)
  temperature, top_p, max_new_tokens, seed, template, system_prompt, chat_template, think_prefilled,
  grader, source, early_exit
  samples_generated, generation_seconds, grading_seconds   this invocation only (VOLATILE_KEYS)
The returned dict equals the saved summary.json.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

from conciser.errors import UserError
from conciser.eval.benchmarks import Benchmark, Problem, load_benchmark
from conciser.eval.config import DEFAULT_TEMPERATURE, DEFAULT_TOP_P, EvalConfig, default_ks, make_config, validate
from conciser.eval.generate import (Prompts, SampleGenerator, backend_factory, check_identity, identity, load_tokenizer,
                                    read_samples, render_prompts, with_targets, write_samples)
from conciser.eval.scoring import (aes_block, by_problem, check_golds, early_stop_block, equivalence, grade_records,
                                   log_wandb)

log = logging.getLogger(__name__)

# Keys of a summary that describe this invocation rather than the results.
VOLATILE_KEYS = ("samples_generated", "generation_seconds", "grading_seconds")


@dataclass
class Plan:
    """One benchmark's resolved protocol and problems."""

    bench: Benchmark
    problems: list[Problem]
    n: int
    temperature: float
    top_p: float
    ks: list[int]
    protocol: dict
    gold_unparseable: int = 0
    prompts: Prompts | None = None


def _plan(cfg: EvalConfig, bench: Benchmark) -> Plan:
    pinned = bench.pinned

    def pick(name: str, default):
        given = getattr(cfg, name)
        if given is not None:
            return given, "command line"
        if pinned.get(name) is not None:
            return pinned[name], "benchmark"
        return default, "default"

    n, n_src = pick("n", 1)
    temperature, t_src = pick("temperature", DEFAULT_TEMPERATURE)
    top_p, p_src = pick("top_p", DEFAULT_TOP_P)
    mx_src = "budgets" if cfg.budgets else ("command line" if cfg.max_new_tokens is not None else "benchmark")
    ks = sorted(set(cfg.ks)) if cfg.ks else default_ks(n)
    bad = [k for k in ks if k > n]
    if bad:
        raise UserError(f"--k: pass@k/maj@k with k={bad} needs n >= k samples per problem, but {bench.name} runs n={n}; "
                        f"raise --n to {max(bad)} or drop those k")
    if (cfg.early_stop or cfg.tau_sweep) and cfg.resolved_round() > n:
        raise UserError(f"--round: rounds of K={cfg.resolved_round()} samples need n >= K, but {bench.name} runs n={n}")
    problems = bench.problems[: cfg.limit] if cfg.limit else bench.problems
    return Plan(bench, problems, int(n), float(temperature), float(top_p), ks,
                {"n": n_src, "temperature": t_src, "top_p": p_src, "max_new_tokens": mx_src})


def evaluate_many(cfg: EvalConfig, _backend=None) -> dict[str, dict]:
    """Run every benchmark of `cfg`; returns {benchmark: summary}. All input is checked first (options,
    data files, gold answers), before the tokenizer or the model is loaded.
    `_backend`: an already started backend for `cfg.model` to reuse (tests); it is not closed here."""
    validate(cfg)
    max_new = max(cfg.budgets) if cfg.budgets else cfg.max_new_tokens
    benches = [load_benchmark(b, columns=cfg.columns, split=cfg.split, grader=cfg.grader, template=cfg.template,
                              max_new_tokens=max_new) for b in cfg.benchmarks]
    if len({b.name for b in benches}) != len(benches):
        raise UserError(f"--benchmarks: two benchmarks have the same name ({[b.name for b in benches]}); "
                        "rename one of the files")
    out_root = cfg.resolved_out()
    if cfg.rescore:
        missing = [b.name for b in benches if not (out_root / b.name / "samples.jsonl").exists()]
        if missing:
            raise UserError(f"--rescore: no samples.jsonl for {missing} under {out_root}; run without --rescore first")
    plans = [_plan(cfg, b) for b in benches]
    for plan in plans:
        plan.problems, plan.gold_unparseable = check_golds(plan.bench, plan.problems, cfg)
        if not plan.problems:
            raise UserError(f"{plan.bench.name}: no problem left to evaluate")
        if cfg.target_lengths:
            plan.problems = with_targets(plan.problems, cfg.target_lengths, cfg.target_prompt)

    tokenizer = load_tokenizer(cfg.model)
    for plan in plans:
        plan.prompts = render_prompts(tokenizer, plan.bench, plan.problems, system_prompt=cfg.system_prompt,
                                      chat_template=cfg.chat_template, think=cfg.think)
    longest = max(len(i) for p in plans for i in p.prompts.ids)
    extra_room = (cfg.dynasor_probe_tokens + 64 if cfg.early_exit else 0) + (cfg.budget_answer_tokens + 64 if cfg.budgets else 0)
    max_len = longest + max(p.bench.max_new_tokens for p in plans) + extra_room

    backend = None

    def get_backend():
        nonlocal backend
        if _backend is not None:
            return _backend
        if backend is None:
            backend = backend_factory(cfg, tokenizer, max_len)
        return backend

    results = {}
    try:
        for plan in plans:
            results[plan.bench.name] = _evaluate_one(cfg, plan, tokenizer, get_backend)
    finally:
        if backend is not None:
            backend.close()
    if cfg.wandb:
        log_wandb(cfg, results)
    return results


def _contiguous(group: list[dict]) -> list[dict]:
    out = []
    for r in group:
        if r["sample"] != len(out):
            break
        out.append(r)
    return out


def _generate_in_rounds(cfg: EvalConfig, plan: Plan, gen: SampleGenerator, records: list[dict], grade, equal) -> None:
    """Certaindex early stopping: each problem gets rounds of K samples until its answers agree
    (certaindex >= tau) or it has n; the samples of each round are graded before the next."""
    from conciser.eval.voting import pair_verdicts, samples_needed

    k, tau = cfg.resolved_round(), cfg.resolved_tau()
    while True:
        grade([r for r in records if "correct" not in r])
        groups = {g[0]["problem_id"]: _contiguous(g) for g in by_problem([r for r in records if r["sample"] < plan.n])}
        same = pair_verdicts([[r["extracted"] for r in g] for g in groups.values()], equal)
        todo = []
        for p in plan.problems:
            prefix = groups.get(p.id, [])
            if samples_needed([r["extracted"] for r in prefix], tau=tau, k=k, n=plan.n, same=same) is None:
                end = min((len(prefix) // k + 1) * k, plan.n)
                todo += [(p, j) for j in range(end)]
        if not gen.missing(todo):
            return
        gen(todo)


def _evaluate_one(cfg: EvalConfig, plan: Plan, tokenizer, get_backend) -> dict:
    bench, problems, prompts = plan.bench, plan.problems, plan.prompts
    out = cfg.resolved_out() / bench.name
    out.mkdir(parents=True, exist_ok=True)
    sampling = {"temperature": plan.temperature, "top_p": plan.top_p, "max_new_tokens": bench.max_new_tokens}
    ident = identity(cfg, bench, prompts, sampling)
    samples_path = out / "samples.jsonl"
    if cfg.overwrite:
        for f in ("samples.jsonl", "summary.json", "budget_samples.jsonl", "budget_curve.json"):
            (out / f).unlink(missing_ok=True)
    check_identity(out / "run.json", ident, cfg.overwrite)
    (out / "run.json").write_text(json.dumps(ident, indent=2) + "\n")

    records = read_samples(samples_path)
    if cfg.budgets and not cfg.rescore and any("token_ids" not in r for r in records):
        # The sweep cuts token ids; samples saved by a plain run lack them: generate those again.
        records[:] = [r for r in records if "token_ids" in r]
        write_samples(samples_path, records)
    index = {p.id: i for i, p in enumerate(problems)}
    equal = equivalence(bench.grader, cfg.grading_timeout, cfg.grading_workers)
    grade_seconds = 0.0

    def grade(rows: list[dict], texts: list[str] | None = None) -> None:
        nonlocal grade_seconds
        t0 = time.time()
        grade_records(rows, bench.grader, prefill=prompts.think_prefill, timeout=cfg.grading_timeout,
                      workers=cfg.grading_workers, progress=cfg.progress, extraction=cfg.extraction, texts=texts)
        grade_seconds += time.time() - t0

    gen = SampleGenerator(cfg, bench, problems, prompts, tokenizer, get_backend, samples_path, records,
                          temperature=plan.temperature, top_p=plan.top_p, keep_ids=bool(cfg.budgets), equal=equal)
    all_pairs = [(p, j) for p in problems for j in range(plan.n)]
    if cfg.rescore:
        if gen.missing(all_pairs) and not cfg.early_stop:
            log.warning("%s: --rescore grades the %d saved samples; %d are missing (run without --rescore to generate them)",
                        bench.name, len(records), len(gen.missing(all_pairs)))
    elif cfg.early_stop and not cfg.tau_sweep:
        _generate_in_rounds(cfg, plan, gen, records, grade, equal)
    else:
        gen(all_pairs)

    to_grade = records if cfg.rescore else [r for r in records if "correct" not in r]
    grade(to_grade)
    if to_grade or gen.generated:
        records.sort(key=lambda r: (index.get(r["problem_id"], len(index)), r["problem_id"], r["sample"]))
        write_samples(samples_path, records)

    selected = [r for r in records if r["problem_id"] in index and r["sample"] < plan.n]
    if not selected:
        raise UserError(f"{samples_path} has no samples of the selected problems")
    meta = {p.id: p.meta for p in problems}
    for r in selected:
        for key in ("level", "minimal_tokens", "target_length"):
            if key in meta[r["problem_id"]]:
                r.setdefault(key, meta[r["problem_id"]][key])

    summary = {"benchmark": bench.name, "model": cfg.model, "backend": cfg.backend, "n": plan.n}
    from conciser.eval.metrics import summarize

    fewest = min(len(g) for g in by_problem(selected))
    summary.update(summarize(selected, n=plan.n, ks=[k for k in plan.ks if k <= fewest], equivalent=equal,
                             lfvote_bins=cfg.lfvote_bins, lfvote_keep=cfg.lfvote_keep))
    summary.update({k: ident[k] for k in ("temperature", "top_p", "max_new_tokens", "seed", "template",
                                          "system_prompt", "chat_template", "think_prefilled", "grader", "source",
                                          "early_exit")})
    summary.update(extraction=cfg.extraction, protocol=plan.protocol, gold_unparseable=plan.gold_unparseable)
    if cfg.early_exit:
        summary.update(dynasor_window=cfg.dynasor_window, dynasor_chunk=cfg.dynasor_chunk)
    if cfg.early_stop or cfg.tau_sweep:
        summary.update(early_stop_block(cfg, selected, plan.n, equal))
    forced, forced_seconds = 0, 0.0
    if cfg.budgets:
        forced, forced_seconds = _budget_sweep(cfg, plan, out, tokenizer, get_backend, selected, grade, summary)
    if cfg.baseline is not None:
        summary.update(aes_block(cfg, summary))
    summary.update(samples_generated=0 if cfg.rescore else gen.generated + forced,
                   generation_seconds=round(gen.seconds + forced_seconds, 2), grading_seconds=round(grade_seconds, 2))
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    if cfg.print_table:
        from conciser.eval.report import print_summary

        curve = out / "budget_curve.json"
        print_summary(summary, curve=json.loads(curve.read_text()) if cfg.budgets else None)
    return summary


def _budget_sweep(cfg: EvalConfig, plan: Plan, out: Path, tokenizer, get_backend, selected: list[dict], grade,
                  summary: dict) -> tuple[int, float]:
    """Generate and grade the forced answers, save budget_curve.json; returns how many were generated
    and the seconds that took."""
    from conciser.eval.budget import BudgetSweep, budget_auc

    sweep = BudgetSweep(out, plan.bench, cfg.budgets, plan.prompts, {p.id: i for i, p in enumerate(plan.problems)},
                        tokenizer, seed=cfg.seed, answer_tokens=cfg.budget_answer_tokens)
    if not cfg.rescore and sweep.todo(selected):
        sweep.generate(get_backend(), selected, temperature=plan.temperature, top_p=plan.top_p, progress=cfg.progress)
    sweep.grade(selected, grade, rescore=cfg.rescore)
    curve = sweep.curve(selected)
    sweep.save_curve(curve)
    summary.update(budgets=sweep.budgets, budget_auc=budget_auc(curve), budget_answer_tokens=cfg.budget_answer_tokens)
    return sweep.generated, sweep.seconds


def evaluate(model: str, benchmark: str = "toy", n: int | None = None, out_dir: str | Path | None = None,
             backend: str = "transformers", **more) -> dict:
    """Evaluate `model` on one benchmark and return its summary (see the module docstring for keys).

    `more` takes any other `EvalConfig` field (limit, temperature, ks, budgets, early_stop, baseline,
    columns, template, think, ...). Outputs go to `out_dir/<benchmark>/` (default
    `eval_runs/<model folder name>/<benchmark>/`).
    """
    cfg = make_config(model, benchmarks=[benchmark], n=n, out_dir=out_dir, backend=backend, **more)
    return next(iter(evaluate_many(cfg).values()))
