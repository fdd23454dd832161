"""A real local stack for a test: up, the client environment, down, and proof that no process is left."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from adapterflow.stack import Stack, StackSettings
from adapterflow.stack.processes import is_alive


@contextmanager
def running_stack(root: Path, settings: StackSettings) -> Iterator[dict[str, str]]:
    """Start the stack under `root` and yield its client env; stop it on the way out, whatever happened."""
    stack = Stack(root, settings)
    recorded = {}
    try:
        env = stack.up()
        recorded = stack.pids.read()
        yield env
    finally:
        recorded = {**recorded, **stack.pids.read()}
        stack.down()
        left = {name: entry.pid for name, entry in recorded.items() if is_alive(entry)}
        assert not left, f"still running after down: {left}"
