"""Advantage estimators: hand-computed values, the same values through a real TRL scoring pass, and
DRPO's gradient against a direct implementation of its objective (methods-core §2.2, §3).

Run: .venv/bin/pytest tests/trainers/test_advantages.py
"""

import math

import pytest
import torch

from conciser.rewards import RolloutBatch, build_reward
from conciser.trainers.advantages import EstimatorInput, build_estimator, drpo_loss

from trainer_helpers import completion, toy_inputs

# Two groups of four: rewards 1 0 0 0 | 1 1 0 1. Group means 1/4, 3/4; centred values
# .75 -.25 -.25 -.25 | .25 .25 -.75 .25 (batch mean 0, sum of squares 1.5, unbiased var 1.5/7).
REWARDS = [1.0, 0.0, 0.0, 0.0, 1.0, 1.0, 0.0, 1.0]
CENTRED = [0.75, -0.25, -0.25, -0.25, 0.25, 0.25, -0.75, 0.25]
BATCH_WHITENED = [c / math.sqrt(1.5 / 7 + 1e-8) for c in CENTRED]
GROUP_STD = [math.sqrt(0.75 / 3)] * 8  # each group's unbiased std = 0.5 (TRL adds 1e-4)
GRPO = [c / (s + 1e-4) for c, s in zip(CENTRED, GROUP_STD)]
# GRPO-LEAD: w(x) = 0.4 + 1.1 / (1 + exp(10 (x - 0.75))); solve rates 1/4 and 3/4. A positive advantage takes
# w(rho), a negative one w(1 - rho): w(1/4) = 0.4 + 1.1 / (1 + e^-5) for the hard group's right answer and the
# easy group's wrong one, w(3/4) = 0.95 for the others.
HARD = 0.4 + 1.1 / (1 + math.exp(-5))
GRPO_LEAD = [g * w for g, w in zip(GRPO, [HARD, 0.95, 0.95, 0.95, 0.95, 0.95, HARD, 0.95])]
# raw + whiten: batch mean 1/2; squared deviations 8 x .5^2 = 2, unbiased var 2/7
RAW_WHITENED = [(r - 0.5) / math.sqrt(2 / 7 + 1e-8) for r in REWARDS]


def _batch(lengths, solved, group=4, max_length=100):
    n = len(lengths)
    return RolloutBatch(problem_ids=[f"g{i // group}" for i in range(n)], lengths=lengths, correct=solved,
                        truncated=[False] * n, format_ok=[True] * n, max_length=max_length)


def _inp(rewards, tokens=None, trl=None, batch=None, scores=None, reward=None):
    n = len(rewards)
    return EstimatorInput(rewards=torch.tensor(rewards), group_size=4,
                          batch=batch or _batch([10] * n, [r > 0 for r in rewards]),
                          trl_advantages=torch.tensor(trl or [0.0] * n),
                          token_counts=torch.tensor(tokens or [1.0] * n), reward=reward,
                          scores=None if scores is None else torch.tensor(scores))


def test_batch_whitening_per_sequence():
    adv, metrics = build_estimator("batch").advantages(_inp(REWARDS))
    assert adv.tolist() == pytest.approx(BATCH_WHITENED, abs=1e-6)
    assert metrics["advantage/centred_std"] == pytest.approx(math.sqrt(1.5 / 7))
    assert metrics["advantage/mean"] == pytest.approx(0.0, abs=1e-7)


def test_batch_whitening_token_weighted_as_verl():
    # tokens 3 1 1 1 | 1 1 1 1: token mean of the centred values = (3*.75 - 3*.25 + 0)/10 = .15
    tokens = [3.0, 1, 1, 1, 1, 1, 1, 1]
    mu = 0.15
    var = sum(w * (c - mu) ** 2 for w, c in zip(tokens, CENTRED)) / (sum(tokens) - 1)
    adv, _ = build_estimator("batch", {"token_weighted": True}).advantages(_inp(REWARDS, tokens=tokens))
    assert adv.tolist() == pytest.approx([(c - mu) / math.sqrt(var + 1e-8) for c in CENTRED], abs=1e-6)


def test_batch_whitening_all_equal_batch_is_zero():
    adv, _ = build_estimator("batch").advantages(_inp([1.0] * 8))
    assert adv.tolist() == [0.0] * 8


def test_group_passes_trl_through():
    adv, metrics = build_estimator("group").advantages(_inp(REWARDS, trl=GRPO))
    assert adv.tolist() == pytest.approx(GRPO)
    assert metrics["advantage/zero_frac"] == 0.0


def test_drpo_weights_hand_computed():
    # group 0: positives of length 10 and 20 (C = 100, lambda = .1 -> logits 9, 8), negatives with
    # scores -1, -2 (tau = 10 -> logits -.1, -.2); group 1 all correct: dead, weights 0.
    reward = build_reward("drpo", lam=0.1, tau=10.0)
    batch = _batch([10, 20, 30, 40, 5, 5, 5, 5], [True, True, False, False, True, True, True, True])
    w, metrics = build_estimator("drpo").advantages(_inp([1, 1, 0, 0, 1, 1, 1, 1.0], batch=batch, reward=reward,
                                                         scores=[-0.5, -0.7, -1.0, -2.0, -1, -1, -1, -1]))
    e = math.exp(1)
    neg = [math.exp(-0.1), math.exp(-0.2)]
    expected = [e / (e + 1), 1 / (e + 1), -neg[0] / sum(neg), -neg[1] / sum(neg), 0, 0, 0, 0]
    assert w.tolist() == pytest.approx(expected, abs=1e-6)
    assert metrics["drpo/live_group_frac"] == 0.5
    lse = 10 * math.log(sum(neg) / 2)
    objective = e / (e + 1) * -0.5 + 1 / (e + 1) * -0.7 - lse
    assert metrics["drpo/objective"] == pytest.approx(objective / 2)


def test_grpo_lead_reweights_by_difficulty():
    adv, metrics = build_estimator("grpo_lead").advantages(_inp(REWARDS, trl=GRPO))
    assert adv.tolist() == pytest.approx(GRPO_LEAD, abs=1e-6)
    assert metrics["grpo_lead/weight_mean"] == pytest.approx((2 * HARD + 6 * 0.95) / 8)


def test_grpo_lead_weight_curve_and_all_equal_groups():
    est = build_estimator("grpo_lead", {"min_weight": 0.5, "max_weight": 2.0, "midpoint": 0.5, "steepness": 4})
    assert [est.weight(x) for x in (0.0, 0.5, 1.0)] == pytest.approx(
        [0.5 + 1.5 / (1 + math.exp(-2)), 1.25, 0.5 + 1.5 / (1 + math.exp(2))])
    # all-right and all-wrong groups have advantage 0 from TRL, and stay 0
    adv, _ = build_estimator("grpo_lead").advantages(_inp([1.0] * 4 + [0.0] * 4))
    assert adv.tolist() == [0.0] * 8


@pytest.mark.parametrize("params,match", [({"min_weight": 2.0}, "min_weight <= max_weight"),
                                          ({"steepness": "10"}, "steepness='10' must be a number"),
                                          ({"k": 10}, "advantage.params")])
def test_grpo_lead_bad_params_name_the_field(params, match):
    with pytest.raises(ValueError, match=match):
        build_estimator("grpo_lead", params)


def test_raw_is_the_reward_itself_or_whitened_over_the_batch():
    adv, metrics = build_estimator("raw").advantages(_inp([0.8, -0.25, 1.05, 0.0, -1.0, 0.5, 0.5, 0.5]))
    assert adv.tolist() == pytest.approx([0.8, -0.25, 1.05, 0.0, -1.0, 0.5, 0.5, 0.5])  # no group baseline
    assert metrics["advantage/zero_frac"] == 1 / 8
    adv, _ = build_estimator("raw", {"whiten": True}).advantages(_inp(REWARDS))
    assert adv.tolist() == pytest.approx(RAW_WHITENED, abs=1e-6)
    adv, _ = build_estimator("raw", {"whiten": True}).advantages(_inp([0.5] * 8))
    assert adv.tolist() == [0.0] * 8
    with pytest.raises(ValueError, match="whiten"):
        build_estimator("raw", {"whiten": "yes"})


def test_unknown_estimator_and_bad_params_name_the_field():
    with pytest.raises(ValueError, match="advantage.estimator.*valid: batch, drpo, group"):
        build_estimator("batchh")
    with pytest.raises(ValueError, match="advantage.params"):
        build_estimator("batch", {"whiten": True})
    with pytest.raises(ValueError, match="token_weighted"):
        build_estimator("batch", {"token_weighted": "yes"})


# -- the same numbers through a real TRL scoring pass --------------------------------------------

def _script(p, j, call):
    # problem 0: right, wrong, wrong, wrong; problem 1: right, right, wrong, right (DLER: 1 / 0)
    first = p.id == _script.ids[0]
    right = j == 0 if first else j != 2
    return completion(p, correct=right, extra=j)


@pytest.mark.parametrize("estimator,expected", [("batch", BATCH_WHITENED), ("group", GRPO), ("grpo_lead", GRPO_LEAD),
                                                ("raw", REWARDS)])
def test_estimators_in_a_real_scoring_pass(tiny_toy_model, make_trainer, scripted, estimator, expected):
    trainer = make_trainer(tiny_toy_model, "dler", {"target_length": 48}, advantage={"estimator": estimator})
    _script.ids = [trainer.train_dataset[i]["problem_id"] for i in range(2)]
    scripted(trainer, _script)
    trainer.model.train()
    out = trainer._generate_and_score_completions(toy_inputs(trainer, 2, 4))
    assert out["advantages"].tolist() == pytest.approx(expected, abs=1e-5)
    logged = trainer._metrics["train"]
    assert logged["rewards/dler/mean"] == [pytest.approx(sum(REWARDS) / 8)]
    assert logged["advantage/abs_mean"] == [pytest.approx(sum(abs(x) for x in expected) / 8, abs=1e-5)]
    assert list(trainer._logs["advantages"]) == pytest.approx(expected, abs=1e-5)  # the completions table


# -- DRPO: gradient of the trainer's loss == gradient of the objective written out directly ---------

def _drpo_script(p, j, call):
    # problem 0: two right answers (lengths +0, +6), two wrong; problem 1: all right (a dead group)
    if p.id == _drpo_script.ids[0]:
        return completion(p, correct=j < 2, extra=[0, 6, 3, 9][j])
    return completion(p, extra=j)


def _reference_loss(model, trainer, inputs, completions, shift=0.0):
    """-(1/P) sum_q [sum_P w_i s_i - tau log mean_N exp(s_j / tau)] + (beta/2) [KL - delta]_+^2, with s the mean
    token log-prob (temperature-scaled, as TRL computes it) and KL = token mean of (log pi_old - log pi)."""
    cfg = trainer.length_reward.config
    tok = trainer.processing_class
    scores, kl_terms = [], []
    for x, ids in zip(inputs, completions):
        prompt = tok.apply_chat_template(x["prompt"], tokenize=False, add_generation_prompt=True)
        p_ids = tok(prompt, add_special_tokens=False).input_ids
        full = torch.tensor([p_ids + ids])
        logits = model(full).logits[0, len(p_ids) - 1:-1] / trainer.temperature
        logps = torch.log_softmax(logits.float(), -1).gather(-1, torch.tensor(ids)[:, None])[:, 0]
        scores.append(logps.mean())
        kl_terms.append(((logps.detach() + shift) - logps))
    objective = 0.0
    solved = [c.endswith(tok.eos_token) and f"{{{x['answer']}}}" in c for x, c in
              zip(inputs, tok.batch_decode(completions, skip_special_tokens=False))]
    for g in range(len(inputs) // 4):
        idx = range(4 * g, 4 * g + 4)
        pos = [i for i in idx if solved[i]]
        neg = [i for i in idx if not solved[i]]
        if not pos or not neg:
            continue
        logits = torch.tensor([(1 - len(completions[i]) / trainer.max_completion_length) / cfg.lam for i in pos])
        w = torch.softmax(logits, 0)
        s_neg = torch.stack([scores[i] for i in neg]) / cfg.tau
        objective = objective + sum(wi * scores[i] for wi, i in zip(w, pos)) \
            - cfg.tau * (torch.logsumexp(s_neg, 0) - math.log(len(neg)))
    kl = torch.cat(kl_terms).mean()
    return -objective / (len(inputs) // 4) + cfg.beta / 2 * torch.clamp(kl - cfg.delta, min=0) ** 2


@pytest.mark.parametrize("shift", [0.0, 0.02])  # on-policy (no penalty), and an old policy 0.02 nats above
def test_drpo_gradient_matches_direct_objective(tiny_toy_model, make_trainer, scripted, shift):
    trainer = make_trainer(tiny_toy_model, "drpo", {"lam": 0.2, "tau": 2.0, "beta": 50.0},
                           advantage={"estimator": "drpo"}, max_completion_length=64)
    _drpo_script.ids = [trainer.train_dataset[i]["problem_id"] for i in range(2)]
    calls = scripted(trainer, _drpo_script)
    model = trainer.model
    model.train()
    inputs = toy_inputs(trainer, 2, 4)
    out = trainer._generate_and_score_completions(inputs)
    assert out["advantages"][:2].gt(0).all() and out["advantages"][2:4].lt(0).all()
    assert out["advantages"][4:].eq(0).all()  # all-correct group: no DRPO signal
    out["old_per_token_logps"] = out["old_per_token_logps"] + shift * out["completion_mask"]
    model.zero_grad()
    trainer.current_gradient_accumulation_steps = 1  # set by Trainer's loop; one micro-batch = one step here
    trainer._compute_loss(model, out).backward()
    got = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    _reference_loss(model, trainer, inputs, calls[0][1], shift).backward()
    want = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    assert got.keys() == want.keys() and len(got) > 10
    for name in want:
        torch.testing.assert_close(got[name], want[name], rtol=1e-4, atol=1e-6, msg=name)
    penalty = trainer._metrics["train"]["drpo/penalty_coef"][-1]
    assert (penalty > 0) == (shift > 0)


def test_drpo_loss_penalty_is_a_stopgrad_coefficient():
    logps = torch.tensor([[-1.0, -2.0]], requires_grad=True)
    old = torch.tensor([[-0.9, -1.9]])
    loss, parts = drpo_loss(logps, old, torch.ones(1, 2), torch.tensor([0.0]), 1.0, delta=0.05, beta=10.0)
    loss.backward()
    assert parts["kl"].item() == pytest.approx(0.1)
    assert parts["penalty_coef"].item() == pytest.approx(10 * (0.1 - 0.05))
    assert logps.grad[0].tolist() == pytest.approx([-0.25, -0.25])  # coef * d(mean(old - new))/d new
