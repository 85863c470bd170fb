"""Recipe loading: validation happens before any model loads, and errors say what to set instead."""

import json

import pytest

from conciser.config import RecipeError, apply_overrides, list_recipes, load_recipe, write_resolved
from conciser.config import recipe_from_dict
from conciser.trainers.data import load_rows
from conciser.config import DataConfig


def test_bundled_recipe_loads_by_name():
    recipe = load_recipe("toy/laser")
    assert recipe.rewards.method == "laser"
    assert recipe.grpo_config().num_generations == 8
    assert "toy/laser" in list_recipes()


def test_overrides_are_parsed_as_yaml():
    recipe = load_recipe("toy/laser", ["trainer.max_steps=3", "rewards.params.alpha=0.25"])
    assert recipe.trainer["max_steps"] == 3
    assert recipe.rewards.params["alpha"] == 0.25


def test_misspelled_block_key_suggests_the_valid_one():
    with pytest.raises(RecipeError, match=r"rewards\.metod: unknown key; did you mean 'method'"):
        recipe_from_dict({"rewards": {"metod": "laser"}})


def test_misspelled_block_name_suggests_the_valid_one():
    with pytest.raises(RecipeError, match="did you mean 'trainer'"):
        recipe_from_dict({"trainr": {}})


def test_misspelled_trainer_key_names_the_grpo_field():
    with pytest.raises(RecipeError, match=r"trainer\.num_generation.*did you mean 'num_generations'"):
        load_recipe("toy/laser", ["trainer.num_generation=4"])


def test_unknown_reward_lists_valid_names():
    with pytest.raises(RecipeError, match="laser"):
        recipe_from_dict({"rewards": {"method": "lazer"}, "trainer": {"output_dir": "x"}})


def test_bad_reward_param_names_reward_and_key():
    with pytest.raises(RecipeError, match="target_lenght"):
        recipe_from_dict({"rewards": {"method": "laser", "params": {"target_lenght": 3}}})


def test_missing_recipe_file_lists_bundled_recipes():
    with pytest.raises(FileNotFoundError, match=r"no_such_recipe.*toy/laser"):
        load_recipe("no_such_recipe.yaml")


def test_bad_override_syntax():
    with pytest.raises(RecipeError, match="key=value"):
        apply_overrides({}, ["trainer.max_steps"])


def test_dataset_row_without_answer_fails_naming_row_and_column(tmp_path):
    path = tmp_path / "train.jsonl"
    path.write_text(json.dumps({"prompt": "1+1?", "answer": "2"}) + "\n" + json.dumps({"prompt": "2+2?"}) + "\n")
    with pytest.raises(RecipeError, match=r"train.jsonl:2: no 'answer' value.*data\.answer_column"):
        load_rows(DataConfig(dataset=str(path), grader="math"))


def test_missing_dataset_file():
    with pytest.raises(FileNotFoundError, match="data.dataset"):
        load_rows(DataConfig(dataset="nope/missing.jsonl"))


def test_resolved_recipe_is_written(tmp_path):
    recipe = load_recipe("toy/laser")
    path = write_resolved(recipe, tmp_path)
    text = path.read_text()
    assert "method: laser" in text and "resolved from" in text


def test_prompt_template_wraps_string_prompts(tmp_path):
    path = tmp_path / "train.jsonl"
    path.write_text(json.dumps({"prompt": "1+1?", "answer": "2"}) + "\n")
    rows = load_rows(DataConfig(dataset=str(path), grader="math", prompt_template="{problem} Box it."))
    assert rows[0]["prompt"] == [{"role": "user", "content": "1+1? Box it."}]
    with pytest.raises(RecipeError, match="prompt_template"):
        load_rows(DataConfig(dataset=str(path), grader="math", prompt_template="no placeholder"))


def test_cli_accepts_options_between_overrides():
    from conciser.cli import main

    # A bad key fails validation (exit 2) only if parsing accepted the intermixed order first.
    assert main(["train", "toy/laser", "--resume", "x", "trainer.max_stepz=1"]) == 2


def test_scientific_notation_is_a_number_in_files_and_overrides():
    recipe = load_recipe("toy/laser", ["trainer.learning_rate=3e-4"])
    assert recipe.trainer["learning_rate"] == 3e-4
    assert recipe_from_dict({"trainer": {"learning_rate": "1e-6", "bf16": False}}).trainer["learning_rate"] == 1e-6
