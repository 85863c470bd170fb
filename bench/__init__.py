"""Performance harness: `python -m bench.run_all [--quick]` (`make bench`, `make bench-quick`).

    bench/grading.py           batch grader vs open-r1's serial math-verify loop (items/s, verdicts)
    bench/trainer_overhead.py  conciser's trainer vs stock TRL GRPOTrainer (median step time ratio)
    bench/toy_pareto.py        every method trained on the toy task: accuracy vs tokens

Results are ratios measured side by side in one run (shared machines are noisy); they are written to
bench/results/ (markdown + JSON) and summarised in bench/README.md.
"""
