"""Broken configs for fuzzing (hypothesis strategies): wrong types, unknown keys, out-of-range values, wrong
nesting, misplaced keys and broken YAML, each applied to the demo config. Shared by
tests/schemas/test_fuzz_configs.py and the reliability benchmark."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import annotated_types
import yaml
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from schemas.problems import _single_model
from schemas.pipeline import PipelineConfig

DEMO = Path(__file__).resolve().parents[1] / "configs" / "smollm2_lora_cpu.yaml"
BASE: dict[str, Any] = yaml.safe_load(DEMO.read_text())


def bounded_fields(model: type[BaseModel], prefix: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Any]]:
    """(path, a value outside the field's bounds) for every numeric field with bounds, through nested sections."""
    found = []
    for name, field in model.model_fields.items():
        path = (*prefix, name)
        nested = _single_model(field.annotation)
        if nested is not None:
            found += bounded_fields(nested, path)
        for bound in field.metadata:
            if isinstance(bound, annotated_types.Ge | annotated_types.Gt):
                found.append((path, bound.ge - 1 if isinstance(bound, annotated_types.Ge) else bound.gt - 1))
            elif isinstance(bound, annotated_types.Le | annotated_types.Lt):
                found.append((path, (bound.le if isinstance(bound, annotated_types.Le) else bound.lt) + 10**6))
    return found


# sections whose fields the demo's own values select (method is a union by `type:`)
OUT_OF_RANGE = [(path, value) for path, value in bounded_fields(PipelineConfig)
                if path[0] not in ("method", "base_model") and path[0] in BASE]


def leaves(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Paths of every scalar in the raw config."""
    if isinstance(node, dict):
        return [path for key, value in node.items() for path in leaves(value, (*prefix, key))]
    if isinstance(node, list):
        return [path for index, value in enumerate(node) for path in leaves(value, (*prefix, index))]
    return [prefix]


def sections(node: dict) -> list[tuple[str, ...]]:
    return [(key,) for key, value in node.items() if isinstance(value, dict)]


def put(config: Any, path: tuple[Any, ...], value: Any) -> bool:
    """Set a value at a path; False (nothing set) where an earlier mutation left no container on the way."""
    node = config
    for part in path[:-1]:
        if isinstance(node, dict):
            node = node.setdefault(part, {})
        elif isinstance(node, list) and isinstance(part, int) and part < len(node):
            node = node[part]
        else:
            return False
    if isinstance(node, dict) or (isinstance(node, list) and isinstance(path[-1], int) and path[-1] < len(node)):
        node[path[-1]] = value
        return True
    return False


MUTATIONS = ["wrong_type", "unknown_key", "out_of_range", "wrong_nesting", "misplaced_key"]


@st.composite
def broken_config(draw) -> tuple[str, list[str]]:
    """A config text that must be refused, and what was done to it."""
    config = copy.deepcopy(BASE)
    done = []
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(MUTATIONS))
        if kind == "wrong_type":  # a scalar field gets a mapping or a list of mappings
            path = draw(st.sampled_from(leaves(config)))
            changed = put(config, path, draw(st.sampled_from([{"value": 1}, [{"a": None}], {"nested": [1, 2]}])))
        elif kind == "unknown_key":
            section = draw(st.sampled_from([(), *sections(config)]))
            name = "x_" + draw(st.text("abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=12))
            changed = put(config, (*section, name), draw(st.integers() | st.text(max_size=8) | st.booleans()))
        elif kind == "out_of_range":
            path, value = draw(st.sampled_from(OUT_OF_RANGE))
            changed = put(config, path, value)
        elif kind == "wrong_nesting" and sections(config):  # a section given as a scalar or a list
            section = draw(st.sampled_from(sections(config)))
            changed = put(config, section, draw(st.sampled_from([[config[section[0]]], "yes", 3])))
        else:  # a section's field written at the top level
            inner = [s for s in sections(config) if s != ("data",) and config[s[0]]]
            if not inner:
                continue
            section = draw(st.sampled_from(inner))
            key = draw(st.sampled_from(sorted(config[section[0]])))
            config[key] = config[section[0]][key]
            changed = True
        if changed:
            done.append(kind)
    text = yaml.safe_dump(config, sort_keys=False)
    if draw(st.booleans()) or not done:  # and break the YAML itself now and then
        position = draw(st.integers(0, len(text)))
        text = text[:position] + draw(st.sampled_from(["\n  : [", "\n\t- {", "{{", "\n- ]\n"])) + text[position:]
        done.append("broken_yaml")
    return text, done


def seeded_broken_configs(count: int, seed_value: int) -> list[tuple[str, list[str]]]:
    """`count` broken configs drawn from `broken_config` with a fixed seed: the same list on every run."""
    drawn: list[tuple[str, list[str]]] = []

    @seed(seed_value)
    @settings(max_examples=count, database=None, deadline=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(broken_config())
    def collect(broken: tuple[str, list[str]]) -> None:
        drawn.append(broken)

    collect()
    return drawn
