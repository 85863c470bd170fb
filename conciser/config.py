"""Recipes: YAML experiments validated into small dataclasses before any model is loaded.

A recipe has the blocks `model`, `data`, `rewards`, `advantage`, `sampling`, `budget`, `trainer`
(passed to `trl.GRPOConfig`, so TRL's own validation applies) and `eval`. Unknown keys are rejected
with the closest valid key suggested. `key=value` overrides use dotted paths
(`trainer.learning_rate=1e-5`, `rewards.params.target_length=64`); values are parsed as YAML.

Every value is checked here, in milliseconds and before TRL, transformers or torch are imported: its
type from the field's annotation (booleans are true/false, never "maybe"), its range and choices from
the field's metadata, the trainer block's from a snapshot of trl.GRPOConfig's fields
(`conciser.trainer_fields`) plus `TRAINER_RULES`. A bad value is one `RecipeError` naming the field.

Recipes are found by path, or by name relative to the bundled `recipes/` folder
(`toy/laser` -> recipes/toy/laser.yaml), so `conciser train toy/laser` works from a wheel.
"""

from __future__ import annotations

import copy
import dataclasses
import re
import types
import typing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from conciser import trainer_fields
from conciser.errors import MissingInput, UserError, did_you_mean


class RecipeError(UserError):
    """A recipe is invalid. The message names the field, says why, and says what to set instead."""


# Choices shared with the trainers (which import them from here: one source).
DTYPES = ("float32", "bfloat16", "float16", "auto")
SAMPLING_METRICS = ("auto", "reward", "correct")
ON_EXHAUSTED = ("error", "fill")
SCHEDULES = ("constant", "reward", "exponential", "linear", "stages")


def rule(default: Any = dataclasses.MISSING, *, factory: Any = dataclasses.MISSING, **checks: Any):
    """A dataclass field with checks in its metadata: min / max (inclusive), above (exclusive), choices."""
    if factory is not dataclasses.MISSING:
        return field(default_factory=factory, metadata=checks)
    return field(default=default, metadata=checks)


@dataclass
class ModelConfig:
    """The policy to train.

    name_or_path: a local model folder, a hub id, or a toy task name (`toy`, `toy-chain`, `toy-scan`)
        for that task's cached toy base (built if missing).
    dtype: `float32` | `bfloat16` | `float16` | `auto`.
    """

    name_or_path: str = "toy"
    dtype: str = rule("float32", choices=DTYPES)


@dataclass
class DataConfig:
    """Training prompts.

    dataset: a toy task name (`toy`, `toy-chain`, `toy-scan`: generated problems), a local `.jsonl`
        file, or a datasets-hub id.
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
    drop_unparseable_golds: every gold answer is parsed before training; rows whose gold the grader
        cannot parse (every answer to them would be graded wrong) stop the run, listed with their
        1-based line numbers. True drops them instead, saying how many.
    """

    dataset: str = "toy"
    split: str = "train"
    n_train: int = rule(2000, min=1)
    seed: int = rule(0, min=0)
    prompt_column: str = "prompt"
    answer_column: str = "answer"
    id_column: str = "problem_id"
    grader: str = "toy"
    prompt_template: str | None = None
    target_lengths: list[int] | None = None
    drop_unparseable_golds: bool = False


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
        `rewards.method: drpo`), `grpo_lead` (GRPO's group advantages reweighted by each group's solve
        rate, GRPO-LEAD), or a dotted path to your own `conciser.trainers.advantages.Estimator` subclass.
    params: the estimator's options; `batch`: `token_weighted` (false: per-sequence statistics as in
        the DLER paper; true: over response tokens as in verl), `eps` (1e-8). `raw`: `whiten` (false;
        true: z-score over the batch), `eps` (1e-8). `grpo_lead`: `min_weight` (0.4), `max_weight` (1.5),
        `midpoint` (0.75), `steepness` (10). `group`, `drpo`: none
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
    max_gen_batches: int = rule(4, min=1)
    on_exhausted: str = rule("error", choices=ON_EXHAUSTED)
    metric: str = rule("auto", choices=SAMPLING_METRICS)
    keep_all_correct: bool | None = None
    monitor_prompts: int = rule(64, min=1)


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

    schedule: str = rule("constant", choices=SCHEDULES)
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

    benchmarks: list[str] = rule(factory=lambda: ["toy"], nonempty=True)
    n: int = rule(1, min=1)
    max_new_tokens: int | None = rule(None, min=1)
    temperature: float | None = rule(None, min=0)


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
FREE_FORM = {"trainer"}  # checked against trl.GRPOConfig's fields, then by trl.GRPOConfig itself

# Ranges and choices of trainer-block fields that TRL leaves unchecked (or checks only after the model
# loads): min / max inclusive, above exclusive, choices; `allow` lists special values outside the range.
TRAINER_RULES: dict[str, dict[str, Any]] = {
    "learning_rate": {"min": 0, "why": "0 keeps the policy frozen"}, "num_train_epochs": {"above": 0},
    "max_steps": {"min": 1, "allow": (-1,), "why": "-1 trains num_train_epochs epochs"},
    "per_device_train_batch_size": {"min": 1}, "per_device_eval_batch_size": {"min": 1},
    "gradient_accumulation_steps": {"min": 1}, "steps_per_generation": {"min": 1},
    "generation_batch_size": {"min": 1}, "num_iterations": {"min": 1},
    "num_generations": {"min": 2, "why": "GRPO compares completions within a group"},
    "max_completion_length": {"min": 1}, "max_prompt_length": {"min": 1},
    "temperature": {"above": 0}, "top_p": {"above": 0, "max": 1}, "top_k": {"min": 0},
    "beta": {"min": 0}, "epsilon": {"min": 0}, "epsilon_high": {"min": 0},
    "warmup_ratio": {"min": 0, "max": 1}, "warmup_steps": {"min": 0}, "weight_decay": {"min": 0},
    "max_grad_norm": {"min": 0}, "seed": {"min": 0},
    "logging_steps": {"above": 0}, "save_steps": {"above": 0}, "eval_steps": {"above": 0},
    "save_total_limit": {"min": 2, "why": "a kill while saving must leave the previous checkpoint"},
    "vllm_mode": {"choices": ("colocate", "server")},
    "vllm_gpu_memory_utilization": {"above": 0, "max": 1}, "vllm_tensor_parallel_size": {"min": 1},
}


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
    if not isinstance(raw, dict):
        raise RecipeError("overrides need a recipe that is a mapping of blocks (model:, data:, rewards:, ...)")
    out = copy.deepcopy(raw)
    for item in overrides:
        if "=" not in item:
            raise RecipeError(f"override '{item}' is not key=value (e.g. trainer.max_steps=10)")
        key, value = item.split("=", 1)
        parts = key.strip().split(".")
        if not all(parts):
            raise RecipeError(f"override '{item}': '{key}' is not a dotted key such as trainer.max_steps")
        node = out
        for i, part in enumerate(parts[:-1]):
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise RecipeError(f"override '{item}': {'.'.join(parts[:i + 1])} is a value, not a block")
        node[parts[-1]] = _parse_value(value)
    return out


def _type_error(value: Any, hint: Any) -> str | None:
    """Why `value` does not fit the annotation `hint` (None if it does). Booleans are strict."""
    args = typing.get_args(hint)
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = [_type_error(value, a) for a in args if a is not type(None)]
        return None if any(e is None for e in errors) else errors[0]
    if hint is Any:
        return None
    if value is None:
        return "may not be empty (null)"
    if hint is bool:
        return None if isinstance(value, bool) else f"must be true or false, got {value!r}"
    if hint is int:
        return None if isinstance(value, int) and not isinstance(value, bool) else f"must be an integer, got {value!r}"
    if hint is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        return None if ok else f"must be a number, got {value!r}"
    if hint is str:
        return None if isinstance(value, str) else f"must be a string, got {value!r}"
    if origin is list:
        if not isinstance(value, list):
            return f"must be a list, got {value!r}"
        inner = args[0] if args else Any
        return next((f"item {i}: {e}" for i, v in enumerate(value) if (e := _type_error(v, inner))), None)
    if origin is dict:
        return None if isinstance(value, dict) else f"must be a mapping, got {value!r}"
    return None


def _range_error(value: Any, checks: dict[str, Any]) -> str | None:
    """Why `value` breaks the field's range / choices (None if it does not)."""
    if value is None or isinstance(value, bool):
        return None
    why = f" ({checks['why']})" if "why" in checks else ""
    if "choices" in checks and value not in checks["choices"]:
        return f"must be one of {', '.join(map(str, checks['choices']))}, got {value!r}"
    if checks.get("nonempty") and not value:
        return "must not be empty"
    if not isinstance(value, (int, float)) or value in checks.get("allow", ()):
        return None
    allowed = f" or {', '.join(map(str, checks['allow']))}" if checks.get("allow") else ""
    if "min" in checks and value < checks["min"]:
        return f"must be >= {checks['min']}{allowed}, got {value}{why}"
    if "above" in checks and not value > checks["above"]:
        return f"must be > {checks['above']}{allowed}, got {value}{why}"
    if "max" in checks and value > checks["max"]:
        return f"must be <= {checks['max']}, got {value}{why}"
    return None


def _build_block(name: str, cls: type, raw: Any) -> Any:
    if raw is None:
        return cls()
    if not isinstance(raw, dict):
        raise RecipeError(f"{name}: expected a mapping of keys, got {type(raw).__name__}")
    valid = [f.name for f in dataclasses.fields(cls)]
    hints = typing.get_type_hints(cls)
    for key, value in raw.items():
        if key not in valid:
            raise RecipeError(f"{name}.{key}: unknown key{did_you_mean(key, valid)}")
        f = next(f for f in dataclasses.fields(cls) if f.name == key)
        problem = _type_error(value, hints[key]) or _range_error(value, dict(f.metadata))
        if problem:
            raise RecipeError(f"{name}.{key}: {problem}")
    return cls(**raw)


def check_trainer_block(trainer: Any) -> dict[str, Any]:
    """The trainer block's keys, types, choices and ranges, from the snapshot of trl.GRPOConfig's fields
    (no TRL import); trl.GRPOConfig runs its own checks when the config is built."""
    if not isinstance(trainer, dict):
        raise RecipeError("trainer: expected a mapping of trl.GRPOConfig fields")
    known = trainer_fields.fields()
    for key, value in trainer.items():
        if key not in known:
            raise RecipeError(f"trainer.{key}: not a trl.GRPOConfig field{did_you_mean(str(key), known)}")
        problem = trainer_fields.type_error(value, known[key]) or _range_error(value, TRAINER_RULES.get(key, {}))
        if problem:
            raise RecipeError(f"trainer.{key}: {problem}")
    return dict(trainer)


_PATHLIKE = re.compile(r"^(/|\./|\.\./|~)")


def check_model(model: ModelConfig) -> None:
    """A local-looking model path must exist (a hub id is `name` or `org/name`)."""
    name = model.name_or_path
    if name == "toy":
        return
    if _PATHLIKE.match(name) or name.count("/") > 1 or "\\" in name:
        if not Path(name).expanduser().exists():
            raise RecipeError(f"model.name_or_path: {name} does not exist; give a local model folder (with "
                              f"config.json), a hub id such as org/name, or 'toy'")
        return
    if not Path(name).exists() and not re.fullmatch(r"[\w.-]+(/[\w.-]+)?", name):
        raise RecipeError(f"model.name_or_path: {name!r} is neither a local folder nor a hub id (org/name)")


def recipe_from_dict(raw: dict[str, Any], source: str | None = None) -> Recipe:
    """Validate a recipe dict (keys, types, ranges, reward names and params, trainer block)."""
    where = f"{source}: " if source else ""
    if not isinstance(raw, dict):
        raise RecipeError(f"{where}a recipe must be a YAML mapping with blocks: " + ", ".join([*BLOCKS, "trainer"]))
    raw = _coerce_numbers(raw)
    valid_blocks = [*BLOCKS, *FREE_FORM]
    for key in raw:
        if key not in valid_blocks:
            raise RecipeError(f"{key}: unknown recipe block{did_you_mean(str(key), valid_blocks)}")
    blocks = {name: _build_block(name, cls, raw.get(name)) for name, cls in BLOCKS.items()}
    trainer = check_trainer_block(raw.get("trainer") or {})
    recipe = Recipe(**blocks, trainer=trainer, source=source)
    validate(recipe)
    return recipe


def validate(recipe: Recipe) -> None:
    """Checks that need the registries; all cheap, none loads a model or imports TRL."""
    from conciser.plugins import is_dotted_path, load_class
    from conciser.rewards import build_reward
    from conciser.rewards.grading import GRADERS

    check_model(recipe.model)
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
    bounds = recipe.data.target_lengths
    if bounds is not None and (len(bounds) != 2 or not 1 <= bounds[0] <= bounds[1]):
        raise RecipeError(f"data.target_lengths: expected [lo, hi] with 1 <= lo <= hi (integers), got {bounds!r}")


def read_recipe_file(path: Path) -> Any:
    """The YAML content of a recipe file; one clear error for empty, binary or invalid files."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise RecipeError(f"{path}: not a text file (a recipe is YAML)") from None
    except OSError as exc:
        raise MissingInput(f"{path}: cannot read the recipe ({exc.strerror})") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise RecipeError(f"{path}: not valid YAML: {exc}".replace("\n", " ")) from None
    if raw is None:
        raise RecipeError(f"{path}: the recipe is empty; start from a bundled one (`conciser recipes`)")
    if not isinstance(raw, dict):
        raise RecipeError(f"{path}: a recipe must be a YAML mapping of blocks (model:, data:, rewards:, trainer:, "
                          f"...), not a {type(raw).__name__}")
    return raw


def load_recipe(name_or_path: str | Path, overrides: list[str] | None = None) -> Recipe:
    """Read, override and validate a recipe. Raises RecipeError / MissingInput before any model loads
    (and before TRL is imported: `Recipe.grpo_config()` builds TRL's own config afterwards)."""
    path = resolve_recipe_path(name_or_path)
    raw = read_recipe_file(path)
    return recipe_from_dict(apply_overrides(raw, overrides or []), source=str(path))


def write_resolved(recipe: Recipe, output_dir: str | Path) -> Path:
    """Write the fully resolved recipe next to the run's outputs (before training starts)."""
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "recipe.resolved.yaml"
    header = f"# resolved from {recipe.source}\n" if recipe.source else ""
    path.write_text(header + yaml.safe_dump(recipe.to_dict(), sort_keys=False))
    return path
