"""Local folders that count as complete once their marker exists, flushed in that order: every other file, then
the marker, then the directory entries that name them. A crash or power loss never leaves a marker beside files
that did not reach the disk, whether the folder is renamed into place (`install`) or marked where it was written
(`mark_complete`)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path


def fsync_path(path: Path) -> None:
    """Flush a file's content, or a directory's entries, to disk."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def fsync_folder(folder: Path, marker: str | None = None) -> None:
    """Flush every file under `folder` (its `marker` after all the others), then every directory from the deepest
    up to `folder` itself."""
    entries = sorted(folder.rglob("*"), key=lambda path: path.relative_to(folder).as_posix() == marker)
    for path in entries:
        if path.is_file():
            fsync_path(path)
    for directory in sorted((path for path in entries if path.is_dir()), key=lambda path: -len(path.parts)):
        fsync_path(directory)
    fsync_path(folder)


def write_durably(path: Path, payload: bytes) -> None:
    """Replace `path` atomically with `payload`: written aside, flushed, renamed, and the rename flushed."""
    staged = path.with_name(f".{path.name}.tmp")
    with staged.open("wb") as handle:
        handle.write(payload)
        handle.flush()
        os.fsync(handle.fileno())
    staged.replace(path)
    fsync_path(path.parent)


def mark_complete(folder: Path, marker: str, payload: bytes) -> None:
    """Add `marker` to a folder written in place, once every other file in it is on disk."""
    fsync_folder(folder)
    write_durably(folder / marker, payload)


def install(staging: Path, target: Path, marker: str | None) -> Path:
    """Flush a finished staging folder and rename it to `target`; if another process got there first, keep theirs
    (unless theirs lacks its `marker`: the complete copy wins)."""
    fsync_folder(staging, marker)
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        staging.replace(target)
    except OSError:  # the target exists (a concurrent publish or fetch of the same content)
        if marker is not None and not (target / marker).is_file():
            shutil.rmtree(target, ignore_errors=True)
            staging.replace(target)
        else:
            shutil.rmtree(staging, ignore_errors=True)
    fsync_path(target.parent)
    return target
