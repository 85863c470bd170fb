"""The `trl.GRPOConfig` fields a recipe's `trainer` block may set: their types, choices and defaults.

They come from a snapshot of the pinned TRL (`grpo_fields.json` beside this file), so a recipe is
checked in milliseconds, before TRL, transformers or torch are imported; `trl.GRPOConfig` still runs
its own validation afterwards. Rewrite the snapshot after a TRL upgrade (tests fail until you do):

    python -m conciser.trainer_fields          # reads the installed trl.GRPOConfig, writes the JSON

Each field: `types` (of bool, int, float, str, none, list, dict, object), `choices` (for enum-valued
strings such as save_strategy) and `default` (when it is plain JSON).
"""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources
from pathlib import Path
from types import SimpleNamespace
from typing import Any

SNAPSHOT = "grpo_fields.json"


@lru_cache(maxsize=1)
def fields() -> dict[str, dict[str, Any]]:
    """field name -> {"types": [...], "choices": [...]?, "default": ...?} for the pinned trl.GRPOConfig."""
    return json.loads(resources.files("conciser").joinpath(SNAPSHOT).read_text())


def type_error(value: Any, spec: dict[str, Any]) -> str | None:
    """Why `value` does not fit the field `spec` (None if it does)."""
    types = spec["types"]
    if value is None:
        return None if "none" in types or "object" in types else "may not be empty (null)"
    if "object" in types:
        return None
    if isinstance(value, bool):
        return None if "bool" in types else f"must be {_describe(spec)}, not a boolean"
    if isinstance(value, int) and ("int" in types or "float" in types):
        return None
    if isinstance(value, float) and "float" in types:
        return None
    if isinstance(value, str) and "str" in types:
        choices = spec.get("choices")
        if choices and value not in choices:
            return f"must be one of {', '.join(map(str, choices))}"
        return None
    if isinstance(value, list) and "list" in types:
        return None
    if isinstance(value, dict) and "dict" in types:
        return None
    return f"must be {_describe(spec)}, got {value!r}"


def _describe(spec: dict[str, Any]) -> str:
    names = {"bool": "true/false", "int": "an integer", "float": "a number", "str": "a string", "list": "a list",
             "dict": "a mapping", "none": "null"}
    if spec.get("choices"):
        return "one of " + ", ".join(map(str, spec["choices"]))
    return " or ".join(names[t] for t in spec["types"] if t in names)


def resolved(block: dict[str, Any]) -> SimpleNamespace:
    """The block over TRL's defaults, as attributes: what cross-block checks read before GRPOConfig exists
    (fields whose default is computed by TRL are None unless the block sets them)."""
    values = {name: spec.get("default") for name, spec in fields().items()}
    return SimpleNamespace(**{**values, **block})


# ---------------------------------------------------------------- writing the snapshot (needs trl)

def _kinds(hint) -> tuple[list[str], list[str] | None]:
    import enum
    import types
    import typing

    kinds, choices = [], None
    union = typing.get_origin(hint) in (typing.Union, types.UnionType)
    for part in typing.get_args(hint) if union else (hint,):
        origin = typing.get_origin(part) or part
        if part is type(None):
            kinds.append("none")
        elif origin is typing.Literal:
            kinds += sorted({type(a).__name__.replace("NoneType", "none") for a in typing.get_args(part)})
        elif isinstance(origin, type) and issubclass(origin, enum.Enum):
            choices = [m.value for m in origin]
            kinds.append("str")
        elif origin in (bool, int, float, str):
            kinds.append(origin.__name__)
        elif origin in (list, tuple):
            kinds.append("list")
        elif origin is dict:
            kinds.append("dict")
        else:
            kinds.append("object")
    return sorted(set(kinds)), choices


def snapshot() -> dict[str, dict[str, Any]]:
    """The field table of the installed trl.GRPOConfig."""
    import dataclasses
    import typing

    from trl import GRPOConfig

    hints = typing.get_type_hints(GRPOConfig)
    out = {}
    for f in dataclasses.fields(GRPOConfig):
        if not f.init:
            continue
        kinds, choices = _kinds(hints[f.name])
        spec: dict[str, Any] = {"types": kinds}
        if choices:
            spec["choices"] = choices
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else None)
        try:
            json.dumps(default)
            spec["default"] = default
        except TypeError:
            pass
        out[f.name] = spec
    return out


def main() -> None:
    path = Path(__file__).with_name(SNAPSHOT)
    path.write_text(json.dumps(snapshot(), indent=1, sort_keys=True) + "\n")
    print(f"wrote {path} ({len(fields.__wrapped__())} fields)")


if __name__ == "__main__":
    main()
