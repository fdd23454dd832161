"""Load a YAML config, apply `--set` overrides and report every problem at once."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from adapterflow.core.errors import ConfigError, ConfigProblem
from schemas.pipeline import PipelineConfig
from schemas.problems import describe_error


def load_config(path: str | Path, overrides: list[str] | None = None) -> PipelineConfig:
    """Read, override and validate a config; raise one ConfigError listing every problem."""
    path = Path(path)
    source = str(path)
    if not path.is_file():
        raise ConfigError(source, [ConfigProblem("<file>", "config file not found", hint="check the path")])
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "<yaml>"
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(source, [ConfigProblem(where, f"invalid YAML: {problem}", hint="fix the YAML syntax")]) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(source, [ConfigProblem("<file>", f"not UTF-8 text: {exc.reason}")]) from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(source, [ConfigProblem("<root>", "a config must be a mapping of sections", value=raw)])
    problems: list[ConfigProblem] = []
    for override in overrides or []:
        problem = apply_override(raw, override)
        if problem:
            problems.append(problem)
    try:
        config = PipelineConfig.model_validate(raw, context={"config_dir": path.parent.resolve()})
    except ValidationError as exc:
        problems += [describe_error(error, PipelineConfig) for error in exc.errors()]
        config = None
    if problems:
        raise ConfigError(source, problems)
    return config


def parse_overrides(pairs: list[str]) -> list[str]:
    """Check the shape of `--set key=value` arguments (values are parsed later as YAML)."""
    bad = [pair for pair in pairs if "=" not in pair or not pair.split("=", 1)[0].strip()]
    if bad:
        problems = [ConfigProblem("--set", "expected dotted.key=value", value=pair) for pair in bad]
        raise ConfigError("command line", problems)
    return pairs


def apply_override(raw: dict[str, Any], override: str) -> ConfigProblem | None:
    """Set `dotted.key=value` in the raw config; the value is parsed as YAML (`3`, `true`, `[a, b]`)."""
    key, _, text = override.partition("=")
    parts = key.strip().split(".")
    try:
        value = yaml.safe_load(text) if text.strip() else ""
    except yaml.YAMLError:
        value = text
    node: Any = raw
    for depth, part in enumerate(parts[:-1]):
        child = _child(node, part)
        if child is None:
            child = {}
            if not _set_child(node, part, child):
                return ConfigProblem(".".join(parts[: depth + 1]), "cannot descend here", value=node, hint=f"--set {override}")
        node = child
    if not _set_child(node, parts[-1], value):
        return ConfigProblem(key, "cannot set this key", hint="dotted keys address mappings; list items by index")
    return None


def _child(node: Any, part: str) -> Any:
    if isinstance(node, dict):
        return node.get(part)
    if isinstance(node, list) and part.isdigit() and int(part) < len(node):
        return node[int(part)]
    return None


def _set_child(node: Any, part: str, value: Any) -> bool:
    if isinstance(node, dict):
        node[part] = value
        return True
    if isinstance(node, list) and part.isdigit() and int(part) < len(node):
        node[int(part)] = value
        return True
    return False
