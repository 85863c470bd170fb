"""The toy base's SFT batches and its acceptance check (`conciser toy-base --check`).
Run: .venv/bin/python -m pytest tests/trainers/test_toy_sft.py   (~20 s)
"""

import dataclasses
import json
import random
from pathlib import Path

import pytest

from conciser import toy
from conciser.toy_base_cli import check_toy_base
from conciser.trainers.toy_sft import ToyBaseConfig, _batches

REPO = Path(__file__).resolve().parents[2]


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


# ---------------------------------------------------------------- toy-scan base


def test_each_task_has_its_own_base_and_cache_folder():
    from conciser.errors import UserError
    from conciser.trainers.toy_sft import ScanBaseConfig, base_config, toy_base_dir

    assert type(base_config("toy")) is type(base_config("toy-chain")) is ToyBaseConfig
    scan = base_config("toy-scan")
    assert isinstance(scan, ScanBaseConfig) and scan.task == "toy-scan" and ToyBaseConfig.task == "toy-chain"
    assert toy_base_dir(scan).name.startswith("toy-scan-base-") and toy_base_dir(ToyBaseConfig()).name.startswith("toy-base-")
    assert scan.key() != ToyBaseConfig().key()
    assert "task" not in dataclasses.asdict(ToyBaseConfig())  # the chain base keeps its cache key
    with pytest.raises(UserError, match="toy-scan"):
        base_config("toy-scans")


def test_quick_benches_train_from_a_shorter_build_of_the_scan_base_cached_apart():
    from conciser.trainers.toy_sft import base_config, toy_base_dir

    full, quick = base_config("toy-scan"), base_config("toy-scan", quick=True)
    # only the SFT length differs, so the quick base is the same model trained for fewer steps
    assert quick.steps == 1200 < full.steps and dataclasses.replace(quick, steps=full.steps) == full
    assert toy_base_dir(quick) != toy_base_dir(full)
    # and the full base is still the one the committed toy-scan results were trained from
    committed = json.loads((REPO / "bench" / "results" / "toy_pareto_toy_scan.json").read_text())
    assert Path(committed["config"]["base"]).name == toy_base_dir(full).name
    assert base_config("toy-chain", quick=True) == base_config("toy-chain")  # no shorter chain build


@pytest.mark.parametrize("task", ["toy-chain", "toy-scan"])
def test_cached_base_is_renamed_when_its_training_data_changes(task):
    """The cache key covers the config and `_version`, not the trace code: this fails when the SFT data
    changed without a `_version` bump, which would reuse a stale cached base."""
    from conciser.trainers.toy_sft import base_config, sft_data_fingerprint

    cfg = base_config(task)
    got = sft_data_fingerprint(cfg)
    assert got == cfg._data_fingerprint, (
        f"the {task} base's SFT data changed (fingerprint {got}, recorded {cfg._data_fingerprint}) but its cache "
        f"key did not: bump {type(cfg).__name__}._version so cached bases are rebuilt, and set _data_fingerprint "
        f"= {got!r}")
    # it sees the traces: another verbosity is other data
    other = dataclasses.replace(cfg, verbosity=dataclasses.replace(cfg.verbosity, p_filler=0.0))
    assert sft_data_fingerprint(other) != got


def test_scan_base_sft_smoke(tmp_path):
    from transformers import AutoTokenizer

    from conciser import toy_scan
    from conciser.trainers.toy_sft import ScanBaseConfig, train_toy_base

    cfg = ScanBaseConfig(hidden_size=32, num_heads=2, num_kv_heads=1, intermediate_size=64, steps=6, batch_size=4,
                        easy_steps=2, minimal_steps=4, warmup=2, bucket=2)
    out = train_toy_base(tmp_path / "scan", cfg, progress=False)
    meta = json.loads((out / "toy_base.json").read_text())
    assert meta["task"] == "toy-scan" and meta["config"]["num_layers"] == 2
    assert 0.0 <= meta["result_digit_accuracy"] <= 1.0 and meta["final_loss"] > 0
    p = toy_scan.make_problems(1, seed=0)[0]
    assert AutoTokenizer.from_pretrained(out)(p.prompt).input_ids == toy_scan.build_tokenizer()(p.prompt).input_ids


def test_scan_step_probe_reads_every_result_and_stop_decision():
    from conciser import toy_scan
    from conciser.trainers.toy_sft import ScanBaseConfig, _result_positions

    scan_tok = toy_scan.build_tokenizer()
    plain = toy_scan.Verbosity(p_slip=0.0, p_check=0.0, p_filler=0.0, p_final_pass=0.0, p_opening=0.0, hint_by_sure={})
    ids, _, labels, _ = _batches(scan_tok, random.Random(0), ScanBaseConfig(batch_size=8, verbosity=plain), level=3)[0]
    keep = _result_positions(scan_tok, ids, labels, "toy-scan")
    # plain traces are minimal ones, 7h + 6 tokens: h - 1 results and h stop decisions
    stops = [(n - 6) // 7 for n in (labels != -100).sum(1).tolist()]
    assert keep.sum(1).tolist() == [2 * h - 1 for h in stops]
    nxt = scan_tok.convert_ids_to_tokens(ids[:, 1:][keep].tolist())
    assert set(nxt) <= set("0123456789") | {"=", "Ġstop"} and nxt.count("Ġstop") == len(stops)


def test_scan_check_measures_every_property(tmp_path):
    from toy_models import save_random_toy_model

    from conciser import toy_scan
    from conciser.toy_scan_check import properties

    model = save_random_toy_model(tmp_path / "m", task="toy-scan")
    table = check_toy_base(model, n=2, out_dir=tmp_path / "check", progress=False, task="toy-scan")
    assert sorted(table) == list(toy_scan.LEVELS)
    props = properties(model, n=10, out_dir=tmp_path / "check", budgets=(4, 8), ample=table)
    p1 = props["P1_length_spread"]["levels"]
    assert all(r["cv"] > 0 and r["predictor_over_level_mean"] > 0 for r in p1.values())
    curve = props["P2_budget_curve"]
    assert curve["budgets"] == [4, 8] and set(curve["by_level"]) == set(toy_scan.LEVELS)
    assert all(0.0 <= a <= 1.0 for a in curve["accuracy"].values())
    p3 = props["P3_hint"]
    assert p3["minimal_exact"] == p3["minimal_correct"] == p3["problems"] == 10 * len(toy_scan.LEVELS)
    assert 0.0 <= p3["model_taking_hint"]["accuracy"] <= 1.0
    assert props["P4_overthinking"]["cap"] == toy_scan.DEFAULT_MAX_COMPLETION


def test_scan_overthinking_counts_the_hint_by_odds_and_the_scanning_samples_apart(tmp_path):
    from conciser import toy_scan
    from conciser.toy_scan_check import overthinking

    # per level: one sample takes the hint (13 tokens), one scans at exactly 3x its minimal length
    sure_of = {}
    for level in toy_scan.LEVELS:
        a, b = toy_scan.make_problems(2, seed=toy_scan.EVAL_SEED + level, levels=(level,))
        (tmp_path / f"level{level}").mkdir()
        rows = [{"problem_id": a.id, "text": toy_scan.hint_trace(a), "tokens": 13},
                {"problem_id": b.id, "text": "<think> a1:2=3.</think>\\boxed{3}", "tokens": 3 * b.minimal_tokens}]
        (tmp_path / f"level{level}" / "samples.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        sure_of.setdefault(a.sure, []).append(1.0)
        sure_of.setdefault(b.sure, []).append(0.0)
    p4 = overthinking(tmp_path, ample={}, n=2)
    assert p4["hint_taken"] == 0.5
    assert p4["hint_taken_by_sure"] == {s: sum(v) / len(v) for s, v in sorted(sure_of.items())}
    assert p4["scanning_tokens_over_minimal"] == {lv: 3.0 for lv in toy_scan.LEVELS}
