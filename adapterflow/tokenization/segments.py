"""Tokenizing conversations piece by piece: each template piece once, message contents in one batch.

A chat template's fixed pieces (headers, the default system prompt, end-of-turn markers) are the same for
every conversation with the same roles; tokenizing them once and only the contents per conversation saves
about a third of the tokenizer's work on short chat data, and the pieces and contents are then laid out
with a few numpy gathers instead of a Python loop per conversation.

This is exact only when the tokenizer never merges across a piece/content boundary: true for byte-level
BPE tokenizers after a newline or a special token (ChatML), false for SentencePiece (which marks the start
of every call) or for templates like "Assistant:" + content. So each role sequence is checked on its first
conversations against tokenizing the whole rendered text, and a mismatch sends it to the whole-text path
for good. torchtune tokenizes messages separately in the same way.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from adapterflow.data.text import flat_messages
from adapterflow.tokenization.templates import TemplateRenderer

IGNORE_INDEX = -100
CHECKED_CONVERSATIONS = 64  # per role sequence, compared with whole-text tokenization before trusting it
ROLE_CODES = {"system": 1, "user": 2, "assistant": 3}
MAX_MESSAGES = 30  # role sequences are packed base-4 into one int64 key


@dataclass
class Plan:
    """One role sequence: token ids and labels of the fixed pieces around its n contents (n + 1 pieces)."""

    roles: tuple[str, ...]
    piece_ids: list[np.ndarray]
    piece_labels: list[np.ndarray]
    append_eos: bool
    checked: int = 0


def _ranks(counts: np.ndarray) -> np.ndarray:
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
    return np.arange(int(counts.sum()), dtype=np.int64) - np.repeat(starts, counts)


class SegmentEncoder:
    """Tokenizes a column of canonical messages piece by piece, where that is known to be exact."""

    def __init__(self, tokenizer: Any, renderer: TemplateRenderer, system_prompt: str | None = None) -> None:
        self.backend = tokenizer.backend_tokenizer
        self.renderer = renderer
        self.system_prompt = system_prompt
        self.eos_id = tokenizer.eos_token_id
        self._plans: dict[int, Plan | None] = {}

    def encode_messages(self, messages: pa.ListArray) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """Flat ids, flat labels and per-conversation lengths; None when some conversation must take the
        whole-text path (unknown template behaviour, a mismatch found, or an unusual role sequence)."""
        offsets, structs = flat_messages(messages)
        counts = np.diff(offsets)
        if len(counts) == 0 or counts.max() > MAX_MESSAGES:
            return None
        codes = np.array([ROLE_CODES.get(role, 0) for role in structs.field("role").to_pylist()], np.int64)
        if (codes == 0).any():
            return None
        conversation = np.repeat(np.arange(len(counts)), counts)
        weights = np.int64(4) ** _ranks(counts)
        keys = np.bincount(conversation, weights=codes * weights, minlength=len(counts)).astype(np.int64) * 64 + counts
        contents = structs.field("content").to_pylist()
        plans = {}
        for key in np.unique(keys).tolist():
            first = int(np.argmax(keys == key))
            plan = self._plan_for(key, contents[offsets[first] : offsets[first + 1]], structs, offsets[first])
            if plan is None:
                return None
            plans[key] = plan
        if not self._check(plans, keys, offsets, contents):
            return None
        return self._assemble(plans, keys, offsets, counts, codes, contents)

    def _plan_for(self, key: int, contents: list[str], structs: pa.StructArray, start: int) -> Plan | None:
        if key not in self._plans:
            roles = tuple(structs.field("role")[start : start + len(contents)].to_pylist())
            self._plans[key] = self._plan(roles, contents)
        return self._plans[key]

    def _plan(self, roles: tuple[str, ...], contents: list[str]) -> Plan | None:
        """Token ids of the constant text around each content (an added system prompt is constant text)."""
        inserted = bool(self.system_prompt) and roles[0] != "system"
        rendered_roles = ("system", *roles) if inserted else roles
        pieces = self.renderer.pieces(rendered_roles, [self.system_prompt, *contents] if inserted else contents)
        if pieces is None:
            return None
        if inserted:
            pieces = [pieces[0] + self.system_prompt + pieces[1], *pieces[2:]]
        ids = [np.array(self.backend.encode(piece, add_special_tokens=False).ids, np.int32) for piece in pieces]
        labels = [np.full(len(piece), IGNORE_INDEX, np.int32) for piece in ids]
        for index, role in enumerate(roles):
            if role == "assistant" and not self.renderer.append_end_of_turn:
                # the end-of-turn marker opening the next piece is trained, so the model learns to stop
                following = pieces[index + 1]
                marker_end = self.renderer.marker_end(following)
                offsets = self.backend.encode(following, add_special_tokens=False).offsets
                trained = sum(1 for start, _ in offsets if start < marker_end)
                labels[index + 1][:trained] = ids[index + 1][:trained]
        return Plan(roles, ids, labels, self.renderer.append_end_of_turn)

    def _check(self, plans: dict[int, Plan], keys: np.ndarray, offsets: np.ndarray, contents: list[str]) -> bool:
        """Compare piece-wise with whole-text tokenization on each role sequence's first conversations."""
        for key, plan in plans.items():
            if plan.checked >= CHECKED_CONVERSATIONS:
                continue
            rows = np.flatnonzero(keys == key)[: CHECKED_CONVERSATIONS - plan.checked]
            sample = [contents[offsets[row] : offsets[row + 1]] for row in rows.tolist()]
            ids, _, lengths = self._assemble({key: plan}, np.full(len(rows), key), np.concatenate(
                [[0], np.cumsum([len(parts) for parts in sample])]), np.array([len(p) for p in sample]),
                np.array([ROLE_CODES[role] for _ in sample for role in plan.roles]), [c for parts in sample for c in parts])
            system = [self.system_prompt] if self.system_prompt and plan.roles[0] != "system" else []
            roles = ("system", *plan.roles) if system else plan.roles
            texts = [self.renderer.render(roles, [*system, *parts])[0] for parts in sample]
            whole = self.backend.encode_batch(texts, add_special_tokens=False)
            bounds = np.concatenate([[0], np.cumsum(lengths)])
            for index, encoding in enumerate(whole):
                if ids[bounds[index] : bounds[index + 1]].tolist() != encoding.ids:
                    self._plans[key] = None  # not exact for this tokenizer and template
                    return False
            plan.checked += len(rows)
        return True

    def _assemble(self, plans: dict[int, Plan], keys: np.ndarray, offsets: np.ndarray, counts: np.ndarray,
                  codes: np.ndarray, contents: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        encodings = self.backend.encode_batch(contents, add_special_tokens=False)
        sizes = np.fromiter((len(e) for e in encodings), np.int64, len(encodings))
        content_ids = np.fromiter(itertools.chain.from_iterable(e.ids for e in encodings), np.int32, int(sizes.sum()))
        trained = np.repeat(codes == ROLE_CODES["assistant"], sizes)
        content_labels = np.where(trained, content_ids, IGNORE_INDEX).astype(np.int32)

        # A pool of every plan's pieces (plus one EOS token) after the contents: every segment of every
        # conversation is then a (start, length) slice of one source array.
        pool_ids, pool_labels, piece_start, cursor = [], [], {}, len(content_ids)
        for key, plan in plans.items():
            for index, (ids, labels) in enumerate(zip(plan.piece_ids, plan.piece_labels, strict=True)):
                piece_start[(key, index)] = cursor
                pool_ids.append(ids)
                pool_labels.append(labels)
                cursor += len(ids)
        eos_start = cursor
        source_ids = np.concatenate([content_ids, *pool_ids, np.array([self.eos_id or 0], np.int32)])
        source_labels = np.concatenate([content_labels, *pool_labels, np.array([self.eos_id or 0], np.int32)])

        message_start = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
        seg_start, seg_length, seg_owner = [], [], []
        for key, plan in plans.items():
            rows = np.flatnonzero(keys == key)
            width = len(plan.roles)
            first_message = offsets[rows]
            columns_start, columns_length = [], []
            for index, role in enumerate(plan.roles):
                columns_start.append(np.full(len(rows), piece_start[(key, index)]))
                columns_length.append(np.full(len(rows), len(plan.piece_ids[index])))
                columns_start.append(message_start[first_message + index])
                columns_length.append(sizes[first_message + index])
                if role == "assistant" and plan.append_eos:
                    columns_start.append(np.full(len(rows), eos_start))
                    columns_length.append(np.ones(len(rows), np.int64))
            columns_start.append(np.full(len(rows), piece_start[(key, width)]))
            columns_length.append(np.full(len(rows), len(plan.piece_ids[width])))
            seg_start.append(np.stack(columns_start, axis=1))
            seg_length.append(np.stack(columns_length, axis=1))
            seg_owner.append(rows)
        # Order every conversation's segments by conversation, so the output follows the input rows.
        owner = np.concatenate([np.repeat(rows, s.shape[1]) for rows, s in zip(seg_owner, seg_start, strict=True)])
        starts = np.concatenate([s.ravel() for s in seg_start])
        lengths_flat = np.concatenate([s.ravel() for s in seg_length])
        order = np.argsort(owner, kind="stable")
        starts, lengths_flat, owner = starts[order], lengths_flat[order], owner[order]
        positions = np.repeat(starts, lengths_flat) + _ranks(lengths_flat)
        lengths = np.bincount(owner, weights=lengths_flat, minlength=len(counts)).astype(np.int64)
        return source_ids[positions], source_labels[positions], lengths
