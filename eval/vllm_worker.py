"""One vLLM offline engine, driven over JSON lines: `python -m conciser.eval.vllm_worker`.

Started by `conciser.eval.backends.VLLMBackend`; not a user command. Protocol (one JSON object per
line): stdin gets {"init": LLM kwargs}, then {"sampling": {...}, "requests": [...]} batches, then
{"quit": true}; the protocol stream gets {"ready": true} and, per request as it finishes,
{"key", "token_ids", "finish_reason"}, then {"done": true} per batch, or {"error": "..."}.
The protocol uses a copy of the original stdout; fd 1 is pointed at stderr so that vLLM's own logs
(and those of the processes it starts) cannot corrupt it.
"""

from __future__ import annotations

import json
import os
import sys
import traceback


def _engine_loop(llm, batch: dict, out) -> None:
    from vllm import SamplingParams

    try:
        from vllm.inputs import TokensPrompt
    except ImportError:  # older layouts
        TokensPrompt = dict  # type: ignore[assignment,misc]

    s = batch["sampling"]
    engine = llm.llm_engine
    keys = {}
    for i, r in enumerate(batch["requests"]):
        params = SamplingParams(n=1, temperature=s["temperature"], top_p=s["top_p"], max_tokens=r["max_tokens"],
                                seed=r["seed"], detokenize=False)
        rid = f"r{i}"
        keys[rid] = r["key"]
        engine.add_request(rid, TokensPrompt(prompt_token_ids=r["prompt_ids"]), params)
    # Step the engine ourselves so that every sample is reported the moment it finishes.
    while engine.has_unfinished_requests():
        for o in engine.step():
            if not o.finished:
                continue
            c = o.outputs[0]
            reason = "length" if c.finish_reason == "length" else "stop"
            out.write(json.dumps({"key": keys[o.request_id], "token_ids": list(c.token_ids), "finish_reason": reason}) + "\n")
            out.flush()


def main() -> int:
    out = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    llm = None
    for line in sys.stdin:
        if not line.strip():
            continue
        msg = json.loads(line)
        try:
            if "init" in msg:
                from vllm import LLM

                llm = LLM(**msg["init"])
                out.write(json.dumps({"ready": True}) + "\n")
            elif "requests" in msg:
                _engine_loop(llm, msg, out)
                out.write(json.dumps({"done": True}) + "\n")
            elif msg.get("quit"):
                break
        except Exception as exc:  # reported to the parent, which raises it
            traceback.print_exc()
            out.write(json.dumps({"error": f"{type(exc).__name__}: {exc}"}) + "\n")
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
