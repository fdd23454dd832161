"""The loss at labelled positions through Liger-Kernel's fused linear cross-entropy (training.fused_loss, CUDA only).

The projected loss (tokenization.packing.next_token_loss) already multiplies only the labelled positions' hidden
states by the vocabulary; it still holds their logits, the fp32 log-softmax and its gradients, 12 x vocabulary bytes
a labelled token. The fused kernel takes the same hidden states and the head's weight and computes the loss and its
gradients a chunk of positions at a time, so those logits never exist at once. Same positions, same targets, same
sum: only where the logits live changes.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from adapterflow.core.devices import liger_kernel_installed, select_fused_loss
from adapterflow.core.errors import AdapterflowError
from adapterflow.tokenization.chat import IGNORE_INDEX
from schemas.training import TrainingConfig

# Config fields of models whose logits are not plain head(hidden): Gemma's soft-capping, Cohere's and Granite's scales
LOGIT_TRANSFORMS = ("final_logit_softcapping", "logit_scale", "logits_scaling")

FusedKernel = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None], torch.Tensor]


def fusable_head(model: torch.nn.Module) -> torch.nn.Linear | None:
    """The output head when the model's logits are exactly head(last hidden state): a plain Linear (not one a
    PEFT adapter wraps) and no soft-capping or scaling of the logits; None otherwise. A DDP wrapper is looked into."""
    model = getattr(model, "module", model)
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    config = model.config.get_text_config()  # the language model's (PEFT models forward `config`)
    transformed = any(getattr(config, name, None) not in (None, 1, 1.0) for name in LOGIT_TRANSFORMS)
    return head if type(head) is torch.nn.Linear and not transformed else None


def choose_fused_loss(config: TrainingConfig, device: torch.device, model: torch.nn.Module, projected: bool) -> bool:
    """Whether this training computes its loss fused: only where the loss is projected (causal LMs without virtual
    tokens or AdaLoRA's regulariser), as select_fused_loss decides for the device, on a head the kernel can stand
    in for and unsharded (FSDP gathers the head's weight only inside its forward). Where these fail, auto keeps
    the projected loss and on is an error."""
    if not projected:
        return False
    preference = config.fused_loss
    if not select_fused_loss(preference, device, model.config.get_text_config().vocab_size,
                             liger_kernel_installed()):
        return False
    sharded = config.distributed.num_processes > 1 and config.distributed.strategy == "fsdp"
    if fusable_head(model) is None or sharded:
        if preference == "on":
            why = ("the weights are sharded (distributed.strategy fsdp)" if sharded else "this model's head is "
                   "adapted (e.g. LoRA on lm_head) or its logits are soft-capped or scaled")
            raise AdapterflowError(f"training.fused_loss on needs the whole output head applied to the last hidden "
                                   f"state: {why}", hint="use fused_loss: auto or off")
        return False
    return True


def liger_loss(
    weight: torch.Tensor, hidden: torch.Tensor, targets: torch.Tensor, bias: torch.Tensor | None,
) -> torch.Tensor:
    """Summed cross-entropy of hidden @ weight.T (+ bias) against targets, by Liger-Kernel's fused kernel."""
    from liger_kernel.transformers import LigerFusedLinearCrossEntropyLoss

    return LigerFusedLinearCrossEntropyLoss(ignore_index=IGNORE_INDEX, reduction="sum")(weight, hidden, targets, bias)


def fused_next_token_loss(
    model: torch.nn.Module, batch: dict[str, torch.Tensor], reduction: str = "mean", kernel: FusedKernel = liger_loss,
) -> tuple[torch.Tensor, int]:
    """next_token_loss through `kernel`: the model runs without projecting any position (an all-False
    logits_to_keep) and returns its last hidden state, whose labelled positions the kernel projects and scores.
    Under autocast the kernel gets the head and hidden states in the autocast dtype, as the head's matmul would."""
    labels = batch["labels"]
    targets = labels[:, 1:]
    keep = torch.nn.functional.pad(targets != IGNORE_INDEX, (0, 1), value=False)  # position t predicts t + 1
    inputs = {name: tensor for name, tensor in batch.items() if name != "labels"}
    # use_cache=False: with a cache, transformers skips the packed-sequence mask (it assumes generation)
    outputs = model(**inputs, logits_to_keep=torch.zeros_like(keep), output_hidden_states=[-1], use_cache=False)
    hidden = outputs.hidden_states[-1][keep]  # after the final norm: what the head multiplies
    wanted = targets[targets != IGNORE_INDEX]
    head = fusable_head(model)
    device_type = hidden.device.type
    dtype = torch.get_autocast_dtype(device_type) if torch.is_autocast_enabled(device_type) else head.weight.dtype
    bias = None if head.bias is None else head.bias.to(dtype)
    with torch.autocast(device_type, enabled=False):
        loss = kernel(head.weight.to(dtype), hidden.to(dtype), wanted, bias)
    count = int(wanted.numel())
    return (loss / max(count, 1) if reduction == "mean" else loss), count
