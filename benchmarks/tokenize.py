"""Tokenization benchmark: adapterflow's batched tokenize stage against the per-example approach, in one run.

    python benchmarks/tokenize.py [--examples 100000]

Chat examples are the demo's stdlib-docs pairs (repeated with numbered variations up to --examples), the
tokenizer is the packaged SmolLM2's. The per-example approach renders each conversation twice with the chat
template (prompt and full) and tokenizes both, labelling what follows the prompt: the common recipe.
Prints tokens/s of both, the ratio, and the time of a re-run served from the content-addressed cache.
"""

from __future__ import annotations

import os
import sys

# This file is named like the standard library's `tokenize`; keep its folder off the import path.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _HERE] + [os.path.dirname(_HERE)]

import argparse  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402


def conversations(count: int) -> list[list[dict[str, str]]]:
    from adapterflow.data.python_docs import build_python_docs

    pairs = build_python_docs("stdlib", 100_000, include_topics=True, seed=0)
    result = []
    for index in range(count):
        pair = pairs[index % len(pairs)]
        suffix = f" (variant {index // len(pairs)})" if index >= len(pairs) else ""
        result.append([{"role": "user", "content": pair["instruction"] + suffix},
                       {"role": "assistant", "content": pair["output"]}])
    return result


def per_example(tokenizer, convs: list[list[dict[str, str]]], max_length: int) -> int:
    """Two template renders and two tokenizer calls per example; returns the tokens produced."""
    tokens = 0
    for conv in convs:
        prompt = tokenizer.apply_chat_template(conv[:-1], add_generation_prompt=True, tokenize=False)
        full = tokenizer.apply_chat_template(conv, tokenize=False)
        prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        full_ids = tokenizer(full, add_special_tokens=False)["input_ids"][:max_length]
        labels = [-100] * len(prompt_ids) + full_ids[len(prompt_ids):]
        tokens += len(full_ids)
        assert len(labels) >= len(full_ids)
    return tokens


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--examples", type=int, default=100_000)
    parser.add_argument("--max-length", type=int, default=512)
    args = parser.parse_args()

    from adapterflow.core.home import Home
    from adapterflow.data.tables import TableWriter
    from adapterflow.models.base import load_tokenizer, materialise_builtin
    from adapterflow.storage.records import BaseModelRef, SplitResult
    from adapterflow.storage.store import Storage
    from schemas.tokenize import TokenizeConfig
    from tasks.tokenize import tokenize_splits

    with tempfile.TemporaryDirectory(prefix="bench-tokenize-") as folder:
        home = Home(Path(folder) / "home")
        model_dir = materialise_builtin("smollm2-135m-instruct", Home.from_env())
        convs = conversations(args.examples)
        with TableWriter(Path(folder) / "train.parquet", "sft") as writer:
            for index, conv in enumerate(convs):
                writer.write({"messages": conv, "source": "bench", "line": index + 1})
            train = writer.close()
        with TableWriter(Path(folder) / "eval.parquet", "sft") as writer:
            writer.write({"messages": convs[0], "source": "bench", "line": 0})
            held_out = writer.close()
        split = SplitResult(train=train, eval=held_out, fingerprint=f"bench-{args.examples}", uri=str(folder))
        base = BaseModelRef(name="smollm2-135m-instruct", path=str(model_dir), sha256="bench")
        config = TokenizeConfig(max_length=args.max_length)

        started = time.perf_counter()
        result = tokenize_splits(split, base, config, Storage.local(home.cache))
        ours = time.perf_counter() - started
        tokens = int(result.stats["tokens"])
        started = time.perf_counter()
        again = tokenize_splits(split, base, config, Storage.local(home.cache))
        cached = time.perf_counter() - started
        assert again.skipped

        tokenizer = load_tokenizer(model_dir)
        started = time.perf_counter()
        baseline_tokens = per_example(tokenizer, convs, args.max_length)
        baseline = time.perf_counter() - started

    print(f"\n{args.examples:,} chat examples, {tokens:,} tokens (per-example approach: {baseline_tokens:,})\n")
    print(f"{'method':<44} {'seconds':>9} {'tokens/s':>12}")
    print(f"{'adapterflow tokenize stage (batched)':<44} {ours:>9.2f} {tokens / ours:>12,.0f}")
    print(f"{'per-example: 2 renders + 2 tokenizer calls':<44} {baseline:>9.2f} {baseline_tokens / baseline:>12,.0f}")
    print(f"{'adapterflow re-run, served from cache':<44} {cached:>9.2f}")
    print(f"\nspeed-up: {(tokens / ours) / (baseline_tokens / baseline):.1f}x")


if __name__ == "__main__":
    main()
