"""The toy task `toy-chain` (what `toy` means today): chained modular addition, solved step by step,
with verbose "overthinking" traces. Also the registry of toy tasks (`TASKS`, `task(name)`) and the
toy tokenizer builder they share; the second task, `toy-scan`, is conciser/toy_scan.py.

A problem is a start digit and k named operands; the answer is the running sum mod 10:

    prompt      solve: start=8; a3; b9; c4.
    minimal     <think> a3:8=1. b9:1=0. c4:0=4.</think>\\boxed{4}<|end|>

A step "b9:1=0." reads "step b adds 9 to 1, giving 0". It repeats the step's name and operand
exactly as the prompt writes them ("b9"), so each needed step is a local lookup a tiny transformer
learns fast (a one-token induction copy, then a sum of two nearby digits). Each word, digit and
symbol is one token, so the minimal completion has 7k + 7 tokens (EOS included, as TRL counts it).

The *verbose* traces the base model is trained on (DESIGN §4) add what makes the real problem hard:
  * slips: a step's result is sometimes wrong; a re-check always follows and fixes it, so reflection
    sometimes pays and dropping checks blindly costs accuracy until the policy stops slipping;
  * redundant re-checks ("wait , check b: 1 + 9 = 0 . ok .") and filler of random length;
  * a final re-verification pass of all steps, R1 style;
  * on easy levels, an occasional shortcut (answer guessed with no steps), sometimes right.
Hard levels' verbose traces overrun the default generation cap (`DEFAULT_MAX_COMPLETION`) although
the base solves them with an ample budget, so at the default cap conciseness *raises* accuracy.

Answers are graded by `conciser.rewards.grading.grade_toy` (the last \\boxed{} after </think>).
Everything is deterministic given a seed. `build_tokenizer()` makes the word-level tokenizer with its
chat template; nothing is downloaded.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from dataclasses import dataclass

from conciser.errors import UserError, did_you_mean

NAME = "toy-chain"
# Toy task names (for data.dataset, model.name_or_path, --benchmark, `conciser toy-base --task`):
# `toy` is the default task, today the chained sums of this module; `toy-scan` is conciser.toy_scan.
TASKS = ("toy", "toy-chain", "toy-scan")


def task(name: str):
    """The module of the toy task called `name` (see TASKS). Each has the same interface: LEVELS,
    DEFAULT_MAX_COMPLETION, EVAL_SEED, Verbosity, make_problem(s), eval_problems, train_problems,
    minimal_trace, verbose_trace, build_tokenizer; its problems have id, level, prompt, answer,
    minimal_tokens and to_row()."""
    if name in ("toy", "toy-chain"):
        import sys

        return sys.modules[__name__]
    if name == "toy-scan":
        from conciser import toy_scan

        return toy_scan
    raise UserError(f"unknown toy task {name!r}{did_you_mean(name, TASKS)}")


# Difficulty level -> number of steps k. Level 1 is easy, level 5 hard.
LEVELS: dict[int, int] = {1: 2, 2: 3, 3: 4, 4: 5, 5: 6}
NAMES = "abcdefghijkl"
# The generation cap used by toy training and evaluation unless a recipe says otherwise. The
# verbose base overruns it on levels 4-5, as R1-distilled models overrun theirs on hard problems.
DEFAULT_MAX_COMPLETION = 160
EOS = "<|end|>"
PAD = "<pad>"
THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
SYSTEM_PROMPT = None  # the toy has no system prompt; kept explicit for the chat template


def minimal_tokens(k: int) -> int:
    """Token count of the shortest correct completion for a k-step problem (EOS included)."""
    return 7 * k + 7


@dataclass(frozen=True)
class ToyProblem:
    """One toy problem. `prompt` is the user message; `answer` the gold digit as a string."""

    id: str
    level: int
    start: int
    operands: tuple[int, ...]
    answer: str
    minimal_tokens: int

    @property
    def prompt(self) -> str:
        ops = "; ".join(f"{NAMES[i]}{v}" for i, v in enumerate(self.operands))
        return f"solve: start={self.start}; {ops}."

    def to_row(self) -> dict:
        """A dataset row: the column names every conciser dataset uses."""
        return {
            "problem_id": self.id,
            "prompt": [{"role": "user", "content": self.prompt}],
            "answer": self.answer,
            "level": self.level,
            "minimal_tokens": self.minimal_tokens,
        }


def make_problem(rng: random.Random, level: int) -> ToyProblem:
    k = LEVELS[level]
    start = rng.randrange(10)
    operands = tuple(rng.randrange(10) for _ in range(k))
    answer = (start + sum(operands)) % 10
    key = f"{level}:{start}:{','.join(map(str, operands))}"
    pid = f"toy-L{level}-" + hashlib.sha1(key.encode()).hexdigest()[:10]
    return ToyProblem(pid, level, start, operands, str(answer), minimal_tokens(k))


def make_problems(n: int, seed: int, levels: tuple[int, ...] = tuple(LEVELS), exclude: set[str] = frozenset(),
                  make=None) -> list[ToyProblem]:
    """n distinct problems, levels cycled evenly, none of whose ids is in `exclude`. `make(rng, level)`
    draws one problem (default: this task's `make_problem`; other toy tasks pass theirs)."""
    make = make or make_problem
    rng = random.Random(seed)
    out: list[ToyProblem] = []
    seen = set(exclude)
    i = 0
    while len(out) < n:
        p = make(rng, levels[i % len(levels)])
        i += 1
        if p.id in seen:
            if i > 100 * n + 1000:
                raise ValueError(f"cannot draw {n} distinct toy problems from levels {levels}")
            continue
        seen.add(p.id)
        out.append(p)
    return out


# Held-out evaluation problems come from their own seed; training sets exclude their ids.
EVAL_SEED = 20261121


def eval_problems(n: int = 250) -> list[ToyProblem]:
    return make_problems(n, seed=EVAL_SEED)


def train_problems(n: int, seed: int = 0) -> list[ToyProblem]:
    held_out = {p.id for p in eval_problems(1000)}
    return make_problems(n, seed=seed, exclude=held_out)


@dataclass(frozen=True)
class Verbosity:
    """How the overthinking base writes. Probabilities are per step unless noted."""

    p_slip: float = 0.05          # a step's result is wrong; a fixing re-check always follows
    p_check: float = 0.7          # redundant re-check of a correct step
    p_filler: float = 0.6         # filler phrase(s) after a step (1-2 phrases)
    p_final_pass: float = 0.7     # per problem: re-verify every step at the end
    p_opening: float = 0.8        # per problem: a filler phrase before the first step
    p_shortcut: float = 0.03      # per problem, levels with k <= 3 only: guess with no steps
    shortcut_max_k: int = 3


FILLERS = ("hmm, let me think.", "so far so good.", "let me be careful.")


def _step(name: str, prev: int, v: int, result: int) -> str:
    return f"{name}{v}:{prev}={result}."


def _completion(parts: list[str], answer: str) -> str:
    # The space after <think> makes the first step name the same token as the others (" a");
    # none before special tokens, where a space would be a token of its own.
    return THINK_OPEN + " " + " ".join(parts) + THINK_CLOSE + "\\boxed{" + answer + "}" + EOS


def verbose_trace(p: ToyProblem, rng: random.Random, style: Verbosity = Verbosity()) -> str:
    """One overthinking completion for `p` (always correct; its slips are fixed)."""
    k = len(p.operands)
    if k <= style.shortcut_max_k and rng.random() < style.p_shortcut:
        return _completion(["hmm, quick."], p.answer)
    out: list[str] = []
    if rng.random() < style.p_opening:
        out.append(rng.choice(FILLERS))
    cur = p.start
    for i, v in enumerate(p.operands):
        name = NAMES[i]
        nxt = (cur + v) % 10
        if rng.random() < style.p_slip:
            wrong = (nxt + rng.randrange(1, 10)) % 10
            out += [_step(name, cur, v, wrong), "wait, check", _step(name, cur, v, nxt), "fix."]
        else:
            out.append(_step(name, cur, v, nxt))
            if rng.random() < style.p_check:
                out += ["wait, check", _step(name, cur, v, nxt), "ok."]
        if rng.random() < style.p_filler:
            out += [rng.choice(FILLERS) for _ in range(rng.randint(1, 2))]
        cur = nxt
    if rng.random() < style.p_final_pass:
        out.append("wait, let me verify again.")
        cur = p.start
        for i, v in enumerate(p.operands):
            nxt = (cur + v) % 10
            out.append(_step(NAMES[i], cur, v, nxt))
            cur = nxt
        out.append("ok.")
    return _completion(out, p.answer)


def minimal_trace(p: ToyProblem) -> str:
    out, cur = [], p.start
    for i, v in enumerate(p.operands):
        nxt = (cur + v) % 10
        out.append(_step(NAMES[i], cur, v, nxt))
        cur = nxt
    return _completion(out, p.answer)


# ---------------------------------------------------------------- tokenizer

CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'user' %}<|user|>{{ message['content'] }}"
    "{% elif message['role'] == 'system' %}<|system|>{{ message['content'] }}"
    "{% elif message['role'] == 'assistant' %}<|assistant|>{{ message['content'] }}"
    "{% if not message['content'].endswith('<|end|>') %}<|end|>{% endif %}"
    "{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)
SPECIAL_TOKENS = [PAD, EOS, "<|user|>", "<|assistant|>", "<|system|>"]
THINK_TOKENS = [THINK_OPEN, THINK_CLOSE]  # added but not "special": decoding keeps them, as for R1


def _tokenizer_corpus() -> list[str]:
    """Texts covering every word the toy uses (prompts, all trace phrases, answers)."""
    rng = random.Random(0)
    texts = []
    for level in LEVELS:
        for _ in range(60):
            p = make_problem(rng, level)
            texts += [p.prompt, verbose_trace(p, rng, Verbosity(p_shortcut=0.5)), minimal_trace(p)]
    return texts


def build_tokenizer(texts: list[str] | None = None):
    """The toy tokenizer: a byte-level BPE (Qwen2's pre-tokenizer) in which every toy word, digit
    and symbol is one token, plus the chat template. Built locally and deterministically from
    `texts` (default: this task's prompts and traces; another toy task passes its own).

    It is a `Qwen2Tokenizer`, because transformers 5 loads any `qwen2` model's tokenizer through
    that class (`AutoTokenizer`, and so vLLM); a different tokenizer class would be silently
    replaced on reload and tokenize differently.
    """
    from tokenizers import Tokenizer, models, trainers
    from transformers import AddedToken, Qwen2Tokenizer

    shape = Qwen2Tokenizer(vocab={PAD: 0}, merges=[])  # only to borrow Qwen2's normalizer + pre-tokenizer
    bpe = Tokenizer(models.BPE())
    bpe.normalizer = shape.backend_tokenizer.normalizer
    bpe.pre_tokenizer = shape.backend_tokenizer.pre_tokenizer
    from tokenizers import pre_tokenizers as pt

    trainer = trainers.BpeTrainer(vocab_size=2000, min_frequency=1, show_progress=False,
                                  special_tokens=SPECIAL_TOKENS + THINK_TOKENS,
                                  initial_alphabet=pt.ByteLevel.alphabet())
    # Added tokens are split out before BPE at encode time, so train on the pieces between them.
    texts = _tokenizer_corpus() if texts is None else texts
    pieces = re.split("|".join(re.escape(t) for t in SPECIAL_TOKENS + THINK_TOKENS), "\n".join(texts))
    bpe.train_from_iterator([piece for piece in pieces if piece], trainer=trainer)
    state = json.loads(bpe.to_str())["model"]
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in state["merges"]]
    tok = Qwen2Tokenizer(vocab=state["vocab"], merges=merges, unk_token=None, eos_token=EOS,
                         pad_token=PAD, bos_token=None, model_max_length=2048)
    tok.add_special_tokens({"additional_special_tokens": ["<|user|>", "<|assistant|>", "<|system|>"]})
    tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in THINK_TOKENS])
    tok.chat_template = CHAT_TEMPLATE
    tok.padding_side = "left"
    return tok
