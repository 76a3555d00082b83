"""Entries written by earlier releases still load: a release never invalidates every cache."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from nbcache.cache.core import Cache
from nbcache.entry.format import FORMAT
from nbcache.entry.signing import Signer
from nbcache.store import LocalStore
from tests.data.make_golden import GOLDEN, SECRET

DATA = Path(__file__).parents[1] / "data"
FORMATS = sorted(DATA.glob("format*"))


def test_every_format_up_to_the_current_one_has_golden_files() -> None:
    """Golden files exist for the current on-disk format."""
    assert DATA / f"format{FORMAT}" in FORMATS


@pytest.mark.parametrize("folder", FORMATS, ids=lambda p: p.name)
@pytest.mark.parametrize("key", sorted(GOLDEN))
def test_golden_entries_load(folder: Path, key: str, tmp_path: Path) -> None:
    """Each committed entry loads through a store to the value it was made from."""
    store = LocalStore(tmp_path / "store")
    with store.write_entry(key) as f, open(folder / key, "rb") as golden:
        shutil.copyfileobj(golden, f)
    hit = Cache(store, signer=Signer(SECRET)).lookup(key)
    assert hit is not None
    assert hit.info.meta == {"compute_seconds": 12.5, "label": "golden"}
    expected = GOLDEN[key]
    assert hit.value.keys() == expected.keys()
    for name, value in expected.items():
        if isinstance(value, np.ndarray):
            assert hit.value[name].dtype == value.dtype
            assert np.array_equal(hit.value[name], value)
        else:
            assert hit.value[name] == value
