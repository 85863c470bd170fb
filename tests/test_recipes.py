"""Every bundled recipe loads and validates without a model: the trainer block is accepted by
trl.GRPOConfig, the reward builds, data and model are resolvable (toy, an existing path, a hub id, or a
file the recipe's `# prepare:` line creates), the header gives the launch command, and the R1-Distill
recipes carry their papers' settings, with batch arithmetic that holds on one node and on the Slurm
layout their header suggests.

    python -m pytest -q tests/test_recipes.py
"""

import re
import shlex
from pathlib import Path

import pytest

from conciser.config import list_recipes, resolve_recipe_path
from conciser.launch import launch_info, load_recipe_anywhere
from conciser.rewards import build_reward

HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
RECIPES = list_recipes()
R1 = [r for r in RECIPES if r.startswith("r1-distill-qwen-")]
METHODS = ["laser_d", "dler", "drpo", "hapo", "curriculum", "grpo"]


def _header(name: str) -> list[str]:
    lines = resolve_recipe_path(name).read_text().splitlines()
    return [line for line in lines[: next(i for i, l in enumerate(lines) if not l.startswith("#"))]]


def test_every_model_folder_has_every_card_method():
    assert {r.split("/")[0] for r in R1} == {"r1-distill-qwen-1.5b", "r1-distill-qwen-7b"}
    for size in ("1.5b", "7b"):
        assert sorted(r.split("/")[1] for r in R1 if r.startswith(f"r1-distill-qwen-{size}/")) == sorted(METHODS)


@pytest.mark.parametrize("name", RECIPES)
def test_recipe_loads_and_validates_without_a_model(name):
    recipe = load_recipe_anywhere(name)               # unknown keys, reward params, trl.GRPOConfig
    build_reward(recipe.rewards.method, **recipe.rewards.params)
    header = _header(name)
    assert header and f"conciser train {name}" in header[0], f"{name}: the first line must give its launch command"

    model = recipe.model.name_or_path
    assert model == "toy" or Path(model).is_dir() or HUB_ID.match(model), f"{name}: model {model!r}"

    data = recipe.data.dataset
    if data != "toy" and not HUB_ID.match(data) and not Path(data).is_file():
        prepare = [line for line in header if line.startswith("# prepare:")]
        assert prepare and data in prepare[0], (
            f"{name}: data.dataset {data!r} is neither toy, an existing file nor a hub id, and no '# prepare:' "
            f"header line creates it")
        shlex.split(prepare[0].removeprefix("# prepare:"))   # a command a shell can read
    assert recipe.data.grader in ("toy", "math")


@pytest.mark.parametrize("name", R1)
def test_r1_recipe_layouts(name):
    recipe = load_recipe_anywhere(name)
    t = recipe.trainer
    assert recipe.model.name_or_path == {"1.5b": "deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B",
                                         "7b": "deepseek-ai/DeepSeek-R1-Distill-Qwen-7B"}[name.split("-")[-1].split("/")[0]]
    assert recipe.data.grader == "math" and t["bf16"] is True and recipe.model.dtype == "bfloat16"
    # Single node: vLLM colocated in the training processes; its context fits prompt + completion.
    assert t["use_vllm"] is True and t["vllm_mode"] == "colocate"
    assert t["vllm_max_model_length"] >= t["max_completion_length"] + 512
    assert t["save_strategy"] == "steps" and t["output_dir"] == f"runs/{name}"   # checkpoints to resume from
    one_node = launch_info(name, nodes=1, gpus_per_node=8)
    assert one_node["vllm_mode"] == "colocate"

    # The Slurm command in the header keeps the global batch on its node count.
    header = "\n".join(_header(name)).replace("\\\n#", " ")
    slurm = next(line for line in header.splitlines() if "conciser slurm submit" in line)
    words = slurm.split()
    nodes = int(words[words.index("--nodes") + 1])
    overrides = [w for w in words if w.startswith("trainer.")]
    multi = launch_info(name, overrides, allocated_nodes=nodes + 1, gpus_per_node=8, accelerate="zero3")
    assert multi["vllm_server"] and multi["train_nodes"] == nodes and multi["num_processes"] == 8 * nodes
    assert multi["completions_per_step"] == one_node["completions_per_step"]
    assert multi["generation_batch"] == one_node["generation_batch"]


# Papers' settings (reference/methods-core.md): prompts per optimizer step / per generation at 8 GPUs,
# group size, temperature, cap, learning rate, clip-higher, KL coefficient, and the method's own knobs.
PAPER = {
    "laser_d": dict(prompts_per_step=64, prompts_per_generation=128, num_generations=8, temperature=0.6,
                    max_completion_length=16384, lr={"1.5b": 1e-6, "7b": 1e-6}, epsilon_high=0.28, beta=0.001,
                    reward=dict(target_length=4096, alpha=0.5, grid_step=1024), advantage="group", dynamic=False),
    "dler": dict(prompts_per_step=64, prompts_per_generation=512, num_generations=16, temperature=1.0,
                 max_completion_length=4000, lr={"1.5b": 1e-6, "7b": 1e-6}, epsilon_high=0.28, beta=5e-4,
                 reward=dict(target_length=4000), advantage="batch", dynamic=True),
    "drpo": dict(prompts_per_step=32, prompts_per_generation=128, num_generations=8, temperature=0.6,
                 max_completion_length=8192, lr={"1.5b": 2e-6, "7b": 1e-6}, epsilon_high=None, beta=0.0,
                 reward=dict(lam=0.1, tau=10.0, delta=1e-4, beta=1000.0), advantage="drpo", dynamic=False),
    "hapo": dict(prompts_per_step=8, prompts_per_generation=8, num_generations=2, temperature=0.7,
                 max_completion_length=32768, lr={"1.5b": 1e-6, "7b": 1e-6}, epsilon_high=None, beta=0.04,
                 reward=dict(weight=1.0, length_reward="cosine", history="min"), advantage="group", dynamic=False),
    "curriculum": dict(prompts_per_step=64, prompts_per_generation=64, num_generations=8, temperature=0.6,
                       max_completion_length=16384, lr={"1.5b": 1e-6, "7b": 1e-6}, epsilon_high=None, beta=0.001,
                       reward=dict(schedule="exponential", num_decays=3, total_steps=600), advantage="group",
                       dynamic=False),
    "grpo": dict(prompts_per_step=64, prompts_per_generation=128, num_generations=8, temperature=0.6,
                 max_completion_length=16384, lr={"1.5b": 1e-6, "7b": 1e-6}, epsilon_high=0.28, beta=0.001,
                 reward=dict(stop_penalty_coef=0.0), advantage="group", dynamic=False),
}


@pytest.mark.parametrize("name", R1)
def test_r1_recipe_has_the_papers_settings(name):
    size, method = name.removeprefix("r1-distill-qwen-").split("/")
    want = PAPER[method]
    recipe = load_recipe_anywhere(name)
    t = recipe.trainer
    info = launch_info(name, nodes=1, gpus_per_node=8)
    assert info["prompts_per_step"] == want["prompts_per_step"]
    assert info["prompts_per_generation"] == want["prompts_per_generation"]
    assert t["num_generations"] == want["num_generations"]
    assert t["temperature"] == want["temperature"]
    assert t["max_completion_length"] == want["max_completion_length"]
    assert t["learning_rate"] == pytest.approx(want["lr"][size])
    assert t.get("epsilon_high") == want["epsilon_high"]
    assert t["beta"] == pytest.approx(want["beta"])
    for key, value in want["reward"].items():
        assert recipe.rewards.params[key] == value, f"rewards.params.{key}"
    assert recipe.advantage.estimator == want["advantage"]
    assert recipe.sampling.dynamic is want["dynamic"]
    if method == "curriculum":
        assert recipe.rewards.params["total_steps"] == t["max_steps"]   # the schedule spans the run
    if method == "grpo":
        assert recipe.rewards.params["target_length"] == t["max_completion_length"]   # no length term
