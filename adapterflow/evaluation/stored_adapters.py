"""A model as evaluation scores it: the model, its tokenizer, and whether its eval rows are packed like training's."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from adapterflow.methods.artifacts import load_trained, read_manifest
from adapterflow.models.base import load_tokenizer


@dataclass(frozen=True)
class EvalModel:
    """A model ready to score held-out rows."""

    model: torch.nn.Module
    tokenizer: Any
    packed: bool  # False for prompt learning: its virtual tokens need padded rows and the model's own loss


def load_stored_adapter(adapter_dir: Path | str, base_path: str, device: torch.device) -> EvalModel:
    """A trained artifact from the store on its base model, in eval mode, with the tokenizer it was trained with."""
    method = read_manifest(adapter_dir)[0]
    return EvalModel(load_trained(adapter_dir, base_path, device), load_tokenizer(adapter_dir),
                     packed=not method.prompt_learning)
