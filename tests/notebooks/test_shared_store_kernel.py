"""Kernels sharing one cache on S3 (moto's server on 127.0.0.1), as a team or a cluster would.

Each kernel has its own working folder and its own local tier, so nothing but the
bucket (and, where named, the Redis server) is shared between them.  A cached body
appends to a log file outside both, so counting the log's lines counts the runs.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from tests.servers import RedisServer, S3Server

from . import nbrun


def _cell(log: Path, seconds: float = 0.0) -> str:
    return (
        "%%cache\n"
        f"with open({str(log)!r}, 'a') as log:\n"
        "    log.write('ran\\n')\n"
        f"__import__('time').sleep({seconds})\n"
        "answer = sum(range(10))\n"
    )


def _runs(log: Path) -> int:
    return len(log.read_text().splitlines()) if log.exists() else 0


def _kernel_env(
    tmp_path: Path, name: str, url: str, server: S3Server, **extra: str
) -> dict[str, str]:
    root = tmp_path / name
    (root / "work").mkdir(parents=True)
    env = nbrun.kernel_env(root, root / "unused")
    env.update(server.env, NBCACHE_DIR=url, NBCACHE_TIER=str(root / "tier"), **extra)
    return env


def _run(tmp_path: Path, name: str, cells: list[str], env: dict[str, str]) -> Any:
    return nbrun.run(cells, cwd=tmp_path / name / "work", env=env)


def _no_traceback(nb: Any) -> None:
    assert not nbrun.errors(nb)
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            assert "Traceback" not in str(out.get("text", "")), out


def test_a_second_machine_restores_from_the_bucket(
    s3: str, s3_server: S3Server, tmp_path: Path
) -> None:
    log = tmp_path / "runs.log"
    cells = ["%load_ext nbcache", _cell(log), "print(answer)"]
    a = _run(tmp_path, "a", cells, _kernel_env(tmp_path, "a", s3, s3_server))
    b = _run(tmp_path, "b", cells, _kernel_env(tmp_path, "b", s3, s3_server))
    assert _runs(log) == 1
    assert nbrun.status_lines(a, 1)[0].startswith("nbcache: computed answer")
    assert nbrun.status_lines(b, 1)[0].startswith("nbcache: restored answer")
    assert nbrun.text_of(b, 2) == "45\n"
    assert list((tmp_path / "b" / "tier").rglob("v1/entries/*/*")), "b keeps a local copy"
    _no_traceback(a)
    _no_traceback(b)


def test_a_tampered_object_is_refused_and_recomputed(
    s3: str, s3_server: S3Server, tmp_path: Path
) -> None:
    log = tmp_path / "runs.log"
    cells = ["%load_ext nbcache", _cell(log), "print(answer)"]
    _run(tmp_path, "a", cells, _kernel_env(tmp_path, "a", s3, s3_server))
    bucket, prefix = s3.removeprefix("s3://").split("/", 1)
    client = s3_server.client()
    [obj] = client.list_objects_v2(Bucket=bucket, Prefix=f"{prefix}/v1/entries/")["Contents"]
    body = bytearray(client.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read())
    body[40] ^= 0x01  # inside the pickle stream, which the signed header pins
    client.put_object(Bucket=bucket, Key=obj["Key"], Body=bytes(body))

    b = _run(tmp_path, "b", cells, _kernel_env(tmp_path, "b", s3, s3_server))
    assert _runs(log) == 2
    warning = nbrun.text_of(b, 1, "stderr")
    assert warning.count("\n") == 1 and "damaged" in warning, warning
    assert nbrun.status_lines(b, 1)[0].startswith("nbcache: computed answer")
    assert nbrun.text_of(b, 2) == "45\n"
    _no_traceback(b)
    c = _run(tmp_path, "c", cells, _kernel_env(tmp_path, "c", s3, s3_server))
    assert _runs(log) == 2  # b stored a good entry again
    assert nbrun.status_lines(c, 1)[0].startswith("nbcache: restored answer")


@pytest.mark.parametrize("lease", ["object", "redis"])
def test_two_kernels_racing_on_one_key_compute_it_once(
    lease: str, s3: str, s3_server: S3Server, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    extra = {}
    if lease == "redis":
        redis: RedisServer = request.getfixturevalue("redis_server")
        extra["NBCACHE_LOCK_URL"] = redis.url
    log = tmp_path / "runs.log"
    cells = ["%load_ext nbcache", _cell(log, seconds=4), "print(answer)"]
    envs = {name: _kernel_env(tmp_path, name, s3, s3_server, **extra) for name in "ab"}
    done: dict[str, Any] = {}

    def run(name: str) -> None:
        done[name] = _run(tmp_path, name, cells, envs[name])

    threads = [threading.Thread(target=run, args=(name,)) for name in "ab"]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert set(done) == {"a", "b"}
    assert _runs(log) == 1
    lines = sorted(nbrun.status_lines(done[name], 1)[0].split(" (")[0] for name in "ab")
    assert lines[0].startswith("nbcache: computed answer")
    assert lines[1].startswith("nbcache: restored answer")
    for nb in done.values():
        assert nbrun.text_of(nb, 2) == "45\n"
        _no_traceback(nb)
