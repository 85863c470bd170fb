"""The toy Pareto's peer row: stock TRL `GRPOTrainer` with open-r1's length reward, as open-r1 ships it.

    from bench.openr1_peer import train_peer
    model_dir = train_peer("toy/grpo", overrides)   # the same trainer settings as the plain GRPO row

What a user gets without conciser: `trl.GRPOTrainer` (TRL's defaults for everything the recipe does not
set) with open-r1's two reward functions summed at weight 1 each, `accuracy_reward` and `len_reward`
(huggingface/open-r1, src/open_r1/rewards.py, `len_reward`, "Taken from the Kimi 1.5 tech report").
Its documented behaviour, re-implemented here:

  * lengths are *characters* of the completion text, not tokens;
  * min and max length are taken over the completions of one call, i.e. the batch TRL passes to the
    reward function on one rank (not per prompt group);
  * lambda = 0.5 - (len - min) / (max - min); a correct completion gets lambda, a wrong one min(0, lambda);
  * if every completion of the call has the same length, every reward is 0.

Correctness comes from the one toy grader (`grade_toy`), where open-r1 parses with math-verify: on the toy's
`\\boxed{digit}` both give the same verdict, and conciser's rows are graded one way everywhere.
"""

from __future__ import annotations

from pathlib import Path

from conciser.rewards.grading import grade_toy


def _text(completion) -> str:
    """A completion as text: conversational completions are a list holding one assistant message."""
    if isinstance(completion, str):
        return completion
    return completion[0]["content"]


def accuracy_reward(completions, answer, **kwargs) -> list[float]:
    """1.0 for a correct completion, else 0.0 (open-r1's `accuracy_reward`, graded by the toy grader)."""
    return [float(grade_toy(gold=gold, completion=_text(c)).correct) for c, gold in zip(completions, answer)]


def len_reward(completions, answer, **kwargs) -> list[float]:
    """open-r1's `len_reward` (Kimi 1.5 style) over the completions of this call; see the module docstring."""
    correct = accuracy_reward(completions, answer)
    lengths = [len(_text(c)) for c in completions]
    lo, hi = min(lengths), max(lengths)
    if hi == lo:
        return [0.0] * len(completions)
    lam = [0.5 - (n - lo) / (hi - lo) for n in lengths]
    return [x if ok else min(0.0, x) for x, ok in zip(lam, correct)]


def train_peer(recipe_name: str, overrides: list[str]) -> Path:
    """Train with stock `trl.GRPOTrainer` and open-r1's rewards, taking the data, model and trainer
    settings from `recipe_name` (its length reward is not used); returns the saved model's folder."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import GRPOTrainer

    from conciser.trainers.data import to_dataset
    from conciser.trainers.train import prepare, resolve_model_path

    recipe, rows, _, args = prepare(recipe_name, overrides)
    model_path = resolve_model_path(recipe.model.name_or_path)
    dtype = "auto" if recipe.model.dtype == "auto" else getattr(torch, recipe.model.dtype)
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=dtype)
    trainer = GRPOTrainer(model=model, processing_class=tokenizer, args=args, train_dataset=to_dataset(rows),
                          reward_funcs=[accuracy_reward, len_reward])
    trainer.train()
    out = Path(args.output_dir)
    trainer.save_model(str(out))
    trainer.save_state()
    tokenizer.save_pretrained(str(out))
    return out
