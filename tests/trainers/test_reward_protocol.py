"""The declared reward protocol through real TRL scoring passes: the trainer fills exactly the optional
RolloutBatch fields a reward declares in `needs()`, with the right values (texts, token ids, think/answer
lengths split at the last end-of-thinking tag, per-phase entropies equal to a direct computation under the
sampling policy), and a reward defined outside the package works by dotted path. PEAR scores with those
entropies, and a length scope makes a reward count the phase's tokens in a real scoring pass."""

import math

import pytest
import torch

from conciser import toy
from conciser.rewards.batch import TRAINER_FIELDS

import protocol_rewards
from trainer_helpers import completion, toy_inputs


@pytest.fixture(autouse=True)
def _fresh():
    protocol_rewards.SEEN.clear()


def _score(make_trainer, scripted, model, method, **grpo):
    def script(p, j, call):
        return completion(p, correct=j != 1, extra=3 * j, eos=j != 3)

    trainer = make_trainer(model, method, {}, **grpo)
    calls = scripted(trainer, script)
    trainer.model.train()
    trainer._generate_and_score_completions(toy_inputs(trainer, 2, 4))
    return trainer, calls, protocol_rewards.SEEN[-1]


def test_nothing_is_filled_unless_asked(tiny_toy_model, make_trainer, scripted):
    _, _, batch = _score(make_trainer, scripted, tiny_toy_model, "protocol_rewards:Plain")
    assert all(getattr(batch, f) is None for f in TRAINER_FIELDS)
    assert batch.correct == [True, False, True, True] * 2
    assert batch.solved == [True, False, True, False] * 2  # j == 3 has no EOS: truncated


def test_declared_fields_are_filled_with_the_right_values(tiny_toy_model, make_trainer, scripted):
    trainer, calls, batch = _score(make_trainer, scripted, tiny_toy_model, "protocol_rewards:Capture", temperature=0.7)
    prompt_ids, completion_ids = calls[0]
    tok = trainer.processing_class
    assert batch.token_ids == [list(c) for c in completion_ids]
    assert batch.texts == tok.batch_decode(completion_ids, skip_special_tokens=True)
    tag = tok.encode(toy.THINK_CLOSE, add_special_tokens=False)
    assert len(tag) == 1
    for ids, think, answer in zip(completion_ids, batch.think_lengths, batch.answer_lengths):
        assert think == len(ids) - ids[::-1].index(tag[0])  # up to and including the last </think>
        assert think + answer == len(ids) and answer > 0

    # per-phase mean entropies = a direct computation: softmax(logits / T) of the same model on the same ids
    model = trainer.model.eval()
    for i, (p, c) in enumerate(zip(prompt_ids, completion_ids)):
        with torch.no_grad():
            logits = model(torch.tensor([list(p) + list(c)])).logits[0, len(p) - 1:-1] / 0.7
        logp = torch.log_softmax(logits.double(), dim=-1)
        ent = (-(logp.exp() * logp).sum(-1)).tolist()
        think = batch.think_lengths[i]
        assert batch.think_entropies[i] == pytest.approx(sum(ent[:think]) / think, rel=1e-4)
        assert batch.answer_entropies[i] == pytest.approx(sum(ent[think:]) / (len(c) - think), rel=1e-4)
        assert 0 < batch.think_entropies[i] < math.log(len(tok))


def test_no_thinking_tag_means_all_thinking(tiny_toy_model, make_trainer, scripted):
    trainer = make_trainer(tiny_toy_model, "protocol_rewards:Capture", {})
    scripted(trainer, lambda p, j, call: f"{toy.THINK_OPEN} hmm hmm \\boxed{{{p.answer}}}")
    trainer.model.train()
    trainer._generate_and_score_completions(toy_inputs(trainer, 2, 4))
    batch = protocol_rewards.SEEN[-1]
    assert batch.answer_lengths == [0] * 8 and batch.think_lengths == batch.lengths
    assert batch.answer_entropies == [None] * 8 and all(e is not None for e in batch.think_entropies)


def test_a_reward_asking_for_an_unknown_field_fails_before_training(tiny_toy_model, make_trainer, monkeypatch):
    monkeypatch.setattr(protocol_rewards.Capture, "needs", lambda self: frozenset({"texts", "hidden_states"}))
    with pytest.raises(ValueError, match="needs \\['hidden_states'\\].*needs\\(\\) may name: texts"):
        make_trainer(tiny_toy_model, "protocol_rewards:Capture", {})


def test_reward_funcs_are_refused(tiny_toy_model, tmp_path):
    from trl import GRPOConfig

    from conciser.rewards import build_reward
    from conciser.trainers.grpo import ConciseGRPOTrainer

    with pytest.raises(ValueError, match="do not pass reward_funcs"):
        ConciseGRPOTrainer(model=str(tiny_toy_model), args=GRPOConfig(output_dir=str(tmp_path), bf16=False),
                           length_reward=build_reward("kimi"), reward_funcs=[lambda **_: [0.0]])


def _recording(trainer):
    """Record (batch, rewards) of every call of the trainer's length reward."""
    seen, score = [], trainer.length_reward.reward

    def reward(batch):
        out = score(batch)
        seen.append((batch, out))
        return out

    trainer.length_reward.reward = reward
    return seen


def _direct_entropies(model, prompt_ids, completion_ids, temperature):
    """Per-token entropies of each completion: softmax(logits / T) of the model, computed here directly."""
    out = []
    for p, c in zip(prompt_ids, completion_ids):
        with torch.no_grad():
            logits = model(torch.tensor([list(p) + list(c)])).logits[0, len(p) - 1:-1] / temperature
        logp = torch.log_softmax(logits.double(), dim=-1)
        out.append((-(logp.exp() * logp).sum(-1)).tolist())
    return out


def test_pear_scores_with_the_policy_entropies(tiny_toy_model, make_trainer, scripted):
    trainer = make_trainer(tiny_toy_model, "pear", {"alpha": 0.5}, temperature=0.7)
    seen = _recording(trainer)
    calls = scripted(trainer, lambda p, j, call: completion(p, correct=j != 1, extra=2 * j))
    trainer.model.train()
    trainer._generate_and_score_completions(toy_inputs(trainer, 2, 4))
    (batch, rewards), = seen
    prompt_ids, completion_ids = calls[0]
    entropies = _direct_entropies(trainer.model.eval(), prompt_ids, completion_ids, 0.7)
    assert batch.think_lengths is None  # pear asks for the entropies only: split at the last </think> here
    tag = trainer.processing_class.encode(toy.THINK_CLOSE, add_special_tokens=False)[0]
    thinks = [len(c) - list(c)[::-1].index(tag) for c in completion_ids]
    expected = []
    for i, (ent, think, ok) in enumerate(zip(entropies, thinks, batch.correct)):
        h_think, h_answer = sum(ent[:think]) / think, sum(ent[think:]) / (len(ent) - think)
        assert (batch.think_entropies[i], batch.answer_entropies[i]) == pytest.approx((h_think, h_answer), rel=1e-4)
        expected.append(min(1.0, 1.0 - max(0.0, h_think - 0.5 * h_answer)) if ok else 0.0)
    assert rewards == pytest.approx(expected, rel=1e-4, abs=1e-6)
    assert batch.correct == [True, False, True, True] * 2 and len(set(rewards)) > 2


def test_length_scope_think_counts_the_thinking_tokens_in_training(tiny_toy_model, make_trainer, scripted):
    # j even: 6 filler tokens in the thinking; j odd: the same 6 after </think>. Equal totals, different splits.
    def script(p, j, call):
        text = toy.minimal_trace(p)
        filler = " hmm" * 6
        return text.replace(toy.THINK_CLOSE, filler + toy.THINK_CLOSE) if j % 2 == 0 else \
            text.replace(toy.THINK_CLOSE, toy.THINK_CLOSE + filler)

    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_toy_model)
    tag = tok.encode(toy.THINK_CLOSE, add_special_tokens=False)[0]
    probe = make_trainer(tiny_toy_model, "laser", {"target_length": 16})
    first = next(p for p in toy.train_problems(16) if p.id == probe.train_dataset[0]["problem_id"])
    ids = tok(script(first, 1, 0), add_special_tokens=False).input_ids
    target = ids.index(tag) + 1  # the first prompt's short thinking fits exactly, its long one does not

    for scope in ("total", "think"):
        trainer = make_trainer(tiny_toy_model, "laser", {"target_length": target, "length_scope": scope})
        seen = _recording(trainer)
        scripted(trainer, script)
        trainer.model.train()
        trainer._generate_and_score_completions(toy_inputs(trainer, 2, 4))
        (batch, rewards), = seen
        if scope == "total":
            assert batch.think_lengths is None
            assert rewards == [1.0] * 8  # every completion is longer than the short thinking
            continue
        assert [a - b for a, b in zip(batch.think_lengths[0::2], batch.think_lengths[1::2])] == [6] * 4
        assert batch.lengths[0::2] == batch.lengths[1::2]
        assert rewards == [1.5 if t <= target else 1.0 for t in batch.think_lengths]
        assert rewards[:2] == [1.0, 1.5]
