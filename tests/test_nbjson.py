"""The run that starts no kernel reads and writes notebooks without nbformat: what it
reads is what nbformat reads, what it writes is what nbformat writes, byte for byte,
and what nbformat would repair or convert it leaves to nbformat."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import nbformat
import pytest

from nbcache.notebooks import nbjson

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted(
    str(p.relative_to(ROOT)) for p in ROOT.rglob("*.ipynb") if ".venv" not in p.parts
)


def every_output() -> Any:
    """A notebook with every kind of output and the fields nbformat treats apart."""
    v4 = nbformat.v4
    nb = v4.new_notebook(
        metadata={"signature": "sha256:x", "kernelspec": {"name": "python3", "display_name": "P"}}
    )
    nb.cells = [
        v4.new_markdown_cell("# Title ü\nline", attachments={"a.png": {"image/png": "iVBO"}}),
        v4.new_code_cell(
            "print('a')\nx = 1\n",
            execution_count=1,
            outputs=[
                v4.new_output("stream", name="stdout", text="a\nb\n"),
                v4.new_output("stream", name="stderr", text="no newline"),
                v4.new_output(
                    "execute_result",
                    execution_count=1,
                    data={
                        "text/plain": "1\n2",
                        "text/html": "<b>x</b>\n",
                        "image/png": "iVBORw0KGgo=\n",
                        "image/svg+xml": "<svg>\n</svg>",
                        "application/javascript": "var a;\nvar b;",
                        "application/json": {"a": [1, "x\ny"]},
                        "application/vnd.custom+json": {"k": "v"},
                    },
                    metadata={"isolated": True},
                ),
                v4.new_output("display_data", data={"text/plain": ["already", " split"]}),
                v4.new_output("error", ename="E", evalue="v", traceback=["t1", "t2"]),
            ],
        ),
        v4.new_code_cell("", metadata={"trusted": True, "tags": ["t"]}),
        v4.new_raw_cell("raw\ntext"),
    ]
    return nb


@pytest.mark.filterwarnings("ignore:Cell is missing an id field")
@pytest.mark.parametrize("name", ["every output", *NOTEBOOKS])
def test_it_reads_and_writes_as_nbformat_does(tmp_path: Path, name: str) -> None:
    if name == "every output":
        nb = every_output()
    else:
        nb = nbformat.read(ROOT / name, as_version=4)
        nbformat.validator.normalize(nb)  # ids, as a notebook saved by JupyterLab has them
        nb.nbformat_minor = max(5, nb.nbformat_minor)
        nbformat.validator.normalize(nb)
    path = tmp_path / "nb.ipynb"
    nbformat.write(nb, path)
    ours = nbjson.read(path)
    assert ours is not None
    theirs = nbformat.read(path, as_version=4)
    assert json.dumps(ours, sort_keys=True) == json.dumps(theirs, sort_keys=True)
    assert ours.cells[0].source == theirs.cells[0].source  # attribute access as nbformat's
    assert nbjson.writes(ours) == nbformat.writes(theirs)
    nbjson.write(ours, tmp_path / "ours.ipynb")
    nbformat.write(theirs, tmp_path / "theirs.ipynb")
    assert (tmp_path / "ours.ipynb").read_bytes() == (tmp_path / "theirs.ipynb").read_bytes()


def test_what_nbformat_would_repair_or_convert_is_left_to_it(tmp_path: Path) -> None:
    path = tmp_path / "nb.ipynb"
    good = json.loads(nbformat.writes(every_output()))

    def changed(edit: Any) -> nbjson.Node | None:
        data = json.loads(json.dumps(good))
        edit(data)
        path.write_text(json.dumps(data))
        return nbjson.read(path)

    assert changed(lambda d: None) is not None
    assert changed(lambda d: d.update(nbformat_minor=4)) is None  # cells have no ids there
    assert changed(lambda d: d.update(nbformat=3)) is None
    assert changed(lambda d: d["cells"][1].pop("id")) is None  # nbformat makes one up
    assert changed(lambda d: d["cells"][1].update(id=d["cells"][0]["id"])) is None
    assert changed(lambda d: d["cells"][1].update(source=7)) is None
    assert changed(lambda d: d["cells"][1].pop("outputs")) is None
    assert changed(lambda d: d.update(cells={})) is None
    path.write_text("{not json")
    assert nbjson.read(path) is None
    assert nbjson.read(tmp_path / "missing.ipynb") is None


def test_reading_imports_no_nbformat(tmp_path: Path) -> None:
    """Importing nbformat (and jsonschema with it) took seconds of a run with no kernel;
    tests/notebooks/test_unchanged_notebook.py checks that whole run imports none."""
    nbformat.write(every_output(), tmp_path / "nb.ipynb")
    code = (
        "import sys\n"
        "import nbcache.__main__\n"
        "from nbcache.notebooks import nbjson, plan, runner\n"
        "assert 'nbformat' not in sys.modules, 'imported with nbcache run'\n"
        f"assert nbjson.read({str(tmp_path / 'nb.ipynb')!r}) is not None\n"
        "assert 'nbformat' not in sys.modules, 'imported by the read'\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


def output_cases() -> list[Any]:
    stream = {"output_type": "stream", "name": "stdout", "text": "a\n"}
    result = {
        "output_type": "execute_result",
        "execution_count": 3,
        "data": {"text/plain": ["1", "2"], "application/json": {"a": 1}},
        "metadata": {},
    }
    error = {"output_type": "error", "ename": "E", "evalue": "v", "traceback": ["t"]}
    shown = {"output_type": "display_data", "data": {"image/png": "iVBO"}, "metadata": {"m": 1}}
    return [
        stream,
        result,
        error,
        shown,
        {**result, "execution_count": None},
        {**result, "execution_count": -1},
        {**result, "execution_count": "3"},
        {**result, "data": {"application/vnd.x+json": [1, 2]}},
        {**result, "data": {"text/plain": {"a": 1}}},
        {**result, "data": {"text/plain": ["a", 1]}},
        {**result, "data": []},
        {**result, "metadata": []},
        {**shown, "execution_count": 1},
        {**stream, "text": 7},
        {**stream, "name": None},
        {**stream, "extra": 1},
        {k: v for k, v in stream.items() if k != "name"},
        {**error, "traceback": "t"},
        {**error, "evalue": 1},
        {"output_type": "other"},
        {"text": "a"},
        "not an output",
        [],
    ]


@pytest.mark.parametrize("output", output_cases())
def test_an_output_is_valid_as_nbformat_says(output: Any) -> None:
    from nbformat.validator import ValidationError, validate

    try:
        validate(output, ref="output", version=4, version_minor=5)
        theirs = True
    except ValidationError:
        theirs = False
    assert nbjson.valid_output(output) == theirs
    assert not nbjson.valid_output(None)  # nbformat's validate takes None for no argument
