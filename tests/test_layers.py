"""The shape of the lab package: sub-packages in layers (lab/__init__.py draws them), no import circle, no
upward import, short modules, and sub-package __init__ files that hold a docstring only.

Every import counts, also those inside functions and under `if TYPE_CHECKING:`: a circle that only a lazy
import keeps from failing is still a circle to a reader."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from .conftest import REPO
from .helpers import lab_module_files

LAB = REPO / "lab"
# The layers, lowest first: a module imports only from its own package and from packages of a lower layer.
LAYERS = [("core",), ("data", "model"), ("train", "eval"), ("report", "export", "chat"), ("domains", "leaderboard")]
RANK = {package: rank for rank, packages in enumerate(LAYERS) for package in packages}
MAX_MODULE_LINES = 300


def modules() -> list[Path]:
    return sorted(path for path in LAB.rglob("*.py") if path.name != "__init__.py")


def module_name(path: Path) -> str:
    return ".".join(path.relative_to(REPO).with_suffix("").parts)


def package_of(name: str) -> str:
    """The sub-package of lab a dotted module name belongs to (lab.data.builtin.code -> data)."""
    return name.split(".")[1]


def imported_modules(path: Path) -> set[str]:
    """The lab modules `path` imports, anywhere in its code, as dotted names."""
    return {name.removesuffix(".py").replace("/", ".") for name in lab_module_files(path, REPO)
            if not name.endswith("__init__.py")}


def _module_file(name: str) -> Path:
    return REPO.joinpath(*name.split(".")).with_suffix(".py")


GRAPH = {module_name(path): imported_modules(path) for path in modules()}


def test_every_module_sits_in_a_layered_sub_package():
    stray = [name for name in GRAPH if name.count(".") < 2 or package_of(name) not in RANK]
    assert not stray, f"modules outside the layered sub-packages {sorted(RANK)}: {stray}"


def test_no_upward_or_sideways_import():
    wrong = [f"{_module_file(name).relative_to(REPO)} imports {_module_file(target).relative_to(REPO)} "
             f"({package_of(name)} may not import {package_of(target)})"
             for name, targets in GRAPH.items() for target in sorted(targets)
             if package_of(target) != package_of(name) and RANK[package_of(target)] >= RANK[package_of(name)]]
    assert not wrong, "\n".join(wrong)


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle of `graph` as the list of modules around it, or None."""
    state: dict[str, str] = {}
    stack: list[str] = []

    def visit(name: str) -> list[str] | None:
        state[name] = "open"
        stack.append(name)
        for target in sorted(graph.get(name, ())):
            if state.get(target) == "open":
                return stack[stack.index(target):] + [target]
            if target not in state and (cycle := visit(target)):
                return cycle
        state[name] = "done"
        stack.pop()
        return None

    for name in sorted(graph):
        if name not in state and (cycle := visit(name)):
            return cycle
    return None


def test_no_import_circle():
    cycle = find_cycle(GRAPH)
    assert cycle is None, "import circle: " + " -> ".join(str(_module_file(n).relative_to(REPO)) for n in cycle)


def test_the_circle_finder_finds_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


@pytest.mark.parametrize("path", modules(), ids=lambda path: str(path.relative_to(LAB)))
def test_modules_stay_short(path: Path):
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_MODULE_LINES, f"{path.relative_to(REPO)} has {lines} lines (split it by concern)"


def test_package_init_files_hold_a_docstring_only():
    """dvc.yaml lists the modules a stage imports; an __init__ that ran code would be a dependency it misses."""
    for init in sorted(LAB.rglob("__init__.py")):
        body = ast.parse(init.read_text()).body
        assert len(body) == 1 and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant), \
            f"{init.relative_to(REPO)} must hold only its docstring"
        if init.parent != LAB:
            assert "Imports:" in body[0].value.value, f"{init.relative_to(REPO)}: say what the package may import"
