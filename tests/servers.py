"""Real servers on 127.0.0.1 for the shared-store tests, started and stopped by pid.

- :class:`S3Server`: moto's S3 server (``moto_server``, from ``moto[server]``), which
  honours conditional writes (``If-None-Match``/``If-Match``) as S3 does.
- :class:`RedisServer`: Debian's ``redis-server`` on a unix socket, with no persistence
  (``bash scripts/install-system.sh`` installs it).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

__all__ = ["RedisServer", "S3Server", "redis_server", "s3", "s3_server", "stop_process"]

_START_TIMEOUT = 30.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def stop_process(proc: subprocess.Popen[bytes], grace: float = 10.0) -> None:
    """End a server this test run started, by its pid: SIGTERM, then after ``grace``
    seconds SIGKILL, to its whole session if it leads one (its children too)."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:  # not a session leader: it alone
                proc.kill()
            proc.wait(10)


def _wait_until(ready: Any, proc: subprocess.Popen[bytes], what: str, log: Path) -> None:
    deadline = time.monotonic() + _START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}: {log.read_text()[-2000:]}")
        if ready():
            return
        time.sleep(0.05)
    stop_process(proc)
    raise RuntimeError(f"{what} did not start in {_START_TIMEOUT:.0f} s: {log.read_text()[-2000:]}")


class S3Server:
    """``moto_server`` on a free loopback port; :attr:`env` points boto and s3fs at it."""

    def __init__(self, folder: Path) -> None:
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.log = folder / "moto.log"
        server = Path(sys.executable).with_name("moto_server")
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(
                [str(server), "-H", "127.0.0.1", "-p", str(self.port)],
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        _wait_until(self._answers, self.proc, "moto_server", self.log)
        self.env = {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
        }

    @property
    def pid(self) -> int:
        return self.proc.pid

    def _answers(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.endpoint}/moto-api/", timeout=1):
                return True
        except OSError:
            return False

    def stop(self) -> None:
        stop_process(self.proc)

    def new_bucket(self) -> str:
        """A fresh empty bucket's name."""
        import boto3

        name = f"nbcache-{uuid.uuid4().hex[:12]}"
        client = boto3.client("s3", endpoint_url=self.endpoint, **_credentials(self.env))
        client.create_bucket(Bucket=name)
        return name

    def client(self) -> Any:
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, **_credentials(self.env))


def _credentials(env: dict[str, str]) -> dict[str, str]:
    return {
        "aws_access_key_id": env["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": env["AWS_SECRET_ACCESS_KEY"],
        "region_name": env["AWS_DEFAULT_REGION"],
    }


class RedisServer:
    """``redis-server`` on a unix socket under ``folder``, nothing saved to disk."""

    def __init__(self, folder: Path) -> None:
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        if not os.path.exists(binary):
            pytest.fail("redis-server is missing: run `bash scripts/install-system.sh` (as root)")
        # A unix socket path must stay under ~100 bytes; pytest's tmp paths can be longer.
        self.socket = Path(f"/tmp/nbcache-redis-{uuid.uuid4().hex[:10]}.sock")
        self.log = folder / "redis.log"
        with open(self.log, "wb") as out:
            options = {
                "--port": "0",
                "--unixsocket": str(self.socket),
                "--unixsocketperm": "700",
                "--save": "",
                "--appendonly": "no",
                "--dir": str(folder),
            }
            self.proc = subprocess.Popen(
                [binary, *(part for pair in options.items() for part in pair)],
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        _wait_until(self.socket.exists, self.proc, "redis-server", self.log)
        self.url = f"unix://{self.socket}"

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self) -> None:
        stop_process(self.proc)
        with contextlib.suppress(FileNotFoundError):
            self.socket.unlink()


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    server = S3Server(tmp_path_factory.mktemp("moto"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def s3(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """An ``s3://`` URL of a fresh bucket on the local server, with this process pointed
    at it."""
    for name, value in s3_server.env.items():
        monkeypatch.setenv(name, value)
    yield f"s3://{s3_server.new_bucket()}/team-cache"


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    try:
        yield server
    finally:
        server.stop()
