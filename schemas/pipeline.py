"""The root of a pipeline config: one small model that nests one section per concern."""

from __future__ import annotations

import re

from pydantic import Field, field_validator

from schemas.base import StrictModel
from schemas.base_model import BaseModelConfig
from schemas.data import DataConfig
from schemas.evaluation import EvaluationConfig
from schemas.execution import ExecutionConfig
from schemas.method import Method
from schemas.registry import RegistryConfig
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

    @property
    def registered_model_name(self) -> str:
        return self.registry.model_name or self.name
