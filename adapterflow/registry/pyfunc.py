"""The registered model: an MLflow pyfunc around a PEFT adapter and a reference to its base model.

Only the adapter (safetensors) and its tokenizer are stored; `load_context` attaches the adapter to the
base model it was trained on, checking the base weights' hash so a wrong base can't load silently.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from mlflow.models import ModelSignature
from mlflow.types import ColSpec, ParamSchema, ParamSpec, Schema

from adapterflow.errors import AdapterflowError

SIGNATURE = ModelSignature(
    inputs=Schema([ColSpec("string", "prompt")]),
    outputs=Schema([ColSpec("string", "answer")]),
    params=ParamSchema([ParamSpec("max_new_tokens", "long", 128)]),
)


def base_model_folder(model_config: dict[str, Any]) -> Path:
    """The base model's folder here: the recorded path, or the same model resolved again on this machine."""
    from adapterflow.home import Home
    from adapterflow.models.base import resolve_base_model
    from schemas.base_model import BaseModelConfig

    recorded = Path(model_config["base_model_path"])
    if recorded.is_dir():
        return recorded
    name = model_config["base_model"]
    if Path(name).is_absolute():
        raise AdapterflowError(f"the base model folder {name} of this adapter is not on this machine",
                               hint="copy the base model there, or load the adapter where it was trained")
    reference = resolve_base_model(BaseModelConfig(name=name), Home.from_env())
    if reference.sha256 != model_config["base_model_sha256"]:
        raise AdapterflowError(f"base model {name!r} here has other weights than the adapter was trained on",
                               hint=f"expected sha256 {model_config['base_model_sha256']}")
    return Path(reference.path)


class AdapterModel(mlflow.pyfunc.PythonModel):
    """Answers prompts with the base model plus the registered adapter."""

    def load_context(self, context: mlflow.pyfunc.PythonModelContext) -> None:
        import torch
        from peft import PeftModel

        from adapterflow.models.base import load_causal_lm, load_tokenizer

        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        adapter_dir = context.artifacts["adapter"]
        self.tokenizer = load_tokenizer(adapter_dir)
        base = load_causal_lm(base_model_folder(context.model_config), self.device)
        self.model = PeftModel.from_pretrained(base, adapter_dir)
        self.model.eval()

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
        from adapterflow.evaluation import generate_answers

        max_new_tokens = int((params or {}).get("max_new_tokens", 128))
        conversations = [[{"role": "user", "content": prompt}] for prompt in model_input["prompt"]]
        answers = generate_answers(self.model, self.tokenizer, conversations, max_new_tokens, self.device, "fp32")
        return pd.DataFrame({"answer": answers})
