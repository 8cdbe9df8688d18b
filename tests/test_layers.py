"""The layout of docs/CONTRACTS.md holds: no study module imports a later stage (lazy imports
inside functions included), only tune/ and launch import Ray, tune and apply never import each
other, no file-level import cycle, no private name imported across packages, and no function
over 60 lines."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "study"
#: the stages in import order: a package may import its own files and earlier layers only
LAYERS = [
    {"errors", "io", "names"},
    {"results"},
    {"data"},
    {"plans"},
    {"models", "losses"},
    {"evaluation"},
    {"train"},
    {"tune", "apply"},
    {"report"},
    {"launch"},
]
SIBLINGS_APART = {("tune", "apply"), ("apply", "tune")}
MAX_FUNCTION_LINES = 60


def _files():
    return sorted(ROOT.rglob("*.py"))


def _module(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> list[tuple[str, list[str]]]:
    """(module, names imported from it) for every import of ``path``, lazy ones included."""
    out = []
    package = _module(path).split(".") if path.name == "__init__.py" else \
        _module(path).split(".")[:-1]
    for n in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(n, ast.ImportFrom) and n.level:  # relative: from the file's package
            base = package[: len(package) - (n.level - 1)]
            out.append((".".join(base + ([n.module] if n.module else [])),
                        [a.name for a in n.names]))
        elif isinstance(n, ast.ImportFrom) and n.module:
            out.append((n.module, [a.name for a in n.names]))
        elif isinstance(n, ast.Import):
            out.extend((a.name, []) for a in n.names)
    return out


def _stage(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "study"


def _layer(group: str) -> int:
    for i, layer in enumerate(LAYERS):
        if group in layer:
            return i
    raise AssertionError(f"study/{group} is in no layer of tests/test_layers.py")


def test_imports_point_one_way_and_ray_stays_in_tune():
    bad, ray = [], []
    for f in _files():
        me = _stage(_module(f))
        if me in ("study", "__main__"):
            continue
        for mod, _ in _imports(f):
            if mod.split(".")[0] == "ray" and me not in ("tune", "launch"):
                ray.append(f"{f.relative_to(ROOT)} imports {mod}")
            if not mod.startswith("study."):
                continue
            other = _stage(mod)
            if other != me and (_layer(other) > _layer(me) or (me, other) in SIBLINGS_APART):
                bad.append(f"{f.relative_to(ROOT)} ({me}) imports {mod} (a later stage)")
    assert not bad, "\n".join(bad)
    assert not ray, "\n".join(ray)


def _graph() -> dict[str, set[str]]:
    known = {_module(f) for f in _files()}
    graph: dict[str, set[str]] = {}
    for f in _files():
        me = _module(f)
        deps = set()
        for mod, names in _imports(f):
            # `from study.x import y` may import the submodule study.x.y
            for target in [mod, *(f"{mod}.{n}" for n in names)]:
                if target in known and target != me:
                    deps.add(target)
        graph[me] = deps
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1 = on the stack, 2 = done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_no_import_cycle_between_files():
    # a package's __init__ importing its own files is the face, not a cycle
    graph = {m: {d for d in deps if not m.startswith(d + ".")} for m, deps in _graph().items()}
    cycle = _cycle(graph)
    assert cycle is None, " -> ".join(cycle or [])


def test_cycle_finder_finds_a_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_no_private_name_imported_across_packages():
    bad = []
    for f in _files():
        me = _module(f)
        mine = me if f.name == "__init__.py" else me.rsplit(".", 1)[0]
        for mod, names in _imports(f):
            if not mod.startswith("study."):
                continue
            theirs = mod if any((ROOT.parent / mod.replace(".", "/")).glob("__init__.py")) \
                else mod.rsplit(".", 1)[0]
            private = [n for n in names if n.startswith("_") and not n.startswith("__")]
            if private and theirs != mine:
                bad.append(f"{f.relative_to(ROOT)} imports {', '.join(private)} from {mod}")
    assert not bad, "\n".join(bad)


def test_no_function_over_60_lines():
    long = []
    for f in _files():
        for n in ast.walk(ast.parse(f.read_text(encoding="utf-8"))):
            if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef):
                size = n.end_lineno - n.lineno + 1
                if size > MAX_FUNCTION_LINES:
                    long.append(f"{f.relative_to(ROOT)}:{n.lineno} {n.name} ({size} lines)")
    assert not long, "\n".join(long)
