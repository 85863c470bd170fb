"""The grading bench: its RL-shaped corpus, and a tiny real run of both corpora (no timings asserted).

Run: .venv/bin/pytest tests/test_bench_grading.py
"""

import json
from collections import Counter

from bench.grading import build_items, build_rl_items, run
from bench.grading.corpus import GROUP


def test_rl_corpus_is_groups_of_16_whose_answers_repeat():
    from conciser.rewards.grading import extract_answer

    items = build_rl_items()
    groups = [items[i:i + GROUP] for i in range(0, len(items), GROUP)]
    assert len(groups) >= 300 and all(len({it.source for it in g}) == 1 for g in groups)
    assert build_rl_items() == items  # deterministic
    cats = Counter(it.category for it in items)
    assert set(cats) == {"gold_string", "equivalent", "wrong", "truncated", "adversarial"}
    assert cats["gold_string"] > cats["equivalent"] and cats["adversarial"] == 24
    # Answers repeat within a group (as in GRPO), while every completion's text is its own.
    distinct = [len({extract_answer(it.completion) for it in g}) for g in groups]
    assert sum(distinct) / len(groups) < 6
    assert len({it.completion for it in items}) == len(items)
    # Groups are all right, all wrong and mixed, as a policy's are.
    right = [sum(it.category in ("gold_string", "equivalent") for it in g) for g in groups]
    assert min(right) == 0 and max(right) >= 15 and any(3 < r < 13 for r in right)
    quick = build_rl_items(quick=True)
    assert len(quick) == 48 * GROUP


def test_both_corpora_agree_with_the_open_r1_loop(tmp_path):
    bench = [it for it in build_items(quick=True) if it.category != "adversarial"][:24]
    rl = build_rl_items(quick=True)
    tower = next(it for it in rl if it.category == "adversarial" and "9^{9^{9^{9}}}" in it.completion)
    rl_items = rl[:2 * GROUP] + [tower]
    r = run(items=bench, rl_items=rl_items, block_size=20, out_dir=tmp_path, quick=True)

    for part, n in ((r, len(bench)), (r["rl_shaped"], len(rl_items))):
        assert part["verdicts"] == {"agree": n, "disagree": 0, "mismatches": []}
        assert part["serial"]["hangs"] == 0 and part["batch"]["hangs"] == 0
        assert part["ratio"] > 0 and sum(part["settled_by"].values()) == n
    rl_r = r["rl_shaped"]
    # a group's repeated answers are graded once; the tower is settled as hopeless, as the deadline would have
    assert rl_r["settled_by"]["repeat of a pair in its block"] > 5
    assert rl_r["settled_by"]["hopeless answer"] == 1
    assert rl_r["by_category"]["adversarial"] == {**rl_r["by_category"]["adversarial"], "serial_timeouts": 1,
                                                  "batch_timeouts": 1, "batch_correct": 0}
    assert r["profile"]["worker_judge"]["top"] and r["profile"]["batch_parent"]["top"]
    saved = json.loads((tmp_path / "grading.quick.json").read_text())
    assert {"ratio", "verdicts", "rl_shaped", "profile"} <= set(saved)
    assert {"ratio", "verdicts"} <= set(saved["rl_shaped"])
    md = (tmp_path / "grading.quick.md").read_text()
    assert "## The RL-shaped corpus" in md and "What is left (cProfile)" in md
