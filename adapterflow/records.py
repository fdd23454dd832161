"""The small typed records that stages pass to each other: paths, keys and counts, never data."""

from __future__ import annotations

from pydantic import BaseModel, Field


class StageRecord(BaseModel):
    """What every stage reports: how long it took and whether its output came from the cache."""

    seconds: float = 0.0
    skipped: bool = False


class RunContext(BaseModel):
    """Identifies one pipeline run: its working folder and its MLflow run."""

    run_name: str
    run_dir: str
    home: str
    mlflow_run_id: str
    experiment: str
    config_sha256: str


class BaseModelRef(StageRecord):
    """A base model resolved to a local folder, with the hash of its weights."""

    name: str
    path: str
    sha256: str


class DataTable(BaseModel):
    """A Parquet table of canonical rows."""

    path: str
    rows: int
    task: str = Field(description="sft, pretrain or classification: which canonical columns the table has")


class IngestResult(StageRecord):
    table: DataTable
    input_rows: int
    quarantined: int
    quarantine_reasons: dict[str, int]
    quarantine_path: str
    formats: dict[str, str]

    @property
    def quarantine_share(self) -> float:
        return self.quarantined / self.input_rows if self.input_rows else 0.0


class FilterResult(StageRecord):
    """A stage that drops rows: what is left and how many went for each reason."""

    table: DataTable
    dropped: dict[str, int]


class ValidationResult(StageRecord):
    success: bool
    evaluated: int
    failed: list[str]
    report_path: str
    docs_path: str | None


class SplitResult(StageRecord):
    train: DataTable
    eval: DataTable
    fingerprint: str


class TokenizedData(StageRecord):
    key: str
    path: str
    train_rows: int
    eval_rows: int
    dropped: dict[str, int]
    stats: dict[str, float]


class TrainResult(StageRecord):
    key: str
    adapter_dir: str
    metrics: dict[str, float]


class EvalResult(StageRecord):
    metrics: dict[str, dict[str, float]]
    champion_version: str | None
    samples_path: str | None


class RegisteredVersion(StageRecord):
    model_name: str
    version: str
    model_uri: str


class PromotionResult(StageRecord):
    promoted: bool
    reason: str
    aliases: dict[str, str]
