"""Builtin great-expectations suites, one per canonical task, declared in YAML."""

from __future__ import annotations

from pathlib import Path

SUITES_DIR = Path(__file__).parent


def builtin_suite_path(task: str) -> Path:
    return SUITES_DIR / f"{task}.yaml"
