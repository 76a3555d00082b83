"""An entry that no longer loads (a class it holds was renamed in an installed package whose
version did not change) is a miss that says why, in two real processes."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

SESSION = textwrap.dedent(
    """
    import sys
    from IPython.core.interactiveshell import InteractiveShell

    sys.path.insert(0, sys.argv[1])
    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "nbcache")
    shell.run_cell("import shapes")
    shell.run_cell("%%cache -n pts\\np = shapes.make()\\nprint(type(p).__name__)")
    shell.run_cell("%nbcache why pts")
    """
)

MODULE = textwrap.dedent(
    """
    class Point:
        def __init__(self, x):
            self.x = x


    def make():
        return Point(3)
    """
)


def session(root: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NBCACHE_", "PYTEST_"))}
    env.update(
        NBCACHE_DIR=str(root / "store"),
        NBCACHE_SECRET="nbcache-test-secret-of-32-bytes-0k",
        IPYTHONDIR=str(root / "ipython"),
        PYTHONDONTWRITEBYTECODE="1",
    )
    return subprocess.run(
        [sys.executable, "-c", SESSION, str(root / "site-packages")],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_class_renamed_since_the_entry_was_made_is_a_miss_that_says_why(
    tmp_path: Path,
) -> None:
    # under a folder named site-packages: an installed module, keyed by name and version
    package = tmp_path / "site-packages"
    package.mkdir()
    (package / "shapes.py").write_text(MODULE)
    first = session(tmp_path)
    assert first.returncode == 0 and first.stdout.startswith("Point\n"), first.stderr
    (package / "shapes.py").write_text(MODULE.replace("Point", "Pt"))
    second = session(tmp_path)
    assert second.returncode == 0, second.stderr
    assert second.stdout.startswith("Pt\n")  # recomputed, with the class as it is now
    why = second.stdout.split("\n", 2)[2]
    assert "nothing in the key differs" not in why
    assert "`shapes.Point`" in why and "no longer exists" in why, why
    assert "`shapes.Point`" in second.stderr  # the warning names it too
