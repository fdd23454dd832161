"""Which pretrained model the adapter is trained on."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from schemas.base import StrictModel, resolve_config_path

BUILTIN_MODELS = ("smollm2-135m-instruct", "all-minilm-l6-v2")
HUB_PREFIX = "hf://"  # explicit: a mistyped local path must never turn into a download
HUB_ID = re.compile(r"^[\w.-]+/[\w.-]+$")


class BaseModelConfig(StrictModel):
    """A builtin name, a local folder with a transformers model, or a hub id written hf://org/name."""

    name: str = Field(
        "smollm2-135m-instruct",
        min_length=1,
        description="builtin name (smollm2-135m-instruct; all-minilm-l6-v2, an encoder for classification), "
        "an existing local model folder (relative to the config file), or hf://org/name for a hub model (needs "
        "network)",
    )
    revision: str | None = Field(None, description="hub revision (branch, tag or commit) for hub ids")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="dtype the weights are loaded in; auto keeps float32 master weights"
    )
    trust_remote_code: bool = Field(
        False, description="must stay false: adapterflow runs no code shipped with a model, only architectures "
        "that transformers builds in"
    )

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
        if value.startswith(HUB_PREFIX):
            if not HUB_ID.match(value.removeprefix(HUB_PREFIX)):
                raise ValueError(f"a hub model is written {HUB_PREFIX}org/name")
            return value
        folder = resolve_config_path(Path(value), info, must_exist=False)
        if (info.context or {}).get("foreign_paths"):
            return str(folder)  # another machine's path: base_model_here checks the folder where it runs
        if not folder.exists():
            hub = f"; a hub model is written {HUB_PREFIX}{value} (needs network)" if HUB_ID.match(value) else ""
            raise ValueError(f"not a builtin model ({', '.join(BUILTIN_MODELS)}) and no such folder: {folder}{hub}")
        if not (folder / "config.json").is_file():
            raise ValueError(f"{folder} is not a transformers model folder (no config.json)")
        return str(folder)

    @field_validator("trust_remote_code")
    @classmethod
    def _no_remote_code(cls, value: bool) -> bool:
        if value:
            raise ValueError("adapterflow runs no code shipped with a model (it would run with your credentials); "
                             "use a model whose architecture transformers builds in")
        return value

    @property
    def is_local(self) -> bool:
        return Path(self.name).is_absolute()

    @property
    def is_builtin(self) -> bool:
        return self.name in BUILTIN_MODELS

    @property
    def hub_id(self) -> str | None:
        """org/name of a hub model, None for builtins and folders."""
        return self.name.removeprefix(HUB_PREFIX) if self.name.startswith(HUB_PREFIX) else None
