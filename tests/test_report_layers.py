"""Reporting in layers, without an import cycle: formatting, then the table layer (collect: run folders -> tidy
DataFrame; tables: DataFrame -> DataFrame), then the renderers (terminal tables, plots, HTML, the leaderboard)."""

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "tteval"
# lower layers first: a module may import only modules of a strictly lower layer
LAYERS = {
    "tteval.formatting": 0,  # units, intervals, labels
    "tteval.html_parts": 0,  # escaping, HTML tables
    "tteval.collect": 1,  # run folders -> tidy DataFrame
    "tteval.problem_views": 1,  # samples -> problem views
    "tteval.tables": 2,  # DataFrame -> DataFrame
    "tteval.terminal": 3,  # renderers
    "tteval.plots": 3,
    "tteval.compare": 3,
    "tteval.drilldown": 3,
    "tteval.html_report": 4,
    "tteval.leaderboard": 5,
    "tteval.sweep": 5,
}
REPORTING = ["tteval.leaderboard", "tteval.html_report", "tteval.plots", "tteval.sweep", "tteval.terminal"]


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """Every tteval module -> the tteval modules it imports anywhere in its source (lazy imports included)."""
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets.add(node.module)
                targets.update(f"{node.module}.{a.name}" for a in node.names)  # `from tteval import api`
        graph[name] = {t for t in targets if t in modules and t != name and t != "tteval"}
    return graph


def cycles(graph: dict[str, set[str]], nodes: set[str]) -> list[list[str]]:
    """The cycles of the graph restricted to `nodes` (one path per cycle found by depth-first search)."""
    found, state = [], {}

    def visit(n: str, path: list[str]) -> None:
        state[n] = "open"
        for m in sorted(graph.get(n, ()) & nodes):
            if state.get(m) == "open":
                found.append(path[path.index(m):] + [m] if m in path else [n, m])
            elif m not in state:
                visit(m, path + [m])
        state[n] = "done"

    for n in sorted(nodes):
        if n not in state:
            visit(n, [n])
    return found


def test_reporting_modules_import_only_lower_layers():
    graph = import_graph()
    assert set(LAYERS) <= set(graph), set(LAYERS) - set(graph)
    upward = [(a, b) for a in LAYERS for b in graph[a] if b in LAYERS and LAYERS[b] >= LAYERS[a]]
    assert upward == [], upward
    assert cycles(graph, set(LAYERS)) == []


def test_the_cycle_check_finds_a_cycle():
    """Control: the same search reports the old leaderboard -> html_report -> leaderboard cycle."""
    old = {"tteval.leaderboard": {"tteval.html_report", "tteval.plots"}, "tteval.html_report": {"tteval.leaderboard"},
           "tteval.plots": {"tteval.leaderboard"}}  # fmt: skip
    found = cycles(old, set(old))
    assert len(found) == 2 and {frozenset(c) for c in found} == {
        frozenset({"tteval.leaderboard", "tteval.html_report"}), frozenset({"tteval.leaderboard", "tteval.plots"})}
    assert all(c[0] == c[-1] for c in found)


@pytest.mark.parametrize("module", REPORTING + ["tteval.collect", "tteval.tables", "tteval.formatting", "tteval.drilldown"])
def test_each_module_imports_alone_and_loads_no_higher_layer(module):
    """In a fresh interpreter: the module imports on its own, and what it loads of tteval is all below it."""
    code = f"import sys, json, {module}; print(json.dumps(sorted(m for m in sys.modules if m.startswith('tteval'))))"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                       cwd=PACKAGE.parent)  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    loaded = set(json.loads(r.stdout.splitlines()[-1]))
    assert module in loaded
    if module in LAYERS:
        higher = {m for m in loaded if m in LAYERS and m != module and LAYERS[m] >= LAYERS[module]}
        assert higher == set(), higher
