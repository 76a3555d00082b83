"""The records a cached cell leaves, typed, each with the one reader of its stored form.

- :class:`CellEntry`: what the store keeps of a cell run (its variables, output,
  result and what it changed outside the namespace), pickled as a plain dict;
- :class:`LatestRun`: what the ledger notes of a cell's last run (its key summary, for
  ``why``, and what a plan needs of a cell kept in memory only), JSON;
- :class:`HeaderRecord`: what an entry's signed header keeps so that a hit restores
  without loading a value (see :mod:`nbcache.run.lazy`), JSON.

The stored forms stay plain dicts with the keys they always had, so entries and
records written before these classes existed read as they did. Each ``read`` takes
whatever came from the store, the ledger or a header and gives the record, or None
when it is not one of ours (malformed, forged, of another shape): a miss, never an
error. No other module indexes these records by their keys.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..entry.codefirst import code_first

if TYPE_CHECKING:
    from ..keys.scope import CellKey

__all__ = [
    "CellEntry",
    "Checkpoint",
    "EntryInputs",
    "HeaderRecord",
    "LatestRun",
    "RecordedVar",
    "header_meta",
    "imports_of_meta",
    "modules_of_meta",
]

# the header's metadata key under which a cell's record is signed
_HEADER_KEY = "recorded"
# the same for a record with imports, which versions before those stand-ins never read
_IMPORTS_KEY = "recorded_deferred"
# an entry restored in full: the modules it binds that a stand-in may import later
_MODULES_KEY = "deferred_modules"
# the modules the cell's imports had loaded when it ended, in its order: what a lazy
# run imports for it before any cell runs after it
_IMPORTED_KEY = "imported_in_order"
# what every entry ever stored holds; the keys added since may be missing
_ENTRY_REQUIRED = frozenset({"vars", "deleted", "outputs", "result"})
# what a latest record keeps beside the key summary
_LATEST_OWN = ("seconds", "key", "stored", "digests", "deleted")


def _str_list(value: Any) -> list[str] | None:
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        return list(value)
    return None


def _str_keys(value: Any) -> dict[str, Any] | None:
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        return dict(value)
    return None


def _file_names(value: Any, state: type) -> dict[str, Any] | None:
    """``{path: state}`` as a record of files keeps it: names the OS accepts (a NUL in
    one makes every call on it raise), each state of its type; None when it is not."""
    names = _str_keys(value)
    if names is None or any("\0" in name for name in names):
        return None
    if not all(isinstance(v, state) for v in names.values()):
        return None
    return names


@dataclass(frozen=True)
class CellEntry:
    """What the store keeps of one run of a cell."""

    vars: dict[str, Any]  # what it bound or mutated (modules as ``ModuleRef``)
    deleted: list[str] = field(default_factory=list)  # the names it deleted
    outputs: list[tuple[Any, ...]] = field(default_factory=list)  # its output, in order
    result: Any = None  # its last expression's value (``NO_RESULT``, ``MemoryOnly``)
    digests: dict[str, str | None] = field(default_factory=dict)  # None: not hashable
    plain: list[str] = field(default_factory=list)  # names whose hashing reached no code
    effects: dict[str, Any] = field(default_factory=dict)  # outside state it changed
    shared: list[str] = field(default_factory=list)  # names sharing an object with another
    file_contents: dict[str, bytes] = field(default_factory=dict)  # files kept, by path
    wrote: dict[str, list[Any]] = field(default_factory=dict)  # files written, their states

    def stored(self) -> dict[str, Any]:
        """The form the cache keeps and the store pickles: a plain dict, whose parts the
        memory layer can hold one by one."""
        return {
            "vars": code_first(self.vars),
            "deleted": self.deleted,
            "outputs": self.outputs,
            "result": self.result,
            "digests": self.digests,
            "plain": self.plain,
            "effects": self.effects,
            "shared": self.shared,
            "file_contents": self.file_contents,
            "wrote": self.wrote,
        }

    @classmethod
    def read(cls, value: Any) -> CellEntry | None:
        """The entry ``value`` (as the cache gives it back) holds; None when it is none.
        Keys added after the first entries were stored may be missing: they default."""
        if not isinstance(value, dict) or not _ENTRY_REQUIRED.issubset(value):
            return None
        variables = _str_keys(value["vars"])
        deleted = _str_list(value["deleted"])
        outputs = value["outputs"]
        digests = _str_keys(value.get("digests", {}))
        plain = _str_list(value.get("plain", []))
        shared = _str_list(value.get("shared", []))
        effects = _str_keys(value.get("effects") or {})
        contents = _str_keys(value.get("file_contents") or {})
        wrote = _str_keys(value.get("wrote") or {})
        if (
            variables is None
            or deleted is None
            or not isinstance(outputs, list)
            or not all(isinstance(event, (tuple, list)) and event for event in outputs)
            or digests is None
            or not all(d is None or isinstance(d, str) for d in digests.values())
            or plain is None
            or shared is None
            or effects is None
            or contents is None
            or not all(isinstance(data, bytes) for data in contents.values())
            or wrote is None
            or not all(isinstance(state, list) for state in wrote.values())
        ):
            return None
        return cls(
            variables,
            deleted,
            [tuple(event) for event in outputs],
            value["result"],
            digests,
            plain,
            effects,
            shared,
            contents,
            wrote,
        )


@dataclass(frozen=True)
class LatestRun:
    """What the ledger notes of the last run of a cell: its key summary, and what a
    plan needs of a cell kept in memory only (the key it had, the digests of what it
    bound, which the keys after it hashed)."""

    summary: dict[str, Any]  # the key summary (``why`` compares two), as keys.calls reads it
    seconds: float | None = None  # how long its body took
    key: str | None = None  # its key; None: not noted (a background cell's run)
    stored: int = 0  # its entry's size in the store; 0: kept in memory only
    digests: dict[str, str] = field(default_factory=dict)
    deleted: list[str] = field(default_factory=list)

    @classmethod
    def of_entry(cls, key: CellKey, seconds: float, stored: int, entry: CellEntry) -> LatestRun:
        """The record of a run that made ``entry`` under ``key``: what a plan needs of a
        cell kept in memory only too (the key it had, the digests of what it bound,
        which the keys after it hashed)."""
        digests = {n: d for n, d in entry.digests.items() if d is not None}
        return cls(key.summary, seconds, key.key, stored, digests, list(entry.deleted))

    def stored_form(self) -> dict[str, Any]:
        """The JSON-like form the ledger keeps: the summary with these beside it."""
        out = {**self.summary, "seconds": self.seconds}
        if self.key is not None:
            out.update(key=self.key, stored=self.stored, digests=self.digests)
            out["deleted"] = self.deleted
        return out

    @classmethod
    def read(cls, value: Any) -> LatestRun | None:
        """The record ``value`` (as ``Cache.latest`` gives it) holds; None when it is none."""
        if not isinstance(value, dict):
            return None
        summary = {k: v for k, v in value.items() if k not in _LATEST_OWN}
        seconds = value.get("seconds")
        key = value.get("key")
        stored = value.get("stored", 0)
        digests = _str_keys(value.get("digests", {}))
        deleted = _str_list(value.get("deleted", []))
        if (
            not (seconds is None or _number(seconds))
            or not (key is None or isinstance(key, str))
            or not isinstance(stored, int)
            or digests is None
            or not all(isinstance(d, str) for d in digests.values())
            or deleted is None
        ):
            return None
        seconds = float(seconds) if seconds is not None else None
        return cls(summary, seconds, key, int(stored), digests, deleted)


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


@dataclass(frozen=True)
class RecordedVar:
    """One value a header record stands in for: its digest, what it is (for listings
    and the stand-in's repr), and the names a string value mentions (a query, a formula).
    A library's module, function or class also says where it is imported from, the
    fingerprint code reading a module hashes, and the stamp of its package's file that
    says the digest still holds (see :mod:`nbcache.run.lazy`)."""

    digest: str
    described: dict[str, Any]
    string_reads: tuple[str, ...] | None = None  # None: not a string
    imports: str | None = None  # "module" or "module:qual.name"; None: a value
    fingerprint: str = ""  # a module's, as code fingerprints hash it
    stamp: tuple[Any, ...] = ()  # (path, size, mtime_ns, inode) of its package's file


@dataclass(frozen=True)
class HeaderRecord:
    """What an entry's signed header keeps so a hit restores from the header alone."""

    vars: dict[str, RecordedVar]
    deleted: list[str]
    outputs: list[Any]  # the output events, as JSON keeps them (lists)
    result: bool  # whether the cell had a result (a stand-in is made for it)

    def stored(self) -> dict[str, Any]:
        variables: dict[str, Any] = {}
        for name, var in self.vars.items():
            variables[name] = {"digest": var.digest, "described": var.described}
            if var.string_reads is not None:
                variables[name]["string_reads"] = list(var.string_reads)
            if var.imports is not None:
                variables[name]["imports"] = var.imports
                variables[name]["fingerprint"] = var.fingerprint
                variables[name]["stamp"] = list(var.stamp)
        return {
            "vars": variables,
            "deleted": self.deleted,
            "outputs": self.outputs,
            "result": self.result,
        }

    @classmethod
    def read(cls, value: Any) -> HeaderRecord | None:
        """The record ``value`` (the header's, as signed) holds; None when it is none."""
        if not isinstance(value, dict):
            return None
        variables = _str_keys(value.get("vars"))
        deleted = _str_list(value.get("deleted"))
        outputs = value.get("outputs")
        result = value.get("result")
        if variables is None or deleted is None or not isinstance(outputs, list):
            return None
        if not isinstance(result, bool):
            return None
        out: dict[str, RecordedVar] = {}
        for name, rec in variables.items():
            var = _recorded_var(rec)
            if var is None:
                return None
            out[name] = var
        return cls(out, deleted, outputs, result)

    @classmethod
    def of_meta(cls, meta: Mapping[str, Any]) -> HeaderRecord | None:
        """The record in an entry's signed metadata; None when it has none (an entry that
        restores in full) or it is malformed."""
        found = meta.get(_HEADER_KEY)
        if found is None and imports_of_meta(meta) is not None:
            found = meta.get(_IMPORTS_KEY)  # its stand-ins wait only with that list
        return cls.read(found)

    def imports(self) -> bool:
        """Whether it stands in for a module, function or class to import."""
        return any(var.imports is not None for var in self.vars.values())


def _recorded_var(value: Any) -> RecordedVar | None:
    if not isinstance(value, dict):
        return None
    digest, described = value.get("digest"), value.get("described", {})
    reads = value.get("string_reads")
    if not isinstance(digest, str) or not isinstance(described, dict):
        return None
    if reads is not None:
        reads = _str_list(reads)
        if reads is None:
            return None
    imports, fingerprint = value.get("imports"), value.get("fingerprint", "")
    stamp: Any = value.get("stamp") if imports is not None else []
    if imports is not None and (
        not isinstance(imports, str)
        or not imports
        or not isinstance(fingerprint, str)
        or not isinstance(stamp, list)
        or not stamp
    ):
        return None
    reads = None if reads is None else tuple(reads)
    return RecordedVar(digest, described, reads, imports, fingerprint, tuple(stamp))


def header_meta(
    record: HeaderRecord | None,
    modules: Mapping[str, RecordedVar] | None = None,
    imported: Sequence[str] = (),
) -> dict[str, Any]:
    """The part of an entry's signed metadata that holds ``record`` (None: the entry
    restores in full, which the header says too). A record that stands in for imports
    is kept under a key of its own, so that a version of nbcache that cannot import
    a stand-in restores such an entry in full. An entry restored in full keeps the
    records of the ``modules``, functions and classes it binds that can be imported
    later instead (see :func:`modules_of_meta`). Any entry keeps the modules the
    cell's imports loaded, ``imported`` (see :func:`imports_of_meta`)."""
    out: dict[str, Any] = {_HEADER_KEY: record.stored() if record is not None else None}
    if record is not None and record.imports():
        out = {_HEADER_KEY: None, _IMPORTS_KEY: record.stored()}
    if record is None and modules:
        out[_MODULES_KEY] = HeaderRecord(dict(modules), [], [], False).stored()["vars"]
    if imported or _IMPORTS_KEY in out or _MODULES_KEY in out:
        out[_IMPORTED_KEY] = [*imported]
    return out


def imports_of_meta(meta: Mapping[str, Any]) -> list[str] | None:
    """The modules a cell's imports had loaded when it ended, in its order, for an entry
    that stands in for imports; None when it has no such list or it is malformed (then
    nothing of it may wait: a lazy run could not import for it all a plain run did)."""
    found = meta.get(_IMPORTED_KEY)
    if not isinstance(found, list) or not all(isinstance(m, str) and m for m in found):
        return None
    return found


def modules_of_meta(meta: Mapping[str, Any]) -> dict[str, RecordedVar]:
    """The records of the modules, functions and classes an entry restored in full binds
    that a stand-in can import later; empty when it has none or they are malformed."""
    found = _str_keys(meta.get(_MODULES_KEY))
    if not found or imports_of_meta(meta) is None:
        return {}
    out = {}
    for name, value in found.items():
        var = _recorded_var(value)
        if var is None or var.imports is None:
            return {}
        out[name] = var
    return out


@dataclass(frozen=True)
class EntryInputs:
    """What a cell's entry was computed from outside its key, as its signed header keeps
    it: the files it read (states and the paths they were named by), the files it wrote
    (their states, so a restore knows they are still there) and the outside state it
    depended on (settings, random generators)."""

    files: dict[str, Any] = field(default_factory=dict)
    paths: dict[str, Any] = field(default_factory=dict)
    wrote: dict[str, Any] = field(default_factory=dict)
    outside: dict[str, Any] = field(default_factory=dict)

    def stored(self) -> dict[str, Any]:
        """The part of the signed metadata that holds these."""
        return {
            "files": self.files,
            "paths": self.paths,
            "wrote": self.wrote,
            "outside": self.outside,
        }

    @classmethod
    def of_meta(cls, meta: Mapping[str, Any]) -> EntryInputs | None:
        """The inputs an entry's signed metadata names (a part it lacks: none, as in the
        entries made before it was recorded); None when a part is not what it should be,
        which a caller must take as changed, never as unchanged."""
        files = _file_names(meta.get("files", {}), list)
        paths = _file_names(meta.get("paths", {}), str)
        wrote = _file_names(meta.get("wrote", {}), list)
        outside = _str_keys(meta.get("outside", {}))
        if files is None or paths is None or wrote is None or outside is None:
            return None
        return cls(files, paths, wrote, outside)


@dataclass(frozen=True)
class Checkpoint:
    """What a checkpoint of a cell's progress loop keeps: the cell's key, where the loop
    was, what the cell had bound and shown until then, and what a resume checks first
    (the files read so far, the settings then)."""

    cell: str  # the key of the cell it is a checkpoint of
    step: int  # the steps done
    vars: dict[str, Any] = field(default_factory=dict)
    deleted: list[str] = field(default_factory=list)
    effects: dict[str, Any] = field(default_factory=dict)  # random generators included
    outputs: list[tuple[Any, ...]] = field(default_factory=list)  # the loop's, so far
    seconds: float = 0.0  # what the run took until then, earlier attempts included
    loop: Any = None  # which loop of the cell (as checkpoint.py names it)
    total: int | None = None
    files: dict[str, Any] = field(default_factory=dict)
    paths: dict[str, Any] = field(default_factory=dict)
    settings: Any = None  # the settings when it was taken; None: not recorded

    def stored(self) -> dict[str, Any]:
        """The plain dict a checkpoint entry pickles."""
        return {
            "cell": self.cell,
            "loop": self.loop,
            "step": self.step,
            "total": self.total,
            "vars": code_first(self.vars),
            "deleted": self.deleted,
            "effects": self.effects,
            "outputs": self.outputs,
            "seconds": self.seconds,
            "files": self.files,
            "paths": self.paths,
            "settings": self.settings,
        }

    def entry(self) -> CellEntry:
        """What it puts back, as an entry would (its output is shown apart)."""
        return CellEntry(vars=dict(self.vars), deleted=list(self.deleted), effects=self.effects)

    @classmethod
    def read(cls, value: Any) -> Checkpoint | None:
        """The checkpoint ``value`` (as the cache gives it back) holds; None when none."""
        if not isinstance(value, dict):
            return None
        cell, step = value.get("cell"), value.get("step")
        variables, deleted = _str_keys(value.get("vars")), _str_list(value.get("deleted"))
        effects, outputs = _str_keys(value.get("effects", {})), value.get("outputs")
        files = _file_names(value.get("files", {}), list)
        paths = _file_names(value.get("paths", {}), str)
        seconds, total = value.get("seconds", 0.0), value.get("total")
        if (
            not isinstance(cell, str)
            or not isinstance(step, int)
            or variables is None
            or deleted is None
            or effects is None
            or not isinstance(outputs, list)
            or files is None
            or paths is None
            or not _number(seconds)
            or not (total is None or isinstance(total, int))
        ):
            return None
        events = [tuple(event) for event in outputs if isinstance(event, (list, tuple))]
        return cls(
            cell,
            step,
            variables,
            deleted,
            effects,
            events,
            float(seconds),
            value.get("loop"),
            total,
            files,
            paths,
            value.get("settings"),
        )
