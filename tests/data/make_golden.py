"""Writes the golden entries of the current on-disk format into tests/data/format<N>/.

Run once per new format, then never again for that format: the committed files
are what users' caches hold, and tests/entry/test_golden.py proves they still load.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from nbcache.entry.format import FORMAT, write_entry
from nbcache.entry.pickling import dump_parts
from nbcache.entry.signing import Signer

SECRET = b"golden-secret"
GOLDEN = {
    "0123456789abcdef0123456789abcdef": {
        "ints": [1, 2, 3],
        "text": "héllo",
        "float": 1.5,
        "nested": {"t": (1, None), "s": frozenset({"a"})},
        "small_array": np.arange(10, dtype=np.int64),
    },
    "fedcba9876543210fedcba9876543210": {
        "array": np.arange(2**18, dtype=np.float64),
        "matrix": np.arange(2**18, dtype=np.int32).reshape(512, 512),
    },
}


def main() -> None:
    folder = Path(__file__).parent / f"format{FORMAT}"
    folder.mkdir(exist_ok=True)
    for key, value in GOLDEN.items():
        path = folder / key
        if path.exists():
            sys.exit(f"{path} exists: golden files of a released format are never rewritten")
        with open(path, "wb") as f:
            write_entry(
                f,
                key,
                dump_parts(value),
                {"compute_seconds": 12.5, "label": "golden"},
                Signer(SECRET),
            )


if __name__ == "__main__":
    main()
