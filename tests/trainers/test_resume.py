"""Reward and controller state survive save -> resume exactly; a resume without it fails clearly.

Real TRL steps on scripted rollouts (so HAPO's history and the dynamic-sampling counters are not empty).
Run: .venv/bin/pytest tests/trainers/test_resume.py
"""

import json
import shutil

import pytest

from trainer_helpers import completion


def _script(p, j, call):
    # call 0: every group all wrong (dropped, refilled); then right answers whose lengths vary with the
    # call, so HAPO's per-problem history moves
    if call == 0:
        return completion(p, correct=False)
    return completion(p, correct=j != 1, extra=(3 * j + call) % 7)


def _make(make_trainer, model, **kw):
    settings = {"max_steps": 2, "save_strategy": "steps", "save_steps": 1, "max_completion_length": 128, **kw}
    return make_trainer(model, "hapo", {}, sampling={"dynamic": True, "max_gen_batches": 4}, **settings)


def test_resume_restores_reward_and_sampling_state_exactly(tiny_toy_model, make_trainer, scripted, tmp_path):
    first = _make(make_trainer, tiny_toy_model, output_dir=str(tmp_path / "run"))
    scripted(first, _script)
    first.train()
    ckpt = tmp_path / "run" / "checkpoint-1"
    saved = json.loads((ckpt / "reward_state.json").read_text())
    assert saved["global_step"] == 1 and saved["reward"]["history"], "HAPO history should not be empty"
    assert saved["sampling"]["draws"] >= 1 and saved["sampling"]["steps"] == 1
    assert "hapo/history_mean" in saved["metrics"]
    final = json.loads((tmp_path / "run" / "checkpoint-2" / "reward_state.json").read_text())
    assert final["reward"] != saved["reward"]  # step 2 changed it, so equality below is not vacuous

    second = _make(make_trainer, tiny_toy_model, output_dir=str(tmp_path / "run"))
    scripted(second, _script)
    restored = {}
    load = second._load_optimizer_and_scheduler

    def spy(checkpoint):
        load(checkpoint)
        restored.update(reward=second.length_reward.state_dict(), sampling=second.sampling_stats.state_dict())

    second._load_optimizer_and_scheduler = spy
    second.train(resume_from_checkpoint=str(ckpt))
    assert restored == {"reward": saved["reward"], "sampling": saved["sampling"]}
    assert second.state.global_step == 2  # training continued from step 1
    assert second.sampling_stats.steps == 2


def test_resume_without_state_file_fails_clearly_unless_fresh_start_allowed(tiny_toy_model, make_trainer, scripted,
                                                                            tmp_path):
    first = _make(make_trainer, tiny_toy_model, output_dir=str(tmp_path / "run"), max_steps=1)
    scripted(first, _script)
    first.train()
    ckpt = tmp_path / "run" / "checkpoint-1"
    (ckpt / "reward_state.json").unlink()
    second = _make(make_trainer, tiny_toy_model, output_dir=str(tmp_path / "run2"))
    scripted(second, _script)
    with pytest.raises(FileNotFoundError, match=r"lacks the 'hapo' reward's state and the dynamic-sampling "
                                                r"counters.*rewards.allow_fresh_state=true"):
        second.train(resume_from_checkpoint=str(ckpt))
    shutil.copytree(ckpt, tmp_path / "copy")
    fresh = _make(make_trainer, tiny_toy_model, output_dir=str(tmp_path / "run3"), allow_fresh_state=True)
    scripted(fresh, _script)
    fresh.train(resume_from_checkpoint=str(tmp_path / "copy"))
    assert fresh.state.global_step == 2


def test_evaluation_never_changes_state(tiny_toy_model, make_trainer, scripted):
    from trainer_helpers import toy_inputs

    trainer = _make(make_trainer, tiny_toy_model)
    scripted(trainer, lambda p, j, call: completion(p, correct=j != 1, extra=j))
    trainer.model.train()
    trainer._generate_and_score_completions(toy_inputs(trainer, 2, 4))
    before = json.dumps(trainer.state_dict())
    assert json.loads(before)["reward"]["history"]
    trainer.model.eval()
    trainer._generate_and_score_completions(toy_inputs(trainer, 2, 4, offset=4))
    assert json.dumps(trainer.state_dict()) == before
    assert trainer._metrics["eval"]["length/mean"]  # it did score


def _adlp_script(p, j, call):
    # independent of the call counter, so the resumed run's step 2 sees the uninterrupted run's step-2 batch
    return completion(p, correct=(j + p.start) % 3 != 0, extra=j)


def _adlp(make_trainer, model, **kw):
    settings = {"max_steps": 2, "save_strategy": "steps", "save_steps": 1, "max_completion_length": 128, **kw}
    return make_trainer(model, "a_dlp", {"lambda_init": 0.01, "lr": 0.1, "reference_accuracy": 0.3}, **settings)


def test_a_dlp_controller_survives_resume_bit_identically(tiny_toy_model, make_trainer, scripted, tmp_path):
    first = _adlp(make_trainer, tiny_toy_model, output_dir=str(tmp_path / "run"))
    scripted(first, _adlp_script)
    first.train()
    ckpt = tmp_path / "run" / "checkpoint-1"
    saved = json.loads((ckpt / "reward_state.json").read_text())["reward"]
    uninterrupted = first.length_reward.penalty  # lambda after step 2
    assert saved["batches"] == 1 and saved["lambda"] != 0.01 and uninterrupted != saved["lambda"]

    second = _adlp(make_trainer, tiny_toy_model, output_dir=str(tmp_path / "run"))
    scripted(second, _adlp_script)
    restored = {}
    load = second._load_optimizer_and_scheduler

    def spy(checkpoint):
        load(checkpoint)
        restored.update(second.length_reward.state_dict())

    second._load_optimizer_and_scheduler = spy
    second.train(resume_from_checkpoint=str(ckpt))
    assert restored == saved and float(restored["lambda"]).hex() == float(saved["lambda"]).hex()
    assert second.state.global_step == 2
    # step 2 from the restored controller lands on the uninterrupted run's lambda, to the last bit
    assert second.length_reward.penalty.hex() == uninterrupted.hex()
    assert second.length_reward.state_dict() == first.length_reward.state_dict()
