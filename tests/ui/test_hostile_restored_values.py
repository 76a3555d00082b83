"""Values people keep in notebooks, restored from the store in a fresh shell: each equals
what the plain run made (its type too), or the cell runs again. Never a wrong value,
never a crash."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from nbcache.cache.default import set_default_cache
from tests.shells import close_shell, new_shell

SETUP = """
import numpy as np, pandas as pd, sqlite3, threading, io, enum, dataclasses
class Color(enum.Enum):
    RED = 1
    GREEN = 2
@dataclasses.dataclass(frozen=True, slots=True)
class Point:
    x: int
    y: int
"""
# (cell, what a later cell reads of what it bound)
CASES = {
    "memoryview": (
        "mv = memoryview(bytearray(b'abcdef'))[1:4]",
        "type(mv), bytes(mv), mv.readonly",
    ),
    "memoryview-readonly": ("mr = memoryview(b'abc')", "type(mr), mr.tobytes(), mr.readonly"),
    "memoryview-2d": (
        "m2 = memoryview(np.arange(6, dtype=np.int32).reshape(2, 3))",
        "type(m2), m2.format, m2.shape, m2.tolist()",
    ),
    "generator": ("g = (i * i for i in range(5)); next(g)", "list(g)"),
    "open-file": ("fh = open('lines.txt'); fh.readline()", "fh.readline()"),
    "lock": ("lk = threading.Lock(); lk.acquire()", "lk.locked()"),
    "lambda": ("k = 3; fn = lambda v: v + k", "fn(1)"),
    "sqlite": (
        "con = sqlite3.connect(':memory:'); con.execute('create table t(a)')",
        "con.execute('select count(*) from t').fetchall()",
    ),
    "categorical": (
        "df = pd.DataFrame({'c': pd.Categorical(list('aba'), categories=list('baz'), "
        "ordered=True)})",
        "df.c.cat.categories.tolist(), df.c.cat.ordered, df.c.cat.codes.tolist()",
    ),
    "timezone": (
        "s = pd.Series(pd.date_range('2024-03-30', periods=3, freq='D', tz='Europe/Paris'))",
        "str(s.dt.tz), s.tolist()",
    ),
    "structured": (
        "a = np.array([(1, 2.5, b'x')], dtype=[('i', '<i4'), ('f', '>f8'), ('s', 'S2')])",
        "a.dtype.descr, a.tolist()",
    ),
    "object-array": ("o = np.array([1, 'a', None, [1, 2]], dtype=object)", "o.tolist()"),
    "slots-class": (
        "import dataclasses\n@dataclasses.dataclass(slots=True)\nclass P:\n    x: int\np = P(1)",
        "type(p) is P, p == P(1)",
    ),
    "self-reference": ("L = [1]; L.append(L); D = {}; D['me'] = D", "L[1] is L, D['me'] is D"),
    # classes a plain cell defines, instances a cached cell makes: the live class's
    "enum-member": ("c = Color.GREEN", "c is Color.GREEN, type(c) is Color"),
    "enum-as-key": ("counts = {Color.RED: 1}", "counts.get(Color.RED), Color.RED in counts"),
    "dataclass": ("pt = Point(1, 2)", "pt == Point(1, 2), isinstance(pt, Point), hash(pt)"),
    "bytesio": ("bio = io.BytesIO(b'hello'); bio.read(2)", "bio.read()"),
}


def _run(folder: Path, cell: str, probe: str, cached: bool) -> Any:
    set_default_cache(None)  # a fresh process as far as nbcache goes: values from the store
    shell = new_shell(folder)
    try:
        shell.run_cell(SETUP)
        result = shell.run_cell(("%%cache\n" if cached else "") + cell)
        assert result.error_in_exec is None, result.error_in_exec
        return repr(shell.ev(probe))
    finally:
        close_shell(shell)


@pytest.mark.parametrize("name", list(CASES))
def test_a_restored_value_is_what_the_plain_run_made(tmp_path: Path, name: str) -> None:
    (tmp_path / "lines.txt").write_text("line1\nline2\n")
    cell, probe = CASES[name]
    plain = _run(tmp_path, cell, probe, cached=False)
    assert _run(tmp_path, cell, probe, cached=True) == plain  # computed and stored
    assert _run(tmp_path, cell, probe, cached=True) == plain  # restored (or run again)
