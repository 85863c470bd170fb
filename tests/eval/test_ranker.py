"""The length ranker (conciser.eval.ranker, `conciser ranker`) and the scheduling arms' priorities
(conciser.eval.serve_schedule).

    .venv/bin/pytest -q tests/eval/test_ranker.py            # ~1 min, most of it one real training run
"""

import json
import math

import pytest
import torch

from conciser import toy
from conciser.cli import main as cli_main
from conciser.errors import UserError
from conciser.eval import ranker
from conciser.eval.ranker import RankerConfig, kendall_tau, listmle_loss, pair_accuracy
from conciser.eval.serve_schedule import parse_schedules, parse_window, rank_quantiles, round_order, virtual_deadline


# ---------------------------------------------------------------- loss and metrics, by hand

def test_listmle_matches_a_hand_computed_value():
    # lengths 30, 10, 20 -> true order (longest first): items 0, 2, 1 -> scores in that order 1, 0, 2
    # loss = [log(e^1 + e^0 + e^2) - 1] + [log(e^0 + e^2) - 0] + [log(e^2) - 2]
    want = (math.log(math.e + 1 + math.e ** 2) - 1) + math.log(1 + math.e ** 2) + 0.0
    got = listmle_loss(torch.tensor([1.0, 2.0, 0.0]), torch.tensor([30.0, 10.0, 20.0]))
    assert got.item() == pytest.approx(want, rel=1e-6)
    # two lists: the mean; a list scored in its true order costs less than the reverse
    good = listmle_loss(torch.tensor([[3.0, 2.0, 1.0]]), torch.tensor([[30.0, 20.0, 10.0]]))
    bad = listmle_loss(torch.tensor([[1.0, 2.0, 3.0]]), torch.tensor([[30.0, 20.0, 10.0]]))
    both = listmle_loss(torch.tensor([[3.0, 2.0, 1.0], [1.0, 2.0, 3.0]]), torch.tensor([[30.0, 20.0, 10.0]] * 2))
    assert good < bad and both.item() == pytest.approx((good.item() + bad.item()) / 2, rel=1e-6)


def test_listmle_ties_in_length_are_ordered_at_random():
    # equal lengths: either order is "true"; over seeds both orders are drawn, the loss takes two values
    scores, lengths = torch.tensor([2.0, 0.0]), torch.tensor([5.0, 5.0])
    values = {round(listmle_loss(scores, lengths, generator=torch.Generator().manual_seed(s)).item(), 6) for s in range(20)}
    assert values == {round(math.log(math.e ** 2 + 1) - 2, 6), round(math.log(math.e ** 2 + 1), 6)}


def test_kendall_tau_and_pair_accuracy_hand_checked():
    assert kendall_tau([1, 2, 3, 4], [10, 20, 30, 40]) == 1.0
    assert kendall_tau([4, 3, 2, 1], [10, 20, 30, 40]) == -1.0
    # 1 discordant pair of 6: (6 - 2 * 1) / 6
    assert kendall_tau([1, 2, 4, 3], [10, 20, 30, 40]) == pytest.approx(4 / 6)
    # tau-b with a tie in y: pairs C=5, D=0, tied in y only 1 -> 5 / sqrt(6 * 5) (scipy gives 0.9128709)
    assert kendall_tau([1, 2, 3, 4], [10, 10, 30, 40]) == pytest.approx(0.9128709, abs=1e-6)
    assert kendall_tau([1, 1, 1], [1, 2, 3]) is None and kendall_tau([1], [2]) is None
    # 6 pairs, all lengths differ: right (0,1) (0,2), a score tie (1,2) counts half, wrong the rest
    assert pair_accuracy([1, 2, 2, 0], [10, 20, 30, 40]) == pytest.approx(2.5 / 6)
    assert pair_accuracy([1, 2, 3, 3], [10, 20, 30, 30]) == pytest.approx(1.0)   # the tied-length pair not counted
    # pairs with different lengths: 5; right 3, one score tie (half), one wrong -> 3.5 / 5
    assert pair_accuracy([1, 2, 2, 5], [10, 20, 30, 20]) == pytest.approx(3.5 / 5)
    assert pair_accuracy([1, 2], [5, 5]) is None


def test_quantile_places_a_score_among_the_training_scores():
    r = ranker.Ranker.__new__(ranker.Ranker)
    r._calibration = ranker.calibration([float(i) for i in range(100)], points=11)
    assert r._calibration == [0.0, 10.0, 20.0, 30.0, 40.0, 50.0, 59.0, 69.0, 79.0, 89.0, 99.0]
    assert r.quantile(-5.0) == 0.0 and r.quantile(500.0) == 1.0
    assert 0.0 < r.quantile(35.0) < r.quantile(60.0) < 1.0


def _until(condition, seconds: float = 30.0) -> None:
    import time

    end = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < end, "threads did not get there"
        time.sleep(0.001)


def _untrained_ranker():
    model, tok = ranker.build_model("toy", seed=3)
    return ranker.Ranker(model, tok, {"config": {"max_length": 512, "threads": 1}})


def test_concurrent_scores_share_one_forward_and_get_their_own_scores(monkeypatch):
    """Calls arriving while a forward runs are scored together in the next one (not one forward
    each, which queued up to seconds of ranking cost per request under load)."""
    import threading

    r = _untrained_ranker()
    prompts = [p.prompt for p in toy.eval_problems(9)]
    alone = [r.score([p])[0] for p in prompts]
    assert r.forwards == 9 and r.scored == 9
    assert r.score(prompts) == pytest.approx(alone, abs=1e-5)       # padding in a batch changes nothing
    real, release, sizes = ranker.score_texts, threading.Event(), []

    def held(model, tok, texts, max_length):   # the first forward waits until the others queue behind it
        sizes.append(len(texts))
        if len(sizes) == 1:
            assert release.wait(30)
        return real(model, tok, texts, max_length)

    monkeypatch.setattr(ranker, "score_texts", held)
    got: dict[int, float] = {}
    threads = [threading.Thread(target=lambda i=i: got.__setitem__(i, r.score([prompts[i]])[0])) for i in range(9)]
    threads[0].start()
    _until(lambda: sizes)
    for t in threads[1:]:
        t.start()
    _until(lambda: len(r._pending) == 8)
    release.set()
    for t in threads:
        t.join(30)
    assert sizes == [1, 8]
    assert [got[i] for i in range(9)] == pytest.approx(alone, abs=1e-5)


def test_a_failed_forward_fails_every_call_it_held(monkeypatch):
    import threading

    r = _untrained_ranker()
    release = threading.Event()
    started = threading.Event()

    def broken(model, tok, texts, max_length):
        started.set()
        assert release.wait(30)
        raise RuntimeError("out of memory")

    monkeypatch.setattr(ranker, "score_texts", broken)
    errors = []

    def call():
        try:
            r.score(["solve: start=1; a2."])
        except RuntimeError as exc:
            errors.append(str(exc))

    first = threading.Thread(target=call)
    first.start()
    assert started.wait(30)
    rest = [threading.Thread(target=call) for _ in range(3)]
    for t in rest:
        t.start()
    _until(lambda: len(r._pending) == 3)
    monkeypatch.setattr(ranker, "score_texts", lambda *a: (_ for _ in ()).throw(RuntimeError("out of memory")))
    release.set()
    for t in [first, *rest]:
        t.join(30)
    assert errors == ["out of memory"] * 4 and not r._busy and not r._pending


# ---------------------------------------------------------------- priorities and arms

def test_virtual_deadline_and_rank_quantiles():
    assert virtual_deadline(2.0, 0.0, 10.0) == 2000 and virtual_deadline(2.0, 1.0, 10.0) == 12000
    assert virtual_deadline(2.0, 0.25, 0.0) == 2000          # window 0: arrival order (fcfs)
    # a long request (q=1) at t=0 is served before a short one (q=0) arriving later than the window
    assert virtual_deadline(0.0, 1.0, 5.0) < virtual_deadline(5.1, 0.0, 5.0)
    assert virtual_deadline(0.0, 1.0, 5.0) > virtual_deadline(4.9, 0.0, 5.0)
    assert rank_quantiles({0: 10, 1: 30, 2: 20, 3: 20}) == {0: 0.0, 1: 1.0, 2: 0.5, 3: 0.5}
    assert rank_quantiles({7: 3}) == {7: 0.5}


def test_schedule_parsing_and_abba_order():
    assert parse_schedules("fcfs, ltr,oracle") == ["fcfs", "ltr", "oracle"]
    with pytest.raises(UserError, match="unknown arm 'lrt'; did you mean 'ltr'"):
        parse_schedules("fcfs,lrt")
    with pytest.raises(UserError, match="list fcfs before oracle"):
        parse_schedules("oracle,fcfs")
    with pytest.raises(UserError, match="list fcfs before oracle"):
        parse_schedules("ltr,oracle")
    with pytest.raises(UserError, match="named twice"):
        parse_schedules("fcfs,fcfs")
    assert parse_window("auto") is None and parse_window(" AUTO ") is None and parse_window("7") == 7.0
    for bad in ("-1", "inf", "nan", "soon"):
        with pytest.raises(UserError, match="--ltr-window must be a finite number of seconds >= 0"):
            parse_window(bad)
    assert round_order(["fcfs", "ltr", "oracle"], 0) == ["fcfs", "ltr", "oracle"]
    assert round_order(["fcfs", "ltr", "oracle"], 1) == ["oracle", "ltr", "fcfs"]


# ---------------------------------------------------------------- training

def test_ranker_learns_a_known_length_function_to_tau_above_0_9():
    """Prompts whose answer length is a known function of the prompt (10 tokens per operand plus the
    start digit): a ranker from scratch must order held-out prompts almost perfectly."""
    problems = toy.make_problems(640, seed=5)
    prompts = [p.prompt for p in problems]
    lengths = [10 * len(p.operands) + p.start for p in problems]
    model, tok, result, train_scores = ranker.train(prompts, lengths, RankerConfig(epochs=5), progress=False)
    assert result.kendall_tau >= 0.9 and result.pair_accuracy >= 0.9
    assert result.n_heldout == 64 and result.n_train == 576 and len(train_scores) == 576
    assert result.train_loss[-1] < result.train_loss[0]


def _samples_run(tmp_path, rows, benchmark="toy"):
    """A fake `conciser eval` output folder: samples.jsonl + run.json, as eval writes them."""
    d = tmp_path / "eval" / benchmark
    d.mkdir(parents=True)
    (d / "run.json").write_text(json.dumps({"benchmark": benchmark, "source": "conciser.toy.eval_problems(250)",
                                            "template": "{problem}"}))
    (d / "samples.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return d / "samples.jsonl"


def test_ranker_cli_trains_saves_and_scores(tmp_path, capsys):
    problems = toy.eval_problems(250)
    # two samples per problem; mean length 10 per operand
    rows = [{"benchmark": "toy", "problem_id": p.id, "sample": j, "tokens": 10 * len(p.operands) + 2 * j - 1}
            for p in problems for j in range(2)]
    samples = _samples_run(tmp_path, rows)
    out = tmp_path / "ranker"
    assert cli_main(["ranker", "train", "--samples", str(samples), "--out", str(out), "--epochs", "2"]) == 0
    printed = capsys.readouterr().out
    assert "250 prompts (500 samples)" in printed and "Kendall tau" in printed
    meta = json.loads((out / "ranker.json").read_text())
    assert meta["n_heldout"] == 25 and meta["n_train"] == 225 and meta["config"]["list_size"] == 32
    assert meta["kendall_tau"] is not None and meta["kendall_tau_prompt_chars"] is not None
    assert len(meta["calibration"]) == 225 and meta["calibration"] == sorted(meta["calibration"])
    prompts = tmp_path / "prompts.txt"
    prompts.write_text(f"{problems[0].prompt}\n{problems[1].prompt}\n")
    assert cli_main(["ranker", "score", "--ranker", str(out), "--prompts", str(prompts), "--out", str(tmp_path / "s.jsonl")]) == 0
    scored = [json.loads(line) for line in (tmp_path / "s.jsonl").read_text().splitlines()]
    assert [s["prompt"] for s in scored] == [problems[0].prompt, problems[1].prompt]
    r = ranker.Ranker.load(out)
    assert [s["score"] for s in scored] == pytest.approx(r.score([problems[0].prompt, problems[1].prompt]))
    assert all(0.0 <= s["quantile"] <= 1.0 for s in scored)
    chat = tmp_path / "chat.jsonl"   # chat messages: the last user turn is the prompt
    chat.write_text(json.dumps({"prompt": [{"role": "user", "content": problems[0].prompt}]}) + "\n")
    assert cli_main(["ranker", "score", "--ranker", str(out), "--prompts", str(chat)]) == 0
    assert json.loads(capsys.readouterr().out)["score"] == pytest.approx(scored[0]["score"])
    chat.write_text(json.dumps({"text": "no prompt field"}) + "\n")
    assert "chat.jsonl:1: no prompt text" in _fails(["ranker", "score", "--ranker", str(out), "--prompts", str(chat)], capsys)


def _fails(args, capsys) -> str:
    assert cli_main(args) == 2
    return capsys.readouterr().err


def test_bad_input_fails_before_training(tmp_path, capsys, monkeypatch):
    def no_training(*a, **k):
        raise AssertionError("trained on bad input")

    monkeypatch.setattr(ranker, "train", no_training)
    problems = toy.eval_problems(250)
    train = ["ranker", "train", "--out", str(tmp_path / "r")]

    no_tokens = _samples_run(tmp_path / "a", [{"problem_id": problems[0].id, "sample": 0}])
    err = _fails(train + ["--samples", str(no_tokens)], capsys)
    assert "samples.jsonl:1: no token count (field 'tokens' = None)" in err

    one_length = _samples_run(tmp_path / "b", [{"problem_id": p.id, "sample": 0, "tokens": 50} for p in problems])
    assert "every prompt has the same mean length (50.0 tokens)" in _fails(train + ["--samples", str(one_length)], capsys)

    few = _samples_run(tmp_path / "c", [{"problem_id": p.id, "sample": 0, "tokens": i} for i, p in enumerate(problems[:20])])
    err = _fails(train + ["--samples", str(few)], capsys)
    assert "20 distinct prompts: 18 for training after holding out 10%, fewer than one list of --list-size 32" in err

    unknown = _samples_run(tmp_path / "d", [{"problem_id": "nope", "sample": 0, "tokens": 3}])
    assert "problem_id 'nope' is not in benchmark 'toy'" in _fails(train + ["--samples", str(unknown)], capsys)

    assert "no such file" in _fails(train + ["--samples", str(tmp_path / "missing.jsonl")], capsys)
    orphan = tmp_path / "orphan.jsonl"
    orphan.write_text(json.dumps({"problem_id": problems[0].id, "tokens": 3}) + "\n")
    err = _fails(train + ["--samples", str(orphan)], capsys)
    assert "there is no" in err and "run.json" in err and "give --benchmark" in err
    assert "--backbone nope: no config.json" in _fails(train + ["--samples", str(few), "--backbone", "nope"], capsys)
    assert "--list-size must be >= 2" in _fails(train + ["--samples", str(few), "--list-size", "1"], capsys)
    assert "no ranker.json there" in _fails(["ranker", "score", "--ranker", str(tmp_path), "--prompts", str(orphan)], capsys)


def test_bench_serve_rejects_bad_schedule_flags(tmp_path, capsys):
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "config.json").write_text("{}")
    base = ["bench-serve", "--model", str(tmp_path / "m"), "--out", str(tmp_path / "out")]
    assert "--schedule ltr needs --ranker DIR" in _fails(base + ["--schedule", "fcfs,ltr"], capsys)
    assert "--ranker is only used by the ltr arm" in _fails(base + ["--ranker", "x"], capsys)
    assert "--ltr-window must be a finite number" in _fails(base + ["--schedule", "fcfs", "--ltr-window", "inf"], capsys)
    assert "--rounds must be >= 1" in _fails(base + ["--schedule", "fcfs", "--rounds", "0"], capsys)
    assert "2 --ranker for 1 --model" in _fails(base + ["--schedule", "ltr", "--ranker", "a", "--ranker", "b"], capsys)
    assert "no ranker.json there" in _fails(base + ["--schedule", "ltr", "--ranker", str(tmp_path)], capsys)
