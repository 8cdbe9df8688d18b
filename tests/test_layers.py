"""The import layers of docs/CONTRACTS.md hold: no study module imports a later layer
(lazy imports inside functions included), and only tune/ and launch import Ray."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "study"
LAYERS = [
    {"errors", "io", "names"},
    {"data", "models", "losses", "metrics", "inference", "postprocess", "stats"},
    {"train_config", "checkpoint", "batches"},
    {"engine"}, {"native"}, {"results"}, {"finalists"}, {"tune"}, {"report"}, {"launch"},
]
BESIDE = {"train": 5, "bundle": 5, "predict": 6, "export": 6, "evaluate": 5}  # their layer


def _imports(path: Path) -> set[str]:
    out = set()
    package = ["study", *path.relative_to(ROOT).parent.parts]
    for n in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(n, ast.ImportFrom) and n.level:  # relative: from the file's package
            base = package[: len(package) - (n.level - 1)]
            out.add(".".join(base + ([n.module] if n.module else [])))
        elif isinstance(n, ast.ImportFrom) and n.module:
            out.add(n.module)
        elif isinstance(n, ast.Import):
            out.update(a.name for a in n.names)
    return out


def _layer(group: str) -> int:
    for i, layer in enumerate(LAYERS):
        if group in layer:
            return i
    return BESIDE[group]


def test_imports_point_one_way_and_ray_stays_in_tune():
    bad, ray = [], []
    for f in ROOT.rglob("*.py"):
        parts = f.relative_to(ROOT).with_suffix("").parts
        if parts[0] in ("__init__", "__main__", "py"):
            continue
        me = parts[0]
        for mod in _imports(f):
            if mod.split(".")[0] == "ray" and me not in ("tune", "launch"):
                ray.append(f"{f.relative_to(ROOT)} imports {mod}")
            if not mod.startswith("study."):
                continue
            other = mod.split(".")[1]
            if other != me and _layer(other) > _layer(me):
                bad.append(f"{f.relative_to(ROOT)} ({me}) imports {mod} (a later layer)")
    assert not bad, "\n".join(bad)
    assert not ray, "\n".join(ray)
