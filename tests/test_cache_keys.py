"""Honest caches: every ingredient that can change a stage's result is in its cache key, the code included
(no hand-bumped version constants): change any one of them and the key changes, so the cache misses."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from adapterflow.core.hashing import code_key, module_sources
from adapterflow.storage.records import BaseModelRef, TokenizedData
from schemas.pipeline import PipelineConfig
from tasks.train import adapter_key
from tests.conftest import ASSETS

PROJECT = Path(__file__).resolve().parents[1]


@pytest.fixture
def probe_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A package `probe` whose stage module imports a helper only inside a function."""
    package = tmp_path / "probe"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "stage.py").write_text("def run():\n    from probe.helper import twice\n    return twice(2)\n")
    (package / "helper.py").write_text("def twice(x):\n    return 2 * x\n")
    (package / "unrelated.py").write_text("X = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield package
    for name in [name for name in sys.modules if name == "probe" or name.startswith("probe.")]:
        del sys.modules[name]


def test_the_code_key_follows_imports_and_changes_with_the_code_and_library_versions(
    probe_package: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert {path.name for path in module_sources("probe.stage", ("probe",))} == {"__init__.py", "stage.py", "helper.py"}
    before = code_key("probe.stage", ("probe",))
    (probe_package / "unrelated.py").write_text("X = 2\n")
    assert code_key("probe.stage", ("probe",)) == before  # not imported: not an ingredient
    (probe_package / "helper.py").write_text("def twice(x):\n    return x + x\n")
    edited = code_key("probe.stage", ("probe",))
    assert edited != before
    import importlib.metadata

    real_version = importlib.metadata.version
    monkeypatch.setattr(importlib.metadata, "version",
                        lambda name: "99.0" if name == "transformers" else real_version(name))
    assert code_key("probe.stage", ("probe",)) != edited


def test_the_stages_keys_cover_their_modules() -> None:
    def sources(module: str) -> set[str]:
        return {path.relative_to(PROJECT).as_posix() for path in module_sources(module)}

    assert {"adapterflow/tokenization/chat.py", "adapterflow/tokenization/lengths.py",
            "tasks/tokenize.py"} <= sources("tasks.tokenize")
    assert {"adapterflow/training/trainer.py", "adapterflow/tokenization/packing.py", "adapterflow/methods/build.py",
            "adapterflow/methods/memory_plan.py"} <= sources("tasks.train")


def test_every_ingredient_of_the_adapter_key_changes_it(monkeypatch: pytest.MonkeyPatch) -> None:
    raw = {"name": "k", "data": {"sources": [{"path": str(ASSETS / "chat.jsonl")}]}}
    config = PipelineConfig.model_validate(raw)
    tokenized = TokenizedData(key="t1", uri="u", train_rows=1, eval_rows=1, dropped={}, stats={}, max_length=64)
    base = BaseModelRef(name="b", path="/b", sha256="s1")
    reference = adapter_key(tokenized, base, config, "fp32", "cpu")

    def changed(section: str, field: str, value: object) -> PipelineConfig:
        return PipelineConfig.model_validate(raw | {section: {field: value}})

    variants = [
        adapter_key(tokenized.model_copy(update={"key": "t2"}), base, config, "fp32", "cpu"),
        adapter_key(tokenized, base.model_copy(update={"sha256": "s2"}), config, "fp32", "cpu"),
        adapter_key(tokenized, base, changed("base_model", "dtype", "bfloat16"), "fp32", "cpu"),
        adapter_key(tokenized, base, changed("method", "r", 32), "fp32", "cpu"),
        adapter_key(tokenized, base, changed("training", "learning_rate", 1e-3), "fp32", "cpu"),
        adapter_key(tokenized, base, changed("tokenize", "chat_template", "chatml"), "fp32", "cpu"),
        adapter_key(tokenized, base, config, "bf16", "cpu"),
        adapter_key(tokenized, base, config, "fp32", "cuda"),
        adapter_key(tokenized, base, config, "fp32", "cpu", start="champion-adapter"),
    ]
    monkeypatch.setattr("tasks.train.code_key", lambda module: "other code")
    variants.append(adapter_key(tokenized, base, config, "fp32", "cpu"))
    assert reference not in variants and len(set(variants)) == len(variants)
