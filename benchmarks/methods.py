"""Methods benchmark: every fine-tuning method on the demo data and the packaged SmolLM2-135M-Instruct.

    python benchmarks/methods.py [--steps 8 --batch 8 --methods lora,qlora,...]

Every method trains on the same examples in the same order for the same number of steps (the same token
budget), at its own default learning rate, each in its own process (so peak memory is its own). Prints, per
method: trainable parameters (count and share), peak memory, real tokens/s and the final eval loss on the
same held-out answers, as one table, and logs the comparison to MLflow: a parent run with one nested run
per method (experiment "adapterflow-methods-benchmark").
"""

from __future__ import annotations

import os
import sys

# benchmarks/tokenize.py shadows the standard library's `tokenize`: keep this folder off the import path.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _HERE] + [os.path.dirname(_HERE)]

import argparse  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402

from benchmarks.common import in_child  # noqa: E402

MAX_LENGTH = 256
LORA = {"type": "lora", "r": 16, "alpha": 32}
METHODS = {
    "full": {"type": "full"},
    "freeze (last 4 layers)": {"type": "freeze", "trainable_layers": 4},
    "lora": LORA,
    "lora + rslora": LORA | {"rslora": True},
    "lora + dora": LORA | {"dora": True},
    "lora+ (ratio 16)": LORA | {"loraplus_lr_ratio": 16},
    "lora (pissa init)": LORA | {"init": "pissa"},
    "qlora 4-bit nf4": LORA | {"type": "qlora"},
    "qlora 8-bit": LORA | {"type": "qlora", "bits": 8},
    "adalora": {"type": "adalora"},
    "ia3": {"type": "ia3"},
    "prefix": {"type": "prefix"},
    "prompt (text init)": {"type": "prompt", "init": "text", "init_text": "Answer questions about the Python API:"},
    "ptuning": {"type": "ptuning"},
    "bottleneck (houlsby)": {"type": "bottleneck"},
    "bottleneck (pfeiffer)": {"type": "bottleneck", "style": "pfeiffer"},
    "bitfit": {"type": "bitfit"},
}


def prepare(folder: Path, train: int, held_out: int):
    """Tokenize the demo examples once, with adapterflow's tokenize stage."""
    from adapterflow.data.python_docs import build_python_docs
    from adapterflow.data.tables import TableWriter
    from adapterflow.home import Home
    from adapterflow.storage import Storage
    from adapterflow.models.base import materialise_builtin, weights_sha256
    from adapterflow.records import BaseModelRef, SplitResult
    from schemas.tokenize import TokenizeConfig
    from tasks.tokenize import tokenize_splits

    home = Home.from_env()
    model_dir = materialise_builtin("smollm2-135m-instruct", home)
    base = BaseModelRef(name="smollm2-135m-instruct", path=str(model_dir), sha256=weights_sha256(model_dir, home))
    rows = build_python_docs("stdlib", train + held_out, include_topics=True, seed=0)
    tables = {}
    for name, chunk in (("train", rows[:train]), ("eval", rows[train:])):
        with TableWriter(folder / f"{name}.parquet", "sft") as writer:
            for index, row in enumerate(chunk):
                writer.write({"messages": [{"role": "user", "content": row["instruction"]},
                                           {"role": "assistant", "content": row["output"]}], "source": "bench", "line": index})
            tables[name] = writer.close()
    split = SplitResult(train=tables["train"], eval=tables["eval"], fingerprint=f"bench-{train}-{held_out}",
                        uri=str(folder))
    return base, tokenize_splits(split, base, TokenizeConfig(max_length=MAX_LENGTH), Storage.local(folder / "cache"))


def run_method(options: dict, base, tokenized, steps: int, batch: int, out: str, queue) -> None:  # noqa: ANN001
    """Train one method and measure it (in a child process)."""
    import torch
    from pydantic import TypeAdapter

    from adapterflow.devices import select_precision
    from adapterflow.errors import AdapterflowError
    from adapterflow.evaluation import response_perplexity
    from adapterflow.methods.artifacts import load_trained
    from adapterflow.models.base import load_tokenizer
    from adapterflow.training.data import TokenDataset
    from adapterflow.training.trainer import train_adapter
    from schemas.method import Method
    from schemas.training import TrainingConfig

    method = TypeAdapter(Method).validate_python(options)
    device = torch.device("cpu")
    precision = select_precision("auto", device)
    config = TrainingConfig(max_steps=steps, batch_size=batch, logging_steps=100, warmup_ratio=0.05)
    try:
        outcome = train_adapter(Path(tokenized.uri), base, method, config, device, precision, Path(out),
                                max_length=MAX_LENGTH)
    except AdapterflowError as error:
        queue.put({"error": error.message})
        return
    model = load_trained(outcome.output_dir, base.path, device)
    dataset = TokenDataset(Path(tokenized.uri) / "eval.parquet")
    pad = load_tokenizer(base.path).pad_token_id
    loss = response_perplexity(model, dataset, pad, 16, device, precision, packed=not method.prompt_learning)["loss"]
    queue.put({key: outcome.metrics[key] for key in (
        "train/trainable_parameters", "train/trainable_share", "train/peak_memory_mb", "train/tokens_per_second",
        "train/final_loss", "train/runtime_seconds", "train/learning_rate_peak", "memory/estimate_total_mb")}
        | {"eval/loss": loss, "precision": precision})



def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--held-out", type=int, default=64)
    parser.add_argument("--methods", default=",".join(METHODS), help="comma-separated names from the table")
    args = parser.parse_args()

    import mlflow

    from adapterflow.home import configure_environment

    configure_environment()
    chosen = [name.strip() for name in args.methods.split(",")]
    results = {}
    with tempfile.TemporaryDirectory(prefix="bench-methods-") as folder:
        base, tokenized = prepare(Path(folder), args.steps * args.batch, args.held_out)
        for index, name in enumerate(chosen):
            results[name] = in_child(run_method, METHODS[name], base, tokenized, args.steps, args.batch,
                                     str(Path(folder) / f"run{index}"))
            print(f"{name}: {results[name]}", flush=True)

    mlflow.set_experiment("adapterflow-methods-benchmark")
    with mlflow.start_run(run_name=f"methods-{args.steps}x{args.batch}"):
        mlflow.log_params({"steps": args.steps, "batch_size": args.batch, "held_out": args.held_out,
                           "max_length": MAX_LENGTH, "base_model": "smollm2-135m-instruct"})
        for name, result in results.items():
            with mlflow.start_run(run_name=name, nested=True):
                mlflow.log_params({"method": name, **({"error": result["error"]} if "error" in result else {})})
                mlflow.log_metrics({key: value for key, value in result.items() if isinstance(value, float)})

    print(f"\n{args.steps} steps x {args.batch} examples of the demo data on SmolLM2-135M-Instruct, each method at its "
          f"default learning rate; eval loss on {args.held_out} held-out answers\n")
    print(f"{'method':<24} {'trainable':>12} {'share':>8} {'peak MB':>8} {'est. MB':>8} {'tok/s':>7} {'lr':>8} "
          f"{'eval loss':>9}")
    for name, result in results.items():
        if "error" in result:
            print(f"{name:<24} n/a: {result['error']}")
            continue
        print(f"{name:<24} {result['train/trainable_parameters']:>12,.0f} {result['train/trainable_share']:>8.3%} "
              f"{result['train/peak_memory_mb']:>8,.0f} {result['memory/estimate_total_mb']:>8,.0f} "
              f"{result['train/tokens_per_second']:>7.0f} {result['train/learning_rate_peak']:>8.0e} {result['eval/loss']:>9.4f}")


if __name__ == "__main__":
    main()
