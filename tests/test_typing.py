"""A type checker sees a memoized function's own signature (ParamSpec)."""

from __future__ import annotations

from pathlib import Path

from mypy import api

SNIPPET = """
from nbcache import lru_cache, memoize

@memoize
def features(n: int, window: int = 5) -> list[float]:
    return [float(n)] * window

@memoize(maxsize=None, ignore=("verbose",))
def fit(x: str, verbose: bool = False) -> str:
    return x

@lru_cache()
def small(x: int) -> int:
    return x

reveal_type(features(1))
reveal_type(fit("a"))
reveal_type(features.submit(1))
reveal_type(small(1))
features("no")
fit(1)
small("no")
"""


def test_memoized_signatures_are_checked(tmp_path: Path) -> None:
    """Return types come through, and wrong argument types are errors."""
    path = tmp_path / "snippet.py"
    path.write_text(SNIPPET)
    # The project's own cache (the one `mypy` in .ci/run fills) keeps this to a second:
    # checking the snippet also checks nbcache and, through the extension, IPython.
    cache = Path(__file__).resolve().parent.parent / ".mypy_cache"
    out, _err, _status = api.run([str(path), "--cache-dir", str(cache)])
    notes = [line.split(": ", 2)[-1] for line in out.splitlines() if ": note: " in line]
    shown = [
        note.replace("builtins.", "").replace("concurrent.futures._base.", "") for note in notes
    ]
    assert shown == [
        'Revealed type is "list[float]"',
        'Revealed type is "str"',
        'Revealed type is "Future[list[float]]"',
        'Revealed type is "int"',
    ]
    errors = [line for line in out.splitlines() if ": error: " in line]
    assert len(errors) == 3, out
    assert all("incompatible type" in line for line in errors), out
