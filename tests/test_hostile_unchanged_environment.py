"""What a driven kernel logs for the no-kernel check of an unchanged notebook covers
what would shadow its distributions next time: a user site-packages folder that the
first ``pip install --user`` creates (Python adds it to ``sys.path`` only once it is
there, so the kernel's ``sys.path`` alone never named it)."""

from __future__ import annotations

import json
import site
import warnings
from pathlib import Path
from typing import Any

import pytest

from nbcache.notebooks import kernelside
from nbcache.notebooks.unchanged import distributions


class _Events:
    def __init__(self) -> None:
        self.hooks: dict[str, list[Any]] = {}

    def register(self, event: str, hook: Any) -> None:
        self.hooks.setdefault(event, []).append(hook)


class _Shell:
    def __init__(self) -> None:
        self.events = _Events()


def test_a_user_site_made_after_the_record_is_a_change(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    user = tmp_path / "user-site"
    monkeypatch.setattr(site, "ENABLE_USER_SITE", True)
    monkeypatch.setattr(site, "getusersitepackages", lambda: str(user))
    log = tmp_path / "cells.jsonl"
    monkeypatch.setenv("NBCACHE_AUTO_LOG", str(log))
    monkeypatch.setattr(warnings, "showwarning", warnings.showwarning)  # load() wraps it
    shell = _Shell()
    kernelside.load(shell)
    for hook in shell.events.hooks["post_run_cell"]:
        hook(None)
    records = [json.loads(line) for line in log.read_text().splitlines()]
    (environment,) = [r["environment"] for r in records if "environment" in r]
    before = distributions(environment["path"])
    (user / "numpy-99.0.dist-info").mkdir(parents=True)  # pip install --user numpy==99
    assert distributions(environment["path"]) != before
