"""The small typed records that stages pass to each other: paths, keys and counts, never data."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from schemas.data import PiiConfig


class StageRecord(BaseModel):
    """What every stage reports: how long it took and whether its output came from the cache."""

    seconds: float = 0.0
    skipped: bool = False


class RunContext(BaseModel):
    """Identifies one pipeline run: its MLflow run, the store its stages share, and (on the pipeline's
    machine) its working folder."""

    run_name: str
    run_dir: str
    home: str
    mlflow_run_id: str
    experiment: str
    config_sha256: str
    storage: str = Field(description="root of the content-addressed store: a folder or s3://bucket/prefix")
    pii: PiiConfig | None = Field(
        None, description="the run's data.pii settings: what the run logs is redacted the same way (None: secrets only)"
    )


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


class DedupResult(FilterResult):
    """Deduplication, with a sample of near-duplicate clusters for the data report."""

    near_clusters: list[dict] = Field(default_factory=list)
    near_candidates: int = 0
    near_verified: int = 0
    removed_path: str | None = Field(None, description="Parquet: every removed row, why, and the row kept instead")


class RedactResult(FilterResult):
    """PII findings by type (counts only, never the values) and how many rows had any."""

    found: dict[str, int] = Field(default_factory=dict)
    rows_with_pii: int = 0
    action: str = "redact"


class ValidationResult(StageRecord):
    success: bool
    evaluated: int
    failed: list[str]
    report_path: str
    docs_path: str | None


class SplitResult(StageRecord):
    train: DataTable
    eval: DataTable
    validation: DataTable | None = Field(None, description="rows carved from train for selecting while training")
    validation_note: str | None = Field(None, description="why there is no validation split")
    fingerprint: str
    uri: str = Field(description="the store's datasets/<fingerprint> folder holding train.parquet, eval.parquet "
                                 "and validation.parquet")
    dropped: dict[str, int] = Field(default_factory=dict, description="eval and validation rows removed as leaked, "
                                                                       "by kind")
    leak_examples: list[dict] = Field(default_factory=list)
    eval_warning: str | None = Field(None, description="why the eval set left after leakage removal is too small")
    eval_set: str = Field("", description="id (content hash) of the eval rows: the model's frozen eval set unless resplit")
    eval_rows_not_in_data: int = Field(0, description="rows of the frozen eval set that this run's data does not hold")


class DriftResult(StageRecord):
    """How this run's training data differs from the champion's (adapterflow/data/drift.py)."""

    champion_version: str | None = Field(None, description="the champion compared with; None: no champion profile")
    report: dict = Field(description="the drift report, examples quoted (redacted), one score per feature")


class TokenizedData(StageRecord):
    key: str
    uri: str = Field(description="the store's tokenized/<key> folder")
    task: str = "sft"
    label_names: list[str] = Field(default_factory=list, description="classification: class names by index")
    train_rows: int
    eval_rows: int
    validation_rows: int = Field(0, description="0: no validation split")
    dropped: dict[str, int]
    stats: dict[str, float]
    max_length: int = Field(description="longest example in tokens (pretrain: chunk length): tokenize.max_length "
                                        "or what auto chose; training and serving use it")
    max_length_rule: str = Field("fixed", description="how max_length was set: fixed, coverage, limit, context or pretrain")


class TrainResult(StageRecord):
    key: str
    uri: str = Field(description="the store's adapters/<key> folder; the trained artifact is its adapter/ folder")
    metrics: dict[str, float]
    warm_start_from: str | None = Field(None, description="models:/NAME/VERSION the training continued from")
    stopped_early: str | None = Field(None, description="why training ended before epochs or max_steps")


class EvalResult(StageRecord):
    metrics: dict[str, dict[str, float]]
    primary_metric: str = Field("perplexity", description="what the task is judged by: perplexity or macro_f1")
    champion_version: str | None
    samples_path: str | None = Field(description="the samples table's artifact path in the MLflow run")
    champion_skipped: str | None = Field(None, description="why the champion was not evaluated (when one exists)")
    baselines: dict[str, dict[str, float]] = Field(
        default_factory=dict, description="references that are not models, e.g. majority: the majority-class baseline")
    per_example: dict[str, dict[str, list[float]]] = Field(
        default_factory=dict, description="{model: {value: one per eval example, in eval order}}: nll and tokens "
                                          "(causal LMs), label, predicted, correct (classifiers), generation scores "
                                          "of the sampled answers; what the gate's bootstrap resamples")
    system_prompts: dict[str, str] = Field(
        default_factory=dict, description="{model: the system prompt it was scored with}: 'same as the run', or the "
                                          "champion's own recorded prompt as a sha256 prefix ('none': without one)")


class RegisteredVersion(StageRecord):
    model_name: str
    version: str
    model_uri: str
    identical: bool = Field(False, description="the adapter equals this existing version's: no new version made")


class PromotionResult(StageRecord):
    promoted: bool
    reason: str
    aliases: dict[str, str]
    reasons: list[str] = Field(default_factory=list, description="every check of the gate: pass or FAIL, with numbers")


class TrialOutcome(BaseModel):
    """One sweep trial: what it drew, how it ended, and its eval loss (at its last step, or where it was pruned)."""

    number: int
    values: dict[str, Any] = Field(description="dotted setting -> the value this trial trained with")
    state: Literal["complete", "pruned", "failed"]
    loss: float | None = Field(None, description="eval loss at the last measured step")
    step: int | None = Field(None, description="optimizer step of that measurement")
    mlflow_run_id: str
    reason: str | None = Field(None, description="why it was pruned or failed")


class SearchResult(StageRecord):
    """A sweep's trials, in the order they ran, and the best complete one."""

    trials: list[TrialOutcome]
    best: TrialOutcome


class ChangeCheck(StageRecord):
    """Whether this run retrains, and why: its inputs against the last successful run's."""

    retrain: bool
    reason: str
    key: str


class PreparedData(BaseModel):
    """What the data subflow hands to training: every data stage's record and the data report."""

    ingest: IngestResult
    clean: FilterResult
    redact: RedactResult
    dedup: DedupResult
    validation: ValidationResult
    split: SplitResult
    tokenize: TokenizedData
    check_tokens: ValidationResult
    report: dict

    def stages(self) -> dict[str, StageRecord]:
        """Records by stage name, in DAG order."""
        return {"ingest": self.ingest, "clean": self.clean, "redact": self.redact, "dedup": self.dedup,
                "validate": self.validation, "split": self.split, "tokenize": self.tokenize,
                "check_tokens": self.check_tokens}
