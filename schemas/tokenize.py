"""How rows become token ids and labels."""

from __future__ import annotations

from pydantic import Field

from schemas.base import StrictModel


class TokenizeConfig(StrictModel):
    """Chat-template rendering, truncation and the loss mask."""

    max_length: int = Field(512, ge=16, le=131072, description="longest tokenized example; longer ones are truncated")
    system_prompt: str | None = Field(
        None, description="system message added to rows that have none; None keeps the chat template's default"
    )
    chat_template: str | None = Field(
        None, description="Jinja chat template, or 'chatml'; None uses the tokenizer's own template"
    )
    train_on_prompts: bool = Field(False, description="also compute the loss on prompt tokens (default: responses only)")
