"""The package's import structure: no cycles, and recipe validation without torch."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "hssl_cli"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path, known: set[str], name: str) -> set[str]:
    """Modules of ``known`` that module ``name`` at ``path`` imports anywhere (functions
    included), except under ``if TYPE_CHECKING:``, which never runs."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    tree = ast.parse(path.read_text())
    type_only: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            type_only.update(id(child) for child in ast.walk(node))
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in type_only:
            continue
        if isinstance(node, ast.Import):
            candidates = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, *([node.module] if node.module else [])])
            candidates = [base, *(f"{base}.{alias.name}" for alias in node.names)]
        else:
            continue
        found.update(c for c in candidates if c in known and c != name)
    return found


def import_graph() -> dict[str, set[str]]:
    paths = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    return {name: imported_modules(path, set(paths), name) for name, path in paths.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a list of modules, or None (depth-first search)."""
    state: dict[str, int] = {}  # 1 on the stack, 2 done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == 1:
                return [*stack[stack.index(target) :], target]
            if target not in state and (cycle := visit(target)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_cycle_finder_finds_a_cycle_and_accepts_a_tree() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_function_level_imports_count(tmp_path: Path) -> None:
    source = tmp_path / "m.py"
    source.write_text("def f():\n    from hssl_cli import config\n")
    assert imported_modules(source, {"hssl_cli.config"}, "m") == {"hssl_cli.config"}


def test_no_import_cycle_inside_the_package() -> None:
    graph = import_graph()
    assert "hssl_cli.config" in graph["hssl_cli.recipe"]
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph) or [])


def modules_loaded_by(code: str) -> set[str]:
    result = subprocess.run(
        [sys.executable, "-c", f"import sys\n{code}\nprint(' '.join(sys.modules))"],
        capture_output=True,
        text=True,
        check=True,
        cwd=PACKAGE.parent,
    )
    return set(result.stdout.split())


@pytest.mark.parametrize(
    "code",
    [
        "from hssl_cli.recipe import load_recipe; load_recipe('recipes/cifar_rot4.yaml')",
        "from hssl_cli.recipe import load_recipe; load_recipe('recipes/cifar_esimclr.yaml')",
        "import hssl_cli.config, hssl_cli.models, hssl_cli.objectives, hssl_cli.data",
    ],
)
def test_validating_a_recipe_imports_neither_torch_nor_escnn(code: str) -> None:
    loaded = modules_loaded_by(code)
    assert "hssl_cli.config" in loaded
    assert not {"torch", "escnn"} & loaded


def test_the_python_api_imports_neither_torch_nor_escnn_until_called() -> None:
    loaded = modules_loaded_by("import hssl_cli")
    assert "hssl_cli" in loaded
    assert not {"torch", "escnn", "hssl_cli.api"} & loaded
    names = "load_recipe, pretrain, linear_probe, inspect_equivariance"
    loaded = modules_loaded_by(
        f"from hssl_cli import {names}\nload_recipe('recipes/digits_rot4.yaml', ['seed=3'])"
    )
    assert {"hssl_cli.api", "hssl_cli.config"} <= loaded
    assert not {"torch", "escnn"} & loaded


def test_the_package_names_its_api_and_refuses_other_names() -> None:
    import importlib.util

    import hssl_cli

    for name, module in hssl_cli.API.items():
        if importlib.util.find_spec(module) is None:
            continue  # a module not written yet
        assert callable(getattr(hssl_cli, name)), name
        assert name in dir(hssl_cli)
    with pytest.raises(AttributeError, match="no attribute 'pretrian'"):
        hssl_cli.pretrian  # noqa: B018
    from hssl_cli import config  # submodules still import as before

    recipe = hssl_cli.load_recipe(PACKAGE.parent / "recipes/digits_rot4.yaml")
    assert isinstance(recipe, config.Recipe)
