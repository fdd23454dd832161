"""The package's floors (docs/architecture.md): no import goes up or sideways a floor, no import circle."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TOP_PACKAGES = ("adapterflow", "schemas", "tasks", "flows")
FLOOR_LINE = re.compile(r"^(\d+)\. (`[\w.]+`(?:, `[\w.]+`)*)")


def floors() -> dict[str, int]:
    """{package: floor} from the numbered list under 'Floors' in docs/architecture.md."""
    text = (ROOT / "docs" / "architecture.md").read_text()
    section = text.split("## Floors", 1)[1].split("\n## ", 1)[0]
    found = {}
    for line in section.splitlines():
        if match := FLOOR_LINE.match(line):
            found |= {name.strip("`"): int(match.group(1)) for name in match.group(2).split(", ")}
    return found


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(path): path for top in TOP_PACKAGES for path in (ROOT / top).rglob("*.py")}


def imports(path: Path, known: dict[str, Path]) -> set[str]:
    """Every module of ours that `path` imports, at the top, inside functions or under TYPE_CHECKING."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.split(".")[0] in TOP_PACKAGES:
                found |= {f"{node.module}.{alias.name}" if f"{node.module}.{alias.name}" in known else node.module
                          for alias in node.names}
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.split(".")[0] in TOP_PACKAGES}
    return found


def package_of(module: str) -> str:
    """`adapterflow.<package>` for the library, the top-level name for schemas, tasks and flows."""
    parts = module.split(".")
    return ".".join(parts[:2]) if parts[0] == "adapterflow" and len(parts) > 1 else parts[0]


GRAPH = {name: imports(path, modules()) for name, path in modules().items()}


def upward_imports(graph: dict[str, set[str]], floor_of: dict[str, int]) -> list[str]:
    wrong = []
    for source, targets in graph.items():
        for target in targets:
            here, there = package_of(source), package_of(target)
            if here == there or target == "adapterflow":  # the root holds only __version__
                continue
            if floor_of[there] >= floor_of[here]:
                wrong.append(f"{source} (floor {floor_of[here]}) imports {target} (floor {floor_of[there]})")
    return sorted(wrong)


def import_circles(graph: dict[str, set[str]]) -> list[list[str]]:
    circles, state = [], {}

    def visit(module: str, path: list[str]) -> None:
        state[module] = "open"
        for target in sorted(graph.get(module, ())):
            if state.get(target) == "open":
                circles.append(path[path.index(target):] + [target])
            elif target not in state:
                visit(target, [*path, target])
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    return circles


def test_every_package_has_a_floor() -> None:
    missing = {package_of(name) for name in GRAPH} - set(floors()) - {"adapterflow"}
    assert not missing, f"packages missing from the floors in docs/architecture.md: {sorted(missing)}"


def test_no_import_goes_up_or_sideways_a_floor() -> None:
    assert upward_imports(GRAPH, floors()) == []


def test_no_import_circles() -> None:
    assert import_circles(GRAPH) == []


def test_the_package_root_holds_only_packages() -> None:
    assert sorted(path.name for path in (ROOT / "adapterflow").glob("*.py")) == ["__init__.py"]


@pytest.mark.parametrize("package", sorted(path.parent.name for path in (ROOT / "adapterflow").glob("*/__init__.py")))
def test_every_package_says_what_it_holds(package: str) -> None:
    docstring = ast.get_docstring(ast.parse((ROOT / "adapterflow" / package / "__init__.py").read_text()))
    assert docstring, f"adapterflow/{package}/__init__.py has no docstring"


def test_the_checks_catch_an_upward_import_and_a_circle() -> None:
    floor_of = {"adapterflow.core": 1, "tasks": 2}
    assert upward_imports({"adapterflow.core.x": {"tasks.y"}}, floor_of) == [
        "adapterflow.core.x (floor 1) imports tasks.y (floor 2)"]
    assert import_circles({"a": {"b"}, "b": {"a"}}) == [["a", "b", "a"]]
