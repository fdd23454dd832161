"""The registered model: an MLflow pyfunc around a trained artifact and a reference to its base model.

Adapters store only what they trained (safetensors) and the tokenizer; `load_context` puts them on the base
model they were trained on, checking the base weights' hash so a wrong base can't load silently. Full and
freeze fine-tuning store the whole model. Causal LMs answer prompts, shaped as in training (the saved chat
template, the recorded system prompt); classifiers label texts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from mlflow.models import ModelSignature
from mlflow.types import ColSpec, ParamSchema, ParamSpec, Schema

from adapterflow.core.errors import AdapterflowError

SIGNATURE = ModelSignature(
    inputs=Schema([ColSpec("string", "prompt")]),
    outputs=Schema([ColSpec("string", "answer")]),
    params=ParamSchema([ParamSpec("max_new_tokens", "long", 128)]),
)
CLASSIFIER_SIGNATURE = ModelSignature(
    inputs=Schema([ColSpec("string", "text")]),
    outputs=Schema([ColSpec("string", "label"), ColSpec("double", "score")]),
)


def base_model_folder(model_config: dict[str, Any]) -> Path:
    """The base model's folder here (the recorded path, or the same model resolved again on this machine),
    refused unless its weights hash to what the adapter was trained on: checked on every load."""
    from adapterflow.core.home import Home
    from adapterflow.models.base import resolve_base_model, weights_sha256
    from schemas.base_model import BaseModelConfig

    home = Home.from_env()
    recorded = Path(model_config["base_model_path"])
    name = model_config["base_model"]
    if recorded.is_dir():
        folder, found = recorded, weights_sha256(recorded, home)
    elif Path(name).is_absolute():
        raise AdapterflowError(f"the base model folder {name} of this adapter is not on this machine",
                               hint="copy the base model there, or load the adapter where it was trained")
    else:
        reference = resolve_base_model(BaseModelConfig(name=name), home)
        folder, found = Path(reference.path), reference.sha256
    expected = model_config["base_model_sha256"]
    if found != expected:
        raise AdapterflowError(
            f"base model {name!r} at {folder} has weights sha256 {found[:12]}..., the adapter was trained on "
            f"{expected[:12]}...", hint="load the adapter with the base model it was trained on",
        )
    return folder


class AdapterModel(mlflow.pyfunc.PythonModel):
    """Answers prompts with the base model plus the registered adapter."""

    def load_context(self, context: mlflow.pyfunc.PythonModelContext) -> None:
        import torch

        from adapterflow.methods.artifacts import load_trained, read_manifest, read_system_prompt
        from adapterflow.models.base import load_tokenizer

        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        adapter_dir = context.artifacts["adapter"]
        self.tokenizer = load_tokenizer(adapter_dir)
        spec = read_manifest(adapter_dir)[1]
        self.task, self.max_length = spec.task, spec.max_length or self.tokenizer.model_max_length
        self.precision = spec.precision  # as training computed: trained parameters are fp32 on 16-bit weights
        self.system_prompt = read_system_prompt(adapter_dir)
        self.model = load_trained(adapter_dir, str(base_model_folder(context.model_config)), self.device)

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
        from adapterflow.evaluation.metrics import generate_answers
        from adapterflow.methods.artifacts import serving_conversation

        if self.task == "classification":
            return self._classify(model_input["text"].tolist())
        max_new_tokens = int((params or {}).get("max_new_tokens", 128))
        conversations = [serving_conversation(prompt, self.system_prompt) for prompt in model_input["prompt"]]
        answers = generate_answers(self.model, self.tokenizer, conversations, max_new_tokens, self.device,
                                   self.precision)
        return pd.DataFrame({"answer": answers})

    def _classify(self, texts: list[str]) -> pd.DataFrame:
        import torch

        from adapterflow.core.devices import autocast

        # cut like training did (ClassificationTokenizer keeps the closing special token)
        encoded = [ids if len(ids) <= self.max_length else ids[: self.max_length - 1] + ids[-1:]
                   for ids in self.tokenizer(texts)["input_ids"]]
        inputs = self.tokenizer.pad({"input_ids": encoded}, return_tensors="pt").to(self.device)
        with torch.no_grad(), autocast(self.device, self.precision):
            probabilities = self.model(**inputs).logits.float().softmax(-1)
        scores, indices = probabilities.max(-1)
        labels = self.model.config.id2label
        return pd.DataFrame({"label": [labels[int(i)] for i in indices], "score": scores.tolist()})
