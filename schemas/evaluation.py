"""How the candidate is compared with the base model and the champion."""

from __future__ import annotations

from pydantic import Field

from schemas.base import StrictModel


class EvaluationConfig(StrictModel):
    """Held-out loss and perplexity, plus a table of sample generations."""

    batch_size: int = Field(8, ge=1, description="examples per forward pass")
    sample_generations: int = Field(5, ge=0, description="eval prompts answered by each model for the samples table")
    max_new_tokens: int = Field(64, ge=1, description="length cap of each sample generation")
    compare_champion: bool = Field(True, description="also evaluate the registry's current champion")
