"""A model as evaluation scores it: the model, its tokenizer, and whether its eval rows are packed like training's."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from adapterflow.core.hashing import cache_key
from adapterflow.methods.artifacts import load_trained, read_manifest
from adapterflow.methods.build import load_base
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


def load_base_as_trained(adapter_dir: Path | str, base_path: str, device: torch.device) -> EvalModel:
    """The base model alone, loaded as `adapter_dir`'s method trained on it (4/8-bit for QLoRA, its dtype
    otherwise): scored in the memory and numerics of the adapter it is compared with. A classification head
    is new and random: seeded, so it is the same one every time."""
    spec = read_manifest(adapter_dir)[1]
    torch.manual_seed(0)
    return EvalModel(load_base(base_path, spec, device).eval(), load_tokenizer(base_path), packed=True)


def base_identity(base_sha256: str, adapter_dir: Path | str) -> str:
    """The base model's identity as `load_base_as_trained` loads it: its weights, dtype and quantisation."""
    spec = read_manifest(adapter_dir)[1]
    return cache_key(base_sha256, spec.dtype, spec.quantization)
