"""`conciser ranker`: train a length ranker on eval samples, and score prompts with it.

    conciser eval --model M --benchmark toy --n 4 --out runs/eval/m          # the training data
    conciser ranker train --samples runs/eval/m/toy/samples.jsonl --out runs/ranker-m \\
        [--backbone toy|PATH] [--list-size 32] [--epochs 5] [--lr LR] [--heldout 0.1]
    conciser ranker score --ranker runs/ranker-m --prompts prompts.jsonl [--out scores.jsonl]

`train` reads each `samples.jsonl` with the `run.json` beside it (which benchmark, which template),
rebuilds every sample's prompt as the model saw it in the user turn, and fits the ranker on
(prompt, mean generated tokens over the prompt's samples). It prints and saves the held-out Kendall
tau and pair accuracy, beside the tau of one baseline: the prompt's length in characters. Bad input
fails before any model is built: a missing file, samples without token counts, a problem id the
benchmark does not have, one distinct length, too few prompts for one list.

`score` reads prompts from a .jsonl file (a "prompt" field: text or chat messages, whose last user
turn is taken; or "problem"/"question") or a text file (one prompt per line) and writes one JSON
line per prompt: prompt, score (higher = longer answer expected), quantile (0..1 among the
training prompts).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

from conciser.errors import UserError
from conciser.eval.ranker import RankerConfig, kendall_tau


def _benchmark_for(samples: Path, spec: str | None, columns: str | None):
    """The benchmark whose problems `samples` answered: `spec` if given, else the one named in run.json."""
    from conciser.eval.benchmarks import known_benchmarks, load_benchmark

    cols = dict(part.split("=", 1) for part in columns.split(",")) if columns else None
    run_json = samples.parent / "run.json"
    ident = json.loads(run_json.read_text()) if run_json.is_file() else {}
    template = ident.get("template")
    if spec is None:
        source, name = str(ident.get("source", "")), ident.get("benchmark")
        if source.startswith("local file "):
            spec = source[len("local file "):]
        elif name in known_benchmarks():
            spec = name
        else:
            why = f"{run_json} names benchmark {name!r} ({source})" if ident else f"there is no {run_json}"
            raise UserError(f"--samples {samples}: {why}, which cannot be reloaded; give --benchmark (and --columns) "
                            "as you gave them to conciser eval")
    return load_benchmark(spec, columns=cols, template=template)


def read_pairs(samples_files: list[str], benchmark: str | None = None, columns: str | None = None):
    """(prompts, mean tokens per prompt, samples per prompt) from eval samples files."""
    by_prompt: dict[str, list[int]] = defaultdict(list)
    for name in samples_files:
        path = Path(name)
        if not path.is_file():
            raise UserError(f"--samples {name}: no such file; give the samples.jsonl of a `conciser eval` run "
                            "(RUN/<benchmark>/samples.jsonl)")
        bench = _benchmark_for(path, benchmark, columns)
        problems = {p.id: p for p in bench.problems}
        rows = 0
        for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise UserError(f"{path}:{lineno}: not a JSON line ({exc})") from None
            tokens = row.get("tokens")
            if isinstance(tokens, bool) or not isinstance(tokens, int) or tokens < 0:
                raise UserError(f"{path}:{lineno}: no token count (field 'tokens' = {tokens!r}); the ranker learns from "
                                "generated token counts, which `conciser eval` writes -- re-run it to produce samples")
            pid = row.get("problem_id")
            if pid not in problems:
                raise UserError(f"{path}:{lineno}: problem_id {pid!r} is not in benchmark {bench.name!r} ({bench.source}); "
                                "give the --benchmark these samples came from")
            by_prompt[bench.user_message(problems[pid])].append(tokens)
            rows += 1
        if rows == 0:
            raise UserError(f"--samples {name}: no samples in the file")
    prompts = list(by_prompt)
    return prompts, [sum(v) / len(v) for v in by_prompt.values()], [len(v) for v in by_prompt.values()]


def read_prompts(path: str) -> list[str]:
    p = Path(path)
    if not p.is_file():
        raise UserError(f"--prompts {path}: no such file; give a .jsonl file with a 'prompt' field or a text file, one prompt per line")
    if p.suffix != ".jsonl":
        return [line for line in p.read_text(encoding="utf-8").splitlines() if line.strip()]
    out = []
    for lineno, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        row = json.loads(line)
        text = next((row[k] for k in ("prompt", "problem", "question") if k in row), None)
        if isinstance(text, list):   # chat messages: the last user turn
            text = next((m.get("content") for m in reversed(text) if m.get("role") == "user"), None)
        if not isinstance(text, str):
            raise UserError(f"{path}:{lineno}: no prompt text (a 'prompt', 'problem' or 'question' field)")
        out.append(text)
    return out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=["train", "score"], help="train: fit a ranker on eval samples; score: rank prompts")
    g = parser.add_argument_group("train")
    g.add_argument("--samples", action="append", default=[], help="a samples.jsonl of `conciser eval` (repeat for more)")
    g.add_argument("--benchmark", help="the benchmark the samples answered (default: read from run.json beside them)")
    g.add_argument("--columns", help="for your own benchmark file: question=COL,answer=COL[,id=COL] as given to conciser eval")
    d = RankerConfig()
    g.add_argument("--backbone", default=d.backbone, help="'toy' (tiny random-init Qwen2 on the toy tokenizer) or an HF model folder")
    g.add_argument("--list-size", type=int, default=d.list_size, help=f"prompts per ListMLE list (default {d.list_size})")
    g.add_argument("--epochs", type=int, default=d.epochs, help=f"passes over the training prompts (default {d.epochs})")
    g.add_argument("--lr", type=float, default=None, help="Adam learning rate (default 2e-5 for a folder backbone, 1e-3 for toy)")
    g.add_argument("--weight-decay", type=float, default=d.weight_decay, help=f"Adam weight decay (default {d.weight_decay})")
    g.add_argument("--heldout", type=float, default=d.heldout, help=f"fraction of prompts held out for Kendall's tau (default {d.heldout})")
    g.add_argument("--max-length", type=int, default=d.max_length, help=f"prompt tokens the ranker reads (default {d.max_length})")
    g.add_argument("--seed", type=int, default=d.seed)
    g = parser.add_argument_group("score")
    g.add_argument("--ranker", help="a ranker folder (what `train --out` wrote)")
    g.add_argument("--prompts", help=".jsonl with a 'prompt' field, or a text file with one prompt per line")
    parser.add_argument("--out", help="train: the ranker folder to write; score: a .jsonl to write (default stdout)")


def _train(args: argparse.Namespace) -> int:
    from conciser.eval import ranker

    if not args.samples:
        raise UserError("ranker train: give --samples RUN/<benchmark>/samples.jsonl (from conciser eval)")
    if not args.out:
        raise UserError("ranker train: give --out DIR, the folder to write the ranker to")
    if args.max_length < 1:
        raise UserError(f"--max-length must be >= 1 token, got {args.max_length}")
    cfg = RankerConfig(backbone=args.backbone, list_size=args.list_size, epochs=args.epochs, lr=args.lr,
                       weight_decay=args.weight_decay, heldout=args.heldout, max_length=args.max_length, seed=args.seed)
    if cfg.backbone != "toy" and not Path(cfg.backbone, "config.json").is_file():
        raise UserError(f"--backbone {cfg.backbone}: no config.json there; give a local HF model folder or 'toy'")
    prompts, lengths, counts = read_pairs(args.samples, args.benchmark, args.columns)
    ranker.check_data(prompts, lengths, cfg)   # before any model is built
    print(f"{len(prompts)} prompts ({sum(counts)} samples), mean length {sum(lengths) / len(lengths):.1f} tokens "
          f"(min {min(lengths):.1f}, max {max(lengths):.1f})")
    model, tok, result, train_scores = ranker.train(prompts, lengths, cfg)
    _, held_idx = ranker.split_heldout(prompts, cfg.heldout, cfg.seed)
    # How much of the order a trivial feature already gives: the prompt's length in characters.
    chars, truth = [len(prompts[j]) for j in held_idx], [lengths[j] for j in held_idx]
    baseline = kendall_tau(chars, truth)
    extra = {"samples": [str(Path(s).resolve()) for s in args.samples], "n_samples": sum(counts),
             "kendall_tau_prompt_chars": baseline, "pair_accuracy_prompt_chars": ranker.pair_accuracy(chars, truth)}
    ranker.save(Path(args.out), model, tok, cfg, result, train_scores, extra)
    fmt = lambda v: "-" if v is None else f"{v:.3f}"  # noqa: E731
    print(f"held-out ({result.n_heldout} prompts): Kendall tau {fmt(result.kendall_tau)}, pair accuracy "
          f"{fmt(result.pair_accuracy)} (prompt length in characters alone: tau {fmt(baseline)}, pair accuracy "
          f"{fmt(extra['pair_accuracy_prompt_chars'])}); "
          f"{result.n_train} training prompts, {result.train_seconds:.0f} s; wrote {args.out}")
    return 0


def _score(args: argparse.Namespace) -> int:
    from conciser.eval.ranker import Ranker

    if not args.ranker or not args.prompts:
        raise UserError("ranker score: give --ranker DIR and --prompts FILE")
    r = Ranker.load(args.ranker)
    texts = read_prompts(args.prompts)
    scores = r.score(texts)
    lines = [json.dumps({"prompt": t, "score": s, "quantile": r.quantile(s)}) for t, s in zip(texts, scores)]
    if args.out:
        Path(args.out).write_text("".join(line + "\n" for line in lines), encoding="utf-8")
        print(f"scored {len(texts)} prompts; wrote {args.out}", file=sys.stderr)
    else:
        print("\n".join(lines))
    return 0


def run(args: argparse.Namespace) -> int:
    return _train(args) if args.action == "train" else _score(args)
