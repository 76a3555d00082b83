"""A background cell on dask in a real kernel: NBCACHE_DASK=local, the body in a worker
process, its variables in the kernel, its progress on the card, the cluster gone at exit."""

from __future__ import annotations

import json
import time
from pathlib import Path

import psutil

from . import nbrun
from .test_background_kernel import _card_of, _html

CELLS = [
    "%load_ext nbcache\nimport os, time, nbcache\nkernel_pid = os.getpid()",
    "%%cache -b -n remote --executor dask\nimport os\nworker_pid = os.getpid()\n"
    "for i in nbcache.progress(range(5)):\n    time.sleep(0.05)\nprint('on a worker')\n"
    "answer = 6 * 7",
    "t_plain = time.time()\nprint('plain ran')",
    "%nbcache wait remote\nprint(answer, worker_pid != kernel_pid)",
    "import json\nfrom nbcache.tasks import dask as dask_executor\n"
    "pids = sorted(dask_executor.executor().client.run(os.getpid).values())\n"
    "print(json.dumps({'workers': pids, 'worker': worker_pid}))",
    "%nbcache tasks",
]


def test_dask_cell_in_a_real_kernel(tmp_path: Path) -> None:
    """The body runs in one of the local cluster's worker processes, %nbcache wait brings its
    variables, the card ends done with the worker's progress and output, and the kernel's
    exit closes the cluster."""
    env = nbrun.kernel_env(tmp_path, tmp_path / "store")
    env["NBCACHE_DASK"] = "local"
    nb = nbrun.run(CELLS, cwd=tmp_path, env=env, timeout=120)
    assert not nbrun.errors(nb)
    assert nbrun.text_of(nb, 2) == "plain ran\n"
    assert nbrun.text_of(nb, 3) == "42 True\n"
    started = json.loads(nbrun.text_of(nb, 4))
    assert len(started["workers"]) == 2 and started["worker"] in started["workers"]
    card = _card_of(nb, 1)
    text = _html(card)
    assert 'data-state="done"' in text and "5 / 5" in text and "width: 100.0%" in text
    (pane,) = card["OutputModel"]
    assert "".join(o.get("text", "") for o in pane["outputs"]) == "on a worker\n"
    assert "done" in nbrun.text_of(nb, 5) and "remote" in nbrun.text_of(nb, 5)
    deadline = time.monotonic() + 20
    while any(_alive(pid) for pid in started["workers"]):
        assert time.monotonic() < deadline, "the kernel's local cluster outlived the kernel"
        time.sleep(0.1)


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
