"""Length ranker: which prompts will get the longer answers (learning to rank, as vllm-ltr does).

Exact output lengths cannot be predicted from a prompt, but their order within a batch can, well
enough to approximate shortest-job-first scheduling (Fu et al., "Efficient LLM Scheduling by
Learning to Rank", arXiv 2408.15792). The paper's setup, which this follows: a small LM as
`AutoModelForSequenceClassification` with one output (a score per prompt), trained with the ListMLE
loss on lists of 32 prompts with Adam, evaluated by Kendall's tau on held-out prompts.

    from conciser.eval.ranker import Ranker
    ranker = Ranker.load("runs/ranker")
    scores = ranker.score(["solve: start=8; a3; b9; c4."])    # higher = longer answer expected
    q = ranker.quantile(scores[0])                            # 0 = shortest seen in training, 1 = longest

A ranker folder holds the model and tokenizer (`save_pretrained`) and `ranker.json`: the training
settings, the held-out `kendall_tau` and `pair_accuracy`, and the sorted scores of the training
prompts (`calibration`), which turn a raw score into a length quantile without any scale.

Training data are (prompt, generated tokens) pairs from `conciser eval` runs of the model to be
served (`samples.jsonl`, see `conciser.eval.ranker_cli`). Targets are per prompt: the mean token
count over its samples. Held-out prompts are split off by prompt, never by sample.
"""

from __future__ import annotations

import json
import logging
import math
import random
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path

from conciser.errors import UserError

log = logging.getLogger(__name__)

RANKER_FILE = "ranker.json"
CALIBRATION_POINTS = 1001   # score quantiles kept with the ranker (every 0.1%)

# The default backbone on the toy: a tiny random-init Qwen2 on the toy tokenizer, shaped like the
# toy base (conciser.trainers.toy_sft.ToyBaseConfig; eval may not import trainers) but smaller, as
# the paper's ranker (OPT-125M) is small next to the served model. head_dim 32 as the toy base's.
TOY_BACKBONE = {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2, "num_key_value_heads": 1,
                "intermediate_size": 128, "max_position_embeddings": 1024}


@dataclass(frozen=True)
class RankerConfig:
    """How a ranker is trained. The defaults are the paper's where it has one (lists of 32, Adam,
    weight decay 0.01, 10% held out, 5 epochs); the learning rate is theirs (2e-5) for a pretrained
    backbone and 1e-3 for the random-init toy backbone, which learns nothing at 2e-5."""

    backbone: str = "toy"           # "toy" (random-init tiny Qwen2 on the toy tokenizer) or an HF model folder
    list_size: int = 32             # prompts per ListMLE list (one optimizer step per list)
    epochs: int = 5
    lr: float | None = None         # None: 2e-5 for a folder backbone, 1e-3 for "toy"
    weight_decay: float = 0.01      # Adam's L2 term, as the paper's torch.optim.Adam(weight_decay=0.01)
    heldout: float = 0.1            # fraction of prompts held out for Kendall's tau
    max_length: int = 512           # prompt tokens seen by the ranker (longer prompts are cut)
    # torch CPU threads while training and scoring. A tiny ranker runs ~10x faster on one thread on
    # a busy 2-core machine (intra-op parallelism costs more than it saves), and leaves the other
    # cores to the server when it ranks requests in bench-serve's client. 0: torch's default.
    threads: int = 1
    seed: int = 0

    def resolved_lr(self) -> float:
        if self.lr is not None:
            return self.lr
        return 1e-3 if self.backbone == "toy" else 2e-5


# ---------------------------------------------------------------- loss and metrics

def listmle_loss(scores, lengths, generator=None):
    """ListMLE (Xia et al. 2008): minus the log-likelihood, under the Plackett-Luce model of the
    scores, of the true order of each list -- longest first, so a higher score means longer.

    scores, lengths: tensors [lists, items] (or [items] for one list). Per list, with items sorted
    by length descending (ties in random order, as allRank's listMLE does),
        loss = sum_i [ log sum_{j >= i} exp(s_j) - s_i ];
    returned as the mean over lists.
    """
    import torch

    if scores.dim() == 1:
        scores, lengths = scores.unsqueeze(0), lengths.unsqueeze(0)
    # A random permutation first, then a stable sort: tied lengths end up in random order.
    perm = torch.randperm(scores.shape[-1], generator=generator, device=scores.device)
    s, y = scores[:, perm], lengths[:, perm]
    order = torch.sort(y, dim=-1, descending=True, stable=True).indices
    s = torch.gather(s, -1, order)
    # log sum_{j >= i} exp(s_j): a reversed cumulative logsumexp
    tail = torch.logcumsumexp(s.flip(-1), dim=-1).flip(-1)
    return (tail - s).sum(-1).mean()


def kendall_tau(x: list[float], y: list[float]) -> float | None:
    """Kendall's tau-b (ties in either list handled as scipy.stats.kendalltau does); None if
    undefined (fewer than 2 items, or one list constant)."""
    import numpy as np

    a, b = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if len(a) != len(b):
        raise ValueError(f"kendall_tau: {len(a)} scores for {len(b)} lengths")
    if len(a) < 2:
        return None
    concordant = discordant = tied_a = tied_b = 0
    for i in range(len(a) - 1):   # O(n^2) in numpy rows: held-out sets are hundreds to a few thousand
        da, db = np.sign(a[i + 1:] - a[i]), np.sign(b[i + 1:] - b[i])
        prod = da * db
        concordant += int((prod > 0).sum())
        discordant += int((prod < 0).sum())
        tied_a += int(((da == 0) & (db != 0)).sum())
        tied_b += int(((db == 0) & (da != 0)).sum())
    denom = math.sqrt((concordant + discordant + tied_a) * (concordant + discordant + tied_b))
    return (concordant - discordant) / denom if denom else None


def pair_accuracy(scores: list[float], lengths: list[float]) -> float | None:
    """Of the pairs with different lengths, the fraction the scores order the same way (a tie in
    the scores counts half). None if every length is the same."""
    import numpy as np

    s, y = np.asarray(scores, dtype=float), np.asarray(lengths, dtype=float)
    right = total = 0.0
    for i in range(len(s) - 1):
        dy, ds = np.sign(y[i + 1:] - y[i]), np.sign(s[i + 1:] - s[i])
        mask = dy != 0
        total += mask.sum()
        right += (ds[mask] == dy[mask]).sum() + 0.5 * (ds[mask] == 0).sum()
    return float(right / total) if total else None


# ---------------------------------------------------------------- the model

def _toy_tokenizer():
    from conciser import toy

    tok = toy.build_tokenizer()
    tok.padding_side = "right"
    return tok


def build_model(backbone: str, seed: int = 0):
    """(model, tokenizer) for `backbone`: "toy", or an HF folder loaded as a one-output sequence
    classifier (a causal LM's body is kept and a new score head added, as transformers does)."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, Qwen2Config, Qwen2ForSequenceClassification

    torch.manual_seed(seed)
    if backbone == "toy":
        tok = _toy_tokenizer()
        cfg = Qwen2Config(vocab_size=len(tok), num_labels=1, pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
                          bos_token_id=None, rope_theta=10000.0, **TOY_BACKBONE)
        return Qwen2ForSequenceClassification(cfg), tok
    path = Path(backbone).expanduser()
    if not (path / "config.json").is_file():
        raise UserError(f"--backbone {backbone}: no config.json there; give a local HF model folder "
                        "(e.g. the served model, or `conciser toy-base` for the toy) or 'toy'")
    tok = AutoTokenizer.from_pretrained(path)
    if tok.pad_token is None:   # the classifier pools the last non-pad token, so it needs a pad id
        tok.pad_token = tok.eos_token
    tok.padding_side = "right"
    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=1, pad_token_id=tok.pad_token_id)
    return model, tok


def _forward(model, tok, texts: list[str], max_length: int):
    enc = tok(texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt",
              add_special_tokens=False)
    return model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).logits[:, 0].float()


class _threads:
    """Run torch on `n` CPU threads inside the block (0: leave torch's setting alone)."""

    def __init__(self, n: int):
        self.n, self.old = n, None

    def __enter__(self):
        import torch

        if self.n:
            self.old = torch.get_num_threads()
            torch.set_num_threads(self.n)

    def __exit__(self, *exc):
        import torch

        if self.old is not None:
            torch.set_num_threads(self.old)


def score_texts(model, tok, texts: list[str], max_length: int, batch: int = 256) -> list[float]:
    import torch

    model.eval()
    out: list[float] = []
    with torch.inference_mode():
        for i in range(0, len(texts), batch):
            out += _forward(model, tok, texts[i:i + batch], max_length).tolist()
    return out


# ---------------------------------------------------------------- training

@dataclass
class TrainResult:
    """What `train` measured; saved in ranker.json."""

    kendall_tau: float | None
    pair_accuracy: float | None
    n_train: int
    n_heldout: int
    train_loss: list[float] = field(default_factory=list)     # mean ListMLE loss per epoch
    train_seconds: float = 0.0


def split_heldout(prompts: list[str], fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """(train, held-out) indices: a seeded shuffle of the prompts, `fraction` held out."""
    idx = list(range(len(prompts)))
    random.Random(seed).shuffle(idx)
    n_held = int(round(fraction * len(idx)))
    return sorted(idx[n_held:]), sorted(idx[:n_held])


def check_data(prompts: list[str], lengths: list[float], cfg: RankerConfig) -> None:
    """Fail before training on data a ranker cannot learn from (UserError naming the problem)."""
    if len(prompts) != len(lengths):
        raise ValueError(f"{len(prompts)} prompts for {len(lengths)} lengths")
    if cfg.list_size < 2:
        raise UserError(f"--list-size must be >= 2 (ListMLE ranks the prompts of a list), got {cfg.list_size}")
    if not 0.0 < cfg.heldout < 1.0:
        raise UserError(f"--heldout must be a fraction between 0 and 1 (the paper holds out 0.1), got {cfg.heldout}")
    if cfg.epochs < 1:
        raise UserError(f"--epochs must be >= 1, got {cfg.epochs}")
    if len(set(lengths)) < 2:
        raise UserError(f"every prompt has the same mean length ({lengths[0] if lengths else '-'} tokens): there is no "
                        "order to learn; use samples of a model whose answers vary in length")
    train_idx, held_idx = split_heldout(prompts, cfg.heldout, cfg.seed)
    if len(train_idx) < cfg.list_size:
        raise UserError(f"{len(prompts)} distinct prompts: {len(train_idx)} for training after holding out {cfg.heldout:.0%}, "
                        f"fewer than one list of --list-size {cfg.list_size}; evaluate the model on more problems "
                        "or lower --list-size")
    if len(held_idx) < 2:
        raise UserError(f"{len(prompts)} distinct prompts leave {len(held_idx)} held out at --heldout {cfg.heldout}: "
                        "Kendall's tau needs at least 2; raise --heldout or give more prompts")


def train(prompts: list[str], lengths: list[float], cfg: RankerConfig, progress: bool = True):
    """Fit a ranker on (prompt, mean generated tokens) pairs.

    Returns (model, tokenizer, TrainResult, the training prompts' scores for calibration).

    One Adam step per list of `cfg.list_size` training prompts (a fresh shuffle each epoch; a last
    list shorter than 2 is dropped). Kendall's tau and pair accuracy are measured on the held-out
    prompts after training.
    """
    check_data(prompts, lengths, cfg)
    with _threads(cfg.threads):
        return _train(prompts, lengths, cfg, progress)


def _train(prompts: list[str], lengths: list[float], cfg: RankerConfig, progress: bool):
    import time

    import torch

    train_idx, held_idx = split_heldout(prompts, cfg.heldout, cfg.seed)
    model, tok = build_model(cfg.backbone, cfg.seed)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.resolved_lr(), weight_decay=cfg.weight_decay)
    gen = torch.Generator().manual_seed(cfg.seed)
    rng = random.Random(cfg.seed)
    result = TrainResult(kendall_tau=None, pair_accuracy=None, n_train=len(train_idx), n_heldout=len(held_idx))
    t0 = time.perf_counter()
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=cfg.epochs * math.ceil(len(train_idx) / cfg.list_size), desc="ranker", unit="list")
    for _ in range(cfg.epochs):
        model.train()
        order = train_idx[:]
        rng.shuffle(order)
        losses = []
        for i in range(0, len(order), cfg.list_size):
            chunk = order[i:i + cfg.list_size]
            if len(chunk) < 2:
                continue
            scores = _forward(model, tok, [prompts[j] for j in chunk], cfg.max_length)
            loss = listmle_loss(scores, torch.tensor([float(lengths[j]) for j in chunk]), generator=gen)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
            if bar is not None:
                bar.update(1)
        result.train_loss.append(sum(losses) / len(losses))
    if bar is not None:
        bar.close()
    result.train_seconds = time.perf_counter() - t0
    held = score_texts(model, tok, [prompts[j] for j in held_idx], cfg.max_length)
    truth = [lengths[j] for j in held_idx]
    result.kendall_tau, result.pair_accuracy = kendall_tau(held, truth), pair_accuracy(held, truth)
    return model, tok, result, score_texts(model, tok, [prompts[j] for j in train_idx], cfg.max_length)


def calibration(scores: list[float], points: int = CALIBRATION_POINTS) -> list[float]:
    """`points` evenly spaced quantiles of `scores` (all of them, sorted, when there are fewer)."""
    s = sorted(scores)
    if len(s) <= points:
        return s
    return [s[round(i * (len(s) - 1) / (points - 1))] for i in range(points)]


def save(out: Path, model, tok, cfg: RankerConfig, result: TrainResult, train_scores: list[float], extra: dict) -> Path:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    meta = {"config": asdict(cfg), "lr": cfg.resolved_lr(), **asdict(result),
            "calibration": calibration(train_scores), "score_meaning": "higher = longer answer expected", **extra}
    (out / RANKER_FILE).write_text(json.dumps(meta, indent=2) + "\n")
    return out


@dataclass
class _ScoreCall:
    """One `Ranker.score` call waiting to be scored in a shared forward."""

    texts: list[str]
    scores: list[float] = field(default_factory=list)
    error: BaseException | None = None
    done: bool = False

    def result(self) -> list[float]:
        if self.error is not None:
            raise self.error
        return self.scores


class Ranker:
    """A trained ranker, loaded for scoring. `score` is thread-safe and coalesces: one forward runs
    at a time (the ranker is one small model on the client's CPU), and the calls that arrive while
    it runs are scored together in the next one. Under a burst of arrivals the cost per request is
    then about one forward's time, not the queue that one forward per call would build.
    `forwards` counts the forwards run, `scored` the texts scored."""

    def __init__(self, model, tok, meta: dict, path: Path | None = None):
        self.model, self.tok, self.meta, self.path = model, tok, meta, path
        self.max_length = int(meta.get("config", {}).get("max_length", 512))
        self.threads = int(meta.get("config", {}).get("threads", 1))
        self._calibration = list(meta.get("calibration") or [])
        self._cv = threading.Condition()
        self._pending: list[_ScoreCall] = []    # calls waiting for the next forward
        self._busy = False                      # a forward is running
        self.forwards = self.scored = 0
        self.model.eval()

    @classmethod
    def load(cls, path: str | Path) -> "Ranker":
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        path = Path(path).expanduser()
        meta_path = path / RANKER_FILE
        if not meta_path.is_file():
            raise UserError(f"--ranker {path}: no {RANKER_FILE} there; train one with "
                            "`conciser ranker train --samples RUN/<benchmark>/samples.jsonl --out DIR`")
        meta = json.loads(meta_path.read_text())
        tok = AutoTokenizer.from_pretrained(path)
        tok.padding_side = "right"
        model = AutoModelForSequenceClassification.from_pretrained(path)
        return cls(model, tok, meta, path)

    @property
    def kendall_tau(self) -> float | None:
        return self.meta.get("kendall_tau")

    def score(self, texts: list[str]) -> list[float]:
        call = _ScoreCall(list(texts))
        with self._cv:
            self._pending.append(call)
            while not call.done and self._busy:
                self._cv.wait()
            if call.done:                      # a forward that ran while this call waited took it
                return call.result()
            batch, self._pending, self._busy = self._pending, [], True
        # This call leads one forward for every call pending now; the lock is free meanwhile, so
        # calls that arrive during it queue up for the next.
        try:
            with _threads(self.threads):
                flat = score_texts(self.model, self.tok, [t for c in batch for t in c.texts], self.max_length)
            error = None
        except BaseException as exc:   # every caller of this forward gets the error, not only its leader
            flat, error = [], exc
        with self._cv:
            at = 0
            for c in batch:
                c.scores, c.error, c.done = flat[at:at + len(c.texts)], error, True
                at += len(c.texts)
            self.forwards += 1
            self.scored += at
            self._busy = False
            self._cv.notify_all()
        return call.result()

    def quantile(self, score: float) -> float:
        """Where `score` falls among the training prompts' scores: 0.0 (shortest) .. 1.0 (longest)."""
        import bisect

        c = self._calibration
        if len(c) < 2:
            return 0.5
        lo, hi = bisect.bisect_left(c, score), bisect.bisect_right(c, score)
        return min(1.0, max(0.0, ((lo + hi) / 2) / len(c)))
