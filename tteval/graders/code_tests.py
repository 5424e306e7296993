"""Reading unit tests without running them: their top-level statements, the names they take from the program (what
the oracle proxies to the sandbox), and the expressions whose values they check (what behaviour signatures hash)."""

from __future__ import annotations

import ast
import builtins
import sys

from tteval.errors import TtevalError


def uses_inprocess_mode(tests: str) -> bool:
    """Whether these tests cannot be split into sandbox calls and trusted comparisons (then they run in the
    candidate's process, the old way, open to the attacks listed in `tteval.graders.code`'s docstring)."""
    return oracle_job(tests) is None


_CANNOT_SPLIT = ("globals", "locals", "vars", "eval", "exec", "__import__")


def oracle_job(tests: str) -> dict | None:
    """What the oracle needs: the test statements, the names the tests take from the program (proxied to the
    sandbox) and the stdlib modules they use without importing them; None when the tests cannot be split."""
    tree = _parse_tests(tests)
    loaded, bound = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            (loaded if isinstance(node.ctx, ast.Load) else bound).add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            bound.add(node.name)
        elif isinstance(node, ast.arg):
            bound.add(node.arg)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            bound.update((a.asname or a.name.split(".")[0]) for a in node.names)
        elif isinstance(node, ast.ExceptHandler) and node.name:
            bound.add(node.name)
        elif isinstance(node, (ast.MatchAs, ast.MatchStar)) and node.name:
            bound.add(node.name)
        elif isinstance(node, ast.MatchMapping) and node.rest:
            bound.add(node.rest)
    if loaded & set(_CANNOT_SPLIT):  # the tests reach for the program's namespace itself
        return None
    free = loaded - bound - set(dir(builtins))
    if not free - _STDLIB:  # the function under test is named like a builtin (MBPP 126: `sum`)
        entry = _first_checked_call(tree)
        if entry is not None and entry not in bound:
            free.add(entry)
    modules = sorted(n for n in free if n in _STDLIB)
    return {
        "units": [text for text, _ in statement_units(tests)],
        "lines": normalize_newlines(tests).split("\n"),
        "modules": modules,
        "remote": sorted(free - set(modules)),
    }


def _first_checked_call(tree: ast.Module) -> str | None:
    """The function named on the left of the tests' first `assert name(...) == ...`: the entry point when every
    name the tests use is a builtin. Taken from the tests alone, never from the program."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Assert):
            test = node.test
            if isinstance(test, ast.Compare) and isinstance(test.left, ast.Call) and isinstance(test.left.func,
                                                                                                ast.Name):
                return test.left.func.id
            return None
    return None


_STDLIB = frozenset(getattr(sys, "stdlib_module_names", ())) or frozenset(
    ("math", "re", "collections", "itertools", "functools", "heapq", "bisect", "string", "random", "sys", "cmath",
     "operator", "statistics", "fractions", "decimal", "datetime", "copy", "json", "os", "array", "struct"))


def normalize_newlines(tests: str) -> str:
    """Newlines as the tokenizer reads them, so ast line numbers index `split("\n")`."""
    return tests.replace("\r\n", "\n").replace("\r", "\n")


def _parse_tests(tests: str) -> ast.Module:
    if not isinstance(tests, str):
        raise TtevalError(f"tests must be a str, got {type(tests).__name__}")
    try:
        return ast.parse(normalize_newlines(tests), "<tests>")
    except (SyntaxError, ValueError) as exc:
        raise TtevalError(f"the test code does not parse: {exc}") from None


def statement_units(tests: str) -> list[tuple[str, bool]]:
    """The tests cut into top-level statements (statements sharing a line stay together), each padded with
    newlines so it compiles with its original line numbers, and whether it is setup (not an assert/expression)."""
    tree = _parse_tests(tests)
    lines = normalize_newlines(tests).split("\n")
    spans: list[list] = []  # [first line, last line, is_setup]
    for node in tree.body:
        first = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])
        last = node.end_lineno or node.lineno
        setup = not isinstance(node, (ast.Assert, ast.Expr))
        if spans and first <= spans[-1][1]:
            spans[-1][1] = max(spans[-1][1], last)
            spans[-1][2] = spans[-1][2] and setup
        else:
            spans.append([first, last, setup])
    return [("\n" * (a - 1) + "\n".join(lines[a - 1:b]), setup) for a, b, setup in spans]


def test_calls(tests: str) -> list[str]:
    """The expressions whose values the tests check, in source order: the left side of `assert f(x) == y` (and of
    other single comparisons that call something), the first argument of `isclose(a, b)`, else the whole asserted
    expression. Asserts inside a test function called at top level (HumanEval's `check(candidate)` then
    `check(f)`) get the call's arguments substituted for the parameters."""
    tree = _parse_tests(tests)
    bindings = _test_function_bindings(tree)
    found: list[tuple[int, int, str]] = []
    for top in tree.body:
        binding = bindings.get(top.name) if isinstance(top, (ast.FunctionDef, ast.AsyncFunctionDef)) else None
        for node in ast.walk(top):
            if not isinstance(node, ast.Assert):
                continue
            expr = _checked_expression(node.test)
            if binding:
                expr = _Substitute(binding).visit(_copy(expr))
            found.append((node.lineno, node.col_offset, ast.unparse(expr)))
    return [text for _, _, text in sorted(found)]


test_calls.__test__ = False  # type: ignore[attr-defined]  # a library function, not a pytest test


def _checked_expression(test: ast.expr) -> ast.expr:
    if isinstance(test, ast.Compare) and len(test.ops) == 1:
        left, right = test.left, test.comparators[0]
        if _is_abs_difference(left):  # abs(f(x) - y) < tol
            diff = left.args[0]
            return diff.left if _has_call(diff.left) or not _has_call(diff.right) else diff.right
        if _has_call(left):
            return left
        if _has_call(right) and isinstance(test.ops[0], (ast.Eq, ast.NotEq, ast.Is)):
            return right
    if isinstance(test, ast.Call) and test.args:
        func = test.func
        name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
        if name in ("isclose", "allclose", "array_equal", "assert_allclose"):
            return test.args[0]
    return test


def _is_abs_difference(node: ast.expr) -> bool:
    return (
        isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "abs"
        and len(node.args) == 1 and isinstance(node.args[0], ast.BinOp) and isinstance(node.args[0].op, ast.Sub)
    )


def _has_call(node: ast.AST) -> bool:
    return any(isinstance(n, ast.Call) for n in ast.walk(node))


def _test_function_bindings(tree: ast.Module) -> dict[str, dict[str, ast.expr]]:
    """For each top-level test function called at top level as `f(arg, ...)`: its parameter -> argument map."""
    functions = {
        node.name: node for node in tree.body if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
    }
    bindings: dict[str, dict[str, ast.expr]] = {}
    for node in tree.body:
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Call) and isinstance(node.value.func, ast.Name):
            fn = functions.get(node.value.func.id)
            if fn is None or node.value.func.id in bindings:
                continue
            params = [a.arg for a in fn.args.posonlyargs + fn.args.args]
            binding = dict(zip(params, node.value.args))
            binding.update({kw.arg: kw.value for kw in node.value.keywords if kw.arg})
            bindings[fn.name] = binding
    return bindings


class _Substitute(ast.NodeTransformer):
    def __init__(self, binding: dict[str, ast.expr]):
        self.binding = binding

    def visit_Name(self, node: ast.Name) -> ast.expr:
        if isinstance(node.ctx, ast.Load) and node.id in self.binding:
            return _copy(self.binding[node.id])
        return node


def _copy(node: ast.expr) -> ast.expr:
    return ast.parse(ast.unparse(node), mode="eval").body
