"""User extensions named by dotted path (`my_pkg.my_module:MyReward`), as TRL and torchtune accept them.

A recipe may name a length reward or an advantage estimator that lives outside conciser:

    rewards:
      method: my_pkg.rewards:MyReward      # any conciser.rewards.LengthReward subclass
    advantage:
      estimator: my_pkg.estimators:MyEstimator

The module must be importable (installed, or on PYTHONPATH) in every training process. A bad path
fails while the recipe is validated, before any model loads, naming the path and what was missing.
"""

from __future__ import annotations

import importlib
from typing import Any


def is_dotted_path(name: str) -> bool:
    """`module:attribute` (a registry name never contains a colon)."""
    return isinstance(name, str) and ":" in name


def load_class(path: str, base: type, field: str) -> type:
    """The class `path` ("pkg.module:Class") names, checked to subclass `base`.

    `field` is the recipe field the path came from; every error names it (ValueError)."""
    module_name, _, attr = path.partition(":")
    if not module_name or not attr or ":" in attr:
        raise ValueError(f"{field}: {path!r} is not a dotted path of the form 'package.module:ClassName'")
    if module_name.endswith(".py") or "/" in module_name:
        raise ValueError(f"{field}: {path!r} names a file; give the importable module instead "
                         f"(e.g. 'my_pkg.my_module:{attr}') and put its folder on PYTHONPATH")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise ValueError(f"{field}: cannot import module {module_name!r} of {path!r} ({exc}); install it or "
                         f"add its folder to PYTHONPATH") from None
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):  # a user's module: the one place we look a name up dynamically
            raise ValueError(f"{field}: module {module_name!r} has no {attr!r} (from {path!r})")
        obj = getattr(obj, part)
    if not isinstance(obj, type) or not issubclass(obj, base):
        raise ValueError(f"{field}: {path!r} is not a subclass of {base.__module__}.{base.__qualname__}")
    return obj
