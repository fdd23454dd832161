"""The fine-tuning method: a union discriminated by `type`, one model per method."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import Field

from schemas.base import StrictModel

if TYPE_CHECKING:
    from peft import PeftConfig


class LoraMethod(StrictModel):
    """LoRA: low-rank update matrices next to the frozen weights."""

    type: Literal["lora"]
    r: int = Field(16, ge=1, le=1024, description="rank of the update matrices")
    alpha: float = Field(32, gt=0, description="scaling numerator (the update is scaled by alpha / r)")
    dropout: float = Field(0.0, ge=0, lt=1, description="dropout on the LoRA input (on CPU any dropout costs about 60% speed)")
    target_modules: list[str] | Literal["all-linear"] = Field(
        "all-linear", description="module names to adapt, or all-linear for every linear layer but the head"
    )

    def peft_config(self, task_type: str) -> PeftConfig:
        from peft import LoraConfig

        return LoraConfig(
            task_type=task_type,
            r=self.r,
            lora_alpha=self.alpha,
            lora_dropout=self.dropout,
            target_modules=self.target_modules,
        )


Method = Annotated[LoraMethod, Field(discriminator="type")]
