"""What the benchmark scripts share: running one measurement in a fresh process."""

from __future__ import annotations

import multiprocessing
import queue as queues
from collections.abc import Callable
from typing import Any


def in_child(target: Callable[..., None], *args: Any) -> Any:
    """Run target(*args, queue) in a spawned process (its own peak memory, no state shared with the others)
    and return what it puts on the queue; a child that dies without answering raises instead of hanging."""
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    process = context.Process(target=target, args=(*args, results))
    process.start()
    while True:
        try:
            result = results.get(timeout=5)
            break
        except queues.Empty:
            if not process.is_alive():
                raise RuntimeError(f"{target.__name__} exited with code {process.exitcode} without a result") from None
    process.join()
    return result


def in_process(target: Callable[..., None], *args: Any) -> Any:
    """Run target(*args, queue) here and return what it puts on the queue: in_child's interface without a process
    (a dry run's tiny models, or several runs on one GPU whose peak statistics are reset between them)."""
    results: queues.SimpleQueue = queues.SimpleQueue()
    target(*args, results)
    return results.get_nowait()
