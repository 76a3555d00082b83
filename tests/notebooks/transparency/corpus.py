"""The transparency corpus: public notebooks kept in the repository beside this file.

``corpus.json`` names, for each notebook, the PyPI package and exact version it
comes from, its path inside that package's sdist, its project's URL and licence,
the SHA-256 of the file, and every edit applied to it (by the code here, when
the notebook is built). The files themselves, with each package's licence file,
are kept under ``notebooks/<package>-<version>/<path>`` so that no test needs the
network: a notebook whose bytes differ from the manifest's SHA-256 is refused.

``python -m tests.notebooks.transparency --vendor`` fetches the archives again
with this interpreter's pip (slow: pip prepares an sdist's metadata, which for
statsmodels and scikit-learn means compiling them) and rewrites that folder; use
it when a package's version in the manifest changes.

A notebook is either a real ``.ipynb`` or a sphinx-gallery script (``# %%``
or ``####`` separated blocks), which is split into cells the way
sphinx-gallery makes its own "download as notebook" files.  Only code cells
are kept: cell numbers in the manifest count code cells of the source from 0.
"""

from __future__ import annotations

import ast
import hashlib
import json
import re
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
MANIFEST = HERE / "corpus.json"
VENDORED = HERE / "notebooks"


class CorpusError(RuntimeError):
    """The corpus cannot be obtained or does not match its manifest."""


@dataclass
class Notebook:
    """One notebook of the corpus, ready to run: its code cells and its manifest entry."""

    id: str
    package: str
    version: str
    path: str
    url: str
    licence: str
    cells: list[str]
    numbers: list[int]  # each cell's number in the source (code cells counted from 0)
    edits: list[dict[str, Any]] = field(default_factory=list)
    known: list[dict[str, Any]] = field(default_factory=list)
    source_cells: int = 0  # code cells in the source, before edits


def load_manifest(path: Path = MANIFEST) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))  # type: ignore[no-any-return]


def vendored(name: str, pkg: dict[str, Any], member: str) -> Path:
    """Where the repository keeps the file ``member`` of package ``name``'s archive."""
    return VENDORED / f"{name}-{pkg['version']}" / member


# -- fetching the archives again (maintainers only; no test calls this) --------------


def download(name: str, pkg: dict[str, Any], folder: Path, *, log: Any = None) -> Path:
    """The package's archive, downloaded with pip into ``folder`` and checked."""
    spec = f"{name}=={pkg['version']}"
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(folder)]
    if pkg["archive"] == "sdist":
        # --no-binary NAME only: the sdist's build requirements may still be wheels
        # (pip prepares the sdist's metadata, which needs them).
        cmd += ["--no-binary", name]
    else:
        cmd += ["--only-binary", ":all:"]
    cmd.append(spec)
    if log is not None:
        log(f"transparency: downloading {spec} ({pkg['archive']})")
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=3600, check=False)
    got = folder / pkg["file"]
    if done.returncode != 0 or not got.exists():
        raise CorpusError(
            f"pip download {spec} failed (exit {done.returncode}):\n"
            f"{done.stdout[-2000:]}\n{done.stderr[-4000:]}"
        )
    digest = _sha256(got.read_bytes())
    if digest != pkg["sha256"]:
        raise CorpusError(f"{pkg['file']}: SHA-256 {digest} is not the manifest's {pkg['sha256']}")
    return got


def vendor(manifest: dict[str, Any] | None = None, *, log: Any = None) -> list[Path]:
    """Fetch every package's archive and write its notebooks and licence file into
    ``notebooks/``; the files written."""
    manifest = load_manifest() if manifest is None else manifest
    written = []
    with tempfile.TemporaryDirectory(prefix="nbcache-corpus-") as tmp:
        for name, pkg in manifest["packages"].items():
            archive = download(name, pkg, Path(tmp), log=log)
            members = [n["path"] for n in manifest["notebooks"] if n["package"] == name]
            for member in [*members, pkg["licence_file"]]:
                target = vendored(name, pkg, member)
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(_read_member(archive, member))
                written.append(target)
    return written


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _read_member(archive: Path, member: str) -> bytes:
    """``member`` (a path inside the project: sdists' top folder is implied) of ``archive``."""
    if archive.name.endswith((".tar.gz", ".tgz")):
        with tarfile.open(archive) as tar:
            names = tar.getnames()
            top = names[0].split("/", 1)[0]
            f = tar.extractfile(f"{top}/{member}")
            if f is None:
                raise CorpusError(f"{archive.name}: {member} is not a file")
            return f.read()
    with zipfile.ZipFile(archive) as zf:
        return zf.read(member)


# -- notebooks -------------------------------------------------------------------------

_SEPARATOR = re.compile(r"^(# ?%%.*|#{20,}\s*)$")


def split_script(text: str) -> list[str]:
    """A sphinx-gallery script's code blocks, the way sphinx-gallery splits it: the
    module docstring and each block's leading comment lines are text, not code."""
    tree = ast.parse(text)
    lines = text.splitlines()
    start = 0
    if (
        tree.body
        and isinstance(tree.body[0], ast.Expr)
        and isinstance(getattr(tree.body[0], "value", None), ast.Constant)
        and isinstance(tree.body[0].value.value, str)
    ):
        start = tree.body[0].end_lineno or 0
    blocks: list[list[str]] = [[]]
    for line in lines[start:]:
        if _SEPARATOR.match(line):
            blocks.append([])
        else:
            blocks[-1].append(line)
    cells = []
    for i, block in enumerate(blocks):
        # A block right after a separator starts with its text: comment lines.
        if i > 0:
            while block and (block[0].startswith("#") or not block[0].strip()):
                block.pop(0)
        while block and not block[-1].strip():
            block.pop()
        while block and not block[0].strip():
            block.pop(0)
        if block:
            cells.append("\n".join(block))
    return cells


def code_cells(path: Path) -> list[str]:
    """The code cells of an ``.ipynb`` or a gallery ``.py`` file, in order."""
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".py":
        return split_script(text)
    nb = json.loads(text)
    out = []
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            src = cell["source"]
            out.append("".join(src) if isinstance(src, list) else src)
    return out


def apply_edits(nb_id: str, cells: list[str], edits: list[dict[str, Any]]) -> list[tuple[int, str]]:
    """``(source cell number, code)`` after the manifest's edits, which name cells by their
    number in the source.

    - ``{"drop": [3, 4], "why": ...}`` leaves those cells out;
    - ``{"cell": 2, "replace": [old, new], "why": ...}`` replaces text that must be there.
    """
    cells = list(cells)
    dropped: set[int] = set()
    for edit in edits:
        if "why" not in edit:
            raise CorpusError(f"{nb_id}: every edit says why: {edit}")
        if "drop" in edit:
            for i in edit["drop"]:
                if not 0 <= i < len(cells):
                    raise CorpusError(f"{nb_id}: no code cell {i} to drop")
                dropped.add(i)
        elif "replace" in edit:
            i = edit["cell"]
            old, new = edit["replace"]
            if old not in cells[i]:
                raise CorpusError(f"{nb_id}: cell {i} has no {old!r} to replace")
            cells[i] = cells[i].replace(old, new)
        else:
            raise CorpusError(f"{nb_id}: unknown edit {edit}")
    return [(i, c) for i, c in enumerate(cells) if i not in dropped]


def notebooks(manifest: dict[str, Any] | None = None) -> list[Notebook]:
    """Every notebook of the manifest, read from the repository and checked, edits applied."""
    manifest = load_manifest() if manifest is None else manifest
    packages = manifest["packages"]
    out = []
    for entry in manifest["notebooks"]:
        name = entry["package"]
        pkg = packages[name]
        path = vendored(name, pkg, entry["path"])
        if not path.is_file():
            raise CorpusError(
                f"{entry['id']}: {path} is missing; "
                "`python -m tests.notebooks.transparency --vendor` fetches it"
            )
        digest = _sha256(path.read_bytes())
        if digest != entry["sha256"]:
            raise CorpusError(
                f"{entry['id']}: {entry['path']} has SHA-256 {digest}, "
                f"the manifest says {entry['sha256']}"
            )
        source = code_cells(path)
        kept = apply_edits(entry["id"], source, entry.get("edits", []))
        out.append(
            Notebook(
                id=entry["id"],
                package=name,
                version=pkg["version"],
                path=entry["path"],
                url=pkg["url"],
                licence=pkg["licence"],
                cells=[c for _, c in kept],
                numbers=[i for i, _ in kept],
                edits=entry.get("edits", []),
                known=entry.get("known", []),
                source_cells=len(source),
            )
        )
    return out
