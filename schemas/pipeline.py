"""The root of a pipeline config: one small model that nests one section per concern."""

from __future__ import annotations

import re

from pydantic import BaseModel, Field, ValidationInfo, field_validator

from schemas.base import StrictModel
from schemas.base_model import BaseModelConfig
from schemas.data import DataConfig
from schemas.evaluation import GENERATION_METRICS, EvaluationConfig
from schemas.execution import ExecutionConfig
from schemas.method import Method
from schemas.registry import MIN_GENERATION_EXAMPLES, RegistryConfig
from schemas.sweep import SweepConfig, value_problems
from schemas.tokenize import TokenizeConfig
from schemas.training import TrainingConfig

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")


class PipelineConfig(StrictModel):
    """Everything one fine-tuning run needs, from data files to the promotion gate."""

    name: str = Field(description="experiment and default registered-model name")
    base_model: BaseModelConfig = BaseModelConfig()
    data: DataConfig
    tokenize: TokenizeConfig = TokenizeConfig()
    method: Method = Field(default_factory=lambda: {"type": "lora"}, description="fine-tuning method")
    training: TrainingConfig = TrainingConfig()
    evaluation: EvaluationConfig = EvaluationConfig()
    registry: RegistryConfig = RegistryConfig()
    execution: ExecutionConfig = ExecutionConfig()
    sweep: SweepConfig | None = Field(None, description="hyperparameter search for `adapterflow sweep`")

    @field_validator("method", mode="before")
    @classmethod
    def _lora_by_default(cls, value: object) -> object:
        # `method: {r: 8}` means LoRA: the most common choice needs no `type:` line.
        return {"type": "lora", **value} if isinstance(value, dict) and "type" not in value else value

    @field_validator("name")
    @classmethod
    def _portable_name(cls, value: str) -> str:
        if not NAME_PATTERN.match(value):
            raise ValueError("use letters, digits, '-', '_' and '.' (at most 100, starting with a letter or digit)")
        return value

    @field_validator("registry")
    @classmethod
    def _generation_gate_has_examples(cls, registry: RegistryConfig, info: ValidationInfo) -> RegistryConfig:
        # a generation metric is scored on the sampled answers only: too few make any confidence bound noise
        policy, evaluation = registry.promotion, info.data.get("evaluation")
        if (evaluation is not None and policy.confidence is not None and policy.metric in GENERATION_METRICS
                and evaluation.sample_generations < MIN_GENERATION_EXAMPLES):
            raise ValueError(
                f"promotion.metric {policy.metric} at confidence {policy.confidence:g} needs evaluation."
                f"sample_generations of at least {MIN_GENERATION_EXAMPLES} (it is {evaluation.sample_generations}): "
                f"{policy.metric} is scored on the sampled answers only; raise it, or set "
                "registry.promotion.confidence: none to compare point values")
        return registry

    @field_validator("sweep")
    @classmethod
    def _sweep_values_fit(cls, sweep: SweepConfig | None, info: ValidationInfo) -> SweepConfig | None:
        # every bound and choice is tried against the config now, not when its trial comes up an hour later
        if sweep is None or set(cls.model_fields) - {"sweep"} - set(info.data):
            return sweep  # a section that failed validation is reported on its own
        raw = {name: value.model_dump(mode="json") if isinstance(value, BaseModel) else value
               for name, value in info.data.items()}
        problems = value_problems(cls, raw, sweep)
        if problems:
            raise ValueError("; ".join(problems))
        return sweep

    @property
    def registered_model_name(self) -> str:
        return self.registry.model_name or self.name
