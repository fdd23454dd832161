"""Retrain or no-op: the decision is pure, and the key moves with every input that decides the result."""

from __future__ import annotations

from pathlib import Path

from adapterflow.registry.retrain import LastRun, decide_retrain, retrain_key
from schemas.data import FileSource, PythonDocsSource


def test_decision_retrains_unless_the_last_successful_run_had_the_same_key() -> None:
    assert decide_retrain("k", None).retrain
    changed = decide_retrain("k", LastRun("run1", "old", None))
    assert changed.retrain and "changed since run run1" in changed.reason
    same = decide_retrain("k", LastRun("run1", "k", None))
    assert not same.retrain and same.reason.startswith("unchanged")
    forced = decide_retrain("k", LastRun("run1", "k", None), skip_unchanged=False)
    assert forced.retrain and "skip_unchanged is false" in forced.reason


def test_a_refreshed_frozen_eval_set_means_a_retrain_even_with_unchanged_inputs() -> None:
    last = LastRun("run1", "k", "a" * 24)
    refreshed = decide_retrain("k", last, frozen_eval_set="b" * 24)
    assert refreshed.retrain and "frozen eval set changed since run run1 (aaaaaaaaaaaa -> bbbbbbbbbbbb" in refreshed.reason
    assert not decide_retrain("k", last, frozen_eval_set="a" * 24).retrain  # the set that run was evaluated on
    assert not decide_retrain("k", last, frozen_eval_set=None).retrain  # no frozen set (or the split doesn't freeze)
    assert not decide_retrain("k", LastRun("run1", "k", None), frozen_eval_set="b" * 24).retrain  # an older run


def test_key_follows_source_content_config_base_and_code(tmp_path: Path) -> None:
    data = tmp_path / "rows.jsonl"
    data.write_text('{"instruction": "a", "output": "b"}\n')
    sources = [FileSource(path=data)]
    key = retrain_key(sources, "config", "base", "code")
    assert retrain_key(sources, "config", "base", "code") == key
    assert retrain_key(sources, "other config", "base", "code") != key
    assert retrain_key(sources, "config", "other base", "code") != key
    assert retrain_key(sources, "config", "base", "other code") != key
    data.write_text('{"instruction": "a", "output": "c"}\n')  # same path, new content
    assert retrain_key(sources, "config", "base", "code") != key
    generated = [PythonDocsSource(type="python_docs", max_examples=20)]
    assert retrain_key(generated, "config", "base", "code") != retrain_key(
        [PythonDocsSource(type="python_docs", max_examples=30)], "config", "base", "code")
