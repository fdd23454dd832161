"""How rows become token ids and labels."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, ValidationError, ValidatorFunctionWrapHandler, field_validator

from schemas.base import StrictModel

TokenCount = Annotated[int, Field(ge=16, le=131072)]


class TokenizeConfig(StrictModel):
    """Chat-template rendering, the length limit and what happens beyond it, and the loss mask."""

    max_length: TokenCount | Literal["auto"] = Field(
        "auto",
        description="longest tokenized example, or auto: sft and classification take the shortest multiple of 64 "
                    "tokens that holds length_coverage of the training rows, at most max_length_limit and the model's "
                    "context (max_position_embeddings); pretrain cuts text into chunks of min(1024, that cap) tokens",
    )
    length_coverage: float = Field(
        0.99, gt=0, le=1, description="max_length auto: share of training rows that must fit whole"
    )
    max_length_limit: TokenCount = Field(
        4096, description="max_length auto: the longest length it may choose (bounds the memory a batch needs)"
    )
    overlong: Literal["truncate", "drop"] = Field(
        "truncate",
        description="examples longer than max_length: truncate (cut at max_length) or drop (counted as "
                    "tokenize.overlong); either way they count against data.validation.max_truncated_share. "
                    "Pretrain text is cut into chunks instead: nothing is lost",
    )
    system_prompt: str | None = Field(
        None, description="system message added to rows that have none; None keeps the chat template's default"
    )
    chat_template: str | None = Field(
        None, description="Jinja chat template, or 'chatml'; None uses the tokenizer's own template"
    )
    train_on_prompts: bool = Field(False, description="also compute the loss on prompt tokens (default: responses only)")

    @field_validator("max_length", mode="wrap")
    @classmethod
    def _one_problem(cls, value: object, handler: ValidatorFunctionWrapHandler) -> int | str:
        # One sentence instead of one error per member of the union.
        try:
            return handler(value)
        except ValidationError:
            raise ValueError("must be a number of tokens from 16 to 131072, or auto") from None
