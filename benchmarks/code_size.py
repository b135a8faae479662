"""Code-size table: per-file line counts and the functions over a length limit.

    python benchmarks/code_size.py [--limit 60] [--top 25] [ROOT ...]

Prints one row per Python file (lines) and one row per function longer than `--limit` lines with
its length, its body's length (from the first statement after the signature and docstring: a Typer
command's option declarations are signature) and a branch count (if/for/while/try/with/bool-op/
comprehension/match nodes inside it, a rough cyclomatic complexity minus one). Nested functions are
counted on their own and inside their parent. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import ast
from pathlib import Path

BRANCHES = (
    ast.If,
    ast.For,
    ast.AsyncFor,
    ast.While,
    ast.Try,
    ast.With,
    ast.AsyncWith,
    ast.BoolOp,
    ast.IfExp,
    ast.comprehension,
    ast.ExceptHandler,
    ast.Match,
)


def branch_count(node: ast.AST) -> int:
    """How many branching nodes lie inside `node`."""
    return sum(isinstance(child, BRANCHES) for child in ast.walk(node))


def body_lines(node: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    """Lines from the first statement after the docstring to the function's end."""
    body = node.body
    if len(body) > 1 and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
        body = body[1:]
    return (node.end_lineno or node.lineno) - body[0].lineno + 1


def long_functions(path: Path, limit: int) -> list[tuple[str, int, int, int]]:
    """(qualified name, lines, body lines, branches) for each function in `path` longer than `limit`."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: list[tuple[str, int, int, int]] = []

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                name = f"{prefix}{child.name}"
                if not isinstance(child, ast.ClassDef):
                    length = (child.end_lineno or child.lineno) - child.lineno + 1
                    if length > limit:
                        found.append((name, length, body_lines(child), branch_count(child)))
                visit(child, name + ".")
            else:
                visit(child, prefix)

    visit(tree, "")
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("roots", nargs="*", default=["facenhance_cli"])
    parser.add_argument("--limit", type=int, default=60, help="report functions longer than this")
    parser.add_argument("--top", type=int, default=25, help="how many of the largest files to list")
    args = parser.parse_args()

    files = sorted(p for root in args.roots for p in Path(root).rglob("*.py"))
    sizes = sorted(((len(p.read_text(encoding="utf-8").splitlines()), p) for p in files), reverse=True)
    print("| file | lines |\n| --- | ---: |")
    for lines, path in sizes[: args.top]:
        print(f"| {path} | {lines} |")
    total = sum(lines for lines, _ in sizes)
    print(f"| ({len(files)} files, total) | {total} |\n")

    rows = [(path, *row) for path in files for row in long_functions(path, args.limit)]
    rows.sort(key=lambda r: -r[2])
    print(f"| function over {args.limit} lines | lines | body | branches |\n| --- | ---: | ---: | ---: |")
    for path, name, length, body, branches in rows:
        print(f"| {path}:{name} | {length} | {body} | {branches} |")
    print(f"| ({len(rows)} functions) | | | |")


if __name__ == "__main__":
    main()
