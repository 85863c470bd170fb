"""Properties 1-5 of the `toy-scan` task, measured on a model (`conciser toy-base --task toy-scan --check`).

    from conciser.toy_scan_check import properties, budget_curve
    props = properties(Path(model), n=400, out_dir=Path("check"), budgets=(8, 16, 32), ample=table)

`table` is `conciser.toy_base_cli.check_toy_base`'s per-level result at an ample budget (P4). What each
property means and its bar: issue 12 and the docstring of `conciser.toy_base_cli`. CLI layer: P4 uses the
eval harness; the budget sweep samples and forces answers with transformers' generate itself, because
it needs the token ids of every completion.
"""

from __future__ import annotations

import json
import random
import statistics
from pathlib import Path
from typing import NamedTuple

from conciser import toy_scan
from conciser.rewards.grading import extract_answer, grade_toy

FORCE = toy_scan.THINK_CLOSE + "\\boxed{"          # the forced-answer text after a cut
SPREAD_SEED = toy_scan.EVAL_SEED + 1000            # problems for P1/P3/P5 (generator-only figures)


# ---------------------------------------------------------------- P1, P3, P5: the generator


def surface_features(p) -> list[float]:
    """What a predictor may read off the prompt without doing the additions: the start digit, the
    hint and its odds, every operand by position (padded to the longest level), and how often each digit occurs."""
    width = max(lv.k for lv in toy_scan.LEVELS.values())
    ops = list(p.operands) + [-1] * (width - len(p.operands))
    return [p.start, int(p.hint), p.sure, *ops, *(p.operands.count(d) for d in range(10))]


def _ridge_cv_mse(x, y, folds: int = 5, lam: float = 1.0) -> float:
    """Held-out mean squared error of a ridge regression (standardised features), `folds`-fold."""
    import numpy as np

    x, y = np.asarray(x, float), np.asarray(y, float)
    idx = np.arange(len(y)) % folds
    err = []
    for f in range(folds):
        tr, te = idx != f, idx == f
        mu, sd = x[tr].mean(0), x[tr].std(0) + 1e-9
        a = np.c_[np.ones(tr.sum()), (x[tr] - mu) / sd]
        reg = lam * np.eye(a.shape[1])
        reg[0, 0] = 0.0
        w = np.linalg.solve(a.T @ a + reg, a.T @ y[tr])
        pred = np.c_[np.ones(te.sum()), (x[te] - mu) / sd] @ w
        err.append(((pred - y[te]) ** 2).mean())
    return float(np.mean(err))


def length_spread(n: int = 400) -> dict:
    """P1 from the generator: per level the minimal length's mean, CV, min and max, and the held-out
    MSE of a ridge predictor on `surface_features` relative to the level mean's (within each level,
    and over all levels with the level as a feature too)."""
    levels = {}
    all_x, all_y = [], []
    for level in toy_scan.LEVELS:
        ps = toy_scan.make_problems(n, seed=SPREAD_SEED + level, levels=(level,))
        y = [p.minimal_tokens for p in ps]
        x = [surface_features(p) for p in ps]
        mean = statistics.fmean(y)
        base = _ridge_cv_mse([[0.0]] * len(y), y)   # a constant: the level mean, fit on the training folds
        levels[level] = {"mean": mean, "cv": statistics.pstdev(y) / mean, "min": min(y), "max": max(y),
                         "mse_level_mean": base, "mse_predictor": _ridge_cv_mse(x, y),
                         "predictor_over_level_mean": _ridge_cv_mse(x, y) / base}
        all_x += [f + [float(level == lv) for lv in toy_scan.LEVELS] for f in x]
        all_y += y
    onehot = [row[-len(toy_scan.LEVELS):] for row in all_x]
    return {"levels": levels,
            "all_levels_predictor_over_level_mean": _ridge_cv_mse(all_x, all_y) / _ridge_cv_mse(onehot, all_y)}


def generator_checks(tokenizer, n: int = 400) -> dict:
    """P3 and P5 from the generator: how often the hint is right (per level, and per printed odds over
    all levels), and whether every minimal trace is correct and exactly `minimal_tokens` long."""
    hint, exact, correct, total, by_sure = {}, 0, 0, 0, {s: [] for s in toy_scan.SURE}
    for level in toy_scan.LEVELS:
        ps = toy_scan.make_problems(n, seed=SPREAD_SEED + level, levels=(level,))
        hint[level] = statistics.fmean(p.hint == p.answer for p in ps)
        for p in ps:
            by_sure[p.sure].append(p.hint == p.answer)
            m = toy_scan.minimal_trace(p)
            exact += len(tokenizer(m, add_special_tokens=False).input_ids) == p.minimal_tokens
            correct += grade_toy(gold=p.answer, completion=m).correct
            total += 1
    return {"hint_accuracy": hint, "hint_accuracy_by_sure": {s: statistics.fmean(v) for s, v in by_sure.items()},
            "minimal_exact": exact, "minimal_correct": correct, "problems": total}


# ---------------------------------------------------------------- forced answers (P2, P3)


def _load(model: Path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model)
    tok.padding_side = "left"
    return AutoModelForCausalLM.from_pretrained(model).eval(), tok


def _generate(model, tok, prompts: list[str], prefixes: list[list[int]], max_new_tokens: int, sample: bool,
              batch_size: int = 64) -> list[list[int]]:
    """Token ids generated after chat prompt + completion prefix, for each pair (up to and with EOS;
    left-padded batches). Greedy, or sampled at the eval's defaults (T=0.6, top-p 0.95)."""
    import torch

    out = []
    for i in range(0, len(prompts), batch_size):
        rows = [tok(tok.apply_chat_template([{"role": "user", "content": q}], tokenize=False, add_generation_prompt=True),
                    add_special_tokens=False).input_ids + pre for q, pre in zip(prompts[i:i + batch_size], prefixes[i:i + batch_size])]
        width = max(map(len, rows))
        ids = torch.tensor([[tok.pad_token_id] * (width - len(r)) + r for r in rows])
        mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows])
        sampling = {"do_sample": True, "temperature": 0.6, "top_p": 0.95} if sample else {"do_sample": False}
        with torch.no_grad():
            gen = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=max_new_tokens, **sampling,
                                 pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
        for row in gen[:, width:].tolist():
            out.append(row[: row.index(tok.eos_token_id) + 1] if tok.eos_token_id in row else row)
    return out


def forced_answers(model, tok, prompts: list[str], prefixes: list[list[int]]) -> list[str]:
    """Greedy answers (up to 4 tokens, decoded) after prompt + completion prefix ending in the forced text."""
    return [tok.decode(ids) for ids in _generate(model, tok, prompts, prefixes, max_new_tokens=4, sample=False)]


def budget_curve(model_dir: Path, problems, budgets, seed: int = 0) -> dict:
    """P2: sample one completion per problem (T=0.6, top-p 0.95 as the eval; cap max(budgets) + 8), then
    for each budget B: a completion whose thinking ends within B tokens keeps its own answer; otherwise
    its first B tokens + "</think>\\boxed{" are answered greedily (one batched generate for all cuts).
    Returns {"budgets", "n_problems", "accuracy": {B: acc}, "mean_tokens": {B: tokens spent},
    "by_level": {level: {B: acc}}, "distinct_in_0.2_0.9": {level: count}}."""
    import torch

    model, tok = _load(model_dir)
    torch.manual_seed(seed)
    completions = _generate(model, tok, [p.prompt for p in problems], [[]] * len(problems),
                            max_new_tokens=max(budgets) + 8, sample=True)
    close = tok.convert_tokens_to_ids(toy_scan.THINK_CLOSE)
    force = tok(FORCE, add_special_tokens=False).input_ids
    verdict: dict[tuple[str, int], bool] = {}
    used: dict[tuple[str, int], int] = {}
    todo = []
    for p, ids in zip(problems, completions):
        end = ids.index(close) if close in ids else None
        natural = grade_toy(gold=p.answer, completion=tok.decode(ids)).correct
        for b in budgets:
            if end is not None and end <= b:
                verdict[p.id, b], used[p.id, b] = natural, len(ids)
            else:
                todo.append((p, b, ids[:b] + force))
                used[p.id, b] = min(b, len(ids)) + len(force) + 3   # + answer, "}", EOS
    answers = forced_answers(model, tok, [p.prompt for p, _, _ in todo], [pre for _, _, pre in todo])
    for (p, b, _), ans in zip(todo, answers):
        verdict[p.id, b] = grade_toy(gold=p.answer, completion=FORCE + ans).correct
    levels = sorted({p.level for p in problems})
    curve = {"budgets": list(budgets), "n_problems": len(problems),
             "accuracy": {b: statistics.fmean(verdict[p.id, b] for p in problems) for b in budgets},
             "mean_tokens": {b: statistics.fmean(used[p.id, b] for p in problems) for b in budgets},
             "by_level": {lv: {b: statistics.fmean(verdict[p.id, b] for p in problems if p.level == lv) for b in budgets}
                          for lv in levels}}
    curve["distinct_in_0.2_0.9"] = {lv: len({round(a, 6) for a in curve["by_level"][lv].values() if 0.2 < a < 0.9})
                                    for lv in levels}
    return curve


def hint_taking(model_dir: Path, problems) -> dict:
    """P3 on the model: force "<think> hmm, use the hint.</think>\\boxed{" and read the answer. Returns
    its accuracy (the shortcut's price) and how often it equals the hint (the model can take it)."""
    model, tok = _load(model_dir)
    prefix = tok(toy_scan.THINK_OPEN + " " + toy_scan.HINT_PHRASE + FORCE, add_special_tokens=False).input_ids
    answers = forced_answers(model, tok, [p.prompt for p in problems], [prefix] * len(problems))
    got = [extract_answer(FORCE + a) for a in answers]
    return {"accuracy": statistics.fmean(g == p.answer for g, p in zip(got, problems)),
            "equals_hint": statistics.fmean(g == p.hint for g, p in zip(got, problems))}


# ---------------------------------------------------------------- all together


class _Sample(NamedTuple):
    minimal: int        # the problem's minimal tokens
    tokens: int         # the sample's
    hint: bool          # it took the hint
    level: int
    sure: int


def overthinking(out_dir: Path, ample: dict, n: int) -> dict:
    """P4 from the ample-budget run (`check_toy_base`): per level accuracy and x minimal, the share
    over the default cap by quartile of needed length, how often the base took the hint (in all and
    by printed odds), and x minimal over the samples that scan (do not take the hint): the base's
    hint answers are short, so they pull the level's x minimal down without being less verbose."""
    rows: list[_Sample] = []
    for level in toy_scan.LEVELS:
        problems = {p.id: p for p in toy_scan.make_problems(n, seed=toy_scan.EVAL_SEED + level, levels=(level,))}
        for s in map(json.loads, (out_dir / f"level{level}" / "samples.jsonl").open()):
            p = problems[s["problem_id"]]
            rows.append(_Sample(p.minimal_tokens, s["tokens"], toy_scan.HINT_PHRASE in s["text"], level, p.sure))
    rows.sort()
    q = len(rows) // 4
    cap = toy_scan.DEFAULT_MAX_COMPLETION
    over = lambda rs: statistics.fmean(r.tokens > cap for r in rs)  # noqa: E731
    scanning = {lv: [r for r in rows if r.level == lv and not r.hint] for lv in toy_scan.LEVELS}
    sures = sorted({r.sure for r in rows})
    return {"levels": ample, "cap": cap, "over_cap_bottom_quartile": over(rows[:q]), "over_cap_top_quartile": over(rows[-q:]),
            "over_cap_all": over(rows), "hint_taken": statistics.fmean(r.hint for r in rows),
            "hint_taken_by_sure": {s: statistics.fmean(r.hint for r in rows if r.sure == s) for s in sures},
            "scanning_tokens_over_minimal": {lv: sum(r.tokens for r in rs) / sum(r.minimal for r in rs)
                                             for lv, rs in scanning.items() if rs}}


def properties(model: Path, n: int, out_dir: Path, budgets, ample: dict) -> dict:
    """Every property's figures for `model` (see the module docstring of conciser.toy_base_cli)."""
    _, tok = _load(model)
    per_level = max(1, min(n, 200))  # the forced-answer runs: 200 problems per level are plenty
    rng = random.Random(0)
    problems = [p for lv in toy_scan.LEVELS
                for p in toy_scan.make_problems(per_level, seed=toy_scan.EVAL_SEED + 500 + lv, levels=(lv,))]
    rng.shuffle(problems)
    return {"model": str(model), "P1_length_spread": length_spread(n), "P2_budget_curve": budget_curve(model, problems, budgets),
            "P3_hint": {**generator_checks(tok, n), "model_taking_hint": hint_taking(model, problems)},
            "P4_overthinking": overthinking(out_dir, ample, n)}


def print_properties(props: dict) -> None:
    p1 = props["P1_length_spread"]
    print("P1 needed length (minimal tokens) per level: mean, CV [bar >= 0.4], ridge-on-prompt MSE / level-mean MSE [~1 = no better]")
    for lv, r in p1["levels"].items():
        print(f"   level {lv}: mean {r['mean']:.1f} (min {r['min']}, max {r['max']}), CV {r['cv']:.3f}, "
              f"predictor/level-mean {r['predictor_over_level_mean']:.3f}")
    print(f"   all levels (level as a feature): predictor/level-mean {p1['all_levels_predictor_over_level_mean']:.3f}")
    c = props["P2_budget_curve"]
    print(f"P2 budget forcing ({c['n_problems']} problems): accuracy per thinking budget B; distinct values in (0.2, 0.9) per level [bar: >= 3 for half the levels]")
    print("   B      " + " ".join(f"{b:>5}" for b in c["budgets"]))
    print("   all    " + " ".join(f"{c['accuracy'][b]:>5.2f}" for b in c["budgets"]))
    for lv, row in c["by_level"].items():
        print(f"   L{lv}     " + " ".join(f"{row[b]:>5.2f}" for b in c["budgets"]) + f"   distinct: {c['distinct_in_0.2_0.9'][lv]}")
    p3 = props["P3_hint"]
    print("P3 shortcut: hint right per level [bar 0.6-0.8]: " + ", ".join(f"L{lv} {a:.2f}" for lv, a in p3["hint_accuracy"].items())
          + "; by printed odds: " + ", ".join(f"sure:{s} {a:.2f}" for s, a in p3["hint_accuracy_by_sure"].items())
          + f"; model made to take it: accuracy {p3['model_taking_hint']['accuracy']:.3f}, "
          f"answers the hint {p3['model_taking_hint']['equals_hint']:.3f}")
    p4 = props["P4_overthinking"]
    print(f"P4 overthinking: see the table above (bar: accuracy >= 0.90, x minimal >= 3); over the default cap {p4['cap']}: "
          f"all {p4['over_cap_all']:.3f}, shortest-quartile problems {p4['over_cap_bottom_quartile']:.3f}, "
          f"longest-quartile {p4['over_cap_top_quartile']:.3f}; hint taken in {p4['hint_taken']:.3f} of samples ("
          + ", ".join(f"sure:{s} {h:.2f}" for s, h in p4.get("hint_taken_by_sure", {}).items()) + "); x minimal of the "
          "samples that scan: " + ", ".join(f"L{lv} {x:.2f}" for lv, x in p4.get("scanning_tokens_over_minimal", {}).items()))
    print(f"P5 minimal length known: {p3['minimal_exact']}/{p3['problems']} minimal traces are exactly minimal_tokens long, "
          f"{p3['minimal_correct']}/{p3['problems']} grade correct")
