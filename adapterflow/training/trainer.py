"""Fine-tune a base model with the transformers Trainer and save what the method trains."""

from __future__ import annotations

import gc
import logging
import math
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from transformers import PrinterCallback, TrainingArguments, set_seed

from adapterflow.core.devices import select_attention
from adapterflow.core.logs import stage_logger
from adapterflow.methods.artifacts import save_trained, warm_start_from
from adapterflow.methods.build import build_trainable, logical_numel, spec_for
from adapterflow.methods.memory import MemoryEstimate
from adapterflow.models.base import load_tokenizer
from adapterflow.storage.records import BaseModelRef
from adapterflow.tokenization.chat import apply_template_choice
from adapterflow.tokenization.collate import ClassificationCollator, PadToLongest
from adapterflow.tokenization.dataset import LengthGroupedEpochs, TokenDataset
from adapterflow.tokenization.packing import PackedCollator
from adapterflow.tracking.run import RunTracker
from adapterflow.training.callbacks import AdaLoraBudget, ThroughputMetrics
from adapterflow.training.checkpoints import CheckpointPlan, DurableCheckpoints, read_history
from adapterflow.training.flops import model_flops_per_token
from adapterflow.training.fused_loss import choose_fused_loss
from adapterflow.training.hf_trainer import AdapterflowTrainer, GlobalTokenCount
from adapterflow.training.memory_check import apply_plan, preflight
from adapterflow.training.parallel import GatheredModel, check_launch, distributed_arguments, main_process
from adapterflow.training.probe import HeldOutProbe, validation_measure
from adapterflow.training.progress import ProgressDisplay
from adapterflow.training.stopping import StoppingState
from adapterflow.training.validation_curve import ValidationCurve, load_best_weights
from schemas.method import MethodVariant
from schemas.training import TrainingConfig

PACK_ROWS_OF = 2  # packed rows hold up to this many times max_length tokens (bounds the attention mask)


class TrainingOutOfMemory(Exception):
    """The accelerator ran out of memory while training with `training` (the settings the memory plan chose)."""

    def __init__(self, training: TrainingConfig) -> None:
        super().__init__(f"out of memory with batch_size {training.batch_size}")
        self.training = training


def drop_frames(error: BaseException) -> None:
    """Clear the local variables of the frames in an error's tracebacks, its causes' and contexts' too: they hold
    a failed training's model, optimizer and activations for as long as anything holds the error."""
    pending: list[BaseException | None] = [error]
    seen: set[int] = set()
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        traceback.clear_frames(current.__traceback__)  # skips the frames still running (the caller's)
        pending += [current.__cause__, current.__context__]


def free_accelerator_memory(device: torch.device) -> None:
    """Return what a failed training held to the accelerator. Call it after leaving the `except` block (and
    drop_frames): inside it the error's traceback still reaches the model, and the cache would keep its memory."""
    gc.collect()  # the Trainer, its callbacks and the model refer to each other: only the collector frees them
    if device.type == "cuda":
        torch.cuda.empty_cache()


def reset_peak_memory(device: torch.device) -> None:
    """Start an attempt's peak memory statistics afresh: CUDA keeps the process's peak, so a retry after running
    out of memory (or a sweep's next trial) would report the peak of the one before. Nothing to do on CPU."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


@dataclass
class TrainingOutcome:
    """Where the trained weights are and the run's final training metrics."""

    output_dir: Path
    metrics: dict[str, float]
    history: list[dict[str, float]]
    memory: MemoryEstimate | None = field(default=None)
    model: torch.nn.Module | None = field(default=None, repr=False)  # the trained model, still in memory
    stopped_early: str | None = None  # why training ended before epochs or max_steps


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
    global_batch = config.batch_size * config.gradient_accumulation_steps * config.distributed.num_processes
    per_epoch = math.ceil(examples / global_batch)
    return max(1, math.ceil(per_epoch * config.epochs))


def training_arguments(
    config: TrainingConfig, precision: str, device: torch.device, output_dir: Path, learning_rate: float, packed: bool,
    save_steps: int | None = None,
) -> TrainingArguments:
    """Map adapterflow's training section onto the Trainer's arguments; checkpoints every `save_steps` steps
    into `output_dir` (adapterflow.training.checkpoints marks, copies and prunes them)."""
    arguments = dict(
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
        # packed: shuffled by accelerate's sampler, seeded per epoch; unpacked: the examples come length-grouped
        # (LengthGroupedEpochs), whose order, unlike the Trainer's group_by_length, survives a resume
        train_sampling_strategy="random" if packed else "sequential",
        logging_steps=config.logging_steps,
        logging_first_step=True,
        save_strategy="steps" if save_steps else "no",
        save_steps=save_steps or 500,
        save_total_limit=None,  # pruned once the newer one is complete, never before
        report_to=[],
        seed=config.seed,
        data_seed=config.seed,
        use_cpu=device.type == "cpu",
        remove_unused_columns=False,
        dataloader_num_workers=0,  # the collator counts tokens in this process
        disable_tqdm=True,  # ProgressDisplay shows progress instead of tqdm's bar
    )
    return TrainingArguments(**(arguments | distributed_arguments(config, device)))


def supports_flex_attention(path: str) -> bool:
    """Whether the base model's transformers classes implement flex attention (GPT-2 and Falcon, for two, don't)."""
    import transformers
    from transformers import AutoConfig

    names = getattr(AutoConfig.from_pretrained(path), "architectures", None) or []
    classes = [getattr(transformers, name, None) for name in names]
    return bool(classes) and all(getattr(cls, "_supports_flex_attn", False) for cls in classes)


def validation_while_training(
    tokenized_dir: Path, method: MethodVariant, task: str, pad_token_id: int, device: torch.device, precision: str,
    config: TrainingConfig,
) -> Callable[[torch.nn.Module], float] | None:
    """The validation loss to follow while training; None without a validation split, and in multi-process
    training, where one process measuring would hold the others at their next collective."""
    if config.distributed.num_processes > 1:
        if main_process():
            stage_logger().info("no validation while training with %d processes: early stopping is off",
                                config.distributed.num_processes)
        return None
    measure = validation_measure(tokenized_dir, method, task, pad_token_id, device, precision,
                                 max(config.batch_size, 8))
    if measure is None:
        stage_logger().info("no validation split: training runs to its end (epochs, max_steps or time_budget)")
    return measure


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
    init_from: str | None = None,
    checkpoints: CheckpointPlan | None = None,
    resume_from: Path | None = None,
    probe: HeldOutProbe | None = None,
) -> TrainingOutcome:
    """Train `method` on the tokenized train split; save what it trained, the tokenizer and a manifest.
    `init_from`: a trained artifact of the same method to continue from (warm start). `checkpoints`: where and
    how often to save checkpoints; `resume_from`: a complete checkpoint to go on from (weights, optimizer,
    scheduler, RNG states, step and data position). The validation loss is measured every eval_steps; early
    stopping and the time budget end training (the best step's weights are saved). `probe`: a sweep's trial,
    reported to at each measurement (it raises TrainingPruned when the probe says stop).

    With `config.distributed.num_processes` > 1 every process of a torchrun launch calls this (see
    adapterflow.training.distributed); only the main one logs and saves.
    """
    check_launch(config)
    reset_peak_memory(device)  # before the model loads: the peak the run reports includes its weights
    if not main_process():
        tracker = None
    set_seed(config.seed)
    tokenizer = load_tokenizer(base.path)
    if task == "sft":
        apply_template_choice(tokenizer, chat_template)  # saved with the adapter: inference uses the trained template
    dataset = TokenDataset(tokenized_dir / "train.parquet")
    steps = total_steps(config, len(dataset))
    spec = spec_for(method, task, list(label_names or []), tokenizer.pad_token_id, precision, max_length, base_dtype,
                    device.type)
    packed = packs(method, task, config)
    row_tokens = PACK_ROWS_OF * max_length if packed else max_length
    attention = select_attention(config.attention, device, row_tokens, packed, supports_flex_attention(base.path))
    if main_process():
        stage_logger().info("attention: %s (training.attention %s; %s rows of up to %d tokens on %s)", attention,
                            config.attention, "packed" if packed else "padded", row_tokens, device.type)
    model = build_trainable(method, base.path, spec, device, total_steps=steps, attention=attention,
                            gradient_checkpointing=config.gradient_checkpointing)
    if init_from is not None:
        warm_start_from(model, method, init_from)
    projected = task != "classification" and not method.prompt_learning and method.type != "adalora"
    fused_loss = choose_fused_loss(config, device, model, projected)
    plan = preflight(model, method, config, precision, device, max_length, row_tokens, attention, tracker, fused_loss)
    memory, fitted = plan.estimate, apply_plan(model, method, config, plan.settings)
    collator = collator_for(method, task, config, tokenizer.pad_token_id, max_length)
    flops_per_token = model_flops_per_token(model, row_tokens)
    parameters = count_parameters(model)  # before FSDP shards the parameters
    global_tokens = GlobalTokenCount(collator.counter) if config.distributed.num_processes > 1 else None
    counter = global_tokens.total if global_tokens else collator.counter
    # model FLOPs utilisation is per GPU: the global tokens' FLOPs are shared among the processes
    metrics_callback = ThroughputMetrics(counter, device, tracker, flops_per_token / config.distributed.num_processes)
    progress = ProgressDisplay(metrics_callback)
    if resume_from is not None:  # the curve so far, for the stored adapter's history
        metrics_callback.history = read_history(resume_from)
    durable = [DurableCheckpoints(checkpoints, tracker, metrics_callback.history)] if checkpoints else []
    curve = ValidationCurve(fitted, validation_while_training(tokenized_dir, method, task, tokenizer.pad_token_id,
                                                              device, precision, config),
                            device, tracker, metrics_callback.history, StoppingState.load(resume_from), probe,
                            load_best_weights(resume_from))
    learning_rate = config.learning_rate or method.default_learning_rate
    trainer = AdapterflowTrainer(
        model=model,
        args=training_arguments(fitted, precision, device, checkpoints.local_root if checkpoints else output_dir,
                                learning_rate, packed, checkpoints.every_steps if checkpoints else None),
        train_dataset=dataset if packed else LengthGroupedEpochs(dataset, config.seed),
        data_collator=collator,
        # ProgressDisplay after metrics_callback: it shows the tokens/s that one has just measured
        callbacks=[*([global_tokens] if global_tokens else []), metrics_callback, progress,
                   # the curve before durable: it adds its state to each checkpoint before that one uploads it
                   *([AdaLoraBudget()] if method.type == "adalora" else []), curve, *durable],
        projected_loss=projected, fused_loss=fused_loss,
        loraplus_lr_ratio=getattr(method, "loraplus_lr_ratio", None),
    )
    trainer.remove_callback(PrinterCallback)  # it prints every log dict; the metrics go to MLflow instead
    logging.getLogger("transformers.trainer").setLevel(logging.WARNING)
    try:
        result = trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    except BaseException as error:
        for callback in durable:
            callback.finish_after_failure()
        if isinstance(error, torch.OutOfMemoryError):
            raise TrainingOutOfMemory(fitted) from error
        raise
    finally:
        progress.close()
    if global_tokens:
        global_tokens.sync(trainer.args.device)
    adapter_dir = output_dir / "adapter"
    if trainer.is_fsdp_enabled:  # gathering the sharded weights takes every process
        saved = GatheredModel(model, trainer.accelerator.get_state_dict(trainer.model))
    else:
        saved = model
    if trainer.is_world_process_zero():
        save_trained(saved, tokenizer, method, spec, adapter_dir)
    for callback in durable:  # after the last collective: no other rank waits while rank 0 waits for its upload
        callback.finish()
    metrics = {"train/final_loss": float(result.training_loss), "train/steps": float(result.global_step),
               "train/packing": float(packed), "train/learning_rate_peak": learning_rate}
    metrics |= metrics_callback.summary() | curve.metrics() | parameters | memory.as_metrics() | plan.as_metrics()
    return TrainingOutcome(output_dir=adapter_dir, metrics=metrics, history=metrics_callback.history, memory=memory,
                           model=model, stopped_early=curve.state.stopped_early)
