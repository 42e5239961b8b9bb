"""The package's shape: small modules and functions, one curvature protocol, no import cycles.

Limits (docstrings not counted): a module ≤ 450 lines, a class ≤ 350, a function ≤ 60. Only the
curvature modules may compare a structure name ("full", "kron", "diag"); everyone else goes
through the :class:`~skbnn._curvature_base.Curvature` protocol.
"""

import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "skbnn"
MODULES = sorted(PACKAGE.glob("*.py"))
LIMITS = {"module": 450, ast.ClassDef: 350, ast.FunctionDef: 60}
CURVATURE_MODULES = {"_curvature.py", "_curvature_base.py", "_kron.py"}
STRUCTURES = {"full", "kron", "diag"}


def docstring_lines(tree):
    lines = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (
            isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef)
            and body
            and isinstance(body[0], ast.Expr)
            and isinstance(body[0].value, ast.Constant)
            and isinstance(body[0].value.value, str)
        ):
            lines.update(range(body[0].lineno, body[0].end_lineno + 1))
    return lines


def code_lines(node, docs):
    return len(set(range(node.lineno, node.end_lineno + 1)) - docs)


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.name)
def test_modules_classes_and_functions_stay_small(path):
    source = path.read_text()
    tree = ast.parse(source)
    docs = docstring_lines(tree)
    n_lines = len(source.splitlines()) - len(docs)
    assert n_lines <= LIMITS["module"], f"{path.name} has {n_lines} lines"
    for node in ast.walk(tree):
        limit = LIMITS.get(type(node))
        if limit is not None:
            assert code_lines(node, docs) <= limit, f"{path.name}: {node.name} is too long"


@pytest.mark.parametrize(
    "path", [p for p in MODULES if p.name not in CURVATURE_MODULES], ids=lambda p: p.name
)
def test_no_dispatch_on_the_structure_name_outside_the_curvature_modules(path):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Compare):
            operands = [node.left, *node.comparators]
            names = {o.value for o in operands if isinstance(o, ast.Constant)}
            assert not names & STRUCTURES, f"{path.name}:{node.lineno} compares a structure name"


def imports_of(path):
    """The skbnn modules that ``path`` imports at module level."""
    found = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("skbnn"):
            if node.module == "skbnn":
                found.update(f"skbnn.{alias.name}" for alias in node.names)
            else:
                found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("skbnn."))
    return {name for name in found if (PACKAGE / f"{name.split('.')[-1]}.py").exists()}


def test_no_import_cycles_between_modules():
    graph = {f"skbnn.{p.stem}": imports_of(p) for p in MODULES if p.stem != "__init__"}
    state = {}

    def visit(name, path):
        if state.get(name) == "done":
            return
        assert state.get(name) != "active", " -> ".join([*path, name])
        state[name] = "active"
        for child in graph.get(name, ()):
            visit(child, [*path, name])
        state[name] = "done"

    for name in graph:
        visit(name, [])


def test_math_modules_know_no_estimator():
    estimators = {"skbnn._base", "skbnn.regressor", "skbnn.classifier", "skbnn.metrics"}
    for path in MODULES:
        if path.stem.startswith("_") and f"skbnn.{path.stem}" not in {
            *estimators,
            "skbnn.__init__",
        }:
            assert not imports_of(path) & estimators, path.name
