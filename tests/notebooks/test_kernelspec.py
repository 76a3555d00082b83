"""``nbcache kernel install``: the kernelspec it writes, and that kernel run by a tool
that knows only kernel names (``jupyter execute``): a second run restores every cell."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from nbcache.__main__ import main
from nbcache.notebooks.runner import KERNEL_ARGUMENTS

from .clients import BIN, client_env, executed, outcomes, write_notebook


def spec_at(folder: Path) -> dict[str, object]:
    return dict(json.loads((folder / "kernel.json").read_text()))


def test_install_under_a_prefix_writes_the_nbcache_kernelspec(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["kernel", "install", "--prefix", str(tmp_path)]) == 0
    spec = spec_at(tmp_path / "share" / "jupyter" / "kernels" / "nbcache")
    assert spec["argv"] == [
        sys.executable,
        "-m",
        "ipykernel_launcher",
        "-f",
        "{connection_file}",
        *KERNEL_ARGUMENTS,  # nbcache loaded as nbcache run's kernel loads it
    ]
    assert spec["display_name"] == "Python 3 (nbcache)"
    assert spec["language"] == "python"
    assert spec["env"] == {"NBCACHE_AUTO": "1"}
    assert not (tmp_path / ".nbcache").exists()  # installing opens no store


def test_install_for_the_user_with_another_name(tmp_path: Path) -> None:
    env = client_env(tmp_path)
    done = subprocess.run(
        [str(BIN / "nbcache"), "kernel", "install", "--user", "--name", "cached"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    folder = tmp_path / "jupyter-data" / "kernels" / "cached"
    assert f"installed the kernelspec 'cached' in {folder}" in done.stdout
    assert spec_at(folder)["display_name"] == "Python 3 (nbcache)"
    listed = subprocess.run(
        [str(BIN / "jupyter"), "kernelspec", "list", "--json"], env=env, capture_output=True
    )
    assert str(folder) == json.loads(listed.stdout)["kernelspecs"]["cached"]["resource_dir"]


def test_jupyter_execute_in_the_nbcache_kernel_restores_the_second_run(tmp_path: Path) -> None:
    env = client_env(tmp_path)
    subprocess.run([str(BIN / "nbcache"), "kernel", "install", "--user"], env=env, check=True)
    cells = [
        ("setup", "%load_ext nbcache"),  # the kernel has it already: this stays silent
        ("load", "open('runs.log', 'a').write('load\\n')\nraw = list(range(1000))"),
        ("total", "open('runs.log', 'a').write('total\\n')\ntotal = sum(raw)\ntotal"),
    ]
    write_notebook(tmp_path / "nb.ipynb", cells, kernel="nbcache")
    command = [str(BIN / "jupyter"), "execute", "--inplace", "nb.ipynb"]
    shown = []
    for _ in range(2):
        done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        nb = nbformat.read(tmp_path / "nb.ipynb", as_version=4)
        assert nb.cells[1].outputs == []
        shown.append(nb.cells[3].outputs[0].data["text/plain"])
    assert shown == ["499500", "499500"]
    assert executed(tmp_path) == ["load", "total"]  # the first run only
    first, second = ["uncached", "ran", "ran"], ["uncached", "restored", "restored"]
    assert [outcome for _, outcome in outcomes(tmp_path)] == [*first, *second]
