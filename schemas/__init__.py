"""Typed configuration of an adapterflow pipeline, loaded from YAML."""

from schemas.loading import load_config, parse_overrides
from schemas.pipeline import PipelineConfig

__all__ = ["PipelineConfig", "load_config", "parse_overrides"]
