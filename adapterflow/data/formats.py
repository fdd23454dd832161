"""Row formats users bring, and their conversion to the canonical rows the pipeline works on.

Canonical rows by task:
- sft: {"messages": [{"role": "system"|"user"|"assistant", "content": str}, ...]}
- pretrain: {"text": str}
- classification: {"text": str, "label": str}
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

FORMAT_TASK = {
    "alpaca": "sft",
    "chat": "sft",
    "prompt_completion": "sft",
    "text": "pretrain",
    "classification": "classification",
}
ROLE_ALIASES = {
    "system": "system",
    "user": "user",
    "human": "user",
    "assistant": "assistant",
    "gpt": "assistant",
    "model": "assistant",
}


class RowError(ValueError):
    """A row that can't be used; `category` groups reasons for counting, the message is for humans."""

    def __init__(self, category: str, message: str) -> None:
        super().__init__(message)
        self.category = category


def detect_format(row: dict[str, Any]) -> str | None:
    """Guess a row's format from its keys; None when nothing matches."""
    keys = set(row)
    if "messages" in keys or "conversations" in keys:
        return "chat"
    if {"instruction", "output"} <= keys:
        return "alpaca"
    if {"prompt", "completion"} <= keys:
        return "prompt_completion"
    if {"text", "label"} <= keys:
        return "classification"
    if "text" in keys:
        return "text"
    return None


def _string(row: dict[str, Any], key: str, required: bool = True) -> str:
    if key not in row or row[key] is None:
        if required:
            raise RowError("missing_field", f"missing field {key!r}")
        return ""
    value = row[key]
    if not isinstance(value, str):
        raise RowError("wrong_type", f"field {key!r} must be a string, got {type(value).__name__}")
    return value


def _alpaca(row: dict[str, Any]) -> dict[str, Any]:
    instruction = _string(row, "instruction")
    extra_input = _string(row, "input", required=False)
    output = _string(row, "output")
    system = _string(row, "system", required=False)
    prompt = f"{instruction}\n\n{extra_input}" if extra_input.strip() else instruction
    messages = [{"role": "system", "content": system}] if system.strip() else []
    messages += [{"role": "user", "content": prompt}, {"role": "assistant", "content": output}]
    return {"messages": messages}


def _prompt_completion(row: dict[str, Any]) -> dict[str, Any]:
    prompt = _string(row, "prompt")
    completion = _string(row, "completion")
    return {"messages": [{"role": "user", "content": prompt}, {"role": "assistant", "content": completion}]}


def _message(item: Any, index: int) -> dict[str, str]:
    if not isinstance(item, dict):
        raise RowError("invalid_message", f"message {index} must be an object, got {type(item).__name__}")
    role = item.get("role", item.get("from"))
    content = item.get("content", item.get("value"))
    if not isinstance(role, str) or role.lower() not in ROLE_ALIASES:
        raise RowError("invalid_message", f"message {index} has unknown role {role!r}: use system, user or assistant")
    if not isinstance(content, str):
        raise RowError("invalid_message", f"message {index} content must be a string, got {type(content).__name__}")
    return {"role": ROLE_ALIASES[role.lower()], "content": content}


def _chat(row: dict[str, Any]) -> dict[str, Any]:
    key = "messages" if "messages" in row else "conversations"
    items = row.get(key)
    if not isinstance(items, list) or not items:
        raise RowError("invalid_message", f"field {key!r} must be a non-empty list of messages")
    messages = [_message(item, index) for index, item in enumerate(items)]
    roles = [message["role"] for message in messages]
    if "system" in roles[1:]:
        raise RowError("invalid_message", "a system message may only come first")
    if "user" not in roles or roles[-1] != "assistant":
        raise RowError("invalid_message", "a conversation needs a user message and must end with an assistant message")
    return {"messages": messages}


def _text(row: dict[str, Any]) -> dict[str, Any]:
    return {"text": _string(row, "text")}


def _classification(row: dict[str, Any]) -> dict[str, Any]:
    text = _string(row, "text")
    label = row.get("label")
    if isinstance(label, bool) or not isinstance(label, str | int):
        raise RowError("wrong_type", f"field 'label' must be a string or an integer, got {type(label).__name__}")
    return {"text": text, "label": str(label)}


CONVERTERS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "alpaca": _alpaca,
    "chat": _chat,
    "prompt_completion": _prompt_completion,
    "text": _text,
    "classification": _classification,
}


def to_canonical(row: Any, fmt: str) -> dict[str, Any]:
    """Convert one parsed row; raise RowError saying what is wrong with it."""
    if not isinstance(row, dict):
        raise RowError("not_an_object", f"a row must be a JSON object, got {type(row).__name__}")
    return CONVERTERS[fmt](row)
