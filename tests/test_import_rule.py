"""What may import what (docs/architecture.md, "The rooms"): the top-level packages form a layered
graph without a cycle, so each room can be read, tested and replaced from the bottom up.

    console         -> investigations, toolserver, core   (the project shell and administration)
    investigations  -> toolserver, core                   (intake, runs, approvals, audit)
    toolserver      -> core                               (tool servers, adapters, the lab)
    core            -> nothing of ours                    (roles, input types, live messaging)

Every import statement counts, those inside functions too.
"""

import ast
import re
import tomllib
from pathlib import Path

import pytest

pytestmark = pytest.mark.any_mode  # its tests that use no database run once, in the embedded run

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("core", "console", "investigations", "toolserver")
ALLOWED = {
    "core": set(),
    "toolserver": {"core"},
    "investigations": {"core", "toolserver"},
    "console": {"core", "toolserver", "investigations"},
}


def imports_of(path: Path) -> set[str]:
    """The top-level packages of ours that a module imports."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        found |= {name.split(".")[0] for name in names} & set(PACKAGES)
    return found


def package_graph() -> dict[str, dict[str, list[str]]]:
    """package -> imported package -> the modules that import it."""
    graph: dict[str, dict[str, list[str]]] = {package: {} for package in PACKAGES}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            for imported in imports_of(path) - {package}:
                graph[package].setdefault(imported, []).append(str(path.relative_to(ROOT)))
    return graph


def cycle_in(edges: dict[str, set[str]]) -> list[str] | None:
    """A cycle of the graph as a path (first node repeated at the end), or None."""
    state: dict[str, str] = {}

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = "open"
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == "open":
                return [*path[path.index(nxt) :], nxt] if nxt in path else [node, nxt]
            if nxt not in state and (found := visit(nxt, [*path, nxt])):
                return found
        state[node] = "done"
        return None

    for start in sorted(edges):
        if start not in state and (found := visit(start, [start])):
            return found
    return None


@pytest.mark.parametrize("package", PACKAGES)
def test_each_package_imports_only_the_layers_below_it(package):
    graph = package_graph()
    forbidden = {imported: modules for imported, modules in graph[package].items() if imported not in ALLOWED[package]}
    assert forbidden == {}, f"{package} imports {sorted(forbidden)} from {forbidden}"


def test_the_import_graph_between_top_level_packages_has_no_cycle():
    edges = {package: set(imported) for package, imported in package_graph().items()}
    assert cycle_in(edges) is None


def test_the_cycle_check_finds_a_cycle_when_there_is_one():
    # The check itself can fail: what the graph would be if investigations imported console.
    edges = {"console": {"investigations"}, "investigations": {"toolserver", "console"}, "toolserver": set()}
    assert cycle_in(edges) == ["console", "investigations", "console"]


def test_a_function_level_import_counts(tmp_path):
    module = tmp_path / "late.py"
    module.write_text("def f():\n    from console.manage import administration\n    import investigations.runs.agent\n")
    assert imports_of(module) == {"console", "investigations"}


def test_the_image_and_the_package_carry_every_room():
    """A room left out of the Dockerfile's copies or the package's list fails at the image's first import
    (core was: `collectstatic` in the build raised ModuleNotFoundError)."""
    copied = set(re.findall(r"^COPY (\w+) \./\1$", (ROOT / "Dockerfile").read_text(), re.MULTILINE))
    packaged = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]["include"]
    assert set(PACKAGES) <= copied
    assert {f"{package}*" for package in PACKAGES} <= set(packaged)
