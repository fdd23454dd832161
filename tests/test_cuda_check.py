"""The prepared GPU check's CPU dry run (benchmarks/cuda_check.py --dry-run): every part runs on tiny models and
prints its rows, the GPU-only ones marked skipped, so the script cannot rot before a GPU comes."""

from __future__ import annotations

import json
import math
from importlib.util import find_spec
from pathlib import Path

import pytest

from benchmarks import cuda_check

SKIPPED = "skipped: needs CUDA"
TRL = "ok" if find_spec("trl") else "trl not installed"
MODELS = ("tiny-llama", "tiny-qwen2 (random)")


def expected_rows() -> dict[tuple[str, str], str]:
    """(part, case) -> status of every row the dry run prints."""
    rows = {}
    for model in MODELS:
        rows[("throughput", f"{model}: recipe: Trainer, pad to 256, fp32")] = "ok"
        rows[("throughput", f"{model}: adapterflow: packed, response-only loss")] = "ok"
        rows[("throughput", f"{model}: TRL SFTTrainer: packing, padding-free, fp32")] = TRL
    for case in ("LoRA, frozen base float32", "QLoRA, 4-bit NF4 base", "QLoRA / LoRA"):  # CPU keeps fp32 frozen
        rows[("qlora", f"tiny-llama: {case}")] = "ok"
    rows |= {("packing", "tiny-llama: eager"): "ok", ("packing", "tiny-llama: sdpa"): "ok",
             ("packing", "tiny-llama: flex_attention"): SKIPPED, ("packing", "tiny-llama: flash_attention_2"): SKIPPED}
    for size in ("2x64:sdpa", "4x64:sdpa", "2x128:eager", "4x64:sdpa, fused loss"):
        rows[("memory", f"tiny-llama: {size}")] = SKIPPED
    rows[("e2e", "adapterflow run configs/smollm2_lora_cpu.yaml")] = SKIPPED
    return rows


def test_the_dry_run_prints_and_writes_every_row_with_finite_numbers(tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "check.json"
    cuda_check.main(["--dry-run", "--out", str(out)])
    written = json.loads(out.read_text())
    assert written["dry_run"] is True and written["device"] == "cpu"
    rows = {(r["part"], r["case"]): r for r in written["rows"]}
    assert {key: r["status"] for key, r in rows.items()} == expected_rows()
    for key, r in rows.items():
        if r["status"] == "ok":
            assert r["metrics"] and all(isinstance(v, float) and math.isfinite(v) for v in r["metrics"].values()), key
        elif r["status"] != "trl not installed":
            assert r["status"] == SKIPPED and not r["metrics"], key
    adapterflow = rows[("throughput", "tiny-llama: adapterflow: packed, response-only loss")]["metrics"]
    assert adapterflow["tok_s"] > 0 and adapterflow["x_recipe"] > 0 and adapterflow["padding"] < 0.1
    assert rows[("qlora", "tiny-llama: QLoRA / LoRA")]["metrics"]["weights_ratio"] < 1  # 4-bit weights are smaller
    for kernel in ("eager", "sdpa"):  # packed rows keep the examples apart on CPU too
        assert rows[("packing", f"tiny-llama: {kernel}")]["metrics"]["relative_difference"] < 1e-3
    printed = capsys.readouterr().out
    assert printed.count(SKIPPED) == 7 and "tiny-llama: QLoRA / LoRA" in printed and str(out) in printed
