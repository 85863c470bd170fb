"""The grading bench's results: one summary per corpus (verdicts, timings, how items were settled),
a cProfile summary of what is left, and the markdown report (see `bench.grading`)."""

from __future__ import annotations

import pstats
from collections import Counter

from bench._common import md_table, stamp
from bench.grading.corpus import Item


def settled_by(items: list[Item], block_size: int) -> dict[str, int]:
    """How the batch grader settles the items, counted per item: no answer to grade, the same pair
    again in its block (graded once), or the first of its pair in the block by a shortcut or the pool."""
    from conciser.rewards.grading import _extract, _math_text, _normalize, _shortcut
    from conciser.rewards.shortcuts import hopeless, numeric_verdict

    out: Counter = Counter()
    for start in range(0, len(items), block_size):
        seen = set()
        for it in items[start:start + block_size]:
            answer, _ = _extract(it.completion)
            if answer is None:
                out["no answer"] += 1
                continue
            key = (_normalize(it.gold), _normalize(answer))
            if key in seen:
                out["repeat of a pair in its block"] += 1
                continue
            seen.add(key)
            g, a = _math_text(key[0]), _math_text(key[1])
            if key[0] == key[1] and key[0]:
                out["answer = gold string"] += 1
            elif g is not None and a is not None and numeric_verdict(g, a) is not None:
                out["plain numbers"] += 1
            elif g is not None and a is not None and hopeless(g, a):
                out["hopeless answer"] += 1
            else:
                assert _shortcut(*key) is None
                out["worker pool (math-verify)"] += 1
    return dict(out)


def profile_summary(prof, top: int = 8) -> dict:
    """The `top` functions by own time, with their share of the profile's total."""
    st = pstats.Stats(prof)
    total = sum(v[2] for v in st.stats.values()) or 1.0
    rows = sorted(st.stats.items(), key=lambda kv: kv[1][2], reverse=True)[:top]
    return {"total_s": round(total, 3),
            "top": [{"function": f"{fn.rsplit('/', 2)[-1] if '/' in fn else fn}:{line}({name})", "calls": v[1],
                     "own_s": round(v[2], 3), "share": round(v[2] / total, 3)}
                    for (fn, line, name), v in rows]}


def _is_gold_string(it: Item) -> bool:
    from conciser.rewards.grading import _extract, _normalize

    answer, _ = _extract(it.completion)
    return answer is not None and bool(_normalize(it.gold)) and _normalize(answer) == _normalize(it.gold)


def summarize(items: list[Item], raw: dict, *, workers: int, block_size: int, deadline: float, hang_after: float,
              quick: bool, corpus: str = "bench") -> dict:
    """The results dict of one corpus: totals, per-category counts, verdict comparison, per-block
    timings, and how the batch grader settled the items (`raw` is what `runner.run_corpus` returns)."""
    from conciser.rewards.grading import extract_answer

    serial_res, batch_res, rows = raw["serial_res"], raw["batch_res"], raw["rows"]
    startup, warm, batch_hang = raw["startup"], raw["warm"], raw["batch_hang"]

    graded = sorted(set(serial_res) & set(batch_res))
    cats: dict[str, dict] = {}
    mismatches = []
    for i in graded:
        it, s, g = items[i], serial_res[i], batch_res[i]
        # A math-verify timeout makes the serial verdict "incorrect", as a deadline does the batch one.
        s_correct = s["correct"] and s["timeouts"] == 0 and not s["hang"]
        c = cats.setdefault(it.category, {"items": 0, "serial_correct": 0, "batch_correct": 0, "serial_timeouts": 0,
                                          "batch_timeouts": 0, "serial_hangs": 0, "serial_seconds": 0.0,
                                          "answer_is_gold_string": 0, "verdicts_differ": 0})
        c["items"] += 1
        c["serial_correct"] += s_correct
        c["batch_correct"] += g.correct
        c["serial_timeouts"] += s["timeouts"] > 0
        c["batch_timeouts"] += g.timed_out
        c["serial_hangs"] += s["hang"]
        c["serial_seconds"] += s["seconds"]
        c["answer_is_gold_string"] += _is_gold_string(it)
        if s_correct != g.correct:
            c["verdicts_differ"] += 1
            mismatches.append({"index": i, "category": it.category, "source": it.source, "gold": it.gold,
                               "answer": extract_answer(it.completion), "serial_correct": s_correct,
                               "serial_timeouts": s["timeouts"], "serial_hang": s["hang"],
                               "batch_correct": g.correct, "batch_error": g.error, "batch_timed_out": g.timed_out})
    for c in cats.values():
        c["serial_seconds"] = round(c["serial_seconds"], 3)

    def total(key: str) -> float:
        return sum(r.get(key, 0.0) for r in rows)

    n = sum(r["items"] for r in rows)
    serial_s, batch_s = total("serial"), total("batch")
    # What each side would take with the CPUs to itself: its wall time minus the time its processes
    # sat runnable waiting for a CPU other users held (for the batch side, averaged over workers).
    serial_free = serial_s - total("serial_wait")
    batch_free = batch_s - total("batch_wait") / workers
    rnd = lambda x, k=3: round(x, k) if x is not None else None  # noqa: E731
    return {
        "bench": "grading", "corpus": corpus, "date": stamp(), "mode": "quick" if quick else "full",
        "config": {"workers": workers, "block_size": block_size, "deadline_s": deadline, "hang_after_s": hang_after,
                   "serial_timeouts": "math-verify defaults: parse 5 s, verify 5 s per comparison"},
        "items": {"total": len(items), "graded": len(graded),
                  "answer_is_gold_string": sum(c["answer_is_gold_string"] for c in cats.values())},
        "settled_by": settled_by(items, block_size),
        "by_category": cats,
        "serial": {"seconds": rnd(serial_s), "items_per_s": rnd(n / serial_s, 2) if serial_s else None,
                   "cpu_s": rnd(total("serial_cpu")), "runqueue_wait_s": rnd(total("serial_wait")),
                   "items_with_timeout": sum(c["serial_timeouts"] for c in cats.values()),
                   "hangs": sum(c["serial_hangs"] for c in cats.values()),
                   "max_item_s": rnd(max((r["seconds"] for r in serial_res.values()), default=0.0)),
                   "seconds_on_gold_string_items": rnd(sum(serial_res[i]["seconds"] for i in graded
                                                           if _is_gold_string(items[i]))),
                   "startup_s": [round(x, 2) for x in raw["serial_startups"]]},
        "batch": {"seconds": rnd(batch_s), "items_per_s": rnd(n / batch_s, 2) if batch_s else None,
                  "cpu_s": rnd(total("batch_cpu")), "runqueue_wait_s": rnd(total("batch_wait")),
                  "timeouts": sum(c["batch_timeouts"] for c in cats.values()),
                  "hangs": int(batch_hang is not None), "hang": batch_hang,
                  "pool_startup_s": rnd(startup), "max_block_s": rnd(max((r["batch"] for r in rows), default=0.0)),
                  "warm_cache_items": warm[0], "warm_cache_seconds": rnd(warm[1]),
                  "warm_cache_items_per_s": rnd(warm[0] / warm[1], 1) if warm[1] else None},
        "ratio": rnd(serial_s / batch_s) if batch_s else None,
        "ratio_with_pool_startup": rnd(serial_s / (batch_s + startup)) if batch_s else None,
        "ratio_without_runqueue_wait": rnd(serial_free / batch_free) if batch_free > 0 else None,
        "blocks": [{k: (round(v, 3) if isinstance(v, float) else v) for k, v in r.items()} for r in rows],
        "verdicts": {"agree": len(graded) - len(mismatches), "disagree": len(mismatches), "mismatches": mismatches},
    }


def _cores(side: dict) -> str:
    return f"{side['cpu_s'] / side['seconds']:.2f}" if side.get("cpu_s") and side.get("seconds") else "-"


def _corpus_md(r: dict, intro: str) -> list[str]:
    s, b, v, cfg = r["serial"], r["batch"], r["verdicts"], r["config"]
    lines = [
        intro.format(n=r["items"]["graded"], block=cfg["block_size"], workers=cfg["workers"], deadline=cfg["deadline_s"]),
        "",
        md_table(["", "serial (open-r1 loop)", "batch grader"], [
            ["seconds", f"{s['seconds']:.1f}", f"{b['seconds']:.1f}"],
            ["items/s", s["items_per_s"], b["items_per_s"]],
            ["items timed out", s["items_with_timeout"], b["timeouts"]],
            ["hangs", s["hangs"], b["hangs"]],
            ["longest item (serial) / block (batch), s", s["max_item_s"], b["max_block_s"]],
            ["CPU seconds (graders' processes)", s["cpu_s"], b["cpu_s"]],
            ["seconds runnable but waiting for a CPU", s["runqueue_wait_s"], b["runqueue_wait_s"]],
            ["CPU cores the side got (CPU seconds / seconds)", _cores(s), _cores(b)],
        ]),
        "",
        f"**items/s ratio (batch / serial): {r['ratio']:.2f}×** "
        f"({r['ratio_with_pool_startup']:.2f}× counting the pool's one-off start-up of {b['pool_startup_s']:.1f} s). "
        f"Verdicts: {v['agree']} agree, {v['disagree']} differ. Hangs: serial {s['hangs']}, batch {b['hangs']}.",
        "",
        "Per block: " + ", ".join(f"{x['ratio']:.2f}" for x in r["blocks"]) + ".",
        "",
        f"Without the time other users' processes held the CPUs (each side's wall time minus its run-queue wait; "
        f"an estimate for an otherwise idle machine): {r['ratio_without_runqueue_wait']}×.",
        "",
    ]
    if b.get("warm_cache_items_per_s"):
        lines += [f"Warm cache ({b['warm_cache_items']} items graded again with their verdicts cached; the items that "
                  f"timed out are left out, since deadline timeouts are never cached): {b['warm_cache_items_per_s']} "
                  "items/s.", ""]
    lines += [
        "How the batch grader settled the items: " + ", ".join(f"{k} {n}" for k, n in r["settled_by"].items()) +
        f". The items whose answer is the gold string cost the serial loop {s['seconds_on_gold_string_items']:.1f} s.",
        "",
        md_table(["category", "items", "correct (serial / batch)", "timeouts (serial / batch)", "serial hangs",
                  "serial s", "answer = gold string", "verdicts differ"],
                 [[k, c["items"], f"{c['serial_correct']} / {c['batch_correct']}",
                   f"{c['serial_timeouts']} / {c['batch_timeouts']}", c["serial_hangs"], f"{c['serial_seconds']:.1f}",
                   c["answer_is_gold_string"], c["verdicts_differ"]] for k, c in r["by_category"].items()]),
    ]
    if v["mismatches"]:
        lines += ["", "Verdict differences:", "",
                  md_table(["category", "source", "gold", "answer", "serial", "batch"],
                           [[x["category"], x["source"], f"`{x['gold']}`", f"`{(x['answer'] or '')[:60]}`",
                             f"{x['serial_correct']} (timeouts {x['serial_timeouts']})",
                             f"{x['batch_correct']} ({x['batch_error']})"] for x in v["mismatches"][:40]])]
    return lines


BENCH_INTRO = ("{n} completions built from the bundled benchmarks, every (gold, completion) pair distinct, graded "
               "in blocks of {block} (serial and batch alternating which goes first). Batch grader: {workers} worker "
               "processes, {deadline:g} s deadline per item, verdict cache cleared before the pass. Serial: open-r1's "
               "loop (`parse`, `parse`, `verify` in the main thread, math-verify's own 5 s timeouts).")
RL_INTRO = ("{n} completions in groups of 16 per problem, answers repeating as in a GRPO step (mostly the gold, a few "
            "common wrong answers, some cut off; a few adversarial), graded in blocks of {block} (a training step's "
            "batch), serial and batch alternating. Same grader settings, verdict cache cleared before the pass.")


def to_markdown(r: dict) -> str:
    m, cfg = r["machine"], r["config"]
    lines = [
        f"# Grading throughput ({r['mode']}" + (", diagnostic: every grading process in its own session)"
                                                if cfg.get("own_sessions") else ")"),
        "",
        f"{r['date']} · {m['cpus']} CPUs, load average {m['load_avg_1m']} before / {m.get('load_avg_1m_after')} after "
        f"· scheduler autogroup {m.get('sched_autogroup', '?')} · math-verify {m.get('math-verify')}, sympy "
        f"{m.get('sympy')}, Python {m['python']}",
        "",
    ]
    if r.get("note"):
        lines += [r["note"], ""]
    lines += ["## The bench corpus", ""] + _corpus_md(r, BENCH_INTRO)
    if r.get("rl_shaped"):
        lines += ["", "## The RL-shaped corpus", ""] + _corpus_md(r["rl_shaped"], RL_INTRO)
    if r.get("profile"):
        lines += ["", "## What is left (cProfile)", ""]
        for key, title in (("batch_parent", "the batch calls in the training process (extraction, shortcuts, pool)"),
                           ("worker_judge", "the workers' math-verify work (every pair no shortcut settles, replayed)")):
            p = r["profile"].get(key)
            if p:
                lines += [f"{title}: {p['total_s']:.2f} s in all", "",
                          md_table(["function", "calls", "own s", "share"],
                                   [[f"`{x['function']}`", x["calls"], f"{x['own_s']:.3f}", f"{x['share']:.0%}"]
                                    for x in p["top"]]), ""]
    return "\n".join(lines).rstrip()
