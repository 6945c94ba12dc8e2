"""Figures of the code base itself (issue #18): functions with more than 6 parameters, `task ==` branches,
run-folder file names spelled outside data/run.py, functions taking loose run state, function-level imports
of skinlesion modules, and the largest modules. Compare two checkouts:

    python benchmarks/code_figures.py .                      # this checkout
    git worktree add /tmp/old 5a09157 && python benchmarks/code_figures.py /tmp/old
"""
from __future__ import annotations

import argparse
import ast
import re
from pathlib import Path

RUN_FILES = (r'"(split\.csv|split\.json|val_predictions\.csv|test_predictions\.csv|metrics\.json|threshold\.json|'
             r'config\.yaml|cv\.json|metrics\.csv|interrupted\.json|bundle|bundle-image|checkpoints|folds|'
             r'oof_predictions\.csv)"')
TASK_BRANCH = r'task ==|task !=|== "binary"|!= "binary"|== "7class"|!= "7class"'
LOOSE = ("progress", "echo", "num_workers", "run_dir")


def figures(checkout: Path) -> dict:
    root = checkout / "src" / "skinlesion"
    out = {"params_over_6": [], "task_branches": 0, "run_file_names": 0, "function_level_imports": 0,
           "loose": dict.fromkeys(LOOSE, 0), "sizes": []}
    for f in sorted(root.rglob("*.py")):
        text = f.read_text(encoding="utf-8")
        rel = str(f.relative_to(root))
        out["sizes"].append((len(text.splitlines()), rel))
        if rel != "data/run.py":
            out["run_file_names"] += len(re.findall(RUN_FILES, text))
        out["task_branches"] += len(re.findall(TASK_BRANCH, text))
        for node in ast.walk(ast.parse(text)):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            a = node.args
            names = [x.arg for x in a.posonlyargs + a.args + a.kwonlyargs]
            n = len(names) - (1 if names[:1] in (["self"], ["cls"]) else 0)
            if n > 6:
                out["params_over_6"].append(f"{rel}:{node.name} ({n})")
            for k in LOOSE:
                out["loose"][k] += k in names
            out["function_level_imports"] += sum(
                isinstance(m, ast.ImportFrom) and bool(m.level or (m.module or "").startswith("skinlesion"))
                for m in ast.walk(node))
    out["sizes"] = sorted(out["sizes"], reverse=True)[:6]
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("checkout", nargs="?", default=".", type=Path)
    f = figures(p.parse_args().checkout)
    print(f"functions with > 6 parameters: {len(f['params_over_6'])} {f['params_over_6']}")
    print(f"'task ==' branches: {f['task_branches']}")
    print(f"run-folder file names spelled outside data/run.py (incl. JSON keys of the same name): {f['run_file_names']}")
    print("functions taking " + ", ".join(f"{k}: {v}" for k, v in f["loose"].items()))
    print(f"function-level imports of skinlesion modules: {f['function_level_imports']}")
    print("largest modules: " + ", ".join(f"{name} {n}" for n, name in f["sizes"]))


if __name__ == "__main__":
    main()
