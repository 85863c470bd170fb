"""The toy base's SFT batches and its acceptance check (`conciser toy-base --check`).
Run: .venv/bin/python -m pytest tests/trainers/test_toy_sft.py   (~20 s)
"""

import dataclasses
import json
import random

import pytest

from conciser import toy
from conciser.toy_base_cli import check_toy_base
from conciser.trainers.toy_sft import ToyBaseConfig, _batches


@pytest.fixture(scope="module")
def tokenizer():
    return toy.build_tokenizer()


def test_bucketed_batches_cut_padding_and_keep_token_weights(tokenizer):
    cfg = dataclasses.replace(ToyBaseConfig(), batch_size=16)
    sorted_ = _batches(tokenizer, random.Random(0), cfg, level=5, n=8)
    rng = random.Random(1)
    plain = [_batches(tokenizer, rng, cfg, level=5, n=1)[0] for _ in range(8)]
    pad = lambda bs: 1 - sum(b[1].sum().item() for b in bs) / sum(b[1].numel() for b in bs)  # noqa: E731
    assert len(sorted_) == 8 and all(b[0].shape[0] == 16 for b in sorted_)
    assert pad(sorted_) < 0.5 * pad(plain)
    # every batch of a bucket is divided by the same count: the bucket's mean label count
    labels = [(b[2] != -100).sum().item() for b in sorted_]
    assert {b[3] for b in sorted_} == {sum(labels) / 8}
    assert max(labels) > 1.3 * min(labels)  # so per-batch means would weight tokens unequally
    for ids, mask, lab, _ in sorted_:
        assert (lab[mask == 0] == -100).all()  # no loss on padding
        assert (ids[mask == 0] == tokenizer.pad_token_id).all()


def test_check_reports_every_level_at_six_times_minimal(tiny_toy_model, tmp_path):
    table = check_toy_base(tiny_toy_model, n=3, out_dir=tmp_path, progress=False)
    assert sorted(table) == list(toy.LEVELS)
    for level, row in table.items():
        assert row["minimal_tokens"] == toy.minimal_tokens(toy.LEVELS[level])
        assert 0.0 <= row["accuracy"] <= 1.0
        assert row["tokens_over_minimal"] == pytest.approx(row["mean_tokens"] / row["minimal_tokens"])
        summary = json.loads((tmp_path / f"level{level}" / "summary.json").read_text())
        assert summary["max_new_tokens"] == 6 * row["minimal_tokens"]
        assert summary["temperature"] == 1.0
        # a random model rarely stops, so it runs into the 6x budget and no further
        assert summary["max_tokens_seen"] <= 6 * row["minimal_tokens"]
