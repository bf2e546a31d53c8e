"""The shape of the code: no import circles, small modules and functions, declared capabilities.

These hold the layout described in docs/ARCHITECTURE.md; a change that breaks one should change the
design (and that document), not the threshold.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PKG = SRC / "transferlab"
MAX_MODULE_LINES, MAX_FUNCTION_LINES = 300, 60
# The central modules: the run, the planner, the config checks, the feature cache, the export. They ask what
# classes declare; the few getattr/hasattr left read optional attributes of foreign objects (torch dtypes, a
# transformers config, user-given `_target_` classes).
CENTRAL = ["run/*.py", "plan.py", "config/*.py", "model/features.py", "export.py"]
MAX_DUCK_TYPING = 10


def _modules() -> dict[str, Path]:
    out = {}
    for p in PKG.rglob("*.py"):
        name = ".".join(p.relative_to(SRC).with_suffix("").parts).removesuffix(".__init__")
        out[name] = p
    return out


def _imports(path: Path, modules: dict[str, Path]) -> set[str]:
    """transferlab modules `path` imports, at module level or inside functions (TYPE_CHECKING blocks too)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name in modules}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("transferlab"):
            for a in node.names:
                sub = f"{node.module}.{a.name}"
                found.add(sub if sub in modules else node.module)
    return {m for m in found if m in modules}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    return out


def test_no_import_circle():
    modules = _modules()
    graph = {m: _imports(p, modules) - {m} for m, p in modules.items()}
    assert _cycles(graph) == []


def test_cycle_finder_finds_a_circle():
    assert _cycles({"a": {"b"}, "b": {"a"}, "c": {"a"}}) == [["a", "b"]]


def test_modules_and_functions_are_small():
    big_modules, big_functions = [], []
    for p in PKG.rglob("*.py"):
        text = p.read_text()
        if text.count("\n") > MAX_MODULE_LINES:
            big_modules.append(f"{p.relative_to(SRC)}: {text.count(chr(10))} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                n = node.end_lineno - node.lineno + 1
                if n > MAX_FUNCTION_LINES:
                    big_functions.append(f"{p.relative_to(SRC)}:{node.lineno} {node.name}: {n} lines")
    assert big_modules == [] and big_functions == []


def test_central_modules_ask_declared_capabilities():
    calls = [
        f"{p.relative_to(SRC)}:{i}"
        for pattern in CENTRAL
        for p in sorted(PKG.glob(pattern))
        for i, line in enumerate(p.read_text().splitlines(), 1)
        if re.search(r"\b(getattr|hasattr)\(", line)
    ]
    assert len(calls) <= MAX_DUCK_TYPING, calls


def test_no_instruction_task_string_checks():
    """The instruction task is declared (`lm_task` on the data class), not recognised by its name."""
    offenders = [
        f"{p.relative_to(SRC)}:{i}"
        for p in PKG.rglob("*.py")
        for i, line in enumerate(p.read_text().splitlines(), 1)
        if re.search(r"""==\s*["']instruction["']""", line)
    ]
    assert offenders == []


@pytest.mark.parametrize("base", sorted((PKG / "conf" / "base").glob("*.yaml")), ids=lambda p: p.stem)
def test_every_base_yaml_is_used(base):
    users = [p for p in (PKG / "conf").rglob("*.yaml") if f"/base/{base.stem}@_here_" in p.read_text()]
    assert users, f"conf/base/{base.name} is pulled in by no config"
