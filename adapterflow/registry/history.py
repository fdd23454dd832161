"""The champion history of a registered model: which versions held `champion`, in order, and rolling it back.

Kept as JSON in a registered-model tag, so rollback can go back more than one step. Pure functions; reading and
writing the tag is adapterflow.registry.client's job.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from adapterflow.core.errors import UsageError

TAG_CHAMPION_HISTORY = "adapterflow.champion_history"
MAX_CHARS = 5000  # MLflow's registered-model tag column (varchar(5000): Postgres enforces it)
MAX_REASON_CHARS = 300


@dataclass(frozen=True)
class Rollback:
    """What a rollback does: the version that becomes champion, the new previous champion, the history left."""

    from_version: str
    to_version: str
    previous: str | None
    history: list[dict[str, str]]


def parse_history(text: str | None, champion: str | None, previous: str | None) -> list[dict[str, str]]:
    """The history from its tag; a model promoted before the tag existed starts from its two aliases."""
    if text:
        return json.loads(text)
    return [{"version": version} for version in (previous, champion) if version is not None]


def with_champion(history: list[dict[str, str]], version: str, at: str, by: str, reason: str) -> list[dict[str, str]]:
    """The history after `version` became champion (unchanged when it already is)."""
    if history and history[-1]["version"] == version:
        return history
    return [*history, {"version": version, "at": at, "by": by, "reason": reason[:MAX_REASON_CHARS]}]


def plan_rollback(name: str, history: list[dict[str, str]], champion: str | None) -> Rollback:
    """Champion back to the version before it; the history loses its last entry, so the next rollback goes
    one step further back."""
    if champion is None:
        raise UsageError(f"{name} has no champion to roll back", hint="adapterflow models list " + name)
    if not history or history[-1]["version"] != champion:
        # champion was moved outside adapterflow: its history no longer describes it
        history = [*history, {"version": champion}]
    earlier = history[:-1]
    while earlier and earlier[-1]["version"] == champion:
        earlier = earlier[:-1]
    if not earlier:
        raise UsageError(f"{name}: version {champion} is the only champion on record, there is nothing to roll "
                         "back to", hint=f"promote another version: adapterflow promote {name} VERSION")
    previous = earlier[-2]["version"] if len(earlier) > 1 else None
    return Rollback(champion, earlier[-1]["version"], previous, earlier)


def dump_history(history: list[dict[str, str]]) -> str:
    """The history as the tag stores it; the oldest entries go when it would not fit."""
    while len(text := json.dumps(history, separators=(",", ":"))) > MAX_CHARS and len(history) > 1:
        history = history[1:]
    return text
