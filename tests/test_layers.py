"""The package's layers run one way: no module imports a module of a higher layer (at the top
or inside a function), and no modules import each other in a circle.

Every ``lmmpy`` import is read from the source with ``ast`` -- absolute (``lmmpy.x``) and relative
(``from ..x import y``), at module level and inside functions -- so nothing needs installing.
Third-party imports are not edges.  The layer map is written once, here: a module's layer is that
of the longest key that prefixes its dotted name.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "lmmpy"

# low to high; a module may import its own layer or lower ones
LAYERS = [
    ["lmmpy.errors", "lmmpy.datasets", "lmmpy.families"],  # families: R's links and variance functions
    ["lmmpy.formula"],
    ["lmmpy.linalg"],
    ["lmmpy.fit"],
    ["lmmpy.results"],  # the fitted model: estimates, varcorr, ranef, printing helpers
    ["lmmpy.inference"],  # tests, intervals, df, prediction, refits of a fitted model
    [
        "lmmpy.lmerfit",
        "lmmpy.daskfit",
        "lmmpy.glmerfit",
    ],  # the fits users get: results + the inference methods (pandas, Dask data; glmer)
    ["lmmpy.mixedml", "lmmpy.plot"],
    ["lmmpy.lmer", "lmmpy.glmer"],  # the API: lme4's chain, lmer() and glmer()
    ["lmmpy.compare"],  # fits with lmer, then with statsmodels
    ["lmmpy.cli", "lmmpy"],  # the command line and the package's face
]
LAYER = {prefix: i for i, names in enumerate(LAYERS) for prefix in names}

# Imports allowed to run upwards for a while (none now). Each entry must still be present: the
# test below fails when it is gone, so that the entry is removed with it.
PENDING: set = set()


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def layer_of(name: str) -> int:
    best = max((p for p in LAYER if name == p or name.startswith(p + ".")), key=len, default=None)
    assert best is not None, f"{name} is in no layer of tests/test_layers.py's map"
    return LAYER[best]


def modules() -> dict:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports_of(name: str, path: Path, known: set) -> set:
    """The lmmpy modules ``name`` imports (a name imported from a package counts as its
    submodule when there is one)."""
    is_package = path.name == "__init__.py"
    base = name.split(".") if is_package else name.split(".")[:-1]
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                stem = base[: len(base) - node.level + 1]
                target = ".".join(stem + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            targets = [f"{target}.{a.name}" if f"{target}.{a.name}" in known else target for a in node.names]
        else:
            continue
        out.update(t for t in targets if t == "lmmpy" or t.startswith("lmmpy."))
    out.discard(name)
    return {t for t in out if t in known} | {
        t.rsplit(".", 1)[0] for t in out if t not in known and t.rsplit(".", 1)[0] in known
    }


def graph() -> dict:
    mods = modules()
    known = set(mods)
    return {name: imports_of(name, path, known) for name, path in mods.items()}


def test_every_module_has_a_layer():
    for name in modules():
        layer_of(name)


def test_no_import_of_a_higher_layer():
    upward = sorted(
        (a, b) for a, targets in graph().items() for b in targets if layer_of(b) > layer_of(a) and (a, b) not in PENDING
    )
    assert not upward, "imports of a higher layer:\n" + "\n".join(f"  {a} -> {b}" for a, b in upward)


def test_pending_exceptions_still_exist():
    g = graph()
    gone = sorted(e for e in PENDING if e[1] not in g.get(e[0], set()))
    assert not gone, f"remove these from PENDING, they are fixed: {gone}"


def test_no_import_circle():
    g = {a: {b for b in bs if (a, b) not in PENDING} for a, bs in graph().items()}
    # the package face lmmpy/__init__.py is the top: importing any lmmpy.x runs it, but it is
    # not an edge from lmmpy.x (it only re-exports)
    state, circles = {}, []

    def visit(node, path):
        state[node] = 1
        for nxt in sorted(g.get(node, ())):
            if state.get(nxt) == 1:
                circles.append(path[path.index(nxt) :] + [nxt])
            elif nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = 2

    for start in sorted(g):
        if start not in state:
            visit(start, [start])
    assert not circles, "import circles:\n" + "\n".join("  " + " -> ".join(c) for c in circles)
