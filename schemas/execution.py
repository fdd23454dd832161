"""Where and how the flow runs."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from schemas.base import StrictModel


class ExecutionConfig(StrictModel):
    """Device selection and content-addressed caching."""

    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto: CUDA when available, else CPU")
    cache: bool = Field(True, description="reuse tokenized data, adapters and evaluations whose inputs are unchanged")
    workers: int = Field(0, ge=0, le=256, description="processes for the data stages; 0: one per CPU core")

    @property
    def data_workers(self) -> int:
        import os

        return self.workers or os.cpu_count() or 1
