"""Row formats and their conversion to canonical rows."""

from __future__ import annotations

import pytest

from adapterflow.data.formats import RowError, detect_format, to_canonical


@pytest.mark.parametrize(
    ("row", "expected"),
    [
        ({"instruction": "a", "output": "b"}, "alpaca"),
        ({"messages": []}, "chat"),
        ({"conversations": []}, "chat"),
        ({"prompt": "a", "completion": "b"}, "prompt_completion"),
        ({"text": "a", "label": "x"}, "classification"),
        ({"text": "a"}, "text"),
        ({"question": "a"}, None),
    ],
)
def test_detect_format(row: dict, expected: str | None) -> None:
    assert detect_format(row) == expected


def test_alpaca_with_input_and_system() -> None:
    row = {"instruction": "Sum", "input": "1 2", "output": "3", "system": "Be exact."}
    assert to_canonical(row, "alpaca")["messages"] == [
        {"role": "system", "content": "Be exact."},
        {"role": "user", "content": "Sum\n\n1 2"},
        {"role": "assistant", "content": "3"},
    ]


def test_sharegpt_roles_are_mapped() -> None:
    row = {"conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "hello"}]}
    assert [m["role"] for m in to_canonical(row, "chat")["messages"]] == ["user", "assistant"]


def test_prompt_completion_and_classification() -> None:
    assert to_canonical({"prompt": "p", "completion": "c"}, "prompt_completion")["messages"][1]["content"] == "c"
    assert to_canonical({"text": "t", "label": 3}, "classification") == {"text": "t", "label": "3"}


@pytest.mark.parametrize(
    ("row", "fmt", "category", "words"),
    [
        ({"instruction": "a"}, "alpaca", "missing_field", "missing field 'output'"),
        ({"instruction": 1, "output": "b"}, "alpaca", "wrong_type", "must be a string, got int"),
        ({"messages": [{"role": "wizard", "content": "x"}]}, "chat", "invalid_message", "unknown role"),
        ({"messages": [{"role": "user", "content": "x"}]}, "chat", "invalid_message", "end with an assistant"),
        ({"messages": "hello"}, "chat", "invalid_message", "non-empty list"),
        ({"text": "a", "label": [1]}, "classification", "wrong_type", "label"),
        (["a"], "alpaca", "not_an_object", "JSON object"),
    ],
)
def test_bad_rows_say_why(row: object, fmt: str, category: str, words: str) -> None:
    with pytest.raises(RowError) as caught:
        to_canonical(row, fmt)
    assert caught.value.category == category and words in str(caught.value)
