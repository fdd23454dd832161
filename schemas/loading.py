"""Load a YAML config, apply `--set` overrides and report every problem at once."""

from __future__ import annotations

import difflib
import types
import typing
from pathlib import Path
from typing import Any, Literal, Union

import yaml
from pydantic import BaseModel, Tag, ValidationError
from pydantic.fields import FieldInfo

from adapterflow.errors import ConfigError, ConfigProblem
from schemas.pipeline import PipelineConfig


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
        problems += [describe_error(error) for error in exc.errors()]
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


def validation_problems(error: ValidationError) -> str:
    """A pipeline config's validation errors on one line, each `path: message` as `adapterflow validate` words it."""
    return "; ".join(f"{problem.path}: {problem.message}" for problem in map(describe_error, error.errors()))


def describe_error(error: dict[str, Any]) -> ConfigProblem:
    """Turn one pydantic error into a problem with a readable field path and a hint."""
    path, parent, field = _walk(tuple(error["loc"]))
    kind = error["type"]
    message = error["msg"].removeprefix("Value error, ")
    value = error.get("input")
    hint = field.description if field is not None else None
    if kind == "extra_forbidden":
        name = path.rsplit(".", 1)[-1]
        allowed = sorted(parent.model_fields) if parent else []
        close = difflib.get_close_matches(name, allowed, n=1)
        message = "unknown field"
        hint = f"did you mean {close[0]!r}?" if close else f"allowed fields: {', '.join(allowed)}"
    elif kind == "missing":
        value = None
        message = "required field is missing"
    elif kind == "union_tag_not_found":
        message = "missing `type:`"
    elif kind == "union_tag_invalid":
        tags = error.get("ctx", {}).get("expected_tags", "")
        value = error.get("ctx", {}).get("tag")
        message = f"unknown type; expected one of {tags}"
        hint = None
    if isinstance(value, dict | list) and len(repr(value)) > 80:
        value = None  # a whole section is noise, the path says where
    return ConfigProblem(path or "<root>", message, value=value, hint=hint)


def _walk(loc: tuple[Any, ...]) -> tuple[str, type[BaseModel] | None, FieldInfo | None]:
    """Follow an error location through the config models; drop union tags from the path."""
    parts: list[str] = []
    model: type[BaseModel] | None = PipelineConfig
    parent: type[BaseModel] | None = None
    field: FieldInfo | None = None
    annotation: Any = None
    for item in loc:
        if item == "[key]":  # the problem is the mapping's key itself, already in the path
            continue
        if _dict_value(annotation) is not None:  # a mapping's key: `sweep.parameters['training.epochs']`
            parts.append(f"[{item!r}]")
            annotation = _dict_value(annotation)
            model = _single_model(annotation)
            continue
        if item in _tagged_members(annotation):  # a union chosen by a callable discriminator puts its tag here
            model, annotation = _tagged_members(annotation)[item], None
            continue
        if isinstance(item, int):
            parts.append(f"[{item}]")
            annotation = _list_item(annotation)
            model = _single_model(annotation)
            continue
        # Discriminated unions put the tag in the location (`method.lora.r`): skip it.
        members = _union_members(annotation) or ([model] if model is not None else [])
        tagged = _member_by_tag(members, item)
        if tagged is not None and (model is None or item not in model.model_fields):
            model = tagged
            continue
        if model is None or item not in model.model_fields:
            parent, field = model, None
            parts.append(f".{item}")
            model, annotation = None, None
            continue
        parent, field = model, model.model_fields[item]
        annotation = field.annotation
        parts.append(f".{item}")
        model = _single_model(annotation)
    return "".join(parts).lstrip("."), parent, field


def _strip(annotation: Any) -> Any:
    while typing.get_origin(annotation) is typing.Annotated:
        annotation = typing.get_args(annotation)[0]
    return annotation


def _union_members(annotation: Any) -> list[type[BaseModel]]:
    annotation = _strip(annotation)
    if typing.get_origin(annotation) in (Union, types.UnionType):
        return [arg for arg in typing.get_args(annotation) if isinstance(arg, type) and issubclass(arg, BaseModel)]
    return []


def _single_model(annotation: Any) -> type[BaseModel] | None:
    annotation = _strip(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    members = _union_members(annotation)
    non_none = [arg for arg in typing.get_args(annotation) if arg is not type(None)] if members else []
    return members[0] if len(members) == 1 and len(non_none) == 1 else None


def _dict_value(annotation: Any) -> Any:
    annotation = _strip(annotation)
    if typing.get_origin(annotation) is dict:
        return typing.get_args(annotation)[1]
    return None


def _tagged_members(annotation: Any) -> dict[str, type[BaseModel]]:
    """{tag: model} of a union whose members carry pydantic `Tag`s."""
    members = {}
    for member in typing.get_args(_strip(annotation)):
        if typing.get_origin(member) is typing.Annotated:
            model, *metadata = typing.get_args(member)
            members |= {tag.tag: model for tag in metadata if isinstance(tag, Tag)}
    return members


def _list_item(annotation: Any) -> Any:
    annotation = _strip(annotation)
    if typing.get_origin(annotation) is list:
        return typing.get_args(annotation)[0]
    return None


def _member_by_tag(members: list[type[BaseModel]], tag: Any) -> type[BaseModel] | None:
    for member in members:
        type_field = member.model_fields.get("type")
        if type_field is not None and typing.get_origin(type_field.annotation) is Literal:
            if tag in typing.get_args(type_field.annotation):
                return member
    return None
