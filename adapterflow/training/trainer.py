"""Fine-tune a base model with the transformers Trainer and save what the method trains."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

import torch
from transformers import Trainer, TrainingArguments, set_seed

from adapterflow.devices import select_attention
from adapterflow.methods.artifacts import save_trained
from adapterflow.methods.build import build_trainable, logical_numel, spec_for
from adapterflow.methods.memory import MemoryEstimate, available_memory, check_fits, estimate_memory
from adapterflow.models.base import load_tokenizer
from adapterflow.records import BaseModelRef
from adapterflow.stage import stage_logger
from adapterflow.tokenization import apply_template_choice
from adapterflow.tracking import RunTracker
from adapterflow.training.callbacks import AdaLoraBudget, ThroughputMetrics
from adapterflow.training.collate import ClassificationCollator, PadToLongest
from adapterflow.training.data import TokenDataset
from adapterflow.training.packing import PackedCollator, next_token_loss
from schemas.method import MethodVariant
from schemas.training import TrainingConfig

PACK_ROWS_OF = 2  # packed rows hold up to this many times max_length tokens (bounds the attention mask)


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
        return (loss, None) if return_outputs else loss

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



@dataclass
class TrainingOutcome:
    """Where the trained weights are and the run's final training metrics."""

    output_dir: Path
    metrics: dict[str, float]
    history: list[dict[str, float]]
    memory: MemoryEstimate | None = field(default=None)
    model: torch.nn.Module | None = field(default=None, repr=False)  # the trained model, still in memory


def packs(method: MethodVariant, task: str, config: TrainingConfig) -> bool:
    """Packing applies to causal LMs without virtual tokens (prompt learning prepends them to every row)."""
    return config.packing and task != "classification" and not method.prompt_learning


def collator_for(method: MethodVariant, task: str, config: TrainingConfig, pad_token_id: int, max_length: int):
    if task == "classification":
        return ClassificationCollator(pad_token_id)
    if packs(method, task, config):
        return PackedCollator(pad_token_id, PACK_ROWS_OF * max_length)
    return PadToLongest(pad_token_id)


def total_steps(config: TrainingConfig, examples: int) -> int:
    if config.max_steps:
        return config.max_steps
    per_epoch = math.ceil(examples / (config.batch_size * config.gradient_accumulation_steps))
    return max(1, math.ceil(per_epoch * config.epochs))


def training_arguments(
    config: TrainingConfig, precision: str, device: torch.device, output_dir: Path, learning_rate: float, packed: bool,
) -> TrainingArguments:
    """Map adapterflow's training section onto the Trainer's arguments."""
    return TrainingArguments(
        output_dir=str(output_dir),
        per_device_train_batch_size=config.batch_size,
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        num_train_epochs=config.epochs,
        max_steps=config.max_steps or -1,
        learning_rate=learning_rate,
        lr_scheduler_type=config.lr_scheduler,
        warmup_steps=config.warmup_ratio,  # a float below 1 is a share of the total steps
        weight_decay=config.weight_decay,
        max_grad_norm=config.max_grad_norm,
        bf16=precision == "bf16",
        fp16=precision == "fp16",
        gradient_checkpointing=config.gradient_checkpointing,
        optim=config.optimizer,
        # without packing, batches of similar lengths waste less on padding
        train_sampling_strategy="random" if packed else "group_by_length",
        logging_steps=config.logging_steps,
        logging_first_step=True,
        save_strategy="no",
        report_to=[],
        seed=config.seed,
        data_seed=config.seed,
        use_cpu=device.type == "cpu",
        remove_unused_columns=False,
        dataloader_num_workers=0,  # the collator counts tokens in this process
        disable_tqdm=False,
    )


def count_parameters(model: torch.nn.Module) -> dict[str, float]:
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(logical_numel(p) for p in model.parameters())
    return {"train/trainable_parameters": float(trainable), "train/total_parameters": float(total),
            "train/trainable_share": trainable / total if total else 0.0}


def train_adapter(
    tokenized_dir: Path,
    base: BaseModelRef,
    method: MethodVariant,
    config: TrainingConfig,
    device: torch.device,
    precision: str,
    output_dir: Path,
    tracker: RunTracker | None = None,
    chat_template: str | None = None,
    max_length: int = 512,
    task: str = "sft",
    label_names: list[str] | None = None,
    base_dtype: str = "auto",
) -> TrainingOutcome:
    """Train `method` on the tokenized train split; save what it trained, the tokenizer and a manifest."""
    set_seed(config.seed)
    tokenizer = load_tokenizer(base.path)
    if task == "sft":
        apply_template_choice(tokenizer, chat_template)  # saved with the adapter: inference uses the trained template
    dataset = TokenDataset(tokenized_dir / "train.parquet")
    steps = total_steps(config, len(dataset))
    spec = spec_for(method, task, list(label_names or []), tokenizer.pad_token_id, precision, max_length, base_dtype)
    attention = select_attention(config.attention, device)
    model = build_trainable(method, base.path, spec, device, total_steps=steps, attention=attention,
                            gradient_checkpointing=config.gradient_checkpointing)
    if config.gradient_checkpointing and method.family == "peft":
        model.enable_input_require_grads()
    packed = packs(method, task, config)
    memory = preflight(model, method, config, precision, device, max_length,
                       PACK_ROWS_OF * max_length if packed else max_length, attention, tracker)
    collator = collator_for(method, task, config, tokenizer.pad_token_id, max_length)
    flops_per_token = 6.0 * sum(logical_numel(parameter) for parameter in model.parameters())
    metrics_callback = ThroughputMetrics(collator.counter, device, tracker, flops_per_token)
    learning_rate = config.learning_rate or method.default_learning_rate
    trainer = AdapterflowTrainer(
        model=model,
        args=training_arguments(config, precision, device, output_dir / "checkpoints", learning_rate, packed),
        train_dataset=dataset,
        data_collator=collator,
        callbacks=[metrics_callback, *([AdaLoraBudget()] if method.type == "adalora" else [])],
        projected_loss=task != "classification" and not method.prompt_learning and method.type != "adalora",
        loraplus_lr_ratio=getattr(method, "loraplus_lr_ratio", None),
    )
    logging.getLogger("transformers.trainer").setLevel(logging.WARNING)
    result = trainer.train()
    adapter_dir = output_dir / "adapter"
    save_trained(model, tokenizer, method, spec, adapter_dir)
    metrics = {"train/final_loss": float(result.training_loss), "train/steps": float(result.global_step),
               "train/packing": float(packed), "train/learning_rate_peak": learning_rate}
    metrics |= metrics_callback.summary() | count_parameters(model) | memory.as_metrics()
    return TrainingOutcome(output_dir=adapter_dir, metrics=metrics, history=metrics_callback.history, memory=memory,
                           model=model)


def preflight(
    model: torch.nn.Module, method: MethodVariant, config: TrainingConfig, precision: str, device: torch.device,
    max_length: int, row_tokens: int, attention: str | None, tracker: RunTracker | None,
) -> MemoryEstimate:
    """Estimate the memory training needs, say it, log it, and stop now if it can't fit."""
    estimate = estimate_memory(
        model, tokens_per_micro_batch=config.batch_size * max_length, sequence_length=row_tokens, precision=precision,
        gradient_checkpointing=config.gradient_checkpointing, optimizer=config.optimizer,
        full_backward=method.family != "full" or method.type == "full",
        # sdpa and flash attention don't keep the score matrices (on CPU the default is eager, which does)
        attention_scores=(attention or "eager") == "eager",
    )
    stage_logger().info("%s on %s: %s", method.type, device.type, estimate.describe())
    if tracker is not None:
        tracker.log_metrics(estimate.as_metrics())
    free = available_memory(device)
    # the model is loaded already: its weights are in the estimate and no longer in the free memory
    check_fits(estimate, None if free is None else free + estimate.weights, method.type, device)
    return estimate
