"""The magics in a fresh InteractiveShell per test: hits, misses, never stale, never failing."""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell

from nbcache import CacheWarning
from nbcache.cache.default import set_default_cache
from tests.shells import close_shell, new_shell


class Probe:
    """Counts runs of a cell body without being one of its inputs."""

    def __init__(self) -> None:
        self.runs = 0

    def hit(self) -> None:
        self.runs += 1

    def __reduce__(self) -> tuple[type, tuple[()]]:
        return (Probe, ())


@pytest.fixture
def ip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[InteractiveShell]:
    monkeypatch.chdir(tmp_path)
    shell = new_shell(tmp_path)
    shell.user_ns["probe"] = Probe()
    yield shell
    close_shell(shell)


def run(shell: InteractiveShell, cell: str) -> Any:
    result = shell.run_cell(cell, store_history=True)
    if result.error_before_exec or result.error_in_exec:
        raise result.error_before_exec or result.error_in_exec  # type: ignore[misc]
    return result.result


def restart(shell: InteractiveShell, tmp_path: Path) -> InteractiveShell:
    """A new kernel: fresh shell, fresh process-wide cache, same store on disk."""
    close_shell(shell)
    set_default_cache(None)
    fresh = new_shell(tmp_path)
    fresh.user_ns["probe"] = Probe()
    return fresh


CELL = """%%cache
probe.hit()
data = np.arange(n) * scale
total = float(data.sum())
print("total is", total)
total * 2
"""


def _setup(ip: InteractiveShell) -> None:
    run(ip, "import numpy as np\nn = 100\nscale = 2")


def test_miss_then_hit(ip: InteractiveShell, capsys: pytest.CaptureFixture[str]) -> None:
    """The second run restores instead of running, with equal values, output and result."""
    _setup(ip)
    first = run(ip, CELL)
    assert ip.user_ns["probe"].runs == 1
    data = ip.user_ns.pop("data")
    ip.user_ns["total"] = None
    out = capsys.readouterr().out
    assert "total is 9900.0" in out and "nbcache: computed" in out
    second = run(ip, CELL)
    assert ip.user_ns["probe"].runs == 1
    assert first == second == 19800.0
    assert np.array_equal(ip.user_ns["data"], data)
    assert ip.user_ns["total"] == 9900.0
    out = capsys.readouterr().out
    assert out.index("total is 9900.0") < out.index("nbcache: restored total, data")
    assert ip.user_ns["Out"][max(ip.user_ns["Out"])] == 19800.0


def test_survives_a_restart(ip: InteractiveShell, tmp_path: Path) -> None:
    """A new shell on the same store restores the cell without running it."""
    _setup(ip)
    run(ip, CELL)
    fresh = restart(ip, tmp_path)
    _setup(fresh)
    assert run(fresh, CELL) == 19800.0
    assert fresh.user_ns["probe"].runs == 0
    assert fresh.user_ns["total"] == 9900.0
    ip.__dict__.update(fresh.__dict__)  # let the fixture close the live shell


@pytest.mark.parametrize(
    "change",
    [
        "n = 101",  # an upstream variable
        "scale = 3",
        "np_extra = 1\nimport numpy as np\nn = 100\nscale = 2.0",  # same value, other type
    ],
)
def test_changed_input_is_a_miss(ip: InteractiveShell, change: str) -> None:
    """Changing a variable the cell reads makes the next run a miss."""
    _setup(ip)
    run(ip, CELL)
    run(ip, change)
    run(ip, CELL)
    assert ip.user_ns["probe"].runs == 2


def test_edited_cell_is_a_miss_but_comments_are_not(ip: InteractiveShell) -> None:
    """Editing code is a miss; a comment or blank lines are not."""
    _setup(ip)
    run(ip, CELL)
    run(ip, CELL.replace("total * 2\n", "# a comment\n\ntotal  *  2   # same\n"))
    assert ip.user_ns["probe"].runs == 1
    run(ip, CELL.replace("total * 2", "total * 3"))
    assert ip.user_ns["probe"].runs == 2


def test_helper_two_calls_deep(ip: InteractiveShell) -> None:
    """Editing a helper that the cell's helper calls makes the next run a miss."""
    run(ip, "def inner(x):\n    return x + 1\n\ndef outer(x):\n    return inner(x) * 2\n")
    cell = "%%cache\nprobe.hit()\nresult = outer(1)\n"
    run(ip, cell)
    run(ip, cell)
    assert ip.user_ns["probe"].runs == 1
    run(ip, "def inner(x):\n    return x + 2\n")
    run(ip, cell)
    assert ip.user_ns["probe"].runs == 2
    assert ip.user_ns["result"] == 6
    assert "helper `outer()` changed" in _why(ip)


def _why(ip: InteractiveShell, name: str = "") -> str:
    from IPython.utils.capture import capture_output

    with capture_output() as captured:
        ip.run_line_magic("nbcache", f"why {name}")
    return captured.stdout


def test_file_read_by_the_cell(ip: InteractiveShell, tmp_path: Path) -> None:
    """A file the cell reads is part of the key: changing it makes the next run a miss."""
    (tmp_path / "data.csv").write_text("1,2,3\n")
    cell = "%%cache\nprobe.hit()\nwith open('data.csv') as f:\n    text = f.read()\n"
    run(ip, cell)
    run(ip, cell)
    assert ip.user_ns["probe"].runs == 1
    (tmp_path / "data.csv").write_text("1,2,4\n")
    run(ip, cell)
    assert ip.user_ns["probe"].runs == 2
    assert ip.user_ns["text"] == "1,2,4\n"
    assert "data.csv` changed" in _why(ip)


def test_watch_path(ip: InteractiveShell, tmp_path: Path) -> None:
    """--watch PATH makes a file the cell does not open part of the key."""
    (tmp_path / "model.bin").write_bytes(b"v1")
    cell = "%%cache --watch model.bin\nprobe.hit()\nx = 1\n"
    run(ip, cell)
    run(ip, cell)
    (tmp_path / "model.bin").write_bytes(b"v2")
    run(ip, cell)
    assert ip.user_ns["probe"].runs == 2


def test_mutated_input_is_stored(ip: InteractiveShell, tmp_path: Path) -> None:
    """An input the cell changes in place is restored with its new content."""
    run(ip, "items = [1, 2]")
    run(ip, "%%cache\nitems.append(3)\ndone = True\n")
    fresh = restart(ip, tmp_path)
    fresh.user_ns["items"] = [1, 2]
    run(fresh, "%%cache\nitems.append(3)\ndone = True\n")
    assert fresh.user_ns["items"] == [1, 2, 3]
    ip.__dict__.update(fresh.__dict__)


def test_memory_hit_never_returns_a_mutated_value(ip: InteractiveShell) -> None:
    """A later cell mutating a cached variable does not leak into the next hit."""
    run(ip, "%%cache\nprobe.hit()\nrows = [1, 2, 3]\n")
    run(ip, "rows.append(4)")
    run(ip, "%%cache\nprobe.hit()\nrows = [1, 2, 3]\n")
    assert ip.user_ns["rows"] == [1, 2, 3]
    assert ip.user_ns["probe"].runs == 1


def test_exception_is_the_users_and_stores_nothing(
    ip: InteractiveShell, capsys: pytest.CaptureFixture[str]
) -> None:
    """A failing cell shows the user's own exception at the user's line, and stores nothing."""
    cell = "%%cache\nprobe.hit()\nx = 1\nraise ValueError('user bug')\n"
    result = ip.run_cell(cell, store_history=True)
    assert isinstance(result.error_in_exec, ValueError)
    shown = re.sub(r"\x1b\[[0-9;]*m", "", capsys.readouterr().out)
    assert "ValueError: user bug" in shown
    assert "----> 4 raise ValueError('user bug')" in shown
    assert "nbcache" not in shown.replace("run_cell_magic('cache'", "")
    ip.run_cell(cell, store_history=True)
    assert ip.user_ns["probe"].runs == 2


def test_unpicklable_variable_stays_in_memory(ip: InteractiveShell, tmp_path: Path) -> None:
    """A variable that will not pickle: the cell completes, one warning names it, memory only."""
    cell = "%%cache\nprobe.hit()\nimport threading\nlock = threading.Lock()\nvalue = 42\n"
    with pytest.warns(CacheWarning, match=r"`lock` \(_thread.lock\).*memory only.*del lock"):
        run(ip, cell)
    assert ip.user_ns["value"] == 42
    run(ip, cell)
    assert ip.user_ns["probe"].runs == 1  # memory hit
    fresh = restart(ip, tmp_path)
    with pytest.warns(CacheWarning):
        run(fresh, cell)
    assert fresh.user_ns["probe"].runs == 1  # ran again after the restart
    ip.__dict__.update(fresh.__dict__)


def test_unhashable_input_runs_uncached_unless_ignored(ip: InteractiveShell) -> None:
    """An input that cannot be hashed: one warning naming it, uncached, unless --ignore."""
    run(ip, "import threading\nguard = threading.Lock()")
    cell = "%%cache{opts}\nprobe.hit()\nwith guard:\n    x = 1\n"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run(ip, cell.format(opts=""))
        run(ip, cell.format(opts=""))
    messages = [str(w.message) for w in caught if issubclass(w.category, CacheWarning)]
    assert len(messages) == 2 and "`guard` (_thread.lock)" in messages[0]
    assert "--ignore guard" in messages[0]
    assert ip.user_ns["probe"].runs == 2
    run(ip, cell.format(opts=" --ignore guard"))
    run(ip, cell.format(opts=" --ignore guard"))
    assert ip.user_ns["probe"].runs == 3


def test_corrupt_entry_is_one_warning_and_a_miss(ip: InteractiveShell, tmp_path: Path) -> None:
    """A damaged stored entry is a miss with one warning, never a traceback."""
    _setup(ip)
    run(ip, CELL)
    store = Path(os.environ["NBCACHE_DIR"]) / "v1" / "entries"
    (entry,) = [p for p in store.rglob("*") if p.is_file()]
    data = bytearray(entry.read_bytes())
    data[len(data) // 2] ^= 0xFF
    entry.write_bytes(bytes(data))
    fresh = restart(ip, tmp_path)
    _setup(fresh)
    with pytest.warns(CacheWarning) as caught:
        assert run(fresh, CELL) == 19800.0
    assert len([w for w in caught if issubclass(w.category, CacheWarning)]) == 1
    assert fresh.user_ns["probe"].runs == 1
    ip.__dict__.update(fresh.__dict__)


@pytest.mark.parametrize("line", ["--bogus", "--max-age forever", "-n", "--ignore"])
def test_bad_options_run_nothing(ip: InteractiveShell, line: str) -> None:
    """Bad options are IPython usage errors and the body does not run."""
    result = ip.run_cell(f"%%cache {line}\nprobe.hit()\n")
    assert result.error_in_exec is not None or result.error_before_exec is not None
    assert ip.user_ns["probe"].runs == 0


def test_options(ip: InteractiveShell) -> None:
    """-f reruns, --no-store keeps memory only, -n names the entry, -q is quiet, --pin pins."""
    from IPython.utils.capture import capture_output

    cell = "%%cache {opts}\nprobe.hit()\nx = 1\n"
    with capture_output() as quiet:
        run(ip, cell.format(opts="-q -n first --pin"))
    assert "nbcache" not in quiet.stdout
    run(ip, cell.format(opts="-f -n first --pin"))
    assert ip.user_ns["probe"].runs == 2
    with capture_output() as listing:
        ip.run_line_magic("nbcache", "list")
    assert "first [pinned]" in listing.stdout
    run(ip, "%%cache --no-store\ny = 2\n")
    with capture_output() as listing:
        ip.run_line_magic("nbcache", "list")
    assert len(listing.stdout.strip().splitlines()) == 2  # header and `first`


def test_max_age(ip: InteractiveShell) -> None:
    """--max-age 0s makes every run a miss."""
    run(ip, "%%cache --max-age 0s\nprobe.hit()\n")
    run(ip, "%%cache --max-age 0s\nprobe.hit()\n")
    assert ip.user_ns["probe"].runs == 2


def test_imports_and_functions_are_restored(ip: InteractiveShell, tmp_path: Path) -> None:
    """Modules, functions and classes a cell defines come back after a restart."""
    cell = "%%cache\nimport json as js\ndef f(x):\n    return x + 1\nclass K:\n    v = 3\n"
    run(ip, cell)
    fresh = restart(ip, tmp_path)
    run(fresh, cell)
    assert fresh.user_ns["js"].dumps([1]) == "[1]"
    assert fresh.user_ns["f"](1) == 2 and fresh.user_ns["K"].v == 3
    ip.__dict__.update(fresh.__dict__)


def test_rich_display_is_replayed(ip: InteractiveShell) -> None:
    """display() output is recorded and shown again on a hit, in order."""
    published: list[dict[str, Any]] = []
    original = ip.display_pub.publish

    def spy(data: dict[str, Any], metadata: Any = None, **kwargs: Any) -> None:
        published.append(data)
        original(data, metadata, **kwargs)

    ip.display_pub.publish = spy  # type: ignore[method-assign]
    cell = "%%cache\nfrom IPython.display import display, HTML\ndisplay(HTML('<b>hi</b>'))\n"
    run(ip, cell)
    run(ip, cell)
    html = [d for d in published if "text/html" in d]
    assert len(html) == 2 and html[0] == html[1]


def test_memoize_magics(ip: InteractiveShell) -> None:
    """%memoize rebinds existing functions; %%memoize wraps what the cell defines."""
    run(ip, "def square(x):\n    probe.hit()\n    return x * x\n")
    ip.run_line_magic("memoize", "square --no-store")
    assert run(ip, "square(3) + square(3)") == 18
    assert ip.user_ns["probe"].runs == 1
    run(ip, "%%memoize --maxsize 4\ndef cube(x):\n    probe.hit()\n    return x ** 3\n")
    assert run(ip, "cube(2) + cube(2)") == 16
    assert ip.user_ns["probe"].runs == 2
    assert ip.user_ns["cube"].cache_parameters()["maxsize"] == 4
    with pytest.raises(UsageError):
        ip.run_line_magic("memoize", "")
    with pytest.raises(UsageError):
        ip.run_line_magic("memoize", "np")


def test_nbcache_management(ip: InteractiveShell, tmp_path: Path) -> None:
    """info, list, pin, clear NAME, prune, dir; a bare clear is a usage error."""
    from IPython.utils.capture import capture_output

    run(ip, "%%cache -n keep\na = 1\n")
    run(ip, "%%cache -n drop\nb = 2\n")
    with capture_output() as out:
        ip.run_line_magic("nbcache", "info")
        ip.run_line_magic("nbcache", "pin keep")
        ip.run_line_magic("nbcache", "clear drop")
        ip.run_line_magic("nbcache", "prune --older-than 0s")
        ip.run_line_magic("nbcache", "list")
    assert "entries: 2" in out.stdout
    assert "removed 1 entry" in out.stdout
    assert "keep [pinned]" in out.stdout and " drop" not in out.stdout.split("removed")[-1]
    with pytest.raises(UsageError):
        ip.run_line_magic("nbcache", "clear")
    with pytest.raises(UsageError):
        ip.run_line_magic("nbcache", "prune --max-size lots")
    with capture_output() as out:
        ip.run_line_magic("nbcache", f"dir {tmp_path / 'elsewhere'}")
        ip.run_line_magic("nbcache", "list")
    assert "elsewhere" in out.stdout and "no stored entries" in out.stdout


def test_extension_loads_and_unloads_cleanly(ip: InteractiveShell) -> None:
    """reload_ext registers nothing twice; unload_ext removes every magic and hook."""
    hooks = len(ip.events.callbacks["pre_run_cell"])
    ip.run_line_magic("reload_ext", "nbcache")
    assert len(ip.events.callbacks["pre_run_cell"]) == hooks
    assert "cache" in ip.magics_manager.magics["cell"]
    ip.run_line_magic("unload_ext", "nbcache")
    for kind, name in (
        ("cell", "cache"),
        ("line", "memoize"),
        ("cell", "memoize"),
        ("line", "nbcache"),
    ):
        assert name not in ip.magics_manager.magics[kind]
    assert len(ip.events.callbacks["pre_run_cell"]) == hooks - 1
    ip.run_line_magic("load_ext", "nbcache")


def test_warnings_show_as_one_line(ip: InteractiveShell) -> None:
    """A CacheWarning prints as its message alone; other warnings keep Python's format."""
    import warnings

    line = warnings.formatwarning(CacheWarning("nbcache: x"), CacheWarning, "/a/b.py", 3)
    assert line == "nbcache: x\n"
    other = warnings.formatwarning(UserWarning("y"), UserWarning, "/a/b.py", 3)
    assert "/a/b.py:3" in other
    ip.run_line_magic("unload_ext", "nbcache")
    assert "/a/b.py" in warnings.formatwarning(CacheWarning("z"), CacheWarning, "/a/b.py", 3)
    ip.run_line_magic("load_ext", "nbcache")


def test_hit_after_reloading_twice(ip: InteractiveShell) -> None:
    """%reload_ext twice, and a cached cell is still a hit that runs nothing."""
    _setup(ip)
    run(ip, CELL)
    ip.run_line_magic("reload_ext", "nbcache")
    ip.run_line_magic("reload_ext", "nbcache")
    assert run(ip, CELL) == 19800.0
    assert ip.user_ns["probe"].runs == 1
    assert len(ip.events.callbacks["pre_run_cell"]) == 1


def test_bare_nbcache_shows_the_browser_as_text(
    ip: InteractiveShell, capsys: pytest.CaptureFixture[str]
) -> None:
    """%nbcache alone shows the cache browser; in a terminal shell, as a text table."""
    run(ip, "%%cache -n first\na = 1\n")
    capsys.readouterr()
    ip.run_line_magic("nbcache", "")
    out = capsys.readouterr().out
    assert "1 entry" in out and "first" in out


def test_help_is_the_docstring(ip: InteractiveShell) -> None:
    """%%cache? shows the magic's usage and description."""
    doc = ip.magics_manager.magics["cell"]["cache"].__doc__
    assert "--max-age" in doc and "Run the cell once" in doc
