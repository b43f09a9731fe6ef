"""Layering rules of DESIGN.md, read from the source with `ast` (nothing here imports the modules checked).

Every module under recsys_cli/ is found by walking the folder, so a new package is covered by
each rule as soon as it exists. Imports under `if TYPE_CHECKING:` are ignored (they never run);
"lazy" imports are the ones inside a function body.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

PACKAGE = "recsys_cli"
ROOT = Path(__file__).resolve().parents[1]

CORE = ("data", "models", "evaluation", "abtest", "artifacts", "ledger")  # the library's core: no faces
FACES = ("cli", "api", "serve", "dashboard", "ui", "bench")  # what the core must never import
BENCH_USERS = ("cli", "api", "bench")  # the only packages that may import bench
CLI_LIBRARIES = ("typer", "click")  # CLI frameworks: only cli/ uses them
KERNELS = "models._kernels"  # pure numeric functions: import nothing else of ours


@dataclass(frozen=True)
class Import:
    importer: str  # dotted module name, e.g. recsys_cli.models.base
    target: str  # the imported module (a recsys_cli module, or a third-party top-level name)
    line: int
    lazy: bool  # inside a function: runs when called, not when the module is imported

    def __str__(self) -> str:
        return f"{self.importer}:{self.line} imports {self.target}{' (in a function)' if self.lazy else ''}"


@cache
def modules() -> dict[str, Path]:
    """Dotted name -> file for every module of the package (a package is its __init__.py)."""
    out = {}
    for path in sorted((ROOT / PACKAGE).rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _resolve(name: str) -> str:
    """The module a dotted name refers to: itself, or the closest enclosing module (for `pkg.attr`)."""
    known = modules()
    while name not in known and "." in name:
        name = name.rpartition(".")[0]
    return name


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


@cache
def imports() -> tuple[Import, ...]:
    found: list[Import] = []
    for name, path in modules().items():
        is_package = path.name == "__init__.py"

        def visit(node: ast.AST, lazy: bool, name=name, is_package=is_package) -> None:
            for child in ast.iter_child_nodes(node):
                if isinstance(child, ast.If) and _is_type_checking(child):
                    for sub in child.orelse:
                        visit(sub, lazy)
                    continue
                if isinstance(child, ast.Import):
                    for alias in child.names:
                        found.append(_make(name, alias.name, child.lineno, lazy))
                elif isinstance(child, ast.ImportFrom):
                    base = child.module or ""
                    if child.level:  # relative: from the importer's package
                        pkg = name.split(".") if is_package else name.split(".")[:-1]
                        pkg = pkg[: len(pkg) - (child.level - 1)]
                        base = ".".join(pkg + ([base] if base else []))
                    for alias in child.names:  # `from pkg import module` imports pkg.module
                        full = f"{base}.{alias.name}"
                        found.append(_make(name, full if full in modules() else base, child.lineno, lazy))
                visit(child, lazy or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)))

        visit(ast.parse(path.read_text(encoding="utf-8"), filename=str(path)), False)
    return tuple(found)


def _make(importer: str, target: str, line: int, lazy: bool) -> Import:
    return Import(importer, _resolve(target) if target.split(".")[0] == PACKAGE else target, line, lazy)


def _in(module: str, *packages: str) -> bool:
    """Whether a dotted module is one of recsys_cli.<package> or inside it."""
    return any(module == f"{PACKAGE}.{p}" or module.startswith(f"{PACKAGE}.{p}.") for p in packages)


def internal() -> list[Import]:
    return [i for i in imports() if i.target.split(".")[0] == PACKAGE and i.target != i.importer]


def import_graph(lazy: bool) -> dict[str, set[str]]:
    """Module -> modules its import runs: the target and the target's packages (their __init__ runs first),
    except packages the importer is already inside. Lazy (function-level) imports only when asked."""
    graph: dict[str, set[str]] = {m: set() for m in modules()}
    for i in internal():
        if i.lazy and not lazy:
            continue
        parts = i.target.split(".")
        for k in range(1, len(parts) + 1):
            node = ".".join(parts[:k])
            if node in graph and not (i.importer == node or i.importer.startswith(node + ".")):
                graph[i.importer].add(node)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


# ---------------------------------------------------------------- the rules


def test_the_walk_finds_the_package():
    mods = modules()
    assert f"{PACKAGE}.models.base" in mods and f"{PACKAGE}.cli.app" in mods and PACKAGE in mods
    assert any(i.target == f"{PACKAGE}.models.config" and i.importer == f"{PACKAGE}.models.base" for i in imports())


def test_only_the_cli_imports_typer_or_click():
    bad = [str(i) for i in imports() if i.target.split(".")[0] in CLI_LIBRARIES and not _in(i.importer, "cli")]
    assert not bad, "\n".join(bad)


def test_kernels_import_nothing_of_ours_outside_the_kernels():
    bad = [str(i) for i in internal() if _in(i.importer, KERNELS) and not _in(i.target, KERNELS)]
    assert not bad, "\n".join(bad)


def test_the_core_never_imports_a_face():
    bad = [str(i) for i in internal() if _in(i.importer, *CORE) and _in(i.target, *FACES)]
    assert not bad, "\n".join(bad)


def test_only_the_cli_and_the_api_import_bench():
    bad = [str(i) for i in internal() if _in(i.target, "bench") and not _in(i.importer, *BENCH_USERS)]
    assert not bad, "\n".join(bad)


def test_the_server_and_the_cli_never_import_each_other():
    """Both faces go through the api; the one exception is `recsys serve`, the command that starts the server."""
    starter = f"{PACKAGE}.cli.serve_cmd"
    bad = [str(i) for i in internal()
           if (_in(i.importer, "serve") and _in(i.target, "cli"))
           or (_in(i.importer, "cli") and _in(i.target, "serve") and i.importer != starter)]
    assert not bad, "\n".join(bad)


def test_no_import_cycle_among_module_level_imports():
    found = cycles(import_graph(lazy=False))
    assert not found, "import cycles: " + "; ".join(" <-> ".join(c) for c in found)


@pytest.mark.parametrize("lazy", [False, True])
def test_cycle_finder_finds_a_planted_cycle(lazy):
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert cycles(graph) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []
    real = import_graph(lazy)
    assert f"{PACKAGE}.models.config" in real[f"{PACKAGE}.models.base"]
    assert (f"{PACKAGE}.models._kernels.topk" in real[f"{PACKAGE}.models.base"]) is lazy  # imported in a method


def _top_level_names(path: Path) -> set[str]:
    """Names a module defines or imports at top level (what `from module import name` can find)."""
    names: set[str] = set()
    tree = ast.parse(path.read_text(encoding="utf-8"))

    def visit(body) -> None:
        for node in body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names.add(node.name)
            elif isinstance(node, (ast.Assign, ast.AnnAssign)):
                for target in node.targets if isinstance(node, ast.Assign) else [node.target]:
                    names.update(n.id for n in ast.walk(target) if isinstance(n, ast.Name))
            elif isinstance(node, (ast.Import, ast.ImportFrom)):
                names.update((a.asname or a.name).split(".")[0] for a in node.names)
            elif isinstance(node, (ast.If, ast.Try)):
                visit(node.body)
                visit(getattr(node, "orelse", []))
                for handler in getattr(node, "handlers", []):
                    visit(handler.body)

    visit(tree.body)
    return names


def test_every_import_of_our_own_modules_resolves():
    """`from recsys_cli.x import y` anywhere (lazy imports included) names a module that exists and a name it has.

    Lazy imports run only when their function does; a module moved or renamed would otherwise be found by a user.
    """
    known = modules()
    bad = []
    for name, path in known.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and not node.level and (node.module or "").split(".")[0] == PACKAGE:
                if node.module not in known:
                    bad.append(f"{name}:{node.lineno} imports missing module {node.module}")
                    continue
                defined = _top_level_names(known[node.module])
                for alias in node.names:
                    if (f"{node.module}.{alias.name}" not in known and alias.name not in defined
                            and "__getattr__" not in defined):
                        bad.append(f"{name}:{node.lineno} imports {alias.name!r}, which {node.module} lacks")
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.split(".")[0] == PACKAGE and alias.name not in known:
                        bad.append(f"{name}:{node.lineno} imports missing module {alias.name}")
    assert not bad, "\n".join(bad)
