"""The pre-commit configuration for developing nbcache runs exactly the checks CI runs
(.ci/run), with the same tools from the project's .venv."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).parent.parent
CONFIG = ROOT / ".pre-commit-config.yaml"
CI = ROOT / ".ci" / "run"


def ci_checks(script: str) -> list[str]:
    """The commands .ci/run runs with a tool of the project's .venv, pip aside."""
    return [
        line.strip()
        for line in script.splitlines()
        if line.strip().startswith(".venv/bin/") and not line.strip().startswith(".venv/bin/pip")
    ]


def hooks(config: dict[str, Any]) -> list[dict[str, Any]]:
    return [hook for repo in config["repos"] for hook in repo["hooks"]]


def test_the_hooks_run_what_ci_runs() -> None:
    config = yaml.safe_load(CONFIG.read_text())
    checks = ci_checks(CI.read_text())
    assert {".venv/bin/ruff check .", ".venv/bin/ruff format --check .", ".venv/bin/mypy"} <= set(
        checks
    )
    assert [hook["entry"] for hook in hooks(config)] == checks


def test_the_hooks_use_the_projects_tools_and_no_network() -> None:
    """A local repo with system hooks: pre-commit installs nothing, so the versions are
    the .venv's (CI's) and no hook needs the network; every hook checks the whole tree,
    as CI does, rather than the files pre-commit would pass."""
    config = yaml.safe_load(CONFIG.read_text())
    assert [repo["repo"] for repo in config["repos"]] == ["local"]
    for hook in hooks(config):
        assert hook["language"] == "system"
        assert hook["entry"].startswith(".venv/bin/")
        assert hook["pass_filenames"] is False


def test_a_check_ci_gained_is_noticed() -> None:
    script = CI.read_text() + "\n.venv/bin/ruff check --select D .\n"
    config = yaml.safe_load(CONFIG.read_text())
    assert [hook["entry"] for hook in hooks(config)] != ci_checks(script)
    assert ci_checks(script)[-1] == ".venv/bin/ruff check --select D ."
