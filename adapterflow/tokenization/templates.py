"""Chat-template rendering that knows where each message's content lands in the rendered text.

Most chat templates paste message contents between fixed strings that depend only on the roles (ChatML:
`<|im_start|>user\\n` + content + `<|im_end|>\\n`). Such a template is rendered once per role sequence with
placeholder contents, and each conversation is then filled in by string joins: no Jinja per conversation,
and the content spans come for free. A template is used this way only if static analysis shows that contents
are only ever printed (never tested, filtered or sliced), and each skeleton is checked against a real render
the first time it is used; every other template is rendered with Jinja and contents are located by search.
"""

from __future__ import annotations

from typing import Any

from jinja2 import nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment

Spans = list[tuple[int, int]]
_PROBE_USER = "\u2063adapterflow-probe-user\u2063"
_PROBE_ASSISTANT = "\u2063adapterflow-probe-assistant\u2063"


def _placeholder(index: int) -> str:
    return f"\u2063\u2064{index}\u2064\u2063"


def contents_only_printed(template: str) -> bool:
    """True when every use of a message's `content` is printed as is, alone or joined with `+` / `~`."""
    try:
        tree = ImmutableSandboxedEnvironment().parse(template)
    except Exception:  # noqa: BLE001 - a template Jinja can't parse gets the slow, safe path
        return False

    def is_content(node: nodes.Node) -> bool:
        return (isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const) and node.arg.value == "content") or (
            isinstance(node, nodes.Getattr) and node.attr == "content")

    def safe(node: nodes.Node, printed: bool) -> bool:
        if is_content(node):
            return printed
        for child in node.iter_child_nodes():
            if isinstance(node, nodes.Output):
                child_printed = True
            elif isinstance(node, nodes.Add | nodes.Concat):
                child_printed = printed
            else:
                child_printed = False
            if not safe(child, child_printed):
                return False
        return True

    return safe(tree, printed=False)


class TemplateRenderer:
    """Renders conversations and returns the character spans of assistant contents (plus end-of-turn)."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        self.end_of_turn, self.append_end_of_turn = self._end_of_turn()
        self.fast = contents_only_printed(tokenizer.chat_template)
        self._skeletons: dict[tuple[str, ...], list[str] | None] = {}

    def _end_of_turn(self) -> tuple[str, bool]:
        """The text the template puts after an assistant message, and whether it must be added by us.

        ChatML gives `<|im_end|>`, Llama 3 `<|eot_id|>`. A template that closes no turn gets the EOS token
        appended, otherwise a fine-tuned model never learns to stop talking.
        """
        probe = [{"role": "user", "content": _PROBE_USER}, {"role": "assistant", "content": _PROBE_ASSISTANT}]
        text = self.tokenizer.apply_chat_template(probe, tokenize=False)
        suffix = text[text.index(_PROBE_ASSISTANT) + len(_PROBE_ASSISTANT) :].strip()
        if suffix and len(suffix) <= 32:
            return suffix, False
        return self.tokenizer.eos_token or "", True

    def pieces(self, roles: tuple[str, ...], contents: list[str]) -> list[str] | None:
        """The fixed text around each content for these roles (None: this template needs Jinja per render)."""
        if not self.fast:
            return None
        if roles not in self._skeletons:
            self._skeletons[roles] = self._skeleton(roles, contents)
        return self._skeletons[roles]

    def render(self, roles: tuple[str, ...], contents: list[str]) -> tuple[str, Spans] | None:
        """The rendered text and the trained spans; None when contents can't be located (template mismatch)."""
        pieces = self.pieces(roles, contents)
        if pieces is not None:
            return self._fill(pieces, roles, contents)
        messages = [{"role": role, "content": content} for role, content in zip(roles, contents, strict=True)]
        return self._locate(self.tokenizer.apply_chat_template(messages, tokenize=False), messages)

    def _skeleton(self, roles: tuple[str, ...], contents: list[str]) -> list[str] | None:
        """Fixed text around each content for these roles, if a real render confirms it."""
        placeholders = [{"role": role, "content": _placeholder(i)} for i, role in enumerate(roles)]
        text = self.tokenizer.apply_chat_template(placeholders, tokenize=False)
        pieces, rest = [], text
        for index in range(len(roles)):
            before, found, rest = rest.partition(_placeholder(index))
            if not found or any(_placeholder(i) in before for i in range(len(roles))):
                return None
            pieces.append(before)
        pieces.append(rest)
        real = [{"role": role, "content": content} for role, content in zip(roles, contents, strict=True)]
        filled = "".join(piece + content for piece, content in zip(pieces, contents, strict=False)) + pieces[-1]
        return pieces if filled == self.tokenizer.apply_chat_template(real, tokenize=False) else None

    def _fill(self, pieces: list[str], roles: tuple[str, ...], contents: list[str]) -> tuple[str, Spans]:
        parts, spans, position = [], [], 0
        end_of_turn = self.end_of_turn
        for index, (role, content) in enumerate(zip(roles, contents, strict=True)):
            position += len(pieces[index])
            parts += (pieces[index], content)
            start, position = position, position + len(content)
            if role == "assistant":
                if self.append_end_of_turn:
                    parts.append(end_of_turn)
                    position += len(end_of_turn)
                    spans.append((start, position))
                else:
                    spans.append((start, position + self.marker_end(pieces[index + 1])))
        parts.append(pieces[-1])
        return "".join(parts), spans

    def marker_end(self, following: str) -> int:
        """Characters from the end of an assistant content to the end of its end-of-turn marker (0: none)."""
        marker = following.find(self.end_of_turn)
        if marker < 0 or following[:marker].strip():
            return 0
        return marker + len(self.end_of_turn)

    def _locate(self, text: str, messages: list[dict[str, str]]) -> tuple[str, Spans] | None:
        """Find each content in a Jinja-rendered text, in order (templates may trim contents)."""
        spans: Spans = []
        position = 0
        for message in messages:
            content = message["content"]
            start = text.find(content, position)
            if start < 0:
                content = content.strip()
                start = text.find(content, position)
                if start < 0:
                    return None
            end = start + len(content)
            if message["role"] == "assistant":
                if self.append_end_of_turn:
                    text = text[:end] + self.end_of_turn + text[end:]
                    end += len(self.end_of_turn)
                else:
                    following = text[end:]
                    stripped = following.lstrip()
                    if stripped.startswith(self.end_of_turn):
                        end += len(following) - len(stripped) + len(self.end_of_turn)
                spans.append((start, end))
            position = end
        return text, spans
