"""Sphinx with MyST-NB over a notebook nbcache executes, built by the real sphinx-build:
executed by ``nbcache run`` and built with execution off, or executed by MyST-NB itself
in the nbcache kernel; either way a second build executes no cell body."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import nbformat

from .clients import BIN, client_env, executed, outcomes, write_notebook

CELLS = [
    ("load", "open('runs.log', 'a').write('load\\n')\nraw = list(range(1000))"),
    (
        "total",
        "open('runs.log', 'a').write('total\\n')\ntotal = sum(raw)\nprint('total is', total)",
    ),
    ("half", "open('runs.log', 'a').write('half\\n')\nf'half is {total / 2}'"),
]
BODIES = ["load", "total", "half"]
CONF = """\
extensions = ["myst_nb"]
exclude_patterns = ["_build"]
nb_execution_mode = {mode!r}
nb_kernel_rgx_aliases = {aliases!r}
"""
INDEX = "# Docs\n\n```{toctree}\nanalysis\n```\n"


def project(root: Path, mode: str, aliases: dict[str, str] | None = None) -> Path:
    docs = root / "docs"
    docs.mkdir()
    (docs / "conf.py").write_text(CONF.format(mode=mode, aliases=aliases or {}))
    (docs / "index.md").write_text(INDEX)
    write_notebook(docs / "analysis.ipynb", CELLS)
    return docs


def run(args: list[str], cwd: Path, env: dict[str, str]) -> str:
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    return done.stdout


def build(docs: Path, env: dict[str, str], out: str) -> str:
    """``python -m sphinx`` into a new folder (so every page is read again); the page."""
    run([sys.executable, "-m", "sphinx", "-q", "-b", "html", ".", f"_build/{out}"], docs, env)
    return (docs / "_build" / out / "analysis.html").read_text()


def shows_outputs(html: str) -> bool:
    return "total is 499500" in html and "half is 249750.0" in html


def test_nbcache_run_then_a_build_with_execution_off(tmp_path: Path) -> None:
    env = client_env(tmp_path)
    docs = project(tmp_path, "off")
    nbcache = [str(BIN / "nbcache"), "run", "analysis.ipynb"]

    run(nbcache, docs, env)
    assert executed(docs) == BODIES
    assert shows_outputs(build(docs, env, "first"))

    summary = run(nbcache, docs, env)  # nothing changed: every cell restores
    assert executed(docs) == []
    assert "3 code cells, 3 restored, 0 ran" in summary
    assert shows_outputs(build(docs, env, "second"))


def test_myst_nb_executes_in_the_nbcache_kernel(tmp_path: Path) -> None:
    env = client_env(tmp_path)
    # the kernelspec for this user, whose folder client_env keeps under tmp_path
    run([str(BIN / "nbcache"), "kernel", "install", "--user"], tmp_path, env)
    docs = project(tmp_path, "force", {"python3": "nbcache"})

    assert shows_outputs(build(docs, env, "first"))
    assert executed(docs) == BODIES
    assert [outcome for _, outcome in outcomes(tmp_path)] == ["ran"] * 3

    assert shows_outputs(build(docs, env, "second"))  # MyST-NB executes it again ...
    assert executed(docs) == []  # ... and every cell restores
    assert [outcome for _, outcome in outcomes(tmp_path)] == ["restored"] * 3


def test_jupyter_cache_re_executes_an_edited_notebook_and_the_nbcache_kernel_restores(
    tmp_path: Path,
) -> None:
    env = client_env(tmp_path)
    run([str(BIN / "nbcache"), "kernel", "install", "--user"], tmp_path, env)
    docs = project(tmp_path, "cache", {"python3": "nbcache"})
    assert shows_outputs(build(docs, env, "first"))
    assert executed(docs) == BODIES
    outcomes(tmp_path)

    # jupyter-cache re-executes a notebook whole when any cell changes: the nbcache kernel
    # restores the cells the edit did not reach
    nb = nbformat.read(docs / "analysis.ipynb", as_version=4)
    nb.cells[-1].source = nb.cells[-1].source.replace("half is", "a half is")
    nbformat.write(nb, docs / "analysis.ipynb")
    html = build(docs, env, "second")
    assert "a half is 249750.0" in html
    assert executed(docs) == ["half"]
    assert [outcome for _, outcome in outcomes(tmp_path)] == ["restored", "restored", "ran"]
