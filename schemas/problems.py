"""How a pydantic error about a config is worded: the field's dotted path (union tags dropped), the value, a hint.

Apart from the loader, so that config models (the sweep's bounds check) can word errors without importing it."""

from __future__ import annotations

import difflib
import types
import typing
from typing import Any, Literal, Union

from pydantic import BaseModel, Tag, ValidationError
from pydantic.fields import FieldInfo

from adapterflow.core.errors import ConfigProblem


def validation_problems(error: ValidationError, root: type[BaseModel]) -> str:
    """A config's validation errors on one line, each `path: message` as `adapterflow validate` words it."""
    return "; ".join(f"{problem.path}: {problem.message}" for problem in
                     (describe_error(item, root) for item in error.errors()))


def describe_error(error: dict[str, Any], root: type[BaseModel]) -> ConfigProblem:
    """Turn one pydantic error about a `root` model into a problem with a readable field path and a hint."""
    path, parent, field = _walk(tuple(error["loc"]), root)
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


def _walk(loc: tuple[Any, ...], root: type[BaseModel]) -> tuple[str, type[BaseModel] | None, FieldInfo | None]:
    """Follow an error location through the config models from `root`; drop union tags from the path."""
    parts: list[str] = []
    model: type[BaseModel] | None = root
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
