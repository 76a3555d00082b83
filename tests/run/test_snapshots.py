"""``run/snapshots.py``: when a progress loop takes a checkpoint, and parsing the choice."""

from __future__ import annotations

import pytest

from nbcache.run.snapshots import CEILING, FLOOR, SHARE, WRITE_SHARE, Policy, parse_policy


def test_the_choices_parse() -> None:
    assert parse_policy("auto") == "auto" and parse_policy(" OFF ") == "off"
    assert parse_policy("10m") == 600.0 and parse_policy("0s") == 0.0
    with pytest.raises(ValueError, match="--checkpoint takes auto, off or a duration"):
        parse_policy("often")


def test_off_takes_none_and_a_duration_is_kept() -> None:
    assert Policy.of("off") is None
    every = Policy.of("90s")
    assert every is not None and every.interval == 90.0 and every.due(90.0)
    assert not every.due(89.9)


def test_auto_follows_what_snapshots_and_writes_cost_within_its_bounds() -> None:
    auto = Policy.of("auto")
    assert auto is not None and auto.interval == FLOOR  # cheap: as often as the floor
    auto.snapshot_cost = 1.0  # a snapshot took a second of the loop's time
    assert auto.interval == pytest.approx(1.0 / SHARE)
    auto.snapshot_cost, auto.write_cost = 0.0, 10.0  # a slow disk
    assert auto.interval == pytest.approx(10.0 / WRITE_SHARE)
    auto.snapshot_cost = 1e6
    assert auto.interval == CEILING  # still at least every few minutes
