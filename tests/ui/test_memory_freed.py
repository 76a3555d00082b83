"""`del` frees a large value a cell computed or restored: the memory layer holds it only
while the user's names do. Measured as resident memory, in a process of its own."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("numpy")

# Big enough to stand out of a process's own noise, small enough for any test machine.
_MIB = 1024**2
_ARRAY_BYTES = 256 * _MIB

_SCRIPT = """
import gc, json, os, sys
from IPython.core.interactiveshell import InteractiveShell

def resident():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

shell = InteractiveShell.instance()
shell.run_line_magic("load_ext", "nbcache")
shell.run_cell("import numpy as np")
result = shell.run_cell("%%cache\\na = np.ones(NBYTES // 8)\\n")
result.raise_error()
assert shell.user_ns["a"].nbytes == NBYTES
# A restored array is mapped from its entry file, resident only once read: read it all.
float(shell.user_ns["a"].sum())
gc.collect()
before = resident()
shell.run_cell("del a")
gc.collect()
after = resident()
shell.run_cell("%nbcache info")
from nbcache.cache.default import default_cache
cache = default_cache()
cache.ledger.flush_uses()
records = cache.ledger.records()
uses = sum(r.uses for r in records)
print(json.dumps({"before": before, "after": after, "uses": uses, "stored": len(records)}))
"""


def _run(tmp_path: Path) -> tuple[dict[str, int], str]:
    script = _SCRIPT.replace("NBYTES", str(_ARRAY_BYTES))
    env = {**os.environ, "NBCACHE_DIR": str(tmp_path / "store"), "NBCACHE_FSYNC": "0"}
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    last = done.stdout.strip().splitlines()[-1]
    return json.loads(last), done.stdout


@pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="reads /proc")
def test_del_frees_a_computed_then_a_restored_array(tmp_path: Path) -> None:
    """The first process computes and stores the array, the second restores it; in each,
    `del a` gives back most of the array's memory."""
    computed, shown = _run(tmp_path)
    assert (computed["stored"], computed["uses"]) == (1, 0), shown
    assert computed["before"] - computed["after"] > 0.8 * _ARRAY_BYTES, computed
    assert "values of 16.8 MB or more" in shown  # %nbcache info says what it keeps
    restored, shown = _run(tmp_path)
    assert restored["uses"] == 1, shown  # restored from the store, not computed again
    assert restored["before"] - restored["after"] > 0.8 * _ARRAY_BYTES, restored
