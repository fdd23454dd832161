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
    format: Literal["alpaca", "text", "classification"] = Field(
        "alpaca", description="alpaca: question/answer pairs (sft); text: the documentation as raw text (pretrain); "
        "classification: documentation text labelled with the kind of object it documents"
    )
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


class NearDedupConfig(StrictModel):
    """MinHash-LSH near-duplicate removal; candidates are confirmed by their exact Jaccard similarity."""

    enabled: bool = Field(True, description="drop rows nearly identical to an earlier kept row")
    threshold: float = Field(0.8, gt=0, le=1, description="Jaccard similarity of word shingles at which rows are duplicates")
    shingle_size: int = Field(5, ge=1, le=32, description="words per shingle")
    num_perm: int = Field(64, ge=8, le=1024, description="MinHash signature length (more: fewer missed pairs, slower)")


class DedupConfig(StrictModel):
    """Duplicate removal: exact (after case and whitespace folding) and near duplicates."""

    exact: bool = Field(True, description="drop rows whose folded prompt and response repeat an earlier row")
    near: NearDedupConfig = NearDedupConfig()
    sample_clusters: int = Field(10, ge=0, description="duplicate clusters listed in the data report")


PII_ENTITIES = ("email", "phone", "credit_card", "iban", "ip_address", "national_id")
PiiEntity = Literal["email", "phone", "credit_card", "iban", "ip_address", "national_id"]


class PiiPattern(StrictModel):
    """A custom PII pattern: matches are reported and redacted as <NAME>."""

    name: str = Field(pattern=r"^[A-Z][A-Z0-9_]*$", description="upper-case entity name, e.g. EMPLOYEE_ID")
    regex: str = Field(description="Python regular expression")
    score: float = Field(0.9, gt=0, le=1, description="confidence given to a match")

    @field_validator("regex")
    @classmethod
    def _compiles(cls, value: str) -> str:
        import re

        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"invalid regular expression: {exc}") from None
        return value


class PiiConfig(StrictModel):
    """Personal data found with presidio's recognizers, judged in context (plus custom patterns)."""

    action: Literal["redact", "drop", "report", "off"] = Field(
        "redact", description="redact: replace with <TYPE>; drop: drop the row; report: count only; off: skip"
    )
    entities: list[PiiEntity] = Field(
        default_factory=lambda: list(PII_ENTITIES), description="which kinds of personal data to look for"
    )
    min_score: float = Field(
        0.5, ge=0, le=1, description="score a finding needs: its shape's score, +0.35 with a context word before it "
        "(see adapterflow/data/pii.py); also the bar for custom patterns"
    )
    min_scores: dict[PiiEntity, Annotated[float, Field(ge=0, le=1)]] = Field(
        default_factory=dict, description="per-type overrides of min_score, e.g. {phone: 0.7}"
    )
    context_words: int = Field(5, ge=0, le=50, description="words before a match searched for its type's context words")
    phone_regions: list[str] = Field(
        default_factory=lambda: ["US", "GB", "DE", "FR", "IL", "IN", "CA", "BR"],
        description="regions whose national formats count as phone numbers (+<country code> numbers count from any)",
    )
    custom_patterns: list[PiiPattern] = Field(default_factory=list, description="extra patterns of your domain")

    @field_validator("phone_regions")
    @classmethod
    def _known_regions(cls, value: list[str]) -> list[str]:
        import phonenumbers

        unknown = sorted(set(value) - phonenumbers.SUPPORTED_REGIONS)
        if unknown:
            raise ValueError(f"unknown phone regions {unknown}: use ISO 3166 codes such as US, GB, DE")
        return value


class LeakageConfig(StrictModel):
    """Eval examples that are an exact or near duplicate of a training example (question and answer together,
    not the question alone) are removed from eval."""

    enabled: bool = Field(True, description="remove eval rows that leak from the training rows")
    threshold: float = Field(
        0.8, gt=0, le=1, description="Jaccard similarity of word shingles, of the whole example and of its answer, "
        "at which an eval example counts as leaked"
    )
    shingle_size: int = Field(3, ge=1, le=32, description="words per shingle (small: answers are often short)")


class ValidationConfig(StrictModel):
    """The great-expectations suites that gate training: on rows per format, then on tokens."""

    suite: Path | None = Field(None, description="YAML suite of extra expectations, added to every format's builtin suite")
    min_rows: int = Field(10, ge=1, description="fewest rows the suite accepts")
    max_truncated_share: float = Field(0.2, ge=0, le=1, description="largest share of examples cut at max_length")
    max_no_label_share: float = Field(
        0.05, ge=0, le=1, description="largest share of examples left with no trainable token (they are dropped)"
    )
    require_end_of_turn: bool = Field(True, description="every chat example must train on its end-of-turn token")

    @field_validator("suite")
    @classmethod
    def _resolve(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        return None if value is None else resolve_config_path(value, info)


class SplitConfig(StrictModel):
    """Deterministic train/eval split, stable across retrains (rows are assigned by content hash)."""

    eval_size: float = Field(0.1, gt=0, description="share of rows (0-1) or number of rows (>= 1) held out")
    max_eval_rows: int | None = Field(200, ge=1, description="cap on eval rows (evaluation cost grows with it)")
    min_eval_rows: int = Field(
        50, ge=0, description="warn when leakage removal leaves fewer eval rows than this, or than the split held "
        "out when that is fewer (a small dataset); 0: never warn"
    )
    validation_size: float = Field(
        0.05, ge=0, description="share of the training rows (0-1) or number of rows (>= 1) carved from train as the "
        "validation split, which early stopping, the best step and sweeps select on (the eval set stays for "
        "evaluate); 0: none"
    )
    max_validation_rows: int | None = Field(
        64, ge=1, description="cap on validation rows: each measurement while training runs the model over all of them"
    )
    min_validation_rows: int = Field(
        8, ge=1, description="fewer would make a curve too noisy to stop on: below it, no validation split (logged)"
    )
    seed: int = Field(0, description="salt of the hash that assigns rows to train, eval or validation")
    eval_set: Literal["frozen", "refresh", "resplit"] = Field(
        "frozen", description="frozen: the registered model's first run stores its eval rows and every later run "
        "evaluates on them (new rows go to train, copies of eval rows leave train); refresh: freeze a new eval set "
        "from the current data (what `adapterflow eval-set refresh` runs); resplit: split anew every run, store nothing"
    )

    @field_validator("eval_size", "validation_size")
    @classmethod
    def _share_or_count(cls, value: float, info: ValidationInfo) -> float:
        if value >= 1 and value != int(value):
            raise ValueError(f"{info.field_name} must be a share below 1 (e.g. 0.1) or a whole number of rows")
        return value


class DataConfig(StrictModel):
    """Sources, and what happens to rows between the files and the tokenizer."""

    sources: list[DataSource] = Field(min_length=1, description="one or more data sources")
    max_quarantine_share: float = Field(
        0.05, ge=0, le=1, description="fail the run when more than this share of input rows is malformed"
    )
    clean: CleanConfig = CleanConfig()
    pii: PiiConfig = PiiConfig()
    dedup: DedupConfig = DedupConfig()
    validation: ValidationConfig = ValidationConfig()
    split: SplitConfig = SplitConfig()
    leakage: LeakageConfig = LeakageConfig()

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
