"""Token lengths: their distribution, and the max_length chosen from it (`tokenize.max_length: auto`)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from schemas.tokenize import TokenizeConfig

LENGTH_MULTIPLE = 64  # auto lengths are rounded up to this: aligned shapes, and stable while data grows a little
PRETRAIN_CHUNK_TOKENS = 1024  # auto chunk length of continued pre-training (before the model's and configured caps)
PERCENTILES = (50, 95, 99)
CONTEXT_KEYS = ("max_position_embeddings", "n_positions", "max_sequence_length")  # names model configs use


@dataclass(frozen=True)
class LengthChoice:
    """The max_length in effect and the rule that gave it: fixed, coverage, limit, context or pretrain."""

    max_length: int
    rule: str

    def describe(self, coverage: float) -> str:
        """How the length was chosen, in words (a capped length equals its cap)."""
        return {
            "fixed": "set by tokenize.max_length",
            "coverage": f"auto: the shortest multiple of {LENGTH_MULTIPLE} holding {coverage:g} of the training rows",
            "limit": "auto, capped by tokenize.max_length_limit",
            "context": "auto, capped by the model's context (max_position_embeddings)",
            "pretrain": f"auto: pretrain chunks of {PRETRAIN_CHUNK_TOKENS} tokens or the model's context or "
                        "tokenize.max_length_limit, the least",
        }[self.rule]


def length_percentiles(lengths: np.ndarray) -> dict[str, float]:
    """p50, p95, p99 and max of token lengths (zeros when there are none)."""
    if not len(lengths):
        return {f"p{q}": 0.0 for q in PERCENTILES} | {"max": 0.0}
    return {f"p{q}": float(np.percentile(lengths, q)) for q in PERCENTILES} | {"max": float(np.max(lengths))}


def length_cap(limit: int, context: int | None) -> tuple[int, str]:
    """The longest length auto may choose, and what sets it: the configured limit or the model's context."""
    return (context, "context") if context is not None and context < limit else (limit, "limit")


def auto_max_length(lengths: np.ndarray, coverage: float, limit: int, context: int | None) -> LengthChoice:
    """The shortest multiple of LENGTH_MULTIPLE that holds `coverage` of the lengths whole, within the cap.

    The covering length is the smallest observed length L with at least `coverage` of all lengths <= L.
    """
    cap, capped_by = length_cap(limit, context)
    if not len(lengths):
        return LengthChoice(cap, capped_by)
    needed = int(np.quantile(lengths, coverage, method="inverted_cdf"))
    rounded = max(LENGTH_MULTIPLE, -(-needed // LENGTH_MULTIPLE) * LENGTH_MULTIPLE)
    return LengthChoice(rounded, "coverage") if rounded <= cap else LengthChoice(cap, capped_by)


def pretrain_chunk_length(limit: int, context: int | None) -> LengthChoice:
    """Auto for continued pre-training: fixed-size chunks, nothing to measure (long text is split, not lost)."""
    return LengthChoice(min(PRETRAIN_CHUNK_TOKENS, length_cap(limit, context)[0]), "pretrain")


def choose_max_length(config: TokenizeConfig, task: str, context: int | None,
                      train_lengths: np.ndarray | None) -> LengthChoice:
    """The max_length in effect: the configured number, or what auto makes of the training rows' lengths."""
    if config.max_length != "auto":
        return LengthChoice(config.max_length, "fixed")
    if task == "pretrain":
        return pretrain_chunk_length(config.max_length_limit, context)
    return auto_max_length(np.zeros(0) if train_lengths is None else train_lengths, config.length_coverage,
                           config.max_length_limit, context)


def measures_lengths(config: TokenizeConfig, task: str) -> bool:
    """Whether choosing max_length needs the training rows' token lengths first."""
    return config.max_length == "auto" and task != "pretrain"


def model_context(model_dir: str | Path) -> int | None:
    """The longest sequence the model's position embeddings cover, from its config.json; None if it doesn't say."""
    path = Path(model_dir) / "config.json"
    if not path.is_file():
        return None
    config = json.loads(path.read_text())
    for key in CONTEXT_KEYS:
        if isinstance(config.get(key), int) and config[key] > 0:
            return config[key]
    return None
