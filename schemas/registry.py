"""Registration in the MLflow Model Registry and the promotion gate."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from schemas.base import StrictModel

HIGHER_IS_BETTER = ("accuracy", "macro_f1")


class PromotionPolicy(StrictModel):
    """When a new version takes the `champion` alias."""

    metric: Literal["auto", "perplexity", "loss", "accuracy", "macro_f1"] = Field(
        "auto", description="eval metric the gate compares; auto: perplexity for causal LMs, macro_f1 for classifiers"
    )
    min_improvement: float = Field(
        0.01, ge=0, lt=1, description="relative improvement over the champion (or base) needed, e.g. 0.01 = 1%"
    )


class RegistryConfig(StrictModel):
    """Where adapters are registered and how they are promoted."""

    model_name: str | None = Field(None, description="registered model name (default: the config's name)")
    promotion: PromotionPolicy = PromotionPolicy()
