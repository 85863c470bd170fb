"""DLER update-selective merging (conciser.trainers.merge): hand-checked masks and values, identities
(keep=1/scale=1 -> tuned, keep=0 -> base), global ranking, refusals. CPU, seconds.

    .venv/bin/pytest -q tests/trainers/test_merge.py
"""

import json
import math

import pytest
import torch
from safetensors.torch import load_file, save_file

from conciser.cli import main as cli_main
from conciser.trainers.merge import MergeConfig, merge_models, n_kept, topk_mask
from toy_models import save_random_toy_model


def _hand_model(path, tensors, config=None):
    path.mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(path / "model.safetensors"), metadata={"format": "pt"})
    (path / "config.json").write_text(json.dumps(config or {"architectures": ["Hand"], "model_type": "hand", "hidden_size": 4}))
    return path


# Base: ones. Tuned: ones + DELTA. |delta| of w ranks 5 > 4 > 3 > 2 = 2 > 1 > 0.5 > 0.1.
DELTA_W = torch.tensor([[1.0, -5.0, 2.0, 0.5], [3.0, -0.1, 4.0, -2.0]])
DELTA_B = torch.tensor([0.1, -0.3, 0.2, 0.0])


@pytest.fixture
def hand_pair(tmp_path):
    base = _hand_model(tmp_path / "base", {"w": torch.ones(2, 4), "b": torch.ones(4)})
    tuned = _hand_model(tmp_path / "tuned", {"w": torch.ones(2, 4) + DELTA_W, "b": torch.ones(4) + DELTA_B})
    return base, tuned


def test_n_kept_rounds_to_nearest():
    assert [n_kept(0.25, n) for n in (0, 1, 2, 3, 4, 6, 8, 10)] == [0, 0, 1, 1, 1, 2, 2, 3]
    assert n_kept(0.29, 100) == 29 and n_kept(1.0, 7) == 7 and n_kept(0.0, 7) == 0


def test_topk_mask_breaks_ties_by_position():
    a = torch.tensor([2.0, 1.0, 2.0, 3.0, 2.0])
    assert topk_mask(a, 2).tolist() == [True, False, False, True, False]
    assert topk_mask(a, 3).tolist() == [True, False, True, True, False]
    assert topk_mask(a, 0).sum() == 0 and topk_mask(a, 5).all()


def test_per_tensor_hand_checked(hand_pair, tmp_path):
    base, tuned = hand_pair
    report = merge_models(base, tuned, tmp_path / "out", MergeConfig(keep=0.25, scale=0.7), progress=False)
    out = load_file(str(tmp_path / "out" / "model.safetensors"))
    # w: 8 entries, keep round(2) = 2: the -5 and the 4.  b: 4 entries, keep 1: the -0.3.
    expected_w = torch.ones(2, 4)
    expected_w[0, 1] += 0.7 * -5.0
    expected_w[1, 2] += 0.7 * 4.0
    torch.testing.assert_close(out["w"], expected_w)
    torch.testing.assert_close(out["b"], torch.tensor([1.0, 1.0 + 0.7 * -0.3, 1.0, 1.0]))
    assert report["parameters"] == 12 and report["kept"] == 3
    assert report["per_tensor"]["w"] == {"numel": 8, "kept": 2, "kept_nonzero": 2, "changed": 8}
    assert report["per_tensor"]["b"] == {"numel": 4, "kept": 1, "kept_nonzero": 1, "changed": 3}
    assert report["kept_fraction"] == pytest.approx(0.25)
    assert json.loads((tmp_path / "out" / "merge_report.json").read_text())["kept"] == 3
    assert (tmp_path / "out" / "config.json").is_file() and not (tmp_path / "out.partial").exists()


def test_global_hand_checked(hand_pair, tmp_path):
    base, tuned = hand_pair
    report = merge_models(base, tuned, tmp_path / "out", MergeConfig(keep=0.5, scale=0.5, granularity="global"),
                          progress=False)
    out = load_file(str(tmp_path / "out" / "model.safetensors"))
    # 12 entries, keep 6: |delta| 5, 4, 3, 2, 2, 1 -- all in w; b is left at the base.
    kept_w = DELTA_W.abs() >= 1.0
    torch.testing.assert_close(out["w"], torch.where(kept_w, 1.0 + 0.5 * DELTA_W, torch.ones(2, 4)))
    torch.testing.assert_close(out["b"], torch.ones(4))
    assert report["kept"] == 6 and report["threshold"] == pytest.approx(1.0)
    assert report["per_tensor"]["w"]["kept"] == 6 and report["per_tensor"]["b"]["kept"] == 0


def test_global_ties_at_threshold_keep_exactly_k(tmp_path):
    base = _hand_model(tmp_path / "base", {"a": torch.zeros(3), "b": torch.zeros(3)})
    tuned = _hand_model(tmp_path / "tuned", {"a": torch.tensor([1.0, 2.0, 1.0]), "b": torch.tensor([1.0, 0.5, 3.0])})
    report = merge_models(base, tuned, tmp_path / "out", MergeConfig(keep=0.5, scale=1.0, granularity="global"), progress=False)
    out = load_file(str(tmp_path / "out" / "model.safetensors"))
    # keep 3 of 6: 3 and 2, then one of the three 1s -- the first in tensor order (a[0]).
    assert out["a"].tolist() == [1.0, 2.0, 0.0] and out["b"].tolist() == [0.0, 0.0, 3.0]
    assert report["kept"] == 3


@pytest.fixture(scope="module")
def toy_pair(tmp_path_factory):
    root = tmp_path_factory.mktemp("toy_pair")
    return save_random_toy_model(root / "base", seed=0), save_random_toy_model(root / "tuned", seed=1)


def _weights(folder):
    return load_file(str(folder / "model.safetensors"))


@pytest.mark.parametrize("granularity", ["tensor", "global"])
def test_keep_all_scale_one_reproduces_tuned_and_keep_zero_the_base(toy_pair, tmp_path, granularity):
    base, tuned = toy_pair
    merge_models(base, tuned, tmp_path / "all", MergeConfig(keep=1.0, scale=1.0, granularity=granularity), progress=False)
    merge_models(base, tuned, tmp_path / "none", MergeConfig(keep=0.0, scale=0.7, granularity=granularity), progress=False)
    got_all, got_none, want_t, want_b = _weights(tmp_path / "all"), _weights(tmp_path / "none"), _weights(tuned), _weights(base)
    assert got_all.keys() == want_t.keys()
    for name in want_t:
        assert torch.equal(got_all[name], want_t[name]), name
        assert torch.equal(got_none[name], want_b[name]), name


def test_merged_toy_model_loads_and_matches_per_tensor_ranking(toy_pair, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    base, tuned = toy_pair
    report = merge_models(base, tuned, tmp_path / "m", MergeConfig(keep=0.25, scale=0.7), progress=False)
    wb, wt, wm = _weights(base), _weights(tuned), _weights(tmp_path / "m")
    for name in wt:
        delta, moved = wt[name] - wb[name], wm[name] - wb[name]
        kept = moved != 0
        assert int(kept.sum()) <= n_kept(0.25, delta.numel())
        torch.testing.assert_close(moved[kept], 0.7 * delta[kept])
        if kept.any() and (~kept).any():   # every kept |delta| is at least every dropped one
            assert delta[kept].abs().min() >= delta[~kept].abs().max()
    assert report["kept"] == sum(n_kept(0.25, t.numel()) for t in wt.values())
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "m")
    tok = AutoTokenizer.from_pretrained(tmp_path / "m")
    assert tok.chat_template and model.generation_config.eos_token_id == tok.eos_token_id
    ids = torch.tensor([[2, 20, 21, 10, 11]])
    assert model(input_ids=ids).logits.shape == (1, 5, len(tok))


def test_global_ranking_on_toy_models(toy_pair, tmp_path):
    base, tuned = toy_pair
    report = merge_models(base, tuned, tmp_path / "g", MergeConfig(keep=0.1, scale=0.7, granularity="global"), progress=False)
    wb, wt, wm = _weights(base), _weights(tuned), _weights(tmp_path / "g")
    deltas = torch.cat([(wt[n] - wb[n]).reshape(-1) for n in sorted(wt)])
    kept = torch.cat([(wm[n] != wb[n]).reshape(-1) for n in sorted(wt)])
    assert report["kept"] == n_kept(0.1, deltas.numel()) == report["parameters"] // 10 + (report["parameters"] % 10 >= 5)
    assert int(kept.sum()) == report["kept_nonzero"]
    assert deltas[kept].abs().min() >= deltas[~kept].abs().max()
    assert math.isclose(report["threshold"], float(deltas[kept].abs().min()), rel_tol=1e-6)


def test_refuses_mismatched_architectures(tmp_path, toy_pair):
    base, _ = toy_pair
    wide = save_random_toy_model(tmp_path / "wide", seed=1, intermediate_size=96)
    with pytest.raises(ValueError, match="intermediate_size"):
        merge_models(base, wide, tmp_path / "out", progress=False)
    # Same config, different tensor shape: the message names the tensor and both shapes.
    a = _hand_model(tmp_path / "a", {"w": torch.zeros(2, 4), "b": torch.zeros(4)})
    b = _hand_model(tmp_path / "b", {"w": torch.zeros(2, 5), "b": torch.zeros(4)})
    with pytest.raises(ValueError, match=r"tensor 'w' has shape \(2, 4\) in the base but \(2, 5\)"):
        merge_models(a, b, tmp_path / "out", progress=False)
    c = _hand_model(tmp_path / "c", {"w": torch.zeros(2, 4), "extra": torch.zeros(4)})
    with pytest.raises(ValueError, match="tensor 'b' is in the base only"):
        merge_models(a, c, tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.partial").exists()


def test_cli(hand_pair, tmp_path, capsys):
    base, tuned = hand_pair
    out = tmp_path / "cli_out"
    assert cli_main(["merge", "--base", str(base), "--tuned", str(tuned), "--keep", "0.25", "--scale", "0.7",
                     "--no-progress", str(out)]) == 0
    assert "kept 3 of 12 parameters (25.00%" in capsys.readouterr().out
    # Existing output, bad keep, PEFT folder, missing folder: exit 2 with the fix in the message.
    assert cli_main(["merge", "--base", str(base), "--tuned", str(tuned), str(out)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert cli_main(["merge", "--base", str(base), "--tuned", str(tuned), "--keep", "25", str(tmp_path / "x")]) == 2
    assert "--keep must be a fraction in [0, 1]" in capsys.readouterr().err
    peft_dir = tmp_path / "adapter"
    peft_dir.mkdir()
    (peft_dir / "adapter_config.json").write_text("{}")
    (peft_dir / "config.json").write_text("{}")
    assert cli_main(["merge", "--base", str(base), "--tuned", str(peft_dir), str(tmp_path / "y")]) == 2
    assert "conciser export" in capsys.readouterr().err
    assert cli_main(["merge", "--base", str(tmp_path / "nope"), "--tuned", str(tuned), str(tmp_path / "z")]) == 2
    assert "is not a directory" in capsys.readouterr().err
