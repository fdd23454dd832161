"""Column-wise text operations on Arrow arrays: normalising, folding, and prompt/response views of rows.

Working on whole record batches in Arrow's C++ kernels keeps the data stage fast; nothing here loops
over rows in Python.
"""

from __future__ import annotations

import re
import unicodedata

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

TRAILING_SPACE = re.compile(r"[ \t]+\n")
EXTRA_BLANK_LINES = re.compile(r"\n{3,}")


def normalize_text(text: str, unicode_form: str) -> str:
    """Canonical Unicode, Unix newlines, no trailing spaces, at most one blank line in a row, trimmed.

    Indentation inside lines is kept: code in prompts and answers depends on it. Each rewrite runs only
    when its trigger is present (most texts need none), which beats Arrow's regex kernels severalfold.
    """
    if unicode_form != "none" and not text.isascii():  # ASCII text is already in every normal form
        text = unicodedata.normalize(unicode_form, text)
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    if " \n" in text or "\t\n" in text:
        text = TRAILING_SPACE.sub("\n", text)
    if "\n\n\n" in text:
        text = EXTRA_BLANK_LINES.sub("\n\n", text)
    return text.strip()


def normalize_strings(values: pa.Array, unicode_form: str) -> pa.Array:
    """`normalize_text` over an Arrow string array."""
    return pa.array([normalize_text(text, unicode_form) for text in values.to_pylist()], pa.string())


def fold_strings(values: pa.Array) -> pa.Array:
    """Case- and whitespace-insensitive form used to compare texts."""
    return pc.utf8_trim_whitespace(pc.replace_substring_regex(pc.utf8_lower(values), r"\s+", " "))


def flat_messages(lists: pa.ListArray) -> tuple[np.ndarray, pa.Array]:
    """Offsets starting at 0 and the values they index, for a possibly sliced list array."""
    offsets = lists.offsets.to_numpy()
    values = lists.values.slice(offsets[0], offsets[-1] - offsets[0])
    return offsets - offsets[0], values


def map_message_contents(messages: pa.ListArray, transform) -> pa.ListArray:
    """Apply `transform` (Arrow strings -> Arrow strings) to every message's content."""
    offsets, structs = flat_messages(messages)
    contents = transform(structs.field("content"))
    rebuilt = pa.StructArray.from_arrays([structs.field("role"), contents], names=["role", "content"])
    return pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), rebuilt)


def join_messages(messages: pa.ListArray, assistant: bool, separator: str = "\n") -> pa.Array:
    """Per row, the contents of the assistant messages (or of all the others) joined by `separator`."""
    offsets, structs = flat_messages(messages)
    rows = np.repeat(np.arange(len(messages)), np.diff(offsets))
    keep = pc.equal(structs.field("role"), "assistant")
    if not assistant:
        keep = pc.invert(keep)
    keep_np = keep.to_numpy(zero_copy_only=False)
    kept_contents = pc.filter(structs.field("content"), keep)
    counts = np.bincount(rows[keep_np], minlength=len(messages))
    new_offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int32)
    return pc.binary_join(pa.ListArray.from_arrays(pa.array(new_offsets), kept_contents), separator)


def prompts_and_responses(batch: pa.RecordBatch) -> tuple[pa.Array, pa.Array]:
    """The text each row conditions on and the text it teaches, for any canonical task."""
    names = batch.schema.names
    if "messages" in names:
        messages = batch.column("messages")
        return join_messages(messages, assistant=False), join_messages(messages, assistant=True)
    if "label" in names:
        return batch.column("text"), batch.column("label")
    empty = pa.array([""] * batch.num_rows, pa.string())
    return empty, batch.column("text")  # continued pre-training learns the whole text


def comparison_parts(batch: pa.RecordBatch, view: str) -> list[pa.Array]:
    """What rows are compared by: "document", prompt and response (duplicates); "prompt", only what the
    model is asked (leakage), which for raw text is the text itself."""
    prompts, responses = prompts_and_responses(batch)
    if view == "prompt":
        return [responses if "messages" not in batch.schema.names and "label" not in batch.schema.names else prompts]
    return [prompts, responses]
