"""The front a perfect policy could trace on toy-scan, before any training: for each price per token,
the best "scan j steps, then answer from the hint" policy per level, and the accuracy and length it gets.

    python -m bench.shortcut_front [--prices 0.001,0.005,...]

A policy on toy-scan can only shorten below the minimal trace by giving up: scan j steps (the stop comes
at step h, drawn from the level's distribution) and, if it has not come yet, answer from the hint (right
with the probability printed in the prompt, sure/10). For a reward "correct - price x tokens" the best j
per level and printed odds is computed exactly from the generator's distributions and the toy
tokenizer's token counts. Length rewards differ in the price they put on a token, so the points this
front has are the points trained methods can separate into; a front with one point for every price a
reward imposes means every method ends at the same place (as it did when every hint was right 60%: the
minimal trace up to 0.012 a token, then whole levels to the hint at once).
Results: bench/results/shortcut_front_toy_scan.md.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from bench._common import RESULTS, md_table, stamp

PRICES = (0.001, 0.003, 0.004, 0.005, 0.006, 0.008, 0.01, 0.012, 0.015, 0.02, 0.025, 0.03, 0.04, 0.05)


def stop_probs(k: int, alpha: float) -> list[float]:
    """P(h) for h = 1..k, proportional to h^-alpha: the toy-scan generator's stop distribution."""
    w = [h ** -alpha for h in range(1, k + 1)]
    return [x / sum(w) for x in w]


def give_up(probs: list[float], j: int, *, hint_accuracy: float, step_tokens: int, hint_tokens: int,
            minimal) -> tuple[float, float]:
    """(accuracy, mean tokens) of "scan at most j steps, then answer from the hint" (j = len(probs): never give up)."""
    acc = tokens = 0.0
    for h, p in enumerate(probs, 1):
        if h <= j:
            acc, tokens = acc + p, tokens + p * minimal(h)
        else:
            acc, tokens = acc + p * hint_accuracy, tokens + p * (step_tokens * j + hint_tokens)
    return acc, tokens


def front(prices=PRICES) -> dict:
    """The best give-up policy per level and printed odds for each price, on the toy-scan task as the generator
    defines it (levels weigh equally, odds uniformly, as in the benchmark)."""
    import random

    from conciser import toy_scan as ts

    tok = ts.build_tokenizer()
    hint_tokens = len(tok(ts.hint_trace(ts.make_problem(random.Random(0), 5)), add_special_tokens=False)["input_ids"])
    step_tokens = ts.minimal_tokens(2) - ts.minimal_tokens(1)   # one scanned step that does not stop
    levels = {lv: stop_probs(spec.k, spec.alpha) for lv, spec in ts.LEVELS.items()}
    minimal = {lv: sum(q * ts.minimal_tokens(h) for h, q in enumerate(ps, 1)) for lv, ps in levels.items()}
    args = dict(step_tokens=step_tokens, hint_tokens=hint_tokens, minimal=ts.minimal_tokens)
    options = {(lv, sure): [(j, *give_up(ps, j, hint_accuracy=sure / 10, **args)) for j in range(len(ps) + 1)]
               for lv, ps in levels.items() for sure in ts.SURE}
    rows = []
    for price in prices:
        per = {cell: max(opts, key=lambda o: o[1] - price * o[2]) for cell, opts in options.items()}  # (j, acc, tokens)
        acc = sum(a for _, a, _ in per.values()) / len(per)
        tokens = sum(t for _, _, t in per.values()) / len(per)
        rows.append({"price": price, "accuracy": acc, "mean_tokens": tokens,
                     "tokens_over_minimal": tokens / (sum(minimal.values()) / len(minimal)),
                     "steps_before_hint": {lv: {sure: per[lv, sure][0] for sure in ts.SURE} for lv in levels}})
    points = sorted({(round(r["accuracy"], 4), round(r["tokens_over_minimal"], 4)) for r in rows})
    return {"date": stamp(), "sure": list(ts.SURE), "hint_tokens": hint_tokens, "step_tokens": step_tokens,
            "levels": {lv: {"k": s.k, "alpha": s.alpha} for lv, s in ts.LEVELS.items()}, "rows": rows,
            "distinct_points": len(points)}


def to_markdown(r: dict) -> str:
    lines = [f"# Shortcut front (toy-scan, before training) -- {r['date']}", "",
             f"The best \"scan j steps, then answer from the hint\" policy per level, for a reward correct - price x "
             f"tokens, per level and printed odds (hint right sure/10, sure in {r['sure']}; {r['hint_tokens']} tokens; "
             f"each step scanned before it {r['step_tokens']} more). j = k: never gives up (the minimal trace, accuracy 1); "
             f"j = 0: the hint at once. {r['distinct_points']} distinct points over {len(r['rows'])} prices.", ""]

    def cells(per_level: dict) -> str:   # "L4 sure 8,9" -- the odds at which a level gives up (steps first, if any)
        out = []
        for lv, by in per_level.items():
            given = {s: j for s, j in by.items() if j < r["levels"][lv]["k"]}
            if given:
                out.append(f"L{lv} sure " + ",".join(f"{s}" if j == 0 else f"{s}(after {j})" for s, j in given.items()))
        return "; ".join(out) or "none"

    body = [[f"{x['price']:g}", f"{x['accuracy']:.3f}", f"{x['mean_tokens']:.1f}", f"{x['tokens_over_minimal']:.2f}x",
             cells(x["steps_before_hint"])] for x in r["rows"]]
    lines.append(md_table(["price per token", "accuracy", "mean tokens", "tokens / minimal",
                           "answers from the hint at once (level, printed odds)"], body))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.shortcut_front", description=__doc__.split("\n")[0])
    ap.add_argument("--prices", default=",".join(map(str, PRICES)), help="comma-separated prices per token")
    ap.add_argument("--out", default=str(RESULTS), help="where shortcut_front_toy_scan.md goes")
    args = ap.parse_args(argv)
    try:
        prices = [float(x) for x in args.prices.split(",")]
    except ValueError:
        ap.error(f"--prices must be comma-separated numbers, got {args.prices!r}")
    if any(p < 0 for p in prices):
        ap.error(f"--prices must be >= 0 (a price per token against a correctness reward of 1), got {args.prices!r}")
    md = to_markdown(front(prices))
    (Path(args.out) / "shortcut_front_toy_scan.md").write_text(md + "\n")
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
