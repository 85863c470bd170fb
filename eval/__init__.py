"""conciser's evaluation harness: benchmarks, backends, metrics, reports.

    from conciser.eval.run import evaluate
    summary = evaluate("path/to/model", benchmark="toy", n=4)   # {"accuracy": ..., "mean_tokens": ..., ...}

CLI: `conciser eval --help`. Modules: `config` (EvalConfig: every option, documented, validated; the
CLI is generated from it), `benchmarks` (registry + bundled offline test sets in data/), `backends`
(transformers generate, vLLM offline engine), `generate` (prompts, per-sample seeds, the crash-safe
samples file), `scoring` (gold pre-flight, grading, summary blocks), `metrics` (avg@n, pass@k, maj@k,
tokens, length adherence, AES), `voting` (answer clusters, certaindex, lfvote), `budget` (budget
sweeps), `dynasor` (Dynasor-CoT early exit), `run` (generate -> grade -> summarise, resumable),
`report` (tables, compare, Pareto plot, budget curves), `cli`.
"""
