"""Builtin great-expectations suites, one per input format, declared in YAML."""

from __future__ import annotations

from pathlib import Path

SUITES_DIR = Path(__file__).parent


def builtin_suite_path(fmt: str) -> Path:
    return SUITES_DIR / f"{fmt}.yaml"
