"""Server processes that outlive the command that starts them: spawn, record, wait for, stop."""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import psutil

from adapterflow.core.errors import AdapterflowError


@dataclass(frozen=True)
class Recorded:
    """A started process: its PID and start time (so a recycled PID is never mistaken for it)."""

    pid: int
    started: float


class PidFile:
    """`pids.json`: every component's process, written as each one starts so a partial start can be stopped."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def read(self) -> dict[str, Recorded]:
        if not self.path.exists():
            return {}
        return {name: Recorded(**entry) for name, entry in json.loads(self.path.read_text()).items()}

    def record(self, name: str, pid: int) -> Recorded:
        entry = Recorded(pid, psutil.Process(pid).create_time())
        self._write({**self.read(), name: entry})
        return entry

    def forget(self, name: str) -> None:
        entries = self.read()
        entries.pop(name, None)
        if entries:
            self._write(entries)
        else:
            self.path.unlink(missing_ok=True)

    def _write(self, entries: dict[str, Recorded]) -> None:
        temporary = self.path.with_suffix(".tmp")
        temporary.write_text(json.dumps({name: asdict(entry) for name, entry in entries.items()}, indent=2))
        temporary.replace(self.path)


def is_alive(entry: Recorded) -> bool:
    """The recorded process still runs (a zombie or a new process under the same PID does not count)."""
    try:
        process = psutil.Process(entry.pid)
        return abs(process.create_time() - entry.started) < 1 and process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def run_as(user: str | None) -> dict[str, Any]:
    """subprocess keywords that run a child as `user` with that user's group only (nothing for None)."""
    if user is None:
        return {}
    return {"user": user, "group": pwd.getpwnam(user).pw_gid, "extra_groups": []}


def spawn(
    argv: Sequence[str], env: Mapping[str, str], log: Path, *, cwd: Path | None = None, user: str | None = None
) -> subprocess.Popen[bytes]:
    """Start a process in its own session (stopping its group stops its children), output appended to `log`."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as output:
        return subprocess.Popen(
            list(argv), env=dict(env), cwd=cwd, stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT,
            start_new_session=True, **run_as(user),
        )


def _signal_group(pid: int, signum: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signum)


def _wait_gone(entries: Sequence[Recorded], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while any(is_alive(entry) for entry in entries) and time.monotonic() < deadline:
        time.sleep(0.1)


def stop_groups(entries: Sequence[Recorded], grace: float = 3.0) -> None:
    """SIGTERM the process groups together, SIGKILL what is left after `grace` s (weed and workers need it)."""
    # Only groups whose leader is ours and still runs: a stale PID file's numbers may belong to others by now.
    running = [entry for entry in entries if is_alive(entry)]
    for entry in running:
        _signal_group(entry.pid, signal.SIGTERM)
    _wait_gone(running, grace)
    for entry in running:
        _signal_group(entry.pid, signal.SIGKILL)  # also children that outlived their leader
    _wait_gone(running, 5.0)


def log_tail(log: Path, lines: int = 30) -> str:
    if not log.exists():
        return "(no log)"
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:]) or "(empty log)"


def wait_until(
    name: str, ready: Callable[[], bool], process: subprocess.Popen[bytes] | None, log: Path, timeout: float
) -> None:
    """Poll `ready` until it holds; fail early with the log's tail if the process exits or time runs out."""
    deadline = time.monotonic() + timeout
    while not ready():
        if process is not None and process.poll() is not None:
            raise start_failure(name, f"exited with code {process.returncode} while starting", log)
        if time.monotonic() > deadline:
            raise start_failure(name, f"was not ready after {timeout:.0f} s", log)
        time.sleep(0.5)


def start_failure(name: str, what: str, log: Path) -> AdapterflowError:
    return AdapterflowError(
        f"{name} {what}; the end of its log:\n{log_tail(log)}", hint=f"full log: {log}"
    )
