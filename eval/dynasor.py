"""Dynasor-CoT early exit (hao-ai-lab/Dynasor, MIT), the intended rule, as an eval-time baseline.

Per sample, repeat until EOS or the token cap:
  1. generate a chunk of `chunk` tokens of the main trajectory;
  2. probe: the prefix + the benchmark's probe text (math: "... Oh, I suddenly got the answer to the
     whole problem, **Final Answer**\\n\\n\\[ \\boxed{"; toy: " </think> \\boxed{"), at most
     `probe_tokens` tokens, same sampling; the probe is discarded, the main trajectory never sees it;
  3. the probe's answer is its text up to the first unmatched "}" (empty if none); it is *certain*
     if the text contains none of the hedge words {wait, hold, but, okay, no, hmm} (lower-case
     substring test, as in Dynasor; "know" trips "no");
  4. exit when the last `window` probe answers are all non-empty, all certain and all
     mathematically equal (the grader decides, as for maj@k). On exit the answer is appended to the
     main trajectory ("</think>" first if thinking is still open, then the benchmark's exit text).
Dynasor's vLLM/SGLang server code (`entropy.py::should_early_exit`) returns True regardless of the
consistency checks; this implements the rule its chat path and paper describe (methods-more §8).

Tokens are reported separately: `tokens` is the main trajectory including the appended answer,
`probe_tokens` what the probes generated. Probes re-read the prefix, so use vLLM (prefix caching)
for real runs; the transformers backend recomputes the prefix each round.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Callable, Sequence

from conciser.eval.backends import Request
from conciser.rewards.grading import closing_brace

HEDGE_WORDS = ("wait", "hold", "but", "okay", "no", "hmm")


@dataclass
class DynasorSample:
    key: str
    token_ids: list[int]
    finish_reason: str = ""          # stop | length | early_exit
    probe_tokens: int = 0
    probes: list = field(default_factory=list)   # [answer, certain] per probe, in order


def probe_answer(text: str) -> str:
    """Text up to the first unmatched closing brace (the probe opened "\\boxed{"), else ""."""
    end = closing_brace(text, 0)  # the grader's brace matching, so probe and grading agree
    return text[:end].strip() if end >= 0 else ""


def is_certain(text: str) -> bool:
    low = text.lower()
    return not any(w in low for w in HEDGE_WORDS)


def should_exit(probes: Sequence[tuple[str, bool]], window: int, equal: Callable[[str, str], bool]) -> bool:
    """The intended rule: the last `window` probes are non-empty, certain, and equal to the latest."""
    if len(probes) < window:
        return False
    last = probes[-window:]
    if not all(a and certain for a, certain in last):
        return False
    ref = last[-1][0]
    return all(equal(ref, a) for a, _ in last[:-1])


def _seed(seed: int, round_: int, kind: str) -> int:
    h = hashlib.sha256(f"{seed}|{round_}|{kind}".encode()).digest()
    return int.from_bytes(h[:4], "little") & 0x7FFFFFFF


def dynasor_generate(backend, requests: Sequence[Request], *, tokenizer, bench, prefill: str, window: int, chunk: int,
                     probe_tokens: int, temperature: float, top_p: float,
                     equal: Callable[[list[tuple[str, str]]], list[bool]],
                     on_done: Callable[[DynasorSample], None] | None = None, progress: bool = False) -> list[DynasorSample]:
    from tqdm.auto import tqdm

    probe_ids = list(tokenizer(bench.probe, add_special_tokens=False).input_ids)
    state = {r.key: DynasorSample(r.key, []) for r in requests}
    active = list(requests)
    bar = tqdm(total=len(requests), desc=f"{bench.name} dynasor", unit="sample", disable=not progress)

    def finish(r: Request, reason: str) -> None:
        s = state[r.key]
        s.finish_reason = reason
        bar.update(1)
        if on_done is not None:
            on_done(s)

    round_ = 0
    while active:
        main = [Request(r.key, r.prompt_ids + state[r.key].token_ids,
                        min(chunk, r.max_tokens - len(state[r.key].token_ids)), _seed(r.seed, round_, "main"), r.group)
                for r in active]
        stopped = set()
        for g in backend.generate(main, temperature=temperature, top_p=top_p):
            state[g.key].token_ids += g.token_ids
            if g.finish_reason == "stop":
                stopped.add(g.key)
        still = []
        for r in active:
            s = state[r.key]
            if r.key in stopped:
                finish(r, "stop")
            elif len(s.token_ids) >= r.max_tokens:
                finish(r, "length")
            else:
                still.append(r)
        active = still
        if not active:
            break
        probes = [Request(r.key, r.prompt_ids + state[r.key].token_ids + probe_ids, probe_tokens,
                          _seed(r.seed, round_, "probe"), r.group) for r in active]
        for g in backend.generate(probes, temperature=temperature, top_p=top_p):
            s = state[g.key]
            s.probe_tokens += len(g.token_ids)
            text = tokenizer.decode(g.token_ids, skip_special_tokens=True)
            s.probes.append([probe_answer(text), is_certain(text)])
        # One batched equivalence check for every sample whose last `window` probes could qualify.
        pairs, owners = [], []
        for r in active:
            last = state[r.key].probes[-window:]
            if len(last) == window and all(a and c for a, c in last):
                for a, _ in last[:-1]:
                    pairs.append((last[-1][0], a))
                    owners.append(r.key)
        verdicts = dict.fromkeys(owners, True)
        if pairs:
            for owner, ok, (a, b) in zip(owners, equal(pairs), pairs):
                verdicts[owner] = verdicts[owner] and (ok or a == b)
        still = []
        for r in active:
            s = state[r.key]
            if verdicts.get(r.key, False):
                answer = s.probes[-1][0]
                text_so_far = prefill + tokenizer.decode(s.token_ids, skip_special_tokens=True)
                suffix = bench.exit_suffix.format(answer=answer)
                if "</think>" not in text_so_far and "</think>" not in suffix:
                    suffix = "\n\n</think>" + suffix
                s.token_ids += list(tokenizer(suffix, add_special_tokens=False).input_ids)
                finish(r, "early_exit")
            else:
                still.append(r)
        active = still
        round_ += 1
    bar.close()
    return [state[r.key] for r in requests]
