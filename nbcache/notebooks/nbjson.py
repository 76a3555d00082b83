"""Notebooks read and written without nbformat, for the run that starts no kernel.

Importing nbformat imports jsonschema and its format checkers: on the development
machine that took 2.1 s of the 3.1 s ``nbcache run`` spent on an unchanged notebook
of 31 cells (the run itself, 0.16 s). That run only compares the cells' code with
the notebook's record and writes the stored outputs back, so it reads the JSON
itself (:func:`read`) and writes what ``nbformat.write`` writes, byte for byte
(:func:`write`). What it cannot read so (another format version, a cell without an
id or with a duplicate one, which nbformat would repair) goes through nbformat as
before, and so does every run that starts a kernel. nbformat's schema check, which
only logs, is not made here: the notebook's record was made from a run of the same
code, which nbformat read.
"""

from __future__ import annotations

import copy
import json
import os
import re
from typing import Any

__all__ = ["Node", "node", "read", "valid_output", "write", "writes"]

# Mime types nbformat writes as lists of lines, besides text/*.
_SPLIT = ("application/javascript", "image/svg+xml")
# Each output type's fields in nbformat's v4.5 schema: all required, no others allowed.
_OUTPUT_FIELDS = {
    "execute_result": {"output_type", "data", "metadata", "execution_count"},
    "display_data": {"output_type", "data", "metadata"},
    "stream": {"output_type", "name", "text"},
    "error": {"output_type", "ename", "evalue", "traceback"},
}
_JSON_MIME = re.compile(r"application/(.*\+)?json")


class Node(dict[str, Any]):
    """A notebook's dict with attribute access, as nbformat's ``NotebookNode`` has it."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def __setattr__(self, name: str, value: Any) -> None:
        self[name] = value

    def __delattr__(self, name: str) -> None:
        try:
            del self[name]
        except KeyError:
            raise AttributeError(name) from None


def node(value: Any) -> Any:
    """``value`` with every dict in it a :class:`Node` (nbformat's ``from_dict``)."""
    if isinstance(value, dict):
        return Node({k: node(v) for k, v in value.items()})
    if isinstance(value, (list, tuple)):
        return [node(v) for v in value]
    return value


def read(path: str | os.PathLike[str]) -> Node | None:
    """The notebook at ``path`` as nbformat reads it, when it is one nbformat would take
    as it is: format 4.5 or later, every cell with an id of its own. None otherwise
    (and for what is no notebook): nbformat then reads it and says what is wrong."""
    try:
        with open(path, encoding="utf8") as f:
            data = json.load(f)
    except (OSError, ValueError):
        return None
    if not _plain(data):
        return None
    nb: Node = node(data)
    for cell in nb.cells:
        _rejoin(cell)
    _strip_transient(nb)
    return nb


def _plain(data: Any) -> bool:
    if not isinstance(data, dict) or data.get("nbformat") != 4:
        return False
    minor, cells = data.get("nbformat_minor"), data.get("cells")
    if not isinstance(minor, int) or minor < 5 or not isinstance(cells, list):
        return False
    if not isinstance(data.get("metadata"), dict):
        return False
    ids = set()
    for cell in cells:
        if not isinstance(cell, dict) or not isinstance(cell.get("metadata"), dict):
            return False
        if not isinstance(cell.get("id"), str) or cell["id"] in ids:
            return False
        ids.add(cell["id"])
        if not isinstance(cell.get("cell_type"), str):
            return False
        source = cell.get("source")
        if not (isinstance(source, str) or _lines(source)):
            return False
        if cell["cell_type"] == "code" and not isinstance(cell.get("outputs"), list):
            return False
    return True


def _lines(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(line, str) for line in value)


def _is_json_mime(mime: str) -> bool:
    return mime == "application/json" or (
        mime.startswith("application/") and mime.endswith("+json")
    )


def _rejoin(cell: Node) -> None:
    """nbformat's ``rejoin_lines`` for one cell."""
    if isinstance(cell.get("source"), list):
        cell.source = "".join(cell.source)
    for attachment in cell.get("attachments", {}).values():
        _rejoin_bundle(attachment)
    if cell.get("cell_type") == "code":
        for output in cell.get("outputs", []):
            kind = output.get("output_type", "")
            if kind in ("execute_result", "display_data"):
                _rejoin_bundle(output.get("data", {}))
            elif kind and isinstance(output.get("text", ""), list):
                output.text = "".join(output.text)


def _rejoin_bundle(data: dict[str, Any]) -> None:
    for key, value in list(data.items()):
        if not _is_json_mime(key) and _lines(value):
            data[key] = "".join(value)


def _split_bundle(data: dict[str, Any]) -> None:
    for key, value in list(data.items()):
        if isinstance(value, str) and (key.startswith("text/") or key in _SPLIT):
            data[key] = value.splitlines(True)


def _strip_transient(nb: dict[str, Any]) -> None:
    for key in ("orig_nbformat", "orig_nbformat_minor", "signature"):
        nb["metadata"].pop(key, None)
    for cell in nb["cells"]:
        cell["metadata"].pop("trusted", None)


def writes(nb: dict[str, Any]) -> str:
    """The text ``nbformat.writes`` gives for ``nb`` (nbformat's v4 JSON writer)."""
    nb = copy.deepcopy(nb)
    for cell in nb["cells"]:  # nbformat's split_lines
        if isinstance(cell.get("source"), str):
            cell["source"] = cell["source"].splitlines(True)
        for attachment in cell.get("attachments", {}).values():
            _split_bundle(attachment)
        if cell["cell_type"] == "code":
            for output in cell["outputs"]:
                if output["output_type"] in ("execute_result", "display_data"):
                    _split_bundle(output.get("data", {}))
                elif output["output_type"] == "stream" and isinstance(output["text"], str):
                    output["text"] = output["text"].splitlines(True)
    _strip_transient(nb)
    return json.dumps(
        nb, indent=1, sort_keys=True, separators=(",", ": "), ensure_ascii=False, default=_ascii
    )


def _ascii(value: Any) -> str:
    """nbformat's ``BytesEncoder``: base64 (or other ASCII) bytes written as text."""
    if isinstance(value, bytes):
        return value.decode("ascii")
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def write(nb: dict[str, Any], path: str | os.PathLike[str]) -> None:
    """``nbformat.write(nb, path)``, byte for byte."""
    text = writes(nb)
    with open(path, "w", encoding="utf8") as f:
        f.write(text if text.endswith("\n") else text + "\n")


def valid_output(output: Any) -> bool:
    """Whether nbformat's v4.5 schema accepts ``output`` (its ``output`` definition),
    checked without importing nbformat; an integer is an ``int`` here, where jsonschema
    also takes a float such as 1.0: refusing more only starts a kernel."""
    if not isinstance(output, dict) or output.get("output_type") not in _OUTPUT_FIELDS:
        return False
    kind = output["output_type"]
    if set(output) != _OUTPUT_FIELDS[kind]:
        return False
    if kind == "stream":
        return isinstance(output["name"], str) and _text(output["text"])
    if kind == "error":
        return (
            isinstance(output["ename"], str)
            and isinstance(output["evalue"], str)
            and _lines(output["traceback"])
        )
    count = output.get("execution_count")
    if count is not None and (not isinstance(count, int) or isinstance(count, bool) or count < 0):
        return False
    data = output["data"]
    return (
        isinstance(output["metadata"], dict)
        and isinstance(data, dict)
        and all(_JSON_MIME.fullmatch(mime) or _text(value) for mime, value in data.items())
    )


def _text(value: Any) -> bool:
    return isinstance(value, str) or _lines(value)
