"""Size counts of the package, for a closing note or a review: modules over 500 lines,
functions over 60 lines, the largest classes, modules that index a cell entry or record
by string, and imports of ``nbcache.ui`` from outside ``ui/`` and the CLI.

    python scripts/counts.py [PACKAGE_DIR]
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

ENTRY_FIELDS = re.compile(
    r"""\[["'](vars|deleted|outputs|digests|plain|effects|shared|file_contents|wrote|recorded)["']\]"""
    r"""|\.get\(["'](vars|deleted|outputs|digests|plain|effects|shared|file_contents|wrote|"""
    r"""recorded|stored|key)["']"""
)


def main(root: Path) -> None:
    modules = sorted(root.rglob("*.py"))
    long_modules, long_functions, classes, indexing, ui_imports = [], [], [], [], []
    for path in modules:
        text = path.read_text(encoding="utf-8")
        name = path.relative_to(root).as_posix()
        lines = text.count("\n")
        if lines > 500:
            long_modules.append((lines, name))
        tree = ast.parse(text)
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                size = (node.end_lineno or node.lineno) - node.lineno + 1
                if size > 60:
                    long_functions.append((size, f"{name}:{node.name}"))
            elif isinstance(node, ast.ClassDef):
                size = (node.end_lineno or node.lineno) - node.lineno + 1
                classes.append((size, f"{name}:{node.name}"))
            elif isinstance(node, ast.ImportFrom) and not name.startswith(("ui/", "__main__")):
                target = node.module or ""
                if (
                    (node.level and (target == "ui" or target.startswith("ui.")))
                    or (node.level == 2 and target.startswith("ui"))
                    or target.startswith("nbcache.ui")
                ):
                    ui_imports.append(name)
        # notebook JSON (a cell's outputs), a file's header and dask's event messages have
        # fields of the same names, and are no cell entry
        lines = [
            line
            for line in text.splitlines()
            if not any(other in line for other in ("cell.get(", "header.get(", "message.get("))
        ]
        if name != "run/records.py" and ENTRY_FIELDS.search("\n".join(lines)):
            indexing.append(name)
    print(f"modules over 500 lines ({len(long_modules)}):")
    for lines, name in sorted(long_modules, reverse=True):
        print(f"  {lines:5d} {name}")
    print(f"functions over 60 lines ({len(long_functions)}):")
    for size, name in sorted(long_functions, reverse=True):
        print(f"  {size:5d} {name}")
    print("largest classes:")
    for size, name in sorted(classes, reverse=True)[:3]:
        print(f"  {size:5d} {name}")
    print(f"modules indexing an entry or record by string ({len(indexing)}): {', '.join(indexing)}")
    print(
        f"modules outside ui/ and the CLI importing ui/ ({len(set(ui_imports))}): "
        f"{', '.join(sorted(set(ui_imports)))}"
    )


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent.parent / "nbcache")
