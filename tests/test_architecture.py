"""The package's layers: every import (function-level ones included) goes to the same layer or a lower one,
and no two modules import each other, directly or round a loop. docs/architecture.md draws the same table."""
import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"

#: Lowest first. A module belongs to the longest prefix that names it.
LAYERS = [
    ("core", ["skinlesion", "skinlesion.__version__", "skinlesion.errors", "skinlesion.atomic", "skinlesion.paths",
              "skinlesion.tables", "skinlesion.console", "skinlesion.labels", "skinlesion.runlock",
              "skinlesion.records"]),
    ("libraries", ["skinlesion.data", "skinlesion.models", "skinlesion.evaluation.metrics",
                   "skinlesion.evaluation.bootstrap", "skinlesion.evaluation.thresholds",
                   "skinlesion.evaluation.site", "skinlesion.evaluation.scores"]),
    ("config", ["skinlesion.config", "skinlesion.options"]),
    ("inference", ["skinlesion.inference", "skinlesion.evaluation.calibration"]),
    ("stages", ["skinlesion.training", "skinlesion.search", "skinlesion.evaluation", "skinlesion.tracking", "skinlesion.data.prepare"]),
    ("apps", ["skinlesion.serving", "skinlesion.demo", "skinlesion.pipeline"]),
    ("cli", ["skinlesion.cli", "skinlesion.cli_options", "skinlesion.commands", "skinlesion.__main__"]),
]


def layer(module: str) -> int:
    best = (-1, -1)
    for i, (_, prefixes) in enumerate(LAYERS):
        for p in prefixes:
            if (module == p or module.startswith(p + ".")) and len(p) > best[1]:
                best = (i, len(p))
    assert best[0] >= 0, f"{module} is in no layer: add it to LAYERS (and docs/architecture.md)"
    return best[0]


def modules() -> dict[str, Path]:
    out = {}
    for f in (SRC / "skinlesion").rglob("*.py"):
        name = ".".join(f.relative_to(SRC).with_suffix("").parts)
        out[name.removesuffix(".__init__")] = f
    return out


def imports() -> dict[str, set[tuple[str, int]]]:
    """Module -> {(imported skinlesion module, line)}, from every import statement at any depth."""
    mods, edges = modules(), {}
    for mod, f in mods.items():
        pkg = mod if f.name == "__init__.py" else mod.rsplit(".", 1)[0]
        found = set()
        for node in ast.walk(ast.parse(f.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = pkg.split(".")[: len(pkg.split(".")) - (node.level - 1)]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                for alias in node.names:
                    full = f"{target}.{alias.name}"
                    found.add((full if full in mods else target, node.lineno))
            elif isinstance(node, ast.Import):
                found |= {(a.name, node.lineno) for a in node.names}
        edges[mod] = {(t, line) for t, line in found if t in mods and t != mod
                      and not (mods[t].name == "__init__.py" and mod.startswith(t + "."))}
    return edges


def test_every_import_points_to_the_same_or_a_lower_layer():
    upward = [f"{mod} (line {line}, layer {LAYERS[layer(mod)][0]}) imports {t} (layer {LAYERS[layer(t)][0]})"
              for mod, targets in imports().items() for t, line in sorted(targets) if layer(t) > layer(mod)]
    assert not upward, "\n".join(upward)


def test_no_import_cycles_between_modules():
    edges = {m: {t for t, _ in ts} for m, ts in imports().items()}
    state, cycles = {}, []

    def visit(m, path):
        state[m] = "open"
        for t in sorted(edges[m]):
            if state.get(t) == "open":
                cycles.append(" -> ".join(path[path.index(t):] + [t]))
            elif t not in state:
                visit(t, path + [t])
        state[m] = "done"

    for m in sorted(edges):
        if m not in state:
            visit(m, [m])
    assert not cycles, "\n".join(cycles)


def test_the_layer_table_flags_an_upward_import():
    """The check itself can fail: a library importing a stage is caught."""
    assert layer("skinlesion.data.cache") < layer("skinlesion.training.fit")
    assert layer("skinlesion.evaluation.metrics") < layer("skinlesion.inference.bundle") < layer("skinlesion.evaluation.evaluate")
    assert layer("skinlesion.commands.adapt") == len(LAYERS) - 1
