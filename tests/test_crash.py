"""Processes that die or race: killed writers, two computers of one key, stale leases.

Every multi-process test runs a small helper script (written to ``tmp_path``)
with ``sys.executable``; the test and its children synchronise through pipes,
never through sleeps.  Subprocess timeouts only guard against hangs.
"""

from __future__ import annotations

import importlib.util
import json
import os
import queue
import random
import signal
import subprocess
import sys
import textwrap
import threading
import time
import warnings
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from nbcache import Cache, CacheWarning, LocalStore
from nbcache.entry.signing import Signer
from nbcache.store.leases.file import HOST

HANG = 60.0  # seconds before a child that should have answered counts as hung

HELPER = textwrap.dedent(
    '''
    """Children for tests/test_crash.py: python helper.py ROLE ARGS..."""

    import itertools
    import os
    import sys

    import numpy as np

    from nbcache import Cache, LocalStore
    from nbcache.entry.signing import Signer

    SECRET = b"nbcache-crash-tests"
    # Four keys in three shards: writers race to publish the same keys.
    KEYS = ["0a" * 16, "0b" * 16, "0a" + "1c" * 15, "2d" * 16]
    FLOATS = 400_000  # a 3.2 MB array: an out-of-band buffer, written in several chunks


    def make_value(key, gen):
        """The value of (key, generation): anyone can recompute it to check a load."""
        rng = np.random.default_rng([int(key[:16], 16), gen])
        return {"key": key, "gen": gen, "tag": f"{key}:{gen}", "array": rng.standard_normal(FLOATS)}


    def same(a, b):
        return (
            isinstance(a, dict)
            and a.keys() == b.keys()
            and all(
                np.array_equal(a[k], b[k]) if k == "array" else a[k] == b[k] for k in b
            )
        )


    def cache(root):
        return Cache(LocalStore(root), signer=Signer(SECRET))


    def say(*words):
        print(*words, flush=True)


    def writer(root, child):
        """Put entries forever; the parent kills us at a random moment."""
        c = cache(root)
        say("started")
        for i in itertools.count():
            key = KEYS[(int(child) + i) % len(KEYS)]
            gen = int(child) * 10_000 + i
            c.put(key, make_value(key, gen), {"gen": gen})


    def race(root, key, computed):
        """get_or_compute on the parent's go; say when the lease is busy; block in compute."""
        c = cache(root)
        real_lease = c.store.lease

        def reporting_lease(k, **kw):
            lease = real_lease(k, **kw)
            acquire, told = lease.acquire, []

            def acquire_and_tell():
                got = acquire()
                if not got and not told:
                    told.append(True)
                    say("busy")
                return got

            lease.acquire = acquire_and_tell
            return lease

        c.store.lease = reporting_lease

        def compute():
            with open(computed, "a") as f:
                f.write(f"{os.getpid()}\\n")
            say("computing")
            sys.stdin.readline()  # until the parent lets this compute finish
            return make_value(key, 7)

        say("ready")
        sys.stdin.readline()  # barrier: the parent says go to both children at once
        out = c.get_or_compute(key, compute)
        say(
            "done",
            "computed" if out.hit is None else "hit",
            "equal" if same(out.value, make_value(key, 7)) else "different",
        )


    def hold(root, key):
        """Take the lease of key and keep it until killed."""
        lease = LocalStore(root).lease(key)
        say("held" if lease.acquire() else "refused")
        sys.stdin.read()


    def compute_once(root, key):
        """get_or_compute key; report how many computes ran and what came back."""
        runs = []

        def compute():
            runs.append(1)
            return make_value(key, 1)

        out = cache(root).get_or_compute(key, compute)
        equal = same(out.value, make_value(key, 1))
        say("runs", len(runs), "equal" if equal else "different", out.stored > 0)


    def sweep(root):
        say("removed", LocalStore(root).sweep())


    if __name__ == "__main__":
        globals()[sys.argv[1]](*sys.argv[2:])
    '''
)


@pytest.fixture
def helper(tmp_path: Path) -> tuple[Path, ModuleType]:
    """The helper script, and the same file imported here (make_value, KEYS, SECRET)."""
    path = tmp_path / "crash_helper.py"
    path.write_text(HELPER)
    spec = importlib.util.spec_from_file_location(f"crash_helper_{id(path)}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return path, module


def _spawn(script: Path, *args: object) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(script), *map(str, args)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        bufsize=1,
    )


def _run(script: Path, *args: object) -> list[str]:
    """Run a helper role to the end; its stdout words."""
    done = subprocess.run(
        [sys.executable, str(script), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=HANG,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


def _expect(proc: subprocess.Popen[str], word: str) -> None:
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if line.split()[:1] != [word]:
        proc.kill()
        _out, err = proc.communicate(timeout=HANG)
        pytest.fail(f"expected {word!r} from the child, got {line!r}; stderr:\n{err}")


class _Events:
    """Lines from several children, in the order they arrive (one reader thread each)."""

    def __init__(self, procs: list[subprocess.Popen[str]]) -> None:
        self.procs = procs
        self.finished: set[int] = set()
        self._queue: queue.Queue[tuple[int, list[str] | None]] = queue.Queue()
        self._readers = [
            threading.Thread(target=self._read, args=(index, proc), daemon=True)
            for index, proc in enumerate(procs)
        ]
        for reader in self._readers:
            reader.start()

    def _read(self, index: int, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            self._queue.put((index, line.split()))
        self._queue.put((index, None))

    def next(self) -> tuple[int, list[str]]:
        """The next line of any child; a child in ``finished`` may close its output."""
        while True:
            try:
                index, words = self._queue.get(timeout=HANG)
            except queue.Empty:
                pytest.fail(f"no child said anything for {HANG} s: hung")
            if words is not None:
                return index, words
            if index not in self.finished:
                proc = self.procs[index]
                proc.wait(timeout=HANG)
                err = proc.stderr.read() if proc.stderr else ""
                pytest.fail(f"child {index} exited early ({proc.returncode}):\n{err}")

    def close(self) -> None:
        """Kill the children still running, reap them all and close their pipes."""
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=HANG)
        for reader in self._readers:
            reader.join(timeout=HANG)
        for proc in self.procs:
            for stream in (proc.stdin, proc.stdout, proc.stderr):
                if stream is not None:
                    stream.close()

    def tell(self, index: int, line: str) -> None:
        stdin = self.procs[index].stdin
        assert stdin is not None
        stdin.write(line + "\n")
        stdin.flush()


def _same(module: ModuleType, value: Any, key: str, gen: int) -> bool:
    return bool(module.same(value, module.make_value(key, gen)))


def _check_entries(root: Path, module: ModuleType) -> int:
    """Every stored entry loads whole and equal to what its writer made; count them."""
    cache = Cache(LocalStore(root), signer=Signer(module.SECRET))
    loaded = 0
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for key in module.KEYS:
            exists = (root / "v1" / "entries" / key[:2] / key).exists()
            hit = cache.lookup(key)
            assert (hit is not None) == exists, f"{key}: file exists={exists}, hit={hit}"
            if hit is not None:
                gen = hit.value["gen"]
                assert hit.info.meta["gen"] == gen
                assert _same(module, hit.value, key, gen), f"{key}: wrong value for gen {gen}"
                loaded += 1
    damaged = [str(w.message) for w in caught if issubclass(w.category, CacheWarning)]
    assert damaged == [], "a complete-looking entry did not load"
    return loaded


def _pid_of(name: str) -> int:
    """The writer's pid in a temporary file's name: key.host.pid.random.tmp."""
    return int(name.rsplit(".", 3)[1])


def test_killed_writers_leave_whole_entries_or_none(
    tmp_path: Path, helper: tuple[Path, ModuleType]
) -> None:
    """SIGKILL at any moment of a put leaves each key whole-and-right or absent; sweep cleans."""
    script, module = helper
    root = tmp_path / "store"
    tmp_dir = root / "v1" / "tmp"
    seed = int.from_bytes(os.urandom(4), "little")
    rng = random.Random(seed)
    loaded = leftovers_seen = 0
    leftovers: list[str] = []
    killed: list[int] = []
    child = 0
    while True:
        proc = _spawn(script, "writer", root, child)
        _expect(proc, "started")
        # The random moment of the kill, not a handshake. Until a put has been seen whole,
        # the window widens (a put takes 25-45 ms here, longer on a loaded or slower
        # machine), so the test never runs out of kills before one lands after a put.
        window = 0.05 if loaded else min(0.8, 0.05 * 2 ** (child // 4))
        time.sleep(rng.uniform(0.0, window))
        proc.send_signal(signal.SIGKILL)
        _out, err = proc.communicate(timeout=HANG)
        assert proc.returncode == -signal.SIGKILL, f"writer died by itself (seed {seed}):\n{err}"
        killed.append(proc.pid)
        child += 1
        leftovers = sorted(os.listdir(tmp_dir)) if tmp_dir.exists() else []
        leftovers_seen += bool(leftovers)
        # 40 kills, then more (at most 40) until the last one left a temporary file behind,
        # so the sweep below has files of a dead writer to remove.
        if child >= 80 or (child >= 40 and leftovers):
            break
        # (Each writer's first put sweeps what earlier writers left; a reader sweeps nothing.)
        loaded += _check_entries(root, module)
    assert loaded > 0, f"no put ever completed before its kill (seed {seed}): test is vacuous"
    assert leftovers_seen > 0, f"no kill landed inside a write (seed {seed}): test is vacuous"
    assert leftovers, f"the last kills never left a temporary file (seed {seed})"
    # Every leftover is a killed writer's on this host: the last one's, or an earlier
    # one's that was killed before its successor's first put could sweep it.
    assert all(f".{HOST}." in name for name in leftovers), leftovers
    assert {_pid_of(name) for name in leftovers} <= set(killed), (leftovers, killed)
    assert _run(script, "sweep", root) == ["removed", str(len(leftovers))]
    assert os.listdir(tmp_dir) == []
    assert _check_entries(root, module) > 0
    # A writer indexes an entry before it publishes it: a kill never leaves an entry file
    # the index misses (a row without a file, at most), and the total counts every file.
    on_disk = {path.name: path.stat().st_size for path in (root / "v1" / "entries").glob("*/*")}
    store = LocalStore(root)
    indexed = {stat.key: stat.size for stat in store.entries()}
    assert set(on_disk) <= set(indexed), (on_disk, indexed)
    assert store.reindex() == len(on_disk) and store.total_size() == sum(on_disk.values())


def test_racing_processes_compute_once(tmp_path: Path, helper: tuple[Path, ModuleType]) -> None:
    """Two processes that miss one key together run its compute once; both get the value."""
    script, _module = helper
    root = tmp_path / "store"
    computed = tmp_path / "computed"
    key = "5e" * 16
    procs = [_spawn(script, "race", root, key, computed) for _ in range(2)]
    events = _Events(procs)
    try:
        ready: set[int] = set()
        while len(ready) < 2:
            index, words = events.next()
            assert words == ["ready"], words
            ready.add(index)
        for index in range(2):
            events.tell(index, "go")
        computing: set[int] = set()
        busy: set[int] = set()
        # Hold the compute until the other process has been refused the lease (or, if the
        # lease does not work, has started computing too).
        while not (computing and busy) and len(computing) < 2:
            index, words = events.next()
            assert words[0] in ("computing", "busy"), words
            (computing if words[0] == "computing" else busy).add(index)
        for index in computing:
            events.tell(index, "finish")
        done: dict[int, list[str]] = {}
        while len(done) < 2:
            index, words = events.next()
            if words[0] == "done":
                done[index] = words[1:]
                events.finished.add(index)
        for proc in procs:
            assert proc.wait(timeout=HANG) == 0
    finally:
        events.close()
    runs = computed.read_text().split()
    assert len(runs) == 1, f"computed {len(runs)} times, by pids {runs}"
    assert sorted(done.values()) == [["computed", "equal"], ["hit", "equal"]]
    assert runs == [str(procs[min(computing)].pid)]


def test_lease_of_a_killed_holder_is_taken_over(
    tmp_path: Path, helper: tuple[Path, ModuleType]
) -> None:
    """A lease whose holder was SIGKILLed is taken over by the next get_or_compute."""
    script, module = helper
    root = tmp_path / "store"
    key = "7f" * 16
    lease_path = LocalStore(root).lease(key).path
    holder = _spawn(script, "hold", root, key)
    try:
        _expect(holder, "held")
        other = LocalStore(root).lease(key)
        assert not other.acquire(), "the lease of a live holder was taken"
        holder.send_signal(signal.SIGKILL)
        holder.communicate(timeout=HANG)
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()
    assert json.loads(lease_path.read_text())["pid"] == holder.pid  # left behind by the kill
    assert _run(script, "compute_once", root, key) == ["runs", "1", "equal", "True"]
    assert not lease_path.exists()
    hit = Cache(LocalStore(root), signer=Signer(module.SECRET)).lookup(key)
    assert hit is not None and _same(module, hit.value, key, 1)


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


@pytest.mark.parametrize("holder", ["dead-pid-this-host", "old-heartbeat-other-host"])
def test_get_or_compute_takes_over_a_stale_lease(tmp_path: Path, holder: str) -> None:
    """A lease file of a dead pid here, or of another host with an old heartbeat, is broken."""
    store = LocalStore(tmp_path / "store")
    key = "3c" * 16
    path = store.lease(key).path
    path.parent.mkdir(parents=True)
    if holder == "dead-pid-this-host":
        path.write_text(json.dumps({"pid": _dead_pid(), "host": HOST, "token": "0" * 16}))
    else:
        path.write_text(json.dumps({"pid": os.getpid(), "host": "elsewhere.invalid", "token": ""}))
        os.utime(path, (0, os.stat(path).st_mtime - 3600))
    cache = Cache(store, signer=Signer(b"secret"))
    runs: list[int] = []
    out = cache.get_or_compute(key, lambda: runs.append(1) or "fresh")
    assert (out.value, out.hit, out.stored > 0, runs) == ("fresh", None, True, [1])
    assert not path.exists()
    assert Cache(store, signer=Signer(b"secret")).lookup(key) is not None


@pytest.mark.parametrize("body", ["json", "empty"])
def test_foreign_lease_is_judged_by_heartbeat_age(tmp_path: Path, body: str) -> None:
    """Another host's lease is taken over once its mtime is older than ttl, and not before."""
    store = LocalStore(tmp_path / "store")
    key = "9a" * 16
    path = store.lease(key).path
    path.parent.mkdir(parents=True)
    # pid is ours, alive here: for another host it must not matter.  An empty file is what
    # a holder killed between create and write leaves.
    content = (
        json.dumps({"pid": os.getpid(), "host": "elsewhere.invalid", "token": "f" * 16})
        if body == "json"
        else ""
    )
    path.write_text(content)

    fresh = store.lease(key, ttl=10.0)
    assert not fresh.acquire(), "a lease with a fresh heartbeat was taken over"
    assert path.read_text() == content

    now = os.stat(path).st_mtime
    os.utime(path, (now - 11.0, now - 11.0))
    aged = store.lease(key, ttl=10.0)
    try:
        assert aged.acquire(), "a lease without heartbeat for longer than ttl was not taken"
        holder = aged.holder()
        assert holder is not None and (holder["pid"], holder["host"]) == (os.getpid(), HOST)
    finally:
        aged.release()
    assert not path.exists()


class _EntryLandsFirst:
    """A LocalStore where another process finishes the key just before we take its lease.

    That is the ordinary end of a race for the waiting process: the computing one
    stores the entry and releases the lease between two polls of the waiter.
    """

    def __init__(self, store: LocalStore, value: object) -> None:
        self._store = store
        self._other = Cache(LocalStore(store.root), signer=Signer(b"secret"))
        self._value = value

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    def lease(self, key: str, **kwargs: Any) -> Any:
        assert self._other.put(key, self._value)
        return self._store.lease(key, **kwargs)


def test_waiter_that_finds_the_entry_gives_the_lease_back(tmp_path: Path) -> None:
    """get_or_compute that takes the lease and then finds the entry releases the lease."""
    store = LocalStore(tmp_path / "store")
    key = "4b" * 16
    cache = Cache(_EntryLandsFirst(store, "theirs"), signer=Signer(b"secret"))  # type: ignore[arg-type]
    runs: list[int] = []
    out = cache.get_or_compute(key, lambda: runs.append(1) or "ours")
    assert (out.value, runs) == ("theirs", [])
    assert out.hit is not None and out.hit.source == "store"
    # Nobody computes the key now, so anyone may take its lease (if this process kept it,
    # its heartbeat would keep every other get_or_compute of the key waiting forever).
    lease = store.lease(key)
    try:
        assert lease.acquire(), f"the lease is still held: {lease.holder()}"
    finally:
        lease.release()
