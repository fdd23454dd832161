"""Shared building blocks of the config models."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationInfo


class StrictModel(BaseModel):
    """A config section: unknown keys are errors, so typos never pass silently."""

    model_config = ConfigDict(extra="forbid", validate_default=True)


def resolve_config_path(value: Path, info: ValidationInfo, must_exist: bool = True) -> Path:
    """Resolve a path relative to the config file's folder (given in the validation context).

    A config validated on another machine (a GPU worker; context `foreign_paths`) names the pipeline
    machine's files, which need not exist there.
    """
    context = info.context or {}
    config_dir = Path(context.get("config_dir", "."))
    path = value.expanduser()
    if not path.is_absolute():
        path = (config_dir / path).resolve()
    if must_exist and not context.get("foreign_paths") and not path.exists():
        raise ValueError(f"no such file or folder: {path}")
    return path
