"""Lenient answer extraction: the answer math-verify's own extraction reads from unboxed text.

Used by `grading` with ``extraction="lenient"`` when no ``\\boxed{}`` follows the thinking, as the
Qwen2.5-Math and lighteval harnesses read unboxed answers; training rewards never use it.
math-verify's ``parse`` with LaTeX and plain-expression targets tries its patterns by priority
("final answer is ...", "answer: ...", the last ``$...$`` / ``\\(...\\)`` environment, then the last
number or expression) and returns the parsed value followed by the matched string. We keep the
string, and the grading workers parse it again exactly as they parse a boxed answer.

The parse is bounded by math-verify's own (signal-based) timeout, which works on the main thread
only; off the main thread it runs without one (the answer part after the thinking is short).
"""

from __future__ import annotations

import logging
import threading


def lenient_answer(text: str, timeout: float) -> str | None:
    from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse

    on_main = threading.current_thread() is threading.main_thread()
    logging.getLogger("math_verify").setLevel(logging.ERROR)   # its "timeout disabled" notice
    found = parse(text, [LatexExtractionConfig(), ExprExtractionConfig()], fallback_mode="first_match",
                  extraction_mode="first_match", parsing_timeout=max(1, int(timeout)) if on_main else None)
    strings = [x for x in found if isinstance(x, str) and x.strip()]
    return strings[-1].strip() if strings else None
