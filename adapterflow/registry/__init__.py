"""The MLflow Model Registry: registering adapters, the promotion gate, moving aliases, retrain-or-no-op. May import
the library packages below it: core, schemas, storage, data, models, tokenization, methods, tracking, evaluation.

The client's names are loaded on first use, so that the CLI can import the registry commands without MLflow.
"""

from typing import Any

__all__ = ["ChampionRef", "find_champion", "register_adapter", "set_aliases"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from adapterflow.registry import client

        return getattr(client, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
