"""Which pretrained model the adapter is trained on."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from schemas.base import StrictModel, resolve_config_path

BUILTIN_MODELS = ("smollm2-135m-instruct", "all-minilm-l6-v2")
HUB_ID = re.compile(r"^[\w.-]+/[\w.-]+$")


class BaseModelConfig(StrictModel):
    """A builtin name, a local folder with a transformers model, or a hub id."""

    name: str = Field(
        "smollm2-135m-instruct",
        min_length=1,
        description="builtin name (smollm2-135m-instruct; all-minilm-l6-v2, an encoder for classification), "
        "local model folder, or hub id (needs network)",
    )
    revision: str | None = Field(None, description="hub revision (branch, tag or commit) for hub ids")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="dtype the weights are loaded in; auto keeps float32 master weights"
    )
    trust_remote_code: bool = Field(False, description="run model code shipped with a hub model")

    @model_validator(mode="before")
    @classmethod
    def _from_string(cls, value: object) -> object:
        # `base_model: my/model` is shorthand for `base_model: {name: my/model}`.
        return {"name": value} if isinstance(value, str) else value

    @field_validator("name")
    @classmethod
    def _builtin_folder_or_hub_id(cls, value: str, info: ValidationInfo) -> str:
        if value in BUILTIN_MODELS:
            return value
        config_dir = Path((info.context or {}).get("config_dir", "."))
        looks_like_path = value.startswith((".", "/", "~")) or (config_dir / value).exists()
        if looks_like_path:
            folder = resolve_config_path(Path(value), info)
            if not (folder / "config.json").is_file():
                raise ValueError(f"{folder} is not a transformers model folder (no config.json)")
            return str(folder)
        if not HUB_ID.match(value):
            raise ValueError(
                f"not a builtin model ({', '.join(BUILTIN_MODELS)}), an existing folder or a hub id like org/name"
            )
        return value

    @property
    def is_local(self) -> bool:
        return Path(self.name).is_absolute()

    @property
    def is_builtin(self) -> bool:
        return self.name in BUILTIN_MODELS
