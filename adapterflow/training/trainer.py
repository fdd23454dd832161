"""Fine-tune a base model with the transformers Trainer and save what the method trains."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import Trainer, TrainingArguments, set_seed

from adapterflow.devices import select_attention
from adapterflow.models.base import load_causal_lm, load_tokenizer
from adapterflow.records import BaseModelRef
from adapterflow.tokenization import apply_template_choice
from adapterflow.tracking import RunTracker
from adapterflow.training.callbacks import ThroughputMetrics
from adapterflow.training.collate import PadToLongest
from adapterflow.training.data import TokenDataset
from adapterflow.training.packing import PackedCollator, next_token_loss

PACK_ROWS_OF = 2  # packed rows hold up to this many times max_length tokens (bounds the attention mask)


class AdapterflowTrainer(Trainer):
    """The transformers Trainer with a loss that projects only labelled positions onto the vocabulary.

    Works for padded and packed batches alike (packed ones carry position_ids and no attention mask).
    """

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):  # noqa: ANN001 - Trainer API
        loss, count = next_token_loss(model, inputs, reduction="sum")
        # With gradient accumulation the Trainer passes the label count of all micro-batches of the step,
        # so every token weighs the same whatever micro-batch it is in.
        denominator = num_items_in_batch if num_items_in_batch is not None else count
        loss = loss / max(int(denominator), 1)
        return (loss, None) if return_outputs else loss
from schemas.method import Method
from schemas.training import TrainingConfig


@dataclass
class TrainingOutcome:
    """Where the trained weights are and the run's final training metrics."""

    output_dir: Path
    metrics: dict[str, float]
    history: list[dict[str, float]]


def collator_for(config: TrainingConfig, pad_token_id: int, max_length: int) -> PackedCollator | PadToLongest:
    return PackedCollator(pad_token_id, PACK_ROWS_OF * max_length) if config.packing else PadToLongest(pad_token_id)


def training_arguments(config: TrainingConfig, precision: str, device: torch.device, output_dir: Path) -> TrainingArguments:
    """Map adapterflow's training section onto the Trainer's arguments."""
    return TrainingArguments(
        output_dir=str(output_dir),
        per_device_train_batch_size=config.batch_size,
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        num_train_epochs=config.epochs,
        max_steps=config.max_steps or -1,
        learning_rate=config.learning_rate,
        lr_scheduler_type=config.lr_scheduler,
        warmup_steps=config.warmup_ratio,  # a float below 1 is a share of the total steps
        weight_decay=config.weight_decay,
        max_grad_norm=config.max_grad_norm,
        bf16=precision == "bf16",
        fp16=precision == "fp16",
        gradient_checkpointing=config.gradient_checkpointing,
        optim=config.optimizer,
        # without packing, batches of similar lengths waste less on padding
        train_sampling_strategy="random" if config.packing else "group_by_length",
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
    total = sum(p.numel() for p in model.parameters())
    return {"train/trainable_parameters": float(trainable), "train/total_parameters": float(total),
            "train/trainable_share": trainable / total if total else 0.0}


def train_adapter(
    tokenized_dir: Path,
    base: BaseModelRef,
    method: Method,
    config: TrainingConfig,
    device: torch.device,
    precision: str,
    output_dir: Path,
    tracker: RunTracker | None = None,
    chat_template: str | None = None,
    max_length: int = 512,
) -> TrainingOutcome:
    """Train `method` on the tokenized train split and save the adapter and tokenizer to output_dir."""
    from peft import get_peft_model

    set_seed(config.seed)
    tokenizer = load_tokenizer(base.path)
    apply_template_choice(tokenizer, chat_template)  # saved with the adapter: inference uses the trained template
    model = load_causal_lm(base.path, device, attention=select_attention(config.attention, device))
    model = get_peft_model(model, method.peft_config(task_type="CAUSAL_LM"))
    if config.gradient_checkpointing:
        model.enable_input_require_grads()
    collator = collator_for(config, tokenizer.pad_token_id, max_length)
    flops_per_token = 6.0 * sum(parameter.numel() for parameter in model.parameters())
    metrics_callback = ThroughputMetrics(collator.counter, device, tracker, flops_per_token)
    trainer = AdapterflowTrainer(
        model=model,
        args=training_arguments(config, precision, device, output_dir / "checkpoints"),
        train_dataset=TokenDataset(tokenized_dir / "train.parquet"),
        data_collator=collator,
        callbacks=[metrics_callback],
    )
    logging.getLogger("transformers.trainer").setLevel(logging.WARNING)
    result = trainer.train()
    adapter_dir = output_dir / "adapter"
    model.save_pretrained(adapter_dir)
    tokenizer.save_pretrained(adapter_dir)
    metrics = {"train/final_loss": float(result.training_loss), "train/steps": float(result.global_step),
               "train/packing": float(config.packing)}
    metrics |= metrics_callback.summary() | count_parameters(model)
    return TrainingOutcome(output_dir=adapter_dir, metrics=metrics, history=metrics_callback.history)
