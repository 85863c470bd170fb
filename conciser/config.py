"""Recipes: YAML experiments validated into small dataclasses before any model is loaded.

A recipe has the blocks `model`, `data`, `rewards`, `advantage`, `sampling`, `budget`, `trainer`
(passed to `trl.GRPOConfig`, so TRL's own validation applies) and `eval`. Unknown keys are rejected
with the closest valid key suggested. `key=value` overrides use dotted paths
(`trainer.learning_rate=1e-5`, `rewards.params.target_length=64`); values are parsed as YAML.

Recipes are found by path, or by name relative to the bundled `recipes/` folder
(`toy/laser` -> recipes/toy/laser.yaml), so `conciser train toy/laser` works from a wheel.
"""

from __future__ import annotations

import copy
import dataclasses
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from conciser.errors import MissingInput, UserError, did_you_mean


class RecipeError(UserError):
    """A recipe is invalid. The message names the field, says why, and says what to set instead."""


@dataclass
class ModelConfig:
    """The policy to train.

    name_or_path: a local model folder, a hub id, or `toy` for the cached toy base (built if missing).
    dtype: `float32` | `bfloat16` | `float16` | `auto`.
    """

    name_or_path: str = "toy"
    dtype: str = "float32"


@dataclass
class DataConfig:
    """Training prompts.

    dataset: `toy` (generated toy problems), a local `.jsonl` file, or a datasets-hub id.
    split: split to use for hub datasets.
    n_train: number of toy problems to generate (toy only).
    seed: seed of the toy training problems (they never overlap the held-out toy benchmark).
    prompt_column / answer_column / id_column: column names in the dataset. The prompt is either a
        string (wrapped as one user message) or a list of chat messages.
    grader: `toy` (exact digit in \\boxed{} after </think>) or `math` (math-verify).
    prompt_template: a format string with `{problem}` applied to string prompts, e.g. the R1 directive
        "{problem}\\nPlease reason step by step, and put your final answer within \\boxed{{}}.";
        None uses the prompt as it is.
    target_lengths: [lo, hi] for rewards that need a per-prompt token budget (L1's l1_exact / l1_max):
        each row gets n ~ U{lo..hi} (seeded by `seed`) and the reward's instruction ("Think for n
        tokens.") appended to its prompt. L1 trains with [100, 4000] under a 4k+ cap. Leave it None when
        the data has a `target_length` column (its prompts must then state the budget themselves).
    """

    dataset: str = "toy"
    split: str = "train"
    n_train: int = 2000
    seed: int = 0
    prompt_column: str = "prompt"
    answer_column: str = "answer"
    id_column: str = "problem_id"
    grader: str = "toy"
    prompt_template: str | None = None
    target_lengths: list[int] | None = None


@dataclass
class RewardsConfig:
    """The method's reward: a name from `conciser.rewards.REWARDS`, or a dotted path to your own
    `LengthReward` subclass (`my_pkg.my_module:MyReward`), and that reward's own config (`params`)."""

    method: str = "laser"
    params: dict[str, Any] = field(default_factory=dict)
    allow_fresh_state: bool = False  # resume a stateful reward without its state file (starts empty)


@dataclass
class AdvantageConfig:
    """How rewards become advantages (`conciser.trainers.advantages.ESTIMATORS`).

    estimator: `group` (GRPO: TRL's own group normalisation, `trainer.scale_rewards` applies),
        `batch` (DLER / REINFORCE++-baseline: group-mean subtraction, then whitening over the whole
        gathered batch), `raw` (the reward itself, no baseline: AdaptThink / O1-Pruner, whose reward
        subtracts the reference model's statistics), `drpo` (DRPO's decoupled objective and loss; needs
        `rewards.method: drpo`), or a dotted path to your own `conciser.trainers.advantages.Estimator` subclass.
    params: the estimator's options; `batch`: `token_weighted` (false: per-sequence statistics as in
        the DLER paper; true: over response tokens as in verl), `eps` (1e-8). `raw`: `whiten` (false;
        true: z-score over the batch), `eps` (1e-8). `group`, `drpo`: none
        (DRPO's lambda, tau, delta, beta are `rewards.params`).
    """

    estimator: str = "group"
    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class SamplingConfig:
    """Dynamic sampling (DAPO/DLER): drop all-equal groups and refill, at most `max_gen_batches` times.

    dynamic: drop groups whose scores are all equal and refill the batch from new prompts.
    max_gen_batches: generation batches allowed per step (the first included); what happens past it
        is `on_exhausted`.
    on_exhausted: `error` (DAPO/verl: stop with an error naming this setting) or `fill` (train the step
        on the groups kept so far, topped up with the last generation batch's dropped groups, as
        without dynamic sampling; logged as `sampling/filled_group_frac`). `fill` suits a policy that
        has solved most of its prompts and would otherwise stop the run.
    metric: what "all equal" looks at: `auto` (the reward's `sampling_scores`: the reward itself unless
        the method filters on something else, e.g. DLER's unmodified score), `reward`, or `correct`
        (solved 0/1).
    keep_all_correct: keep groups whose completions are all solved even when their scores are equal
        (ConciseR stage 2); None = the reward's `keep_all_correct` (true for `concise_r`).
    monitor_prompts: size of the fixed monitor set LASER-D/DE sample (K = num_generations each) when
        their `coverage_source` is `monitor` (the paper's 500; the toy needs far fewer).
    """

    dynamic: bool = False
    max_gen_batches: int = 4
    on_exhausted: str = "error"
    metric: str = "auto"
    keep_all_correct: bool | None = None
    monitor_prompts: int = 64


@dataclass
class BudgetConfig:
    """The generation cap over training (`conciser.trainers.budget`).

    schedule: `constant` keeps `trainer.max_completion_length`; `reward` takes the reward's own
        budget (curriculum / thinkprune `budget_at(step)`, palu's per-question budgets); `exponential`
        and `linear` (params: start_budget, end_budget, num_decays, total_steps, rounding) and `stages`
        (params: caps, stage_starts) are standalone schedules usable with any reward. A budget never
        exceeds `trainer.max_completion_length`.
    params: the schedule's parameters (see above; `reward` and `constant` take none).
    prompt: append the reward's `budget_prompt(step)` to the last user message (curriculum and
        thinkprune write the budget into the prompt; off by default: the toy base never saw it).
    """

    schedule: str = "constant"
    params: dict[str, Any] = field(default_factory=dict)
    prompt: bool = False


@dataclass
class EvalBlock:
    """The recipe's evaluation settings: what `conciser slurm render|submit --with-eval` evaluates the
    trained model on (`conciser eval`'s options of the same names, `conciser.eval.run.EvalConfig`).

    benchmarks: benchmark names (`conciser eval --benchmarks`).
    n: samples per problem.
    max_new_tokens / temperature: None = the benchmark's (or the eval harness's) default.
    """

    benchmarks: list[str] = field(default_factory=lambda: ["toy"])
    n: int = 1
    max_new_tokens: int | None = None
    temperature: float | None = None


@dataclass
class Recipe:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    rewards: RewardsConfig = field(default_factory=RewardsConfig)
    advantage: AdvantageConfig = field(default_factory=AdvantageConfig)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    budget: BudgetConfig = field(default_factory=BudgetConfig)
    trainer: dict[str, Any] = field(default_factory=dict)
    eval: EvalBlock = field(default_factory=EvalBlock)
    source: str | None = None  # where the recipe was read from (not a YAML key)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d.pop("source")
        return d

    def grpo_config(self, **extra):
        """The `trl.GRPOConfig` for this recipe (TRL validates its own fields here)."""
        from trl import GRPOConfig

        kwargs = {**self.trainer, **extra}
        try:
            return GRPOConfig(**kwargs)
        except TypeError as exc:
            bad = str(exc).split("'")[1] if "'" in str(exc) else str(exc)
            valid = [f.name for f in dataclasses.fields(GRPOConfig)]
            raise RecipeError(f"trainer.{bad}: not a trl.GRPOConfig field{did_you_mean(bad, valid)}") from None
        except ValueError as exc:
            raise RecipeError(f"trainer: trl.GRPOConfig rejected the block: {exc}") from None


BLOCKS: dict[str, type] = {
    "model": ModelConfig, "data": DataConfig, "rewards": RewardsConfig, "advantage": AdvantageConfig,
    "sampling": SamplingConfig, "budget": BudgetConfig, "eval": EvalBlock,
}
FREE_FORM = {"trainer"}  # validated by trl.GRPOConfig instead


def resolve_recipe_path(name_or_path: str | Path) -> Path:
    """A recipe file path, or a bundled recipe name such as `toy/laser`."""
    p = Path(name_or_path)
    if p.is_file():
        return p
    bundled = resources.files("conciser.recipes")
    rel = str(name_or_path).removeprefix("recipes/")
    for candidate in (rel, f"{rel}.yaml"):
        q = bundled.joinpath(candidate)
        if q.is_file():
            return Path(str(q))
    known = ", ".join(list_recipes()) or "(none)"
    raise MissingInput(
        f"recipe '{name_or_path}' not found: no such file, and no bundled recipe of that name. "
        f"Bundled recipes: {known}. Run `conciser recipes` to list them."
    )


def list_recipes() -> list[str]:
    root = Path(str(resources.files("conciser.recipes")))
    return sorted(str(p.relative_to(root).with_suffix("")) for p in root.rglob("*.yaml"))


_SCI = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)[eE][+-]?\d+$")


def _coerce_numbers(value: Any) -> Any:
    """YAML 1.1 (PyYAML) reads `3e-4` as a string; recipes mean the number."""
    if isinstance(value, dict):
        return {k: _coerce_numbers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_coerce_numbers(v) for v in value]
    if isinstance(value, str) and _SCI.match(value.strip()):
        return float(value)
    return value


def _parse_value(text: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply `a.b.c=value` overrides to a nested dict (a copy)."""
    out = copy.deepcopy(raw)
    for item in overrides:
        if "=" not in item:
            raise RecipeError(f"override '{item}' is not key=value (e.g. trainer.max_steps=10)")
        key, value = item.split("=", 1)
        parts = key.strip().split(".")
        node = out
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise RecipeError(f"override '{key}': '{part}' is not a block")
        node[parts[-1]] = _parse_value(value)
    return out


def _build_block(name: str, cls: type, raw: Any) -> Any:
    if raw is None:
        return cls()
    if not isinstance(raw, dict):
        raise RecipeError(f"{name}: expected a mapping of keys, got {type(raw).__name__}")
    valid = [f.name for f in dataclasses.fields(cls)]
    for key in raw:
        if key not in valid:
            raise RecipeError(f"{name}.{key}: unknown key{did_you_mean(key, valid)}")
    return cls(**raw)


def recipe_from_dict(raw: dict[str, Any], source: str | None = None) -> Recipe:
    """Validate a recipe dict (unknown keys, reward names and params, trainer block)."""
    if not isinstance(raw, dict):
        raise RecipeError("a recipe must be a YAML mapping with blocks: " + ", ".join([*BLOCKS, "trainer"]))
    raw = _coerce_numbers(raw)
    valid_blocks = [*BLOCKS, *FREE_FORM]
    for key in raw:
        if key not in valid_blocks:
            raise RecipeError(f"{key}: unknown recipe block{did_you_mean(key, valid_blocks)}")
    blocks = {name: _build_block(name, cls, raw.get(name)) for name, cls in BLOCKS.items()}
    trainer = raw.get("trainer") or {}
    if not isinstance(trainer, dict):
        raise RecipeError("trainer: expected a mapping of trl.GRPOConfig fields")
    recipe = Recipe(**blocks, trainer=dict(trainer), source=source)
    validate(recipe)
    return recipe


def validate(recipe: Recipe) -> None:
    """Checks that need the registries; all cheap, none loads a model."""
    from conciser.plugins import is_dotted_path, load_class
    from conciser.rewards import build_reward
    from conciser.rewards.grading import GRADERS

    try:
        build_reward(recipe.rewards.method, **recipe.rewards.params)
    except (ValueError, TypeError) as exc:
        message = str(exc)
        raise RecipeError(message if message.startswith("rewards.") else f"rewards: {message}") from None
    if is_dotted_path(recipe.advantage.estimator):  # importable now; the trainer checks the class itself
        try:
            load_class(recipe.advantage.estimator, object, "advantage.estimator")
        except ValueError as exc:
            raise RecipeError(str(exc)) from None
    if recipe.data.grader not in GRADERS:
        raise RecipeError(f"data.grader: unknown grader '{recipe.data.grader}'; valid: {', '.join(sorted(GRADERS))}")
    if recipe.sampling.max_gen_batches < 1:
        raise RecipeError("sampling.max_gen_batches: must be >= 1 (the number of generation batches per step)")
    recipe.grpo_config()


def load_recipe(name_or_path: str | Path, overrides: list[str] | None = None) -> Recipe:
    """Read, override and validate a recipe. Raises RecipeError / FileNotFoundError before any model loads."""
    path = resolve_recipe_path(name_or_path)
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise RecipeError(f"{path}: not valid YAML: {exc}") from None
    return recipe_from_dict(apply_overrides(raw, overrides or []), source=str(path))


def write_resolved(recipe: Recipe, output_dir: str | Path) -> Path:
    """Write the fully resolved recipe next to the run's outputs (before training starts)."""
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "recipe.resolved.yaml"
    header = f"# resolved from {recipe.source}\n" if recipe.source else ""
    path.write_text(header + yaml.safe_dump(recipe.to_dict(), sort_keys=False))
    return path
