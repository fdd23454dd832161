"""Every shipped config loads through the schemas."""

from __future__ import annotations

from pathlib import Path

import pytest

from schemas import load_config

CONFIGS = sorted((Path(__file__).parent.parent / "configs").rglob("*.yaml"))


def test_there_are_configs() -> None:
    assert CONFIGS


@pytest.mark.parametrize("path", CONFIGS, ids=[path.name for path in CONFIGS])
def test_config_loads(path: Path) -> None:
    config = load_config(path)
    assert config.name
    first_line = path.read_text().splitlines()[0]
    assert first_line.startswith("#"), "each config starts with a comment saying what it is and how to run it"


def test_every_method_has_an_example_config() -> None:
    from schemas.method import METHOD_TYPES

    assert {load_config(path).method.type for path in CONFIGS} == set(METHOD_TYPES)
