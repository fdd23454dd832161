"""Where the training data comes from and how it is cleaned, checked and split."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from schemas.base import StrictModel, resolve_config_path

DataFormat = Literal["auto", "alpaca", "chat", "prompt_completion", "text", "classification"]


class FileSource(StrictModel):
    """A JSONL or Parquet file of the user's own data."""

    type: Literal["file"] = "file"
    path: Path = Field(description="JSONL (.jsonl/.json) or Parquet (.parquet) file, relative to the config")
    format: DataFormat = Field("auto", description="row format; auto detects it from the first rows")

    @field_validator("path")
    @classmethod
    def _resolve(cls, value: Path, info: ValidationInfo) -> Path:
        path = resolve_config_path(value, info)
        if path.suffix.lower() not in {".jsonl", ".json", ".parquet"}:
            raise ValueError(f"unsupported file type {path.suffix!r}: use .jsonl, .json or .parquet")
        return path


class PythonDocsSource(StrictModel):
    """Demo data: instruction/response pairs built from an installed package's API docs."""

    type: Literal["python_docs"]
    package: str = Field("stdlib", description="'stdlib' or the import name of an installed package")
    max_examples: int = Field(2000, ge=10, description="how many pairs to build at most")
    include_topics: bool = Field(True, description="add the language reference topics (stdlib only)")
    seed: int = Field(0, description="seed of the deterministic sample")


DataSource = Annotated[FileSource | PythonDocsSource, Field(discriminator="type")]


class CleanConfig(StrictModel):
    """Normalisation and length bounds; rows outside the bounds are dropped and counted."""

    unicode_form: Literal["NFKC", "NFC", "none"] = Field("NFKC", description="Unicode normalisation form")
    min_prompt_chars: int = Field(1, ge=0, description="shortest prompt kept")
    max_prompt_chars: int = Field(8000, gt=0, description="longest prompt kept")
    min_response_chars: int = Field(1, ge=0, description="shortest response kept")
    max_response_chars: int = Field(8000, gt=0, description="longest response kept")

    @model_validator(mode="after")
    def _bounds_ordered(self) -> CleanConfig:
        if self.min_prompt_chars > self.max_prompt_chars:
            raise ValueError("min_prompt_chars must not exceed max_prompt_chars")
        if self.min_response_chars > self.max_response_chars:
            raise ValueError("min_response_chars must not exceed max_response_chars")
        return self


class DedupConfig(StrictModel):
    """Duplicate removal: exact duplicates after case and whitespace folding."""

    exact: bool = Field(True, description="drop rows whose normalised text repeats an earlier row")


class ValidationConfig(StrictModel):
    """The great-expectations suite that gates training."""

    suite: Path | None = Field(None, description="YAML suite file; default: the builtin suite for the format")
    min_rows: int = Field(10, ge=1, description="fewest rows the suite accepts")

    @field_validator("suite")
    @classmethod
    def _resolve(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        return None if value is None else resolve_config_path(value, info)


class SplitConfig(StrictModel):
    """Deterministic train/eval split, stable across retrains (rows are assigned by content hash)."""

    eval_size: float = Field(0.1, gt=0, description="share of rows (0-1) or number of rows (>= 1) held out")
    max_eval_rows: int | None = Field(200, ge=1, description="cap on eval rows (evaluation cost grows with it)")
    seed: int = Field(0, description="salt of the hash that assigns rows to train or eval")

    @field_validator("eval_size")
    @classmethod
    def _share_or_count(cls, value: float) -> float:
        if value >= 1 and value != int(value):
            raise ValueError("eval_size must be a share below 1 (e.g. 0.1) or a whole number of rows")
        return value


class DataConfig(StrictModel):
    """Sources, and what happens to rows between the files and the tokenizer."""

    sources: list[DataSource] = Field(min_length=1, description="one or more data sources")
    max_quarantine_share: float = Field(
        0.05, ge=0, le=1, description="fail the run when more than this share of input rows is malformed"
    )
    clean: CleanConfig = CleanConfig()
    dedup: DedupConfig = DedupConfig()
    validation: ValidationConfig = ValidationConfig()
    split: SplitConfig = SplitConfig()

    @field_validator("sources", mode="before")
    @classmethod
    def _default_source_type(cls, value: object) -> object:
        # `- path: x.jsonl` is shorthand for `- {type: file, path: x.jsonl}`.
        if isinstance(value, list):
            return [
                {"type": "file", **item} if isinstance(item, dict) and "type" not in item and "path" in item else item
                for item in value
            ]
        return value
