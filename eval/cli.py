"""`conciser eval`: accuracy and tokens of a model on benchmarks, and side-by-side comparisons.

    conciser eval --model PATH [--benchmarks toy|math500,aime24,...] [--n 16] [--backend vllm] [--out DIR]
    conciser eval --model PATH --benchmark my.jsonl --columns question=prompt,answer=gold
    conciser eval --model PATH --benchmark toy --budgets 16,32,64,160      # accuracy vs thinking budget
    conciser eval --model PATH --n 16 --early-stop certaindex --tau 0.8 --round 4 [--tau-sweep]
    conciser eval --model PATH --benchmarks aime24 --n 16 --early-exit dynasor
    conciser eval --model PATH --out DIR --rescore [--extraction lenient]   # re-grade, no generation
    conciser eval compare RUN [RUN ...] [--plot pareto.png] [--curves budget_curves.png]

Re-running the same command resumes an interrupted run (only missing samples are generated).
Every option below is a field of `conciser.eval.config.EvalConfig`: its help, default, choices and
bounds come from there (one source of truth); outputs and summary keys: `conciser.eval.run`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json

from conciser.errors import UserError
from conciser.eval.config import EvalConfig, base_type, choices_of, hints

_COMPARE_ONLY = ("plot", "curves")


def _split(text: str) -> list[str]:
    return [p.strip() for p in text.split(",") if p.strip()]


def _list_of(elem: type):
    names = {int: "integers", float: "numbers", str: "names"}

    def parse(text: str) -> list:
        try:
            return [elem(x) for x in _split(text)]
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected comma-separated {names.get(elem, 'values')}, got {text!r}") from None

    return parse


def _kv(text: str) -> dict[str, str]:
    out = {}
    for part in _split(text):
        if "=" not in part:
            raise argparse.ArgumentTypeError(f"expected KEY=VALUE pairs separated by commas, got {part!r}")
        k, v = part.split("=", 1)
        out[k.strip()] = v.strip()
    return out


def _json_value(v: str):
    try:
        return json.loads(v)
    except json.JSONDecodeError:
        return v


class _MergeKV(argparse.Action):
    """Repeatable KEY=VALUE[,KEY=VALUE] with JSON values, merged into one dict (--vllm-arg)."""

    def __call__(self, parser, namespace, values, option_string=None):
        merged = dict(getattr(namespace, self.dest, None) or {})
        merged.update({k: _json_value(v) for k, v in values.items()})
        setattr(namespace, self.dest, merged)


def _default_text(f: dataclasses.Field) -> str:
    if f.default is not dataclasses.MISSING:
        value = f.default
    elif f.default_factory is not dataclasses.MISSING:
        value = f.default_factory()
    else:
        return ""
    if value is None or isinstance(value, bool):
        return ""
    return f" (default: {','.join(map(str, value)) if isinstance(value, list) else value})"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from conciser.eval.benchmarks import known_benchmarks

    parser.usage = "%(prog)s --model PATH [options]  |  %(prog)s compare RUN [RUN ...] [--plot PNG] [--curves PNG]"
    parser.add_argument("action", nargs="?", choices=["compare"], help="compare: side-by-side table of saved runs")
    parser.add_argument("runs", nargs="*", metavar="RUN", help="for compare: run folders or summary.json ([LABEL=]PATH)")
    groups: dict[str, argparse._ArgumentGroup] = {}
    types = hints()
    for f in dataclasses.fields(EvalConfig):
        meta = f.metadata
        if not meta.get("cli", True):
            continue
        group = groups.setdefault(meta["group"], parser.add_argument_group(meta["group"]))
        flags = meta.get("flags") or ["--" + f.name.replace("_", "-")]
        help_ = meta["help"].replace("{benchmarks}", ", ".join(known_benchmarks())).replace("%", "%%") + _default_text(f)
        kwargs: dict = {"dest": f.name, "default": argparse.SUPPRESS, "help": help_}
        outer, elem = base_type(types[f.name])
        choices = choices_of(f)
        if outer is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        elif outer is list:
            kwargs.update(type=_list_of(elem or str), metavar=f"{(elem or str).__name__.upper()},...")
            if meta.get("const") is not None:
                kwargs.update(nargs="?", const=list(meta["const"]))
        elif outer is dict:
            kwargs.update(type=_kv, metavar="KEY=VALUE,...")
            if f.name == "vllm_args":
                kwargs["action"] = _MergeKV
        else:
            kwargs["type"] = outer if outer in (int, float) else str
            if choices is not None:
                kwargs["choices"] = choices
        group.add_argument(*flags, **kwargs)
    g = parser.add_argument_group("compare")
    g.add_argument("--plot", default=None, help="compare: the Pareto plot (default RUN1/pareto.png)")
    g.add_argument("--curves", default=None,
                   help="compare: accuracy-vs-budget curves of runs with --budgets (default RUN1/budget_curves.png)")


def run(args: argparse.Namespace) -> int:
    opts = {k: v for k, v in vars(args).items() if k not in ("action", "runs", *_COMPARE_ONLY)}
    if args.action == "compare":
        if not args.runs:
            raise UserError("compare needs at least one RUN folder: conciser eval compare RUN [RUN ...]")
        from conciser.eval.report import compare, default_output

        plot = args.plot or default_output(args.runs, "pareto.png")
        curves = args.curves or default_output(args.runs, "budget_curves.png")
        compare(args.runs, plot=plot, curves=curves, benchmarks=opts.get("benchmarks"))
        return 0
    if args.runs:
        raise UserError(f"unexpected argument(s) {args.runs}; did you mean: conciser eval compare {' '.join(args.runs)}?")
    for name in _COMPARE_ONLY:
        if getattr(args, name) is not None:
            raise UserError(f"--{name} belongs to `conciser eval compare`")
    if "model" not in opts:
        raise UserError("--model is required: a saved model folder, e.g. --model $(conciser toy-base)")
    from conciser.eval.run import evaluate_many

    cfg = EvalConfig(**opts)
    results = evaluate_many(cfg)
    if len(results) > 1:
        from conciser.eval.report import compare

        compare([str(cfg.resolved_out())], plot=None)
    print(f"outputs: {cfg.resolved_out()}")
    return 0
