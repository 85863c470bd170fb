"""The command line's contract: bad input is one line naming the fix (exit 2); a crash propagates with its
traceback; `-v` works before and after the command; rewards and estimators defined outside the package
are named by dotted path, and a misspelled path fails before any model loads."""

import json
import textwrap

import pytest

from conciser.cli import main
from conciser.errors import UserError


def _tiny(model_dir, out_dir, *extra):
    return [f"model.name_or_path={model_dir}", f"trainer.output_dir={out_dir}", "trainer.max_steps=2",
            "trainer.per_device_train_batch_size=8", "trainer.num_generations=4", "trainer.max_completion_length=32",
            "trainer.logging_steps=1", "data.n_train=16", *extra]


@pytest.fixture
def plugin_package(tmp_path, monkeypatch):
    """A package outside conciser, importable as `my_pkg.mod`: a length reward, one that crashes in a step,
    and an estimator."""
    pkg = tmp_path / "plugins" / "my_pkg"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "mod.py").write_text(textwrap.dedent('''
        from dataclasses import dataclass

        from conciser.rewards import LengthReward
        from conciser.trainers.advantages import GroupAdvantage

        CALLS = []

        class MyReward(LengthReward):
            name = "my_reward"

            @dataclass(frozen=True)
            class Config:
                alpha: float = 0.01

            def reward(self, batch):
                CALLS.append(len(batch))
                return [float(ok) - self.config.alpha * n for ok, n in zip(batch.solved, batch.lengths)]

            def metrics(self, batch):
                return {"calls": float(len(CALLS))}

        class Boom(MyReward):
            def reward(self, batch):
                raise ValueError("boom inside a training step")

        class MyEstimator(GroupAdvantage):
            name = "mine"
            seen = 0

            def advantages(self, inp):
                MyEstimator.seen += 1
                return super().advantages(inp)
    '''))
    monkeypatch.syspath_prepend(str(pkg.parent))
    yield "my_pkg.mod"
    import sys

    for name in ("my_pkg", "my_pkg.mod"):
        sys.modules.pop(name, None)


def test_recipe_typo_is_one_line_and_exit_2(capsys):
    assert main(["train", "toy/laser", "rewards.metod=kimi"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "rewards.metod: unknown key; did you mean 'method'?" in err
    assert "Traceback" not in err


def test_verbose_after_the_command_is_accepted(capsys):
    assert main(["recipes", "-v"]) == 0
    assert "toy/laser" in capsys.readouterr().out


def test_a_crash_in_a_training_step_propagates_with_its_traceback(tiny_sft_toy_model, tmp_path, plugin_package):
    with pytest.raises(ValueError, match="boom inside a training step") as info:
        main(["train", "toy/laser", f"rewards.method={plugin_package}:Boom", "rewards.params={}",
              *_tiny(tiny_sft_toy_model, tmp_path / "run")])
    assert not isinstance(info.value, UserError)


def test_reward_and_estimator_from_outside_the_package(tiny_sft_toy_model, tmp_path, plugin_package):
    out = tmp_path / "run"
    assert main(["train", "toy/laser", f"rewards.method={plugin_package}:MyReward", "rewards.params={alpha: 0.02}",
                 f"advantage.estimator={plugin_package}:MyEstimator", *_tiny(tiny_sft_toy_model, out)]) == 0
    import my_pkg.mod

    assert len(my_pkg.mod.CALLS) == 2 and my_pkg.mod.MyEstimator.seen == 2  # one generation batch per step
    logs = json.loads((out / "trainer_state.json").read_text())["log_history"]
    assert logs[0]["my_reward/calls"] == 1.0
    assert "my_pkg.mod:MyReward" in (out / "recipe.resolved.yaml").read_text()


@pytest.mark.parametrize("override,message", [
    ("rewards.method=my_pkg.mod:MyRewrd", "rewards.method: module 'my_pkg.mod' has no 'MyRewrd'"),
    ("rewards.method=my_pkg.nope:MyReward", "rewards.method: cannot import module 'my_pkg.nope'"),
    ("rewards.method=my_pkg/mod.py:MyReward", "names a file; give the importable module"),
    ("advantage.estimator=my_pkg.mod:MyEstimatr", "advantage.estimator: module 'my_pkg.mod' has no 'MyEstimatr'"),
    ("advantage.estimator=my_pkg.mod:MyReward", "is not a subclass of conciser.trainers.advantages.Estimator"),
])
def test_bad_dotted_paths_fail_before_the_model_loads(plugin_package, tmp_path, capsys, monkeypatch, override, message):
    import transformers

    def no_model(*a, **k):
        raise AssertionError("the model was loaded before the recipe error")

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", no_model)
    assert main(["train", "toy/laser", override, f"trainer.output_dir={tmp_path}"]) == 2
    assert message in capsys.readouterr().err
