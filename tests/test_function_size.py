"""Every function in facemetrics/ stays small: at most 60 lines of body (docstring not counted) and at
most 10 parameters (``self``/``cls`` not counted). Network definitions (one layer per line) are exempt."""
from __future__ import annotations

import ast
from pathlib import Path

MAX_LINES = 60
MAX_PARAMS = 10
PACKAGE = Path(__file__).resolve().parents[1] / "facemetrics"
#: network definitions, exempt: (file relative to facemetrics/, function)
NETWORK_DEFINITIONS = {("extractors/facenet.py", "build_network")}


def _params(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    a = fn.args
    names = [x.arg for x in a.posonlyargs + a.args]
    n = len(names) + len(a.kwonlyargs) + (a.vararg is not None) + (a.kwarg is not None)
    return n - 1 if names and names[0] in ("self", "cls") else n


def _body_lines(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    body = fn.body
    first = body[0]
    if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
        if len(body) == 1:
            return 0
        first = body[1]
    return fn.end_lineno - first.lineno + 1


def oversized(root: Path = PACKAGE) -> list[str]:
    """``file:line name (lines, params)`` of every function over a limit."""
    out = []
    for f in sorted(root.rglob("*.py")):
        rel = f.relative_to(root).as_posix()
        for node in ast.walk(ast.parse(f.read_text(encoding="utf-8"))):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) or (rel, node.name) in NETWORK_DEFINITIONS:
                continue
            lines, params = _body_lines(node), _params(node)
            if lines > MAX_LINES or params > MAX_PARAMS:
                out.append(f"{rel}:{node.lineno} {node.name} ({lines} lines, {params} parameters)")
    return out


def test_no_function_over_the_limits():
    assert oversized() == []


def test_the_check_sees_a_long_function_and_a_long_signature(tmp_path):
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_LINES + 1))
    (tmp_path / "long.py").write_text(f'def long():\n    """doc"""\n{body}\n\n\ndef short():\n    """doc"""\n'
                                      "    return 1\n\n\nclass A:\n    def m(self, " + ", ".join(f"a{i}" for i in range(11))
                                      + "):\n        return 0\n")
    assert oversized(tmp_path) == ["long.py:1 long (61 lines, 0 parameters)", "long.py:72 m (1 lines, 11 parameters)"]
