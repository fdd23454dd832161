"""The MLflow Model Registry: registering adapters, finding the champion, moving aliases."""

from adapterflow.registry.client import ChampionRef, find_champion, register_adapter, set_aliases

__all__ = ["ChampionRef", "find_champion", "register_adapter", "set_aliases"]
