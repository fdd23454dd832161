"""The transformers Trainer as adapterflow trains with it: label-only loss, LoRA+ learning rates, a stop at the
first non-finite loss or gradient, and token counts summed over data-parallel processes."""

from __future__ import annotations

import math
from typing import Any

import torch
from transformers import Trainer, TrainerCallback, TrainingArguments

from adapterflow.core.errors import NumericalFault
from adapterflow.tokenization.collate import TokenCounter
from adapterflow.tokenization.packing import next_token_loss


class AdapterflowTrainer(Trainer):
    """The transformers Trainer with a loss that projects only labelled positions onto the vocabulary, and
    LoRA+ learning rates.

    The projected loss works for padded and packed batches alike (packed ones carry position_ids and no
    attention mask). Models that compute their own loss (classifiers, prompt learning, whose virtual tokens
    shift the positions, and AdaLoRA, whose loss adds a regulariser) keep the Trainer's loss.
    """

    def __init__(self, *args, projected_loss: bool = True, loraplus_lr_ratio: float | None = None, **kwargs) -> None:  # noqa: ANN002, ANN003
        super().__init__(*args, **kwargs)
        self.projected_loss = projected_loss
        self.loraplus_lr_ratio = loraplus_lr_ratio

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):  # noqa: ANN001 - Trainer API
        if not self.projected_loss:
            if "position_ids" in inputs:  # packed: with a cache, transformers would skip the per-example mask
                inputs = {**inputs, "use_cache": False}
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        loss, count = next_token_loss(model, inputs, reduction="sum")
        # With gradient accumulation the Trainer passes the label count of all micro-batches of the step,
        # so every token weighs the same whatever micro-batch it is in.
        denominator = num_items_in_batch if num_items_in_batch is not None else count
        loss = loss / max(int(denominator), 1)
        if num_items_in_batch is not None and self.args.average_tokens_across_devices and self.args.world_size > 1:
            # num_items_in_batch counts the labels of all processes, and DDP averages the gradients over them:
            # scale back up so that the step's gradient is the mean over every labelled token of the global batch
            loss = loss * self.args.world_size
        return (loss, None) if return_outputs else loss

    def training_step(self, model, inputs, num_items_in_batch=None):  # noqa: ANN001 - Trainer API
        """The Trainer's step (forward and backward), stopped at once when its loss or a gradient is not finite:
        every later step would only spread the fault into the weights."""
        loss = super().training_step(model, inputs, num_items_in_batch)
        gradients = [parameter.grad for parameter in model.parameters() if parameter.grad is not None]
        finite = torch.isfinite(loss).all()
        if gradients:
            finite = finite & torch.stack([torch.isfinite(gradient).all() for gradient in gradients]).all()
        if not bool(finite):  # one device sync per micro-batch
            raise numerical_fault(self.state.global_step + 1, float(loss), self.state.log_history, self.args)
        return loss

    def create_optimizer(self, model=None):  # noqa: ANN001 - Trainer API
        if self.loraplus_lr_ratio is None or self.optimizer is not None:
            return super().create_optimizer(model)
        from peft.optimizers import create_loraplus_optimizer

        # LoRA+: the B matrices get loraplus_lr_ratio times the learning rate of the A matrices
        model = model or self.model
        optimizer_cls, optimizer_kwargs = Trainer.get_optimizer_cls_and_kwargs(self.args, model)
        optimizer_kwargs.pop("lr", None)
        self.optimizer = create_loraplus_optimizer(
            model=model, optimizer_cls=optimizer_cls, lr=self.args.learning_rate,
            loraplus_lr_ratio=self.loraplus_lr_ratio, loraplus_weight_decay=self.args.weight_decay, **optimizer_kwargs,
        )
        return self.optimizer


def numerical_fault(step: int, loss: float, history: list[dict[str, float]], args: TrainingArguments) -> NumericalFault:
    """The error for a non-finite loss or gradient: where, the last finite loss, and what usually causes it."""
    logged = [(entry["step"], entry["loss"]) for entry in history if "loss" in entry and math.isfinite(entry["loss"])]
    last = f"last finite logged loss {logged[-1][1]:.4f} at step {logged[-1][0]}" if logged else "no finite loss logged yet"
    what = f"the loss is {loss}" if not math.isfinite(loss) else f"a gradient is NaN or Inf (loss {loss:.4g})"
    precision = "fp16" if args.fp16 else "bf16" if args.bf16 else "fp32"
    return NumericalFault(
        f"training stopped at optimizer step {step}: {what}; {last}; nothing was saved or registered",
        hint=f"likely causes: a learning rate too high (training.learning_rate, now {args.learning_rate:g}), "
             f"{precision} overflow (training.precision: bf16 or fp32 instead of fp16), no gradient clipping "
             "(training.max_grad_norm), or extreme rows in the data",
    )


class GlobalTokenCount(TrainerCallback):
    """Sums the token counts of all processes at every log (all processes log at the same steps), so that
    tokens/s and the padding share describe the whole data-parallel run rather than one process."""

    def __init__(self, local: TokenCounter) -> None:
        self.local = local
        self.total = TokenCounter()

    def on_log(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.sync(args.device)

    def sync(self, device: torch.device) -> None:
        counts = torch.tensor([self.local.real, self.local.padded], dtype=torch.int64, device=device)
        torch.distributed.all_reduce(counts)
        self.total.real, self.total.padded = int(counts[0]), int(counts[1])
