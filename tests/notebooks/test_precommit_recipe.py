"""pre-commit keeping executed notebooks up to date, run by the real pre-commit (offline:
a local hook on this venv's ``nbcache run``): the first run executes and writes the
outputs, a second restores every cell and changes no byte, an edit re-runs only the
edited cell."""

from __future__ import annotations

import subprocess
from pathlib import Path

import nbformat

from .clients import BIN, client_env, executed, write_notebook

REPO = Path(__file__).resolve().parents[2]
CONFIG = f"""\
repos:
  - repo: local
    hooks:
      - id: nbcache-run
        name: nbcache run
        entry: {BIN / "nbcache"} run
        language: system
        files: \\.ipynb$
        require_serial: true
"""


def cells(name: str) -> list[tuple[str, str]]:
    log = f"open('runs.log', 'a').write('{name}-"
    return [
        ("load", f"{log}load\\n')\nraw = list(range(1000))"),
        ("total", f"{log}total\\n')\ntotal = sum(raw)\nprint('{name} total', total)"),
    ]


def git(repo: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True)


def pre_commit(repo: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "pre-commit"), "run", "--all-files", "--verbose"],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )


def test_the_hook_manifest_is_valid() -> None:
    done = subprocess.run(
        [str(BIN / "pre-commit"), "validate-manifest", str(REPO / ".pre-commit-hooks.yaml")],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    text = (REPO / ".pre-commit-hooks.yaml").read_text()
    for line in ("- id: nbcache-run", "entry: nbcache run", "language: python", "files: \\.ipynb$"):
        assert line in text


def test_pre_commit_executes_notebooks_and_a_second_run_restores(tmp_path: Path) -> None:
    env = client_env(tmp_path)
    env["PRE_COMMIT_HOME"] = str(tmp_path / "pre-commit-home")
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q")
    (repo / ".pre-commit-config.yaml").write_text(CONFIG)
    for name in ("a", "b"):
        write_notebook(repo / f"{name}.ipynb", cells(name))
    git(repo, "add", ".")

    first = pre_commit(repo, env)
    assert first.returncode == 1, first.stdout  # as a formatter does: files were modified
    assert "files were modified by this hook" in first.stdout
    assert executed(repo) == ["a-load", "a-total", "b-load", "b-total"]  # one call, both files
    b = nbformat.read(repo / "b.ipynb", as_version=4)
    assert b.cells[2].outputs[0].text == "b total 499500\n"

    git(repo, "add", ".")
    second = pre_commit(repo, env)
    assert second.returncode == 0, second.stdout  # nothing changed, not even a timestamp
    assert executed(repo) == []
    assert second.stdout.count("2 code cells, 2 restored, 0 ran") == 2

    edited = nbformat.read(repo / "a.ipynb", as_version=4)
    edited.cells[2].source = edited.cells[2].source.replace("'a total'", "'a sum'")
    nbformat.write(edited, repo / "a.ipynb")
    git(repo, "add", ".")
    third = pre_commit(repo, env)
    assert third.returncode == 1
    assert executed(repo) == ["a-total"]
    a = nbformat.read(repo / "a.ipynb", as_version=4)
    assert a.cells[2].outputs[0].text == "a sum 499500\n"
