"""The package's shape holds: no import cycles, no private names across modules, modules
of a readable size (the layers themselves are import-linter's, run by .ci/run)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import nbcache

PACKAGE = Path(nbcache.__file__).parent
LONGEST = 500  # lines; a module past this holds more than one concern
LONGEST_FUNCTION = 60  # lines; a function past this does more than one thing


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> list[tuple[str, list[str]]]:
    """Every import in the module, at any depth (a lazy import is still an arrow):
    ``(module, names)`` with relative imports resolved."""
    here = _module_name(path)
    package = here if path.name == "__init__.py" else here.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(alias.name, []) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")
            if node.level:
                base = base[: len(base) - node.level + 1]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            found.append((target, [alias.name for alias in node.names]))
    return found


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in PACKAGE.rglob("*.py")}


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        for target, names in _imports(path):
            for candidate in [f"{target}.{n}" for n in names] + [target]:
                if candidate in modules and candidate != name:
                    graph[name].add(candidate)
                    break
    return graph


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Each cycle found by a depth-first walk, as the path that closes it."""
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append([*trail[trail.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt, [*trail, nxt])
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node, [node])
    return cycles


def test_no_import_cycles() -> None:
    """No module reaches itself through imports, lazy ones included."""
    graph = _graph()
    # A package's __init__ re-exports what lies below it; count module-to-module arrows.
    packages = {name for name, path in _modules().items() if path.name == "__init__.py"}
    edges = {a: targets - packages for a, targets in graph.items() if a not in packages}
    assert _cycles(edges) == []


def test_the_cycle_search_finds_cycles() -> None:
    """The search is not blind: a cycle through three modules is found, a chain is not."""
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c", "a"]]
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": set()}) == []


def test_no_private_names_cross_modules() -> None:
    """``from x import _y`` only within one module's own tests, never between modules."""
    modules = _modules()
    crossings = [
        f"{_module_name(path)} imports {target}.{name}"
        for path in modules.values()
        for target, names in _imports(path)
        if target.startswith("nbcache")
        for name in names
        if name.startswith("_") and not name.startswith("__")
    ]
    assert crossings == []


def test_modules_stay_readable() -> None:
    """No module grows past a few hundred lines of one concern."""
    long = {
        _module_name(p): n
        for p in PACKAGE.rglob("*.py")
        if (n := len(p.read_text().splitlines())) > LONGEST
    }
    assert long == {}


def test_functions_stay_readable() -> None:
    """No function or method grows past one screen."""
    long = {
        f"{_module_name(p)}.{node.name}": size
        for p in PACKAGE.rglob("*.py")
        for node in ast.walk(ast.parse(p.read_text()))
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
        and (size := (node.end_lineno or node.lineno) - node.lineno + 1) > LONGEST_FUNCTION
    }
    assert long == {}


ARCHITECTURE = PACKAGE.parent / "docs" / "architecture.md"


def modules_missing_from(doc: str) -> list[str]:
    """Module files under nbcache/ whose path (relative to nbcache/, in backquotes) the
    architecture document does not name."""
    paths = sorted(p.relative_to(PACKAGE).as_posix() for p in PACKAGE.rglob("*.py"))
    return [path for path in paths if f"`{path}`" not in doc]


def test_the_architecture_names_every_module() -> None:
    """docs/architecture.md has a row for every module, so a newcomer finds each one."""
    missing = modules_missing_from(ARCHITECTURE.read_text())
    assert missing == [], f"add a row to docs/architecture.md's module table for {missing}"


def rows_without_a_module(doc: str) -> list[str]:
    """Paths in the module table's first column that name no file under nbcache/."""
    rows = re.findall(r"^\| `([\w/]+\.py)` \|", doc, flags=re.MULTILINE)
    return [row for row in rows if not (PACKAGE / row).is_file()]


def test_the_architecture_names_no_module_that_is_gone() -> None:
    gone = rows_without_a_module(ARCHITECTURE.read_text())
    assert gone == [], f"docs/architecture.md has rows for modules that are gone: {gone}"


def test_a_module_left_out_of_the_architecture_is_found() -> None:
    doc = ARCHITECTURE.read_text().replace("`run/plan.py`", "`run/plan`")
    assert "run/plan.py" in modules_missing_from(doc)
    assert rows_without_a_module(doc + "| `run/gone.py` | a module removed since |\n") == [
        "run/gone.py"
    ]


ROOT = PACKAGE.parent
# A reference a reader cannot follow: an issue number, a finding code, a spec that is
# not in the repository. Say what the thing is about instead.
_DANGLING = re.compile(r"\b[Ii]ssues? #?\d+\b|\bW\d+\b|\b[Tt]he spec\b|\bspec's\b|\b[Tt]he issue\b")
# the notebook corpus's manifest and findings, which name their findings by code
_CORPUS = ROOT / "tests" / "notebooks" / "transparency"


def dangling_references(paths: list[Path]) -> list[str]:
    """``path:line: text`` for each line of ``paths`` with a reference to nothing."""
    return [
        f"{path.relative_to(ROOT) if ROOT in path.parents else path}:{number}: {line.strip()}"
        for path in paths
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1)
        if _DANGLING.search(line)
    ]


def _prose_and_code() -> list[Path]:
    found = [ROOT / "README.md", ROOT / "CONTRIBUTING.md"]
    for folder in ("nbcache", "docs", "tests", "benchmarks"):
        for suffix in ("py", "md"):
            found += [p for p in (ROOT / folder).rglob(f"*.{suffix}") if _CORPUS not in p.parents]
    return [p for p in found if p.is_file()]


def test_nothing_points_at_issue_numbers_finding_codes_or_an_outside_spec() -> None:
    assert dangling_references(_prose_and_code()) == []


def test_a_dangling_reference_is_found(tmp_path: Path) -> None:
    spec, issue, code = "the " + "spec", "issue " + "11", "W" + "4"  # not found here
    lines = [f"fixed in {issue}", f"see {code}", f"as {spec} says", "plain", f"{code}x", "tissue 3"]
    (tmp_path / "note.md").write_text("\n".join(lines))
    found = dangling_references([tmp_path / "note.md"])
    assert [f.rpartition(": ")[2] for f in found] == lines[:3]
