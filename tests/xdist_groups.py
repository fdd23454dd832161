"""Pytest plugin: under pytest-xdist (`--dist loadgroup`, as `make test` runs) the tests marked `servers` share
one worker, so the one real server stack they share starts once per test run, not once per worker."""

from __future__ import annotations

import pytest


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook reads the groups
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.get_closest_marker("servers"):
            item.add_marker(pytest.mark.xdist_group("servers"))
