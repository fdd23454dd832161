"""Training throughput benchmark: adapterflow's training stage against the common recipe, in one run.

    python benchmarks/train_throughput.py [--steps 16 --batch 8]
    python benchmarks/train_throughput.py --frozen [--steps 6 --batch 4]

Both train LoRA (r=16, alpha 32, all linear layers) on the packaged SmolLM2-135M-Instruct with the same
demo examples (stdlib docstring Q/A), the same number of steps and the same effective batch:
  (a) the common recipe: transformers Trainer, chat texts padded to max_length 256,
      DataCollatorForLanguageModeling(mlm=False), fp32;
  (b) adapterflow: response-only labels, packing without cross-talk, precision "auto" (bf16 on CPUs that
      support it), loss projected only at labelled positions.
Each runs in its own process. Prints real (non-padding) tokens/s of each, the ratio, peak memory, and the
eval loss on the same held-out answers after training (quality must not drop). On a GPU (benchmarks/cuda_check.py)
the same functions train on CUDA, the recipe under bf16 autocast, and TRL's SFTTrainer joins them.

--frozen instead runs (b) twice under bf16 autocast, its frozen base weights loaded in fp32 and in bf16 (the
LoRA weights stay fp32 in both): what methods/dtypes.py decides for CPUs with native bf16.
"""

from __future__ import annotations

import os
import sys

# benchmarks/tokenize.py shadows the standard library's `tokenize` for anything that runs from this folder
# (spawned workers inherit the path too): keep the folder off the import path, the repository on it.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _HERE] + [os.path.dirname(_HERE)]

import argparse  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

from benchmarks.common import in_child  # noqa: E402

MAX_LENGTH = 256


def examples(train: int, held_out: int) -> tuple[list, list]:
    from adapterflow.data.python_docs import build_python_docs

    rows = build_python_docs("stdlib", train + held_out, include_topics=True, seed=0)
    conversations = [[{"role": "user", "content": r["instruction"]}, {"role": "assistant", "content": r["output"]}] for r in rows]
    return conversations[:train], conversations[train:]


def lora():
    from peft import LoraConfig

    return LoraConfig(task_type="CAUSAL_LM", r=16, lora_alpha=32, target_modules="all-linear")


def recipe(model_dir: str, train: list, steps: int, batch: int, out: str, precision: str, queue) -> None:
    """(a) The common recipe, `precision` by the Trainer's bf16 flag (autocast over fp32 weights) or fp32."""
    import torch
    from peft import get_peft_model
    from transformers import (
        AutoModelForCausalLM,
        AutoTokenizer,
        DataCollatorForLanguageModeling,
        Trainer,
        TrainingArguments,
    )

    from adapterflow.core.devices import select_device
    from adapterflow.training.callbacks import peak_memory_mb
    from adapterflow.training.trainer import reset_peak_memory

    device = select_device("auto")
    reset_peak_memory(device)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    texts = [tokenizer.apply_chat_template(conv, tokenize=False) for conv in train]
    encoded = tokenizer(texts, padding="max_length", truncation=True, max_length=MAX_LENGTH)
    dataset = [{"input_ids": ids, "attention_mask": mask} for ids, mask in zip(encoded["input_ids"], encoded["attention_mask"], strict=True)]
    real_tokens = sum(sum(row["attention_mask"]) for row in dataset)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32), lora())
    args = TrainingArguments(output_dir=out, per_device_train_batch_size=batch, max_steps=steps, learning_rate=3e-4,
                             lr_scheduler_type="cosine", warmup_steps=0.05, logging_steps=100, save_strategy="no",
                             report_to=[], use_cpu=device.type == "cpu", bf16=precision == "bf16", seed=42,
                             disable_tqdm=True)
    trainer = Trainer(model=model, args=args, train_dataset=dataset,
                      data_collator=DataCollatorForLanguageModeling(tokenizer, mlm=False))
    started = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - started
    model.save_pretrained(Path(out) / "adapter")
    fraction = min(steps * batch / len(dataset), 1.0)
    padded = steps * batch * MAX_LENGTH
    queue.put({"seconds": seconds, "real_tokens": real_tokens * fraction, "padding_share": 1 - real_tokens * fraction / padded,
               "peak_mb": peak_memory_mb(device), "adapter": str(Path(out) / "adapter"), "precision": precision})


def trl_sft(model_dir: str, train: list, steps: int, batch: int, out: str, precision: str, queue) -> None:
    """TRL's SFTTrainer as its documentation recommends for SFT: prompt-completion conversations (loss on the
    completion), packing (best-fit decreasing, padding-free) into rows of max_length, the same LoRA."""
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    from adapterflow.core.devices import select_device
    from adapterflow.training.callbacks import peak_memory_mb
    from adapterflow.training.trainer import reset_peak_memory

    device = select_device("auto")
    reset_peak_memory(device)
    dataset = Dataset.from_list([{"prompt": conv[:1], "completion": conv[1:]} for conv in train])
    args = SFTConfig(output_dir=out, per_device_train_batch_size=batch, max_steps=steps, learning_rate=3e-4,
                     lr_scheduler_type="cosine", warmup_steps=0.05, logging_steps=100, save_strategy="no", report_to=[],
                     use_cpu=device.type == "cpu", bf16=precision == "bf16", seed=42, disable_tqdm=True,
                     max_length=MAX_LENGTH, packing=True, include_num_input_tokens_seen="non_padding")
    trainer = SFTTrainer(model=AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32), args=args,
                         train_dataset=dataset, processing_class=AutoTokenizer.from_pretrained(model_dir),
                         peft_config=lora())
    started = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - started
    trainer.model.save_pretrained(Path(out) / "adapter")
    queue.put({"seconds": seconds, "real_tokens": float(trainer.state.num_input_tokens_seen), "padding_share": 0.0,
               "peak_mb": peak_memory_mb(device), "adapter": str(Path(out) / "adapter"), "precision": precision})


def adapterflow(model_dir: str, train: list, steps: int, batch: int, out: str, base_dtype: str, method_type: str,
                precision: str, queue) -> None:
    """(b) adapterflow's tokenize and train stages; `base_dtype` as base_model.dtype (auto: adapterflow's choice);
    `method_type` lora, or qlora (4-bit NF4 base), both r=16 on all linear layers; `precision` as
    training.precision (auto: adapterflow's choice for the device)."""
    from adapterflow.core.devices import select_device, select_precision
    from adapterflow.data.tables import TableWriter
    from adapterflow.storage.records import BaseModelRef, SplitResult
    from adapterflow.storage.store import Storage
    from adapterflow.training.trainer import train_adapter
    from schemas.method import LoraMethod, QLoraMethod
    from schemas.tokenize import TokenizeConfig
    from schemas.training import TrainingConfig
    from tasks.tokenize import tokenize_splits

    folder = Path(out)
    with TableWriter(folder / "train.parquet", "sft") as writer:
        for index, conv in enumerate(train):
            writer.write({"messages": conv, "source": "bench", "line": index})
        table = writer.close()
    split = SplitResult(train=table, eval=table, fingerprint="bench", uri=str(folder))
    base = BaseModelRef(name="smollm2", path=model_dir, sha256="bench")
    tokenized = tokenize_splits(split, base, TokenizeConfig(max_length=MAX_LENGTH), Storage.local(folder / "cache"))
    device = select_device("auto")
    precision = select_precision(precision, device)
    config = TrainingConfig(max_steps=steps, batch_size=batch, learning_rate=3e-4, logging_steps=100, warmup_ratio=0.05)
    method = (QLoraMethod if method_type == "qlora" else LoraMethod)(type=method_type, r=16, alpha=32, dropout=0.0)
    outcome = train_adapter(Path(tokenized.uri), base, method, config, device, precision, folder / "run",
                            max_length=MAX_LENGTH, base_dtype=base_dtype)
    metrics = outcome.metrics
    queue.put({"seconds": metrics["train/runtime_seconds"], "real_tokens": metrics["train/real_tokens"],
               "padding_share": metrics["train/padding_share"], "precision": precision,
               "peak_mb": metrics["train/peak_memory_mb"], "adapter": str(outcome.output_dir), "base_dtype": base_dtype,
               "weights_mb": outcome.memory.weights / 2**20, "mfu": metrics.get("train/mfu"),
               "frozen_dtype": str(next(p.dtype for p in outcome.model.parameters() if not p.requires_grad))})


def eval_loss(model_dir: str, adapter: str, held_out: list, queue) -> None:
    """Response-token loss of base + adapter on held-out answers (same code for every adapter), and the peak
    memory of scoring. adapterflow's adapters load as evaluation loads them (a QLoRA base in 4-bit), the others
    on the fp32 base; the loss is computed in fp32."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from adapterflow.core.devices import select_device
    from adapterflow.evaluation.metrics import response_perplexity
    from adapterflow.evaluation.stored_adapters import load_stored_adapter
    from adapterflow.methods.artifacts import MANIFEST
    from adapterflow.tokenization.chat import ChatTokenizer
    from adapterflow.tokenization.dataset import TokenDataset
    from adapterflow.training.callbacks import peak_memory_mb
    from adapterflow.training.trainer import reset_peak_memory

    device = select_device("auto")
    reset_peak_memory(device)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    batch = ChatTokenizer(tokenizer, MAX_LENGTH)(held_out)
    path = Path(adapter).parent / "heldout.parquet"
    offsets = pa.array(batch.offsets.astype("int32"))
    pq.write_table(pa.table({"input_ids": pa.ListArray.from_arrays(offsets, pa.array(batch.ids)),
                             "labels": pa.ListArray.from_arrays(offsets, pa.array(batch.labels))}), path)
    if (Path(adapter) / MANIFEST).exists():
        model = load_stored_adapter(adapter, model_dir, device).model
    else:
        model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32),
                                          adapter).to(device)
    loss = response_perplexity(model, TokenDataset(path), tokenizer.pad_token_id, 16, device, "fp32")[0]["loss"]
    queue.put({"loss": loss, "peak_mb": peak_memory_mb(device)})



def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=16)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--held-out", type=int, default=64)
    parser.add_argument("--frozen", action="store_true", help="compare frozen weights in fp32 and bf16 instead")
    args = parser.parse_args()

    from adapterflow.core.home import Home, configure_environment
    from adapterflow.models.base import materialise_builtin

    configure_environment()
    model_dir = str(materialise_builtin("smollm2-135m-instruct", Home.from_env()))
    train, held_out = examples(args.steps * args.batch, args.held_out)
    with tempfile.TemporaryDirectory(prefix="bench-train-") as folder:
        if args.frozen:
            rows = [(f"adapterflow, bf16 autocast, frozen weights {dtype}",
                     run_and_score(adapterflow, model_dir, train, held_out, args.steps, args.batch,
                                   Path(folder) / dtype, dtype, "lora", "auto"))
                    for dtype in ("float32", "bfloat16")]
        else:
            rows = [("(a) Trainer, pad to 256, DataCollatorForLanguageModeling, fp32",
                     run_and_score(recipe, model_dir, train, held_out, args.steps, args.batch, Path(folder) / "a",
                                   "fp32")),
                    ("(b) adapterflow: packing, {precision}, response-only loss",
                     run_and_score(adapterflow, model_dir, train, held_out, args.steps, args.batch, Path(folder) / "b",
                                   "auto", "lora", "auto"))]
    print(f"\n{args.steps} steps x {args.batch} examples (same examples, same order of magnitude of work), "
          f"held-out answers: {args.held_out}\n")
    print(f"{'method':<58} {'real tok/s':>10} {'padding':>8} {'seconds':>8} {'peak MB':>8} {'eval loss':>9}")
    for label, result in rows:
        rate = result["real_tokens"] / result["seconds"]
        print(f"{label.format(precision=result.get('precision')):<58} {rate:>10,.0f} {result['padding_share']:>8.1%} "
              f"{result['seconds']:>8.1f} {result['peak_mb']:>8,.0f} {result['eval_loss']:>9.4f}")
    (_, first), (_, second) = rows
    ratio = (second["real_tokens"] / second["seconds"]) / (first["real_tokens"] / first["seconds"])
    print(f"\nreal tokens/s ratio second/first: {ratio:.2f}x")


def run_and_score(target, model_dir: str, train: list, held_out: list, steps: int, batch: int, out: Path,
                  *options: str, run=in_child) -> dict:  # noqa: ANN001
    """Train with `target` through `run` (by default in a child process), then score its adapter on the held-out
    answers (in another)."""
    out.mkdir()
    result = run(target, model_dir, train, steps, batch, str(out), *options)
    scored = run(eval_loss, model_dir, result["adapter"], held_out)
    return result | {"eval_loss": scored["loss"], "eval_peak_mb": scored["peak_mb"]}


if __name__ == "__main__":
    main()
