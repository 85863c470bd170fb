"""What every part shares about input errors: one exception type and one "did you mean" helper.

`UserError` is a problem with what the user gave us (a recipe, an option, a data file, a model path):
its message names the field or row, says why, and says what to set instead. The CLI prints it as one
line and exits 2. Anything else is a bug or a crash and reaches the user with its traceback.

    raise UserError(f"data.n_train: must be > 0, got {n}")
    raise UserError(f"rewards.metod: unknown key{did_you_mean('metod', valid)}")
"""

from __future__ import annotations

import difflib
from typing import Iterable


class UserError(ValueError):
    """Bad input. The message names the field, says why, and says what to set instead.

    A ValueError subclass so library callers that catch ValueError keep working."""


def did_you_mean(key: str, valid: Iterable[str], cutoff: float = 0.6) -> str:
    """"; did you mean 'x'?" for the closest valid key, else "; valid: a, b, c" (to append to a message)."""
    valid = sorted(str(v) for v in valid)
    close = difflib.get_close_matches(str(key), valid, n=1, cutoff=cutoff)
    return f"; did you mean '{close[0]}'?" if close else f"; valid: {', '.join(valid)}"


class MissingInput(UserError, FileNotFoundError):
    """A file or folder the user named does not exist or lacks what it must hold (also a
    FileNotFoundError, for callers that catch that)."""
