"""Config loading: every problem at once, with field paths, values and hints; overrides; path resolution."""

from __future__ import annotations

from pathlib import Path

import pytest

from adapterflow.core.errors import ConfigError
from schemas import load_config
from schemas.loading import apply_override
from tests.conftest import ASSETS, write_config


def minimal(**extra: object) -> dict:
    return {"name": "demo", "data": {"sources": [{"path": str(ASSETS / "alpaca.jsonl")}]}, **extra}


def problems_of(path: Path, overrides: list[str] | None = None) -> dict[str, str]:
    with pytest.raises(ConfigError) as caught:
        load_config(path, overrides)
    return {problem.path: problem.message for problem in caught.value.problems}


def test_three_mistakes_are_reported_together_with_paths(tmp_path: Path) -> None:
    config = minimal(training={"learning_rate": -1, "batchsize": 4}, method={"type": "lora", "r": 0})
    problems = problems_of(write_config(tmp_path, config))
    assert set(problems) == {"training.learning_rate", "training.batchsize", "method.r"}
    assert "greater than 0" in problems["training.learning_rate"]
    assert problems["training.batchsize"] == "unknown field"


def test_unknown_field_suggests_the_closest_name(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(write_config(tmp_path, minimal(training={"learnin_rate": 0.1})))
    (problem,) = caught.value.problems
    assert problem.hint == "did you mean 'learning_rate'?"
    assert problem.value == 0.1


def test_unknown_method_type_lists_the_choices(tmp_path: Path) -> None:
    problems = problems_of(write_config(tmp_path, minimal(method={"type": "lorra"})))
    assert "'lora'" in problems["method"] and "'bottleneck'" in problems["method"]


def test_missing_data_file_is_reported_relative_to_the_config(tmp_path: Path) -> None:
    problems = problems_of(write_config(tmp_path, {"name": "x", "data": {"sources": [{"path": "nope.jsonl"}]}}))
    assert str(tmp_path / "nope.jsonl") in problems["data.sources[0].path"]


def test_relative_paths_resolve_against_the_config_folder(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "rows.jsonl").write_text("{}\n")
    config = load_config(write_config(tmp_path, {"name": "x", "data": {"sources": [{"path": "data/rows.jsonl"}]}}))
    assert config.data.sources[0].path == tmp_path / "data" / "rows.jsonl"


def test_invalid_yaml_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("name: x\ndata:\n  sources: [\n")
    problems = problems_of(path)
    assert any(where.startswith("line ") for where in problems)


def test_set_overrides_are_typed_and_validated(tmp_path: Path) -> None:
    path = write_config(tmp_path, minimal())
    config = load_config(path, ["training.max_steps=7", "training.precision=bf16", "method.target_modules=[q_proj, v_proj]"])
    assert config.training.max_steps == 7 and config.training.precision == "bf16"
    assert config.method.target_modules == ["q_proj", "v_proj"]
    problems = problems_of(path, ["training.max_steps=-3", "execution.device=tpu"])
    assert set(problems) == {"training.max_steps", "execution.device"}


def test_override_into_a_list_by_index() -> None:
    raw = {"data": {"sources": [{"path": "a.jsonl"}]}}
    assert apply_override(raw, "data.sources.0.format=chat") is None
    assert raw["data"]["sources"][0]["format"] == "chat"
    assert apply_override(raw, "data.sources.5.format=chat") is not None


def test_defaults_fill_every_section(tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path, minimal()))
    assert config.base_model.name == "smollm2-135m-instruct" and config.base_model.is_builtin
    assert config.method.type == "lora" and config.registered_model_name == "demo"


def test_invalid_name_and_base_model_are_explained(tmp_path: Path) -> None:
    problems = problems_of(write_config(tmp_path, minimal(name="bad name!", base_model="not a model")))
    assert "letters, digits" in problems["name"]
    assert "no such folder" in problems["base_model.name"]
