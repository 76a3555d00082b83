"""Fixtures the kernel tests share; a test module's fixture of the same name overrides
one here where that module's runs need another environment."""

from __future__ import annotations

from pathlib import Path

import pytest

from .clients import client_env


@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``tmp_path`` as the folder of a client's run: this process's environment is the
    client's (see :func:`client_env`), which the kernels it starts inherit, and a run
    restores cells in batches unless the test asks otherwise."""
    for name, value in client_env(tmp_path).items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("NBCACHE_RUN_BATCHES", raising=False)
    return tmp_path
