"""How the candidate is compared with the base model and the champion."""

from __future__ import annotations

from pathlib import Path
from typing import Literal, get_args

from pydantic import Field, ValidationInfo, field_validator

from schemas.base import StrictModel, resolve_config_path

GenerationMetric = Literal["rouge_l", "chrf", "bleu", "exact_match"]
GENERATION_METRICS: tuple[str, ...] = get_args(GenerationMetric)


class EvaluationConfig(StrictModel):
    """Held-out loss and perplexity, generation metrics on sample answers, and forgetting on general text."""

    batch_size: int = Field(8, ge=1, description="examples per forward pass")
    sample_generations: int = Field(
        5, ge=0, description="eval prompts answered by each model (greedy): scored by `generation_metrics` and shown "
                             "side by side in the comparison table; 0 turns generation off")
    max_new_tokens: int = Field(64, ge=1, description="length cap of each generated answer")
    generation_batch_size: int = Field(8, ge=1, description="prompts generated together (left-padded batches)")
    generation_metrics: list[GenerationMetric] = Field(
        default_factory=lambda: ["rouge_l", "chrf", "bleu", "exact_match"],
        description="scores of the generated answers against the references: rouge_l (F-measure, 0-1), chrf and "
                    "bleu (sacrebleu, 0-100), exact_match (0-1, after trimming and collapsing whitespace)")
    general_set: Path | None = Field(
        None, description="general-domain text for the forgetting measure: a .txt file (one passage per line) or "
                          ".jsonl with a 'text' field, relative to the config; default: the packaged general English "
                          "set (adapterflow/eval_data/general_english.txt)")
    general_passages: int = Field(
        200, ge=0, description="passages of the general set scored per model (perplexity of base, candidate and "
                               "champion; eval/candidate/forgetting is the candidate's relative change vs base); "
                               "0 turns the forgetting measure off")
    compare_champion: bool = Field(True, description="also evaluate the registry's current champion")

    @field_validator("general_set")
    @classmethod
    def _resolve(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        if value is None:
            return None
        path = resolve_config_path(value, info)
        if path.suffix.lower() not in {".txt", ".jsonl"}:
            raise ValueError(f"unsupported general set file type {path.suffix!r}: use .txt or .jsonl")
        return path
