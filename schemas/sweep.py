"""Hyperparameter search: the settings `adapterflow sweep` tries, and how its trials are judged and stopped early."""

from __future__ import annotations

import copy
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    field_validator,
    model_validator,
)

from schemas.base import StrictModel
from schemas.problems import validation_problems

# Trials share one prepared dataset (ingest ... tokenize run once per sweep): only what training does can vary.
SEARCHABLE_SECTIONS = ("training", "method")
# Each trial trains in the sweep's own process and stops early from there.
FIXED_IN_TRIALS = ("training.distributed", "training.checkpoint_steps", "training.keep_checkpoints")

Scalar = bool | int | float | str | None


class SearchRange(StrictModel):
    """A number drawn from [low, high]: an integer when both bounds (and the step) are integers, else a float."""

    low: int | float
    high: int | float
    log: bool = Field(False, description="draw on a log scale (learning rates); needs low > 0")
    step: int | float | None = Field(None, gt=0, description="draw only low, low + step, ... (not with log)")

    @model_validator(mode="after")
    def _sound(self) -> SearchRange:
        if self.high <= self.low:
            raise ValueError(f"high ({self.high}) must be greater than low ({self.low})")
        if self.log and self.low <= 0:
            raise ValueError(f"a log-scale range needs low > 0 (it is {self.low})")
        if self.log and self.step is not None:
            raise ValueError("use either log or step, not both")
        return self

    @property
    def integer(self) -> bool:
        return all(isinstance(bound, int) for bound in (self.low, self.high, self.step or 1))

    def bounds(self) -> list[Scalar]:
        """Values to try the setting with before any trial: the bounds, and for a float range a fractional value
        (an integer setting would refuse what the trial draws)."""
        if self.integer:
            return [self.low, self.high]
        inside = self.low + (self.high - self.low) / 3
        return [self.low, self.high, inside if not float(inside).is_integer() else inside + (self.high - self.low) / 7]


class SearchChoices(StrictModel):
    """One of a list of values."""

    choices: list[Any] = Field(min_length=1)

    @field_validator("choices")
    @classmethod
    def _single_values(cls, choices: list[Any]) -> list[Any]:
        lists = [choice for choice in choices if not isinstance(choice, Scalar)]
        if lists:
            raise ValueError(f"each choice must be one number, string, true/false or null, not {lists[0]!r}: Optuna "
                             "draws single values (search a list-valued setting by naming each list in the config "
                             "you run)")
        return choices

    def bounds(self) -> list[Scalar]:
        """Every choice: each must be a valid setting."""
        return list(self.choices)


def searchable(path: str) -> str:
    """A dotted setting a sweep can vary: training.* and method.*, except what trials fix."""
    if path.split(".", 1)[0] not in SEARCHABLE_SECTIONS or "." not in path:
        raise ValueError("only training.* and method.* settings can be searched (the data is prepared once for "
                         "all trials)")
    if path.startswith(FIXED_IN_TRIALS):
        raise ValueError("trials train in one process each and don't checkpoint: this setting can't vary")
    return path


def space_kind(value: Any) -> str:
    """The union member a value is meant for: from the YAML's keys, or (serializing) the model it is."""
    if isinstance(value, dict):
        return "choices" if "choices" in value else "range"
    return "choices" if isinstance(value, SearchChoices) else "range"


# {choices: [...]} or a range: only the one meant is reported on when it is wrong
SearchSpace = Annotated[Annotated[SearchRange, Tag("range")] | Annotated[SearchChoices, Tag("choices")],
                        Discriminator(space_kind)]


class SweepConfig(StrictModel):
    """What `adapterflow sweep CONFIG --trials N` searches over; `adapterflow run` ignores this section."""

    parameters: dict[Annotated[str, AfterValidator(searchable)], SearchSpace] = Field(
        min_length=1, description="dotted setting -> {low, high[, log | step]} or {choices: [...]}, e.g. "
        "training.learning_rate: {low: 1.0e-5, high: 1.0e-3, log: true}; training.* and method.* settings only")
    trials: int = Field(8, ge=1, description="trials when the command gives no --trials")
    eval_steps: int = Field(
        10, ge=1, description="every N optimizer steps each trial measures its loss on the validation split; trials "
        "are judged by that loss at the step they keep (the best under early stopping, else the last), and pruned "
        "on the way")
    pruner: Literal["median", "none"] = Field(
        "median", description="median: stop a trial whose intermediate validation loss is worse than the median of "
        "earlier trials at the same step (Optuna's MedianPruner); none: every trial runs to its end")
    startup_trials: int = Field(2, ge=0, description="trials that always run to their end before any is pruned")
    sampler: Literal["tpe", "random"] = Field("tpe", description="Optuna's TPE sampler, or uniform random draws")
    seed: int = Field(0, description="seed of the sampler: the same sweep draws the same trials")


def set_dotted(config: dict[str, Any], path: str, value: Any) -> None:
    """Set `a.b.c` in a nested config dict; KeyError when a section or setting of the path isn't there."""
    *sections, leaf = path.split(".")
    for section in sections:
        config = config[section]
        if not isinstance(config, dict):
            raise KeyError(section)
    if leaf not in config:
        raise KeyError(leaf)
    config[leaf] = value


def apply_values(config: BaseModel, values: dict[str, Any]) -> BaseModel:
    """The pipeline config with `values` (dotted setting -> value) set and no sweep section: what a trial trains
    with, and the best trial's config as a plain run config. ValidationError when a value doesn't fit."""
    return with_values(type(config), config.model_dump(mode="json", exclude={"sweep"}), values)


def with_values(model: type[BaseModel], raw: dict[str, Any], values: dict[str, Any]) -> BaseModel:
    """`model` validated from a copy of the config dict `raw` with `values` set (KeyError: a setting isn't there)."""
    raw = copy.deepcopy(raw)
    for path, value in values.items():
        set_dotted(raw, path, value)
    # paths were resolved when the config was loaded; a worker validating it need not have the files
    return model.model_validate(raw, context={"foreign_paths": True})


def value_problems(model: type[BaseModel], raw: dict[str, Any], sweep: SweepConfig) -> list[str]:
    """Every searched setting that the config dict `raw` doesn't have, or whose bounds or choices it would not
    accept; and settings of the config that trials can't train with."""
    problems = []
    processes = raw["training"]["distributed"]["num_processes"]
    if processes > 1:
        problems.append(f"training.distributed.num_processes is {processes}: a sweep's trials train in one process "
                        "each (set it to 1 for the sweep)")
    if raw["training"]["warm_start"] == "champion" and any(path.startswith("method.") for path in sweep.parameters):
        problems.append("training.warm_start is champion: a trial can only continue the champion's adapter with the "
                        "champion's method settings (set training.warm_start: none to search method.*)")
    for path, space in sweep.parameters.items():
        for value in space.bounds():
            try:
                with_values(model, raw, {path: value})
            except KeyError:
                problems.append(f"{path!r}: no such setting in this config (method {raw['method']['type']})")
                break
            except ValidationError as error:
                problems.append(f"{path}={value!r} is not a valid setting ({validation_problems(error, model)})")
    return problems
