"""Every test runs with its own secret, config folder and store, never the user's; each
test is marked ``fast`` or ``slow`` (and why) by what it starts, so ``pytest -m fast`` is
the quick loop of CONTRIBUTING.md."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any

import pytest
from xdist.scheduler import LoadFileScheduling

from nbcache.cache.core import Cache
from nbcache.cache.default import set_default_cache
from nbcache.entry.signing import Signer
from nbcache.run.effects import forget_seeds
from nbcache.settings import forget_warnings
from nbcache.store import LocalStore
from tests.servers import redis_server, s3, s3_server  # noqa: F401 - shared-store fixtures


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    # A restored cell that changed folder changes this process's: every test ends where
    # it began (a later test, or mypy looking for nbcache, would run elsewhere).
    monkeypatch.chdir(Path.cwd())
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("NBCACHE_SECRET", "nbcache-test-secret-of-32-bytes-0k")
    monkeypatch.setenv("NBCACHE_DIR", str(tmp_path / "default-store"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    for name in ("NBCACHE_MAX_SIZE", "NBCACHE_TIER", "NBCACHE_LOCK_URL", "NBCACHE_DASK"):
        monkeypatch.delenv(name, raising=False)
    # An IPython shell puts its own module in sys.modules["__main__"] and a reset empties
    # it; multiprocessing's spawn (a dask LocalCluster) then fails: put the real one back.
    monkeypatch.setitem(sys.modules, "__main__", sys.modules["__main__"])
    set_default_cache(None)
    forget_warnings()  # each test is a process of its own as far as settings go
    # Which generators were seeded is kernel state: a test that seeded random would make
    # another worker's later draw cells keyed on the state they found (and run, not restore).
    forget_seeds()
    yield
    set_default_cache(None)


@pytest.fixture
def signer() -> Signer:
    return Signer(b"nbcache-test-secret-of-32-bytes-0k")


@pytest.fixture
def store(tmp_path: Path) -> LocalStore:
    return LocalStore(tmp_path / "store")


@pytest.fixture
def cache(store: LocalStore, signer: Signer) -> Cache:
    return Cache(store, signer=signer)


def key_of(n: int) -> str:
    """A valid cache key for test number ``n``."""
    return f"{n:032x}"


# -- the fast subset --------------------------------------------------------------------
# Marked here by where a test lives and what it uses, so a new test lands on the right
# side without anyone marking it by hand. Each slow kind is a marker of its own
# (registered in pyproject.toml), and ``slow`` stands for any of them.

TESTS = Path(__file__).parent
SERVER_FIXTURES = {"s3", "s3_server", "redis_server"}  # moto and redis-server on 127.0.0.1
SERVER_BACKENDS = {"s3", "redis"}  # the store contract suite's backends that need a server
SLOW_PLACES = {
    "browser": ["browser"],  # JupyterLab in headless Chromium
    "kernel": ["notebooks"],  # real kernels through nbclient, the notebook corpus
    "dask": ["tasks/test_dask.py"],  # a LocalCluster and dask scheduler/worker commands
    "processes": [  # Python processes of their own: crashes, mounts, mypy, the CLI, races
        "test_crash.py",
        "test_faults.py",
        "test_typing.py",
        "test_benchmarks.py",
        "test_cli.py",
        "test_package.py",
        "keys/test_stable_across_processes.py",
        "keys/test_properties.py",
        "ui/test_memory_freed.py",
        "ui/test_terminal.py",  # terminal IPython in a pty
        "keys/test_hashing.py::test_same_digest_in_a_new_process",
        "store/test_hostile.py::test_of_many_writers_of_one_key_the_first_entry_stays",
        "store/test_index.py::test_many_processes_share_one_index",
        "entry/test_signing.py::test_processes_starting_together_agree",
        "store/test_index_concurrency.py",
        "run/test_unloadable_entry.py::test_a_class_renamed_since_the_entry_was_made_is_a_miss_that_says_why",
        "test_fast_subset.py::test_the_slow_folders_contribute_nothing_to_the_fast_selection",
    ],
}
SLOW_KINDS = (*SLOW_PLACES, "server")


def slow_kinds(item: pytest.Item) -> list[str]:
    """Why ``item`` is slow (the kinds of SLOW_KINDS it needs); empty for a fast test."""
    where = Path(item.path).relative_to(TESTS).as_posix()
    test = f"{where}::{getattr(item, 'originalname', item.name)}"
    kinds = [
        kind
        for kind, places in SLOW_PLACES.items()
        if any(place in (where, test) or where.startswith(place + "/") for place in places)
    ]
    callspec: Any = getattr(item, "callspec", None)
    backend = callspec.params.get("store") if callspec is not None else None
    if SERVER_FIXTURES & set(getattr(item, "fixturenames", ())) or backend in SERVER_BACKENDS:
        kinds.append("server")
    kinds += [k for k in SLOW_KINDS if k not in kinds and item.get_closest_marker(k)]
    return kinds


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """With ``-m fast`` exactly, the folders and modules that hold only slow tests are
    not even imported (Chromium's and the kernels' clients take seconds to import)."""
    if config.getoption("markexpr", "") != "fast" or not collection_path.is_relative_to(TESTS):
        return None
    where = collection_path.relative_to(TESTS).as_posix()
    whole = [place for places in SLOW_PLACES.values() for place in places if "::" not in place]
    return True if where in whole else None


# The suite runs on two workers (pytest-xdist), a whole file on one worker so that a
# module's fixtures start once. Some files share a worker, so that they never run at the
# same time as each other:
SHARED_WORKER = {
    # two JupyterLab servers and two Chromiums at once lose clicks (a reopened card's
    # Cancel never reached its kernel), which no user with one browser meets
    "tests/browser/": "browser",
    # each already runs its notebooks on both cores, with a per-cell limit for hangs
    "tests/notebooks/test_transparency.py": "corpus runs",
    "tests/notebooks/test_whole_notebooks_corpus.py": "corpus runs",
}


def worker_group(nodeid: str) -> str:
    """The unit of work a test goes to a worker in: its file, or the group its file shares."""
    where = nodeid.split("::", 1)[0]
    shared = [group for place, group in SHARED_WORKER.items() if where.startswith(place)]
    return shared[0] if shared else where


class FileOrGroupScheduling(LoadFileScheduling):  # type: ignore[misc]  # xdist is untyped
    """xdist's whole-file scheduling, with the files of SHARED_WORKER kept together."""

    def _split_scope(self, nodeid: str) -> str:
        return worker_group(nodeid)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> FileOrGroupScheduling:
    return FileOrGroupScheduling(config, log)


@pytest.hookimpl(tryfirst=True)  # before -m selects by the markers added here
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        kinds = slow_kinds(item)
        for kind in kinds:
            item.add_marker(kind)
        item.add_marker("slow" if kinds else "fast")


# What a fast test must never start: a browser, a server, a kernel, a download.
FORBIDDEN_IN_FAST = ("chromium", "chrome", "redis-server", "moto_server", "dask", "jupyter")


def forbidden_command(args: Any) -> str | None:
    """The part of a command a fast test may not run, or None."""
    argv = [args] if isinstance(args, (str, bytes, os.PathLike)) else list(args)
    words = [os.path.basename(os.fsdecode(a)) for a in argv]
    program = words[0].split()[0] if words else ""
    if any(program.startswith(name) for name in FORBIDDEN_IN_FAST):
        return program
    if "ipykernel_launcher" in words or "ipykernel" in words:
        return "a kernel"
    if "pip" in words and "download" in words:
        return "a download"
    return None


@contextlib.contextmanager
def refusing_slow_commands(nodeid: str) -> Iterator[None]:
    """While inside, a command :func:`forbidden_command` names fails instead of starting."""
    original = subprocess.Popen.__init__

    def refuse(self: subprocess.Popen[Any], args: Any, *rest: Any, **options: Any) -> None:
        what = forbidden_command(args)
        if what is not None:
            raise AssertionError(
                f"{nodeid} is in the fast subset but starts {what}: "
                "add it to a slow kind in tests/conftest.py"
            )
        original(self, args, *rest, **options)

    subprocess.Popen.__init__ = refuse  # type: ignore[method-assign]
    try:
        yield
    finally:
        subprocess.Popen.__init__ = original  # type: ignore[method-assign]


def _guarded(item: pytest.Item) -> Generator[None, Any, Any]:
    """A test marked fast that starts a browser, server, kernel or download fails and
    says where to mark it: the fast subset must run without any of them. Setup is
    guarded too, where session fixtures (the servers) start."""
    if item.get_closest_marker("fast") is None:
        return (yield)
    with refusing_slow_commands(item.nodeid):
        return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Generator[None, Any, Any]:
    return (yield from _guarded(item))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, Any, Any]:
    return (yield from _guarded(item))
