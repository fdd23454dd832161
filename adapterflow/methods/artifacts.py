"""What a trained method leaves behind, and loading it back for inference on top of its base model.

Every artifact folder holds the tokenizer (with the chat template it was trained with) and
`adapterflow_artifact.json` (method, task, labels, quantisation and, once registered, the system prompt that
training put before every conversation) next to the weights:
- peft: the PEFT adapter (adapter_config.json, adapter_model.safetensors);
- full (full and freeze fine-tuning): the whole model, standalone;
- bitfit and bottleneck: delta.safetensors with only the tensors they trained (and a classification head).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from pydantic import TypeAdapter

from adapterflow.core.errors import AdapterflowError
from adapterflow.core.hashing import cache_key, sha256_files
from adapterflow.methods.bottleneck import inject_bottlenecks
from adapterflow.methods.build import ModelSpec, load_base
from schemas.method import BottleneckMethod, LoraMethod, Method, MethodVariant

MANIFEST = "adapterflow_artifact.json"
DELTA_FILE = "delta.safetensors"


def trainable_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A copy, on the CPU, of the parameters that train (an adapter's are small; full fine-tuning's are not)."""
    return {name: parameter.detach().to("cpu", copy=True).contiguous()
            for name, parameter in model.named_parameters() if parameter.requires_grad}


def save_trained(model: torch.nn.Module, tokenizer: Any, method: MethodVariant, spec: ModelSpec, out_dir: Path) -> None:
    """Save what `method` trained (see the module docstring) and the manifest that says how to load it."""
    from safetensors.torch import save_file

    out_dir.mkdir(parents=True, exist_ok=True)
    if method.family in ("peft", "full"):
        model.save_pretrained(out_dir)
    else:
        save_file(trainable_state(model), str(out_dir / DELTA_FILE))
    tokenizer.save_pretrained(out_dir)
    manifest = {"family": method.family, "method": method.model_dump(), "spec": spec.to_dict()}
    (out_dir / MANIFEST).write_text(json.dumps(manifest, indent=2))


def adapter_identity(base_sha256: str, adapter_dir: str | Path) -> str:
    """A trained model's identity: its base weights and the artifact's weight and config files."""
    files = sorted(p for p in Path(adapter_dir).iterdir() if p.suffix in {".safetensors", ".json"})
    return cache_key(base_sha256, sha256_files(files))


def stage_with_prompting(artifact_dir: str | Path, staged_dir: Path, system_prompt: str | None) -> Path:
    """A copy of a trained artifact whose manifest records the system prompt training used, for registration.

    The cached artifact stays untouched (its hash keys later stages); weights are hard-linked where the file
    system allows it, and the manifest is written anew, never through a link.
    """
    def link_or_copy(source: str, target: str) -> None:
        try:
            os.link(source, target)
        except OSError:
            shutil.copy2(source, target)

    shutil.copytree(artifact_dir, staged_dir, copy_function=link_or_copy)
    manifest_path = staged_dir / MANIFEST
    if not manifest_path.is_file():  # an artifact from before manifests: nothing recorded, loads as LoRA SFT
        return staged_dir
    manifest = json.loads(manifest_path.read_text())
    manifest_path.unlink()
    manifest_path.write_text(json.dumps(manifest | {"prompting": {"system_prompt": system_prompt}}, indent=2))
    return staged_dir


def read_prompting(artifact_dir: str | Path) -> dict[str, str | None] | None:
    """How training prompted, as registration recorded it ({"system_prompt": ...}); None when nothing is recorded
    (an artifact not registered, or registered before the record existed)."""
    path = Path(artifact_dir) / MANIFEST
    if not path.is_file():
        return None
    return json.loads(path.read_text()).get("prompting")


def read_system_prompt(artifact_dir: str | Path) -> str | None:
    """The system prompt training put before every conversation (None: none, or not recorded)."""
    return (read_prompting(artifact_dir) or {}).get("system_prompt")


def serving_conversation(prompt: str, system_prompt: str | None) -> list[dict[str, str]]:
    """A served prompt as training shaped it: the recorded system prompt first, like tokenization inserts it."""
    turn = {"role": "user", "content": prompt}
    return [{"role": "system", "content": system_prompt}, turn] if system_prompt else [turn]


def read_manifest(artifact_dir: str | Path) -> tuple[MethodVariant, ModelSpec]:
    path = Path(artifact_dir) / MANIFEST
    if not path.is_file():
        if (Path(artifact_dir) / "adapter_config.json").is_file():  # registered before manifests existed: LoRA SFT
            return LoraMethod(type="lora"), ModelSpec()
        raise AdapterflowError(f"{artifact_dir} is not an adapterflow artifact (no {MANIFEST})")
    manifest = json.loads(path.read_text())
    return TypeAdapter(Method).validate_python(manifest["method"]), ModelSpec(**manifest["spec"])


def load_trained(artifact_dir: str | Path, base_path: str, device: torch.device) -> torch.nn.Module:
    """The trained model in eval mode: base plus adapter, or the saved full model."""
    method, spec = read_manifest(artifact_dir)
    if method.family == "full":
        from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

        auto = AutoModelForSequenceClassification if spec.task == "classification" else AutoModelForCausalLM
        model = auto.from_pretrained(artifact_dir, dtype=getattr(torch, spec.dtype)).to(device)
    elif method.family == "peft":
        from peft import PeftModel

        model = PeftModel.from_pretrained(load_base(base_path, spec, device), str(artifact_dir))
    else:
        model = load_base(base_path, spec, device)
        if isinstance(method, BottleneckMethod):
            inject_bottlenecks(model, method.style, method.reduction_factor, method.non_linearity)
        load_delta(model, Path(artifact_dir) / DELTA_FILE)
    return model.eval()


def load_delta(model: torch.nn.Module, path: Path) -> None:
    """Put the saved tensors into the model; every one of them must find its parameter."""
    from safetensors.torch import load_file

    delta = load_file(str(path))
    unknown = sorted(set(delta) - set(model.state_dict()))
    if unknown:
        raise AdapterflowError(f"{path} holds tensors this base model lacks: {unknown[:5]}",
                               hint="load the artifact on the base model it was trained on")
    model.load_state_dict(delta, strict=False)


def warm_start_from(model: torch.nn.Module, method: MethodVariant, artifact_dir: str | Path) -> None:
    """Continue from a trained artifact (the champion): load what it trained into the freshly built model.

    Only an artifact of the same method with the same settings fits; full and freeze fine-tuning start
    from a base model of their own and are refused.
    """
    trained_method, _ = read_manifest(artifact_dir)
    if trained_method.model_dump() != method.model_dump():
        raise AdapterflowError(
            f"training.warm_start: the champion was trained with method {trained_method.model_dump()}, this run "
            f"uses {method.model_dump()}",
            hint="warm start continues an adapter with the same method settings; set training.warm_start: none",
        )
    folder = Path(artifact_dir)
    if method.family == "peft":
        from peft import set_peft_model_state_dict
        from safetensors.torch import load_file

        result = set_peft_model_state_dict(model, load_file(str(folder / "adapter_model.safetensors")))
        if result.unexpected_keys:
            raise AdapterflowError(f"{folder} holds adapter tensors this model lacks: {result.unexpected_keys[:5]}",
                                   hint="warm start needs the champion's base model and method")
    elif method.family == "full":
        raise AdapterflowError(f"training.warm_start: champion is not supported for method {method.type}",
                               hint="use base_model: <the champion's exported folder> to continue full fine-tuning")
    else:
        load_delta(model, folder / DELTA_FILE)
