"""Merge a trained artifact into a standalone safetensors model and check that it computes the same logits.

LoRA-family adapters (LoRA and its variants, AdaLoRA, IA3) fold into the base weights; a QLoRA adapter folds
into the dequantised base. BitFit, full and freeze fine-tuning are standalone once loaded. Bottleneck adapters
and prompt learning add computation that no base weight can hold, so they can't be merged.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from adapterflow.core.errors import AdapterflowError
from adapterflow.methods.artifacts import load_trained, read_manifest
from adapterflow.methods.build import load_base
from adapterflow.models.base import load_tokenizer

PROBE_TEXTS = (
    "What does `json.dumps` do?",
    "Serialize obj to a JSON formatted str.",
    "def add(a, b):\n    return a + b",
)
# Largest |merged - adapter| logit difference allowed, relative to the largest |logit|: both run in fp32 on the
# same weights, so they differ by rounding only.
RELATIVE_TOLERANCE = 1e-4


@dataclass(frozen=True)
class MergeCheck:
    """How closely the merged model reproduces the adapter model on the probe texts.

    For QLoRA the adapter model is compared on the dequantised base (what the merge folds into);
    `quantized_kernel_diff` is how far the served 4/8-bit model itself is from that, for information:
    bitsandbytes' CPU 4-bit kernel rounds the quantisation constants to bf16.
    """

    max_abs_diff: float
    max_abs_logit: float
    tolerance: float = RELATIVE_TOLERANCE
    quantized_kernel_diff: float | None = None

    @property
    def relative_diff(self) -> float:
        return self.max_abs_diff / max(self.max_abs_logit, 1e-12)

    @property
    def passed(self) -> bool:
        return self.relative_diff <= self.tolerance


@torch.no_grad()
def probe_logits(model: torch.nn.Module, tokenizer, device: torch.device) -> torch.Tensor:  # noqa: ANN001
    tokenizer.padding_side = "right"
    inputs = tokenizer(list(PROBE_TEXTS), return_tensors="pt", padding=True).to(device)
    logits = model(**inputs).logits.float()
    # compare real tokens only (classifiers return one row per text)
    return logits if logits.dim() == 2 else logits[inputs["attention_mask"].bool()]


def export_merged(artifact_dir: str | Path, base_path: str, out_dir: Path, device: torch.device) -> MergeCheck:
    """Write the merged model and tokenizer to out_dir; raise when the merged logits don't match."""
    method, spec = read_manifest(artifact_dir)
    if not method.mergeable:
        raise AdapterflowError(
            f"a {method.type} artifact can't be merged into the base weights: its modules compute on top of them",
            hint="serve it with the base model (mlflow models serve / mlflow.pyfunc.load_model) instead",
        )
    tokenizer = load_tokenizer(artifact_dir)
    trained = load_trained(artifact_dir, base_path, device)
    expected = served = probe_logits(trained, tokenizer, device)
    if method.family == "peft":
        from peft import PeftModel

        if spec.quantization:  # fold into the dequantised weights (before any forward pass repacks them on CPU)
            base = load_base(base_path, spec, device)
            base.dequantize()
            trained = PeftModel.from_pretrained(base, str(artifact_dir)).eval()
            expected = probe_logits(trained, tokenizer, device)
        merged = trained.merge_and_unload()
    else:
        merged = trained
    merged = merged.to(torch.float32)
    merged.config.quantization_config = None
    if hasattr(merged, "hf_quantizer"):
        merged.hf_quantizer = None
    out_dir.mkdir(parents=True, exist_ok=True)
    merged.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    reloaded = _load_standalone(out_dir, spec.task, device)
    got = probe_logits(reloaded, tokenizer, device)
    scale = float(expected.abs().max())
    check = MergeCheck(float((got - expected).abs().max()), scale,
                       quantized_kernel_diff=float((served - expected).abs().max()) / scale if spec.quantization else None)
    if not check.passed:
        raise AdapterflowError(
            f"the merged model's logits differ from the adapter model's by {check.relative_diff:.2e} of their scale "
            f"(tolerance {check.tolerance:.0e}); {out_dir} was written but should not be used",
            hint="report this with the artifact; serve the adapter itself meanwhile",
        )
    return check


def _load_standalone(folder: Path, task: str, device: torch.device) -> torch.nn.Module:
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    auto = AutoModelForSequenceClassification if task == "classification" else AutoModelForCausalLM
    return auto.from_pretrained(folder, dtype=torch.float32).to(device).eval()
