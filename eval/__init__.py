"""conciser's evaluation harness: benchmarks, backends, metrics, reports.

    from conciser.eval.run import evaluate
    summary = evaluate("path/to/model", benchmark="toy", n=4)   # {"accuracy": ..., "mean_tokens": ..., ...}

CLI: `conciser eval --help`. Modules: `benchmarks` (registry + bundled offline test sets in data/),
`backends` (transformers generate, vLLM offline engine), `metrics` (avg@n, pass@k, maj@k, tokens,
AES), `dynasor` (Dynasor-CoT early exit), `run` (generate -> grade -> summarise, resumable),
`report` (tables, compare, Pareto plot), `cli`.
"""
