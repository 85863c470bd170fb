"""The one RolloutBatch builder of the reward tests (imported by name: `from batches import make_batch`).

    mk = partial(make_batch, max_length=1000)        # each test file fixes the cap its table uses
    mk(lengths=[10, 20], correct=[True, False])      # one group "q", finished, well formed
"""

from __future__ import annotations

from conciser.rewards import RolloutBatch


def make_batch(lengths, correct=None, ids=None, *, truncated=None, format_ok=None, targets=None, max_length: int,
               step: int = 0, **fields) -> RolloutBatch:
    """A batch of len(lengths) completions: `correct` defaults to all True, `ids` to one group "q",
    `truncated` to none and `format_ok` to all; `targets` are L1's target lengths; other RolloutBatch
    fields (texts, token_ids, ...) pass through."""
    n = len(lengths)
    return RolloutBatch(problem_ids=ids or ["q"] * n, lengths=lengths,
                        correct=[True] * n if correct is None else correct,
                        truncated=truncated or [False] * n, format_ok=format_ok or [True] * n,
                        target_lengths=targets, max_length=max_length, step=step, **fields)
