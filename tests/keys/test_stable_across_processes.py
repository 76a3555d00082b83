"""A value's digest is the same in every process: values people keep in notebooks.

A key that changes with the process (an ``id()`` kept as a number, a set
walked in hash-seed order, an address in a repr) never restores after a
kernel restart.  This module runs itself as a child twice, with different
``PYTHONHASHSEED`` values (and so different addresses too), digests each value
of :func:`values` there, and compares.  A value may also be refused, but only
with a ``KeyPicklingError``, so its cell runs uncached.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime
import decimal
import enum
import fractions
import functools
import json
import os
import pathlib
import re
import subprocess
import sys
import types
import uuid
import zoneinfo
from collections.abc import Callable
from typing import Any

import pytest

_ROOT = pathlib.Path(__file__).resolve().parents[2]


class Color(enum.Enum):
    RED = 1
    GREEN = 2


class Flags(enum.Flag):
    A = 1
    B = 2


@dataclasses.dataclass(frozen=True)
class Point:
    x: float
    y: float
    tags: frozenset[str] = frozenset({"left", "right", "up", "down"})


def _seaborn() -> dict[str, Callable[[], Any]]:
    import pandas as pd
    import seaborn.objects as so

    return {
        "so.Plot": lambda: so.Plot([1, 2], [0, 0]),
        "so.Plot(...).add(...).layout(...).theme(...)": lambda: (
            so.Plot(x=[1, 2, 3], y=[3, 1, 2], color=["a", "b", "a"])
            .add(so.Dot(), so.Jitter(0.1))
            .layout(size=(4, 3))
            .theme({"axes.facecolor": "w"})
        ),
        "so.Plot(frame, x=name, y=Series)": lambda: so.Plot(
            pd.DataFrame({"a": [1, 2]}), x="a", y=pd.Series([3, 4], name="b")
        ).add(so.Line()),
        "so.Continuous": lambda: so.Continuous(trans="log"),
    }


def _pandas() -> dict[str, Callable[[], Any]]:
    import numpy as np
    import pandas as pd

    return {
        "pd.Series[category]": lambda: pd.Series(["b", "a", "b"], dtype="category"),
        "pd.DataFrame[category,period,interval]": lambda: pd.DataFrame(
            {
                "c": pd.Categorical(["x", "y", "x"], categories=["y", "x"], ordered=True),
                "p": pd.period_range("2024-01", periods=3, freq="M"),
                "i": pd.interval_range(0, 3),
                "t": pd.date_range("2024-01-01", periods=3, tz="Europe/Paris"),
                "s": ["u", "v", None],
            }
        ),
        "pd.PeriodIndex": lambda: pd.period_range("2020Q1", periods=4, freq="Q"),
        "pd.IntervalIndex": lambda: pd.IntervalIndex.from_breaks([0.0, 1.5, 4.0]),
        "pd.CategoricalDtype": lambda: pd.CategoricalDtype(["a", "b", "c"]),
        "pd.Timestamp(tz)": lambda: pd.Timestamp("2024-03-01 12:00", tz="America/New_York"),
        "pd.Timedelta": lambda: pd.Timedelta("1 day 2h"),
        "pd.DateOffset": lambda: pd.offsets.BusinessDay(2),
        "pd.Period": lambda: pd.Period("2024-05", freq="M"),
        "pd.Interval": lambda: pd.Interval(0, 1, closed="left"),
        "pd.MultiIndex": lambda: pd.MultiIndex.from_product([["a", "b"], [1, 2]], names=["k", "n"]),
        "np.datetime64[]": lambda: np.array(["2024-01-01", "NaT"], dtype="datetime64[s]"),
        "np.structured": lambda: np.array(
            [(1, 2.0, b"ab"), (3, 4.0, b"cd")], dtype=[("a", "<i4"), ("b", "<f8"), ("c", "S2")]
        ),
        "np.random.Generator": lambda: np.random.default_rng(0),
        "np.dtype": lambda: np.dtype([("a", "<i4"), ("b", "<f8")]),
    }


def _science() -> dict[str, Callable[[], Any]]:
    import matplotlib
    import matplotlib.colors as mcolors
    import networkx as nx
    import numpy as np
    import scipy.stats as st
    import statsmodels.api as sm
    import xarray as xr
    from sklearn.linear_model import LinearRegression, LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler
    from sklearn.tree import DecisionTreeClassifier

    x = np.linspace(0.0, 1.0, 20).reshape(-1, 1)
    labels = (np.arange(20) % 2).astype(int)
    ols_y = 2 * x[:, 0] + np.sin(np.arange(20))

    def graph() -> Any:
        g = nx.Graph(name="g")
        g.add_edges_from([("a", "b", {"w": 1}), ("b", "c", {"w": 2})])
        g.add_node("d", kind={"x", "y", "z"})
        return g

    return {
        "matplotlib colormap": lambda: matplotlib.colormaps["viridis"],
        "ListedColormap": lambda: mcolors.ListedColormap(["red", "blue"]),
        "LinearSegmentedColormap": lambda: mcolors.LinearSegmentedColormap.from_list(
            "rb", ["red", "blue"]
        ),
        "Normalize": lambda: mcolors.Normalize(0.0, 2.0),
        "LogNorm": lambda: mcolors.LogNorm(1.0, 10.0),
        "BoundaryNorm": lambda: mcolors.BoundaryNorm([0, 1, 2], 2),
        "scipy.stats.norm(frozen)": lambda: st.norm(0.0, 2.0),
        "scipy.stats.gamma(frozen)": lambda: st.gamma(2.0, scale=3.0),
        "LinearRegression()": LinearRegression,
        "LinearRegression().fit": lambda: LinearRegression().fit(x, ols_y),
        "DecisionTreeClassifier().fit": lambda: DecisionTreeClassifier(random_state=0).fit(
            x, labels
        ),
        "Pipeline(StandardScaler, LogisticRegression).fit": lambda: make_pipeline(
            StandardScaler(), LogisticRegression()
        ).fit(x, labels),
        "OneHotEncoder().fit": lambda: OneHotEncoder().fit(np.array([["a"], ["b"], ["c"]])),
        "statsmodels OLS results": lambda: sm.OLS(ols_y, sm.add_constant(x)).fit(),
        "xarray.Dataset": lambda: xr.Dataset(
            {"t": (("x",), np.arange(3.0), {"units": "K"})},
            coords={"x": ["a", "b", "c"]},
            attrs={"tags": {"p", "q", "r"}},
        ),
        "networkx.Graph": graph,
        "networkx.DiGraph": lambda: nx.DiGraph([(1, 2), (2, 3)]),
    }


def _stdlib() -> dict[str, Callable[[], Any]]:
    import numpy as np

    paris = zoneinfo.ZoneInfo("Europe/Paris")
    return {
        "set[str]": lambda: {"alpha", "beta", "gamma", "delta", "epsilon"},
        "frozenset[str]": lambda: frozenset({"alpha", "beta", "gamma", "delta"}),
        "dict[str, set[str]]": lambda: {"k": {"x", "y", "z"}, "j": frozenset({"p", "q"})},
        "datetime(zoneinfo)": lambda: datetime.datetime(2024, 3, 1, 12, tzinfo=paris),
        "zoneinfo.ZoneInfo": lambda: paris,
        "datetime.timezone": lambda: datetime.timezone(datetime.timedelta(hours=2), "X"),
        "date, time, timedelta": lambda: (
            datetime.date(2024, 1, 2),
            datetime.time(3, 4),
            datetime.timedelta(days=5),
        ),
        "pathlib.Path": lambda: pathlib.Path("/data/file.csv"),
        "pathlib.PurePosixPath": lambda: pathlib.PurePosixPath("a/b"),
        "enum members": lambda: (Color.RED, Flags.A | Flags.B, re.IGNORECASE),
        "dataclass": lambda: Point(1.0, 2.0),
        "functools.partial(np.add)": lambda: functools.partial(np.add, 1),
        "functools.partial(json.dumps)": lambda: functools.partial(json.dumps, indent=2),
        "re.Pattern": lambda: re.compile(r"a+(?P<b>b)", re.IGNORECASE),
        "collections.deque": lambda: collections.deque([1, "a", (2, 3)], maxlen=5),
        "collections.OrderedDict": lambda: collections.OrderedDict([("b", 1), ("a", 2)]),
        "collections.Counter": lambda: collections.Counter("mississippi"),
        "collections.defaultdict": lambda: collections.defaultdict(set, {"a": {"x", "y"}}),
        "namedtuple": lambda: collections.namedtuple("Pair", "a b")(1, {"u", "v"}),
        "decimal.Decimal": lambda: decimal.Decimal("1.10"),
        "fractions.Fraction": lambda: fractions.Fraction(3, 7),
        "uuid.UUID": lambda: uuid.UUID("12345678-1234-5678-1234-567812345678"),
        "types.SimpleNamespace": lambda: types.SimpleNamespace(a=1, b={"s", "t"}),
        "range, slice": lambda: (range(2, 9, 3), slice(1, None, 2)),
    }


def _others() -> dict[str, Callable[[], Any]]:
    import polars as pl
    import pyarrow as pa
    import sympy

    a, b = sympy.symbols("a b")
    return {
        "sympy expression": lambda: a**2 + sympy.sin(b) / 3,
        "polars.DataFrame": lambda: pl.DataFrame({"a": [1, 2], "s": ["x", "y"]}),
        "pyarrow.Table": lambda: pa.table({"a": [1, 2], "s": ["x", "y"]}),
    }


class Slotted:
    __slots__ = ("names", "size")

    def __init__(self) -> None:
        self.names = {"p", "q", "r", "s"}
        self.size = 3


def _more() -> dict[str, Callable[[], Any]]:
    import logging
    import random

    import matplotlib.markers as mmarkers
    import matplotlib.path as mpath
    import matplotlib.ticker as mticker
    import matplotlib.transforms as mtransforms
    import numpy as np
    import pandas as pd
    import scipy.interpolate as si
    import scipy.stats as st
    import statsmodels.api as sm
    import statsmodels.formula.api as smf
    from PIL import Image
    from sklearn.cluster import KMeans
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.model_selection import GridSearchCV
    from sklearn.svm import SVC

    frame = pd.DataFrame({"y": [1.0, 2.5, 2.9, 4.2, 5.1], "x": [0, 1, 2, 3, 4], "g": list("ababa")})
    rows = np.arange(300)
    binary = pd.DataFrame(
        {"y": (rows % 3 == 0).astype(float), "x": np.linspace(0.0, 1.0, 300), "z": np.cos(rows)}
    )
    return {
        "random.random (bound to the global generator)": lambda: random.random,
        "functools.partial(random.choice)": lambda: functools.partial(random.choice, "abc"),
        "random.Random(0)": lambda: random.Random(0),
        "np.random.RandomState(0)": lambda: np.random.RandomState(0),
        "scipy.stats.multivariate_normal(frozen)": lambda: st.multivariate_normal([0, 0]),
        "matplotlib Affine2D": lambda: mtransforms.Affine2D().rotate_deg(30).scale(2),
        "matplotlib composite transform": lambda: (
            mtransforms.Affine2D().scale(2) + mtransforms.Affine2D().translate(1, 0)
        ),
        "matplotlib Path": lambda: mpath.Path([(0, 0), (1, 1)]),
        "matplotlib MarkerStyle": lambda: mmarkers.MarkerStyle("o"),
        "matplotlib MaxNLocator": lambda: mticker.MaxNLocator(5),
        "matplotlib FuncFormatter": lambda: mticker.FuncFormatter("{:.1f}".format),
        "scipy interp1d": lambda: si.interp1d([0.0, 1.0, 2.0], [0.0, 1.0, 4.0]),
        "np.poly1d": lambda: np.poly1d([1.0, 2.0, 3.0]),
        "statsmodels formula results": lambda: smf.ols("y ~ x + C(g)", data=frame).fit(),
        # GLM keeps a work buffer from np.empty_like(exog) that IRLS never writes; the
        # allocator's leftovers (addresses among them) show once exog outgrows a few rows.
        "statsmodels formula GLM results": lambda: smf.glm(
            "y ~ x + z", data=binary, family=sm.families.Binomial()
        ).fit(),
        "statsmodels formula GLM calling a __main__ function": lambda: smf.glm(
            "y ~ double_it(x)", data=binary, family=sm.families.Binomial()
        ).fit(),
        "pandas groupby": lambda: frame.groupby("g"),
        "pd.DataFrame of sets": lambda: pd.DataFrame({"s": [{"a", "b", "c"}, {"d", "e"}]}),
        "pd.DataFrame.attrs with a set": lambda: frame.assign(z=1).pipe(
            lambda f: (f.attrs.update(tags={"u", "v", "w"}), f)[1]
        ),
        "KMeans().fit": lambda: KMeans(2, n_init=1, random_state=0).fit(
            np.arange(10.0).reshape(-1, 1)
        ),
        "TfidfVectorizer().fit": lambda: TfidfVectorizer(stop_words="english").fit(
            ["the cat sat", "a dog ran", "cats and dogs"]
        ),
        "GridSearchCV(SVC)": lambda: GridSearchCV(SVC(), {"C": [1, 10], "kernel": ["rbf"]}),
        "logging.Logger": lambda: logging.getLogger("nbcache.test"),
        "PIL.Image": lambda: Image.new("RGB", (4, 3), "red"),
        "__slots__ object with a set": Slotted,
        "object with an id() attribute": lambda: _Tracker([1, 2]),
    }


def double_it(x: Any) -> Any:
    """A notebook function a formula calls: in the child it lives in ``__main__``."""
    return 2 * x


class _Tracker:
    """Keeps the id of what it tracks next to it, as seaborn's PlotData does."""

    def __init__(self, data: Any) -> None:
        self.ids = {"data": id(data)}
        self.data = data


def values() -> dict[str, Callable[[], Any]]:
    """The values checked: name -> a function that makes it (in the child)."""
    return {**_seaborn(), **_pandas(), **_science(), **_stdlib(), **_others(), **_more()}


def _child() -> None:
    import nbcache.keys
    from nbcache import KeyPicklingError

    results: dict[str, str] = {}
    for name, make in values().items():
        value = make()
        try:
            results[name] = nbcache.keys.digest(value, name=name)
        except KeyPicklingError as exc:
            results[name] = f"refused: {type(exc).__name__}"
        except Exception as exc:  # noqa: BLE001 - reported to the parent as a failure
            results[name] = f"raised: {type(exc).__name__}: {exc}"
    print(json.dumps(results))


def _digests(seed: str) -> dict[str, str]:
    env = {**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": str(_ROOT)}
    done = subprocess.run(
        [sys.executable, __file__],
        env=env,
        cwd=_ROOT,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result: dict[str, str] = json.loads(done.stdout.splitlines()[-1])
    return result


@pytest.fixture(scope="module")
def two_runs() -> tuple[dict[str, str], dict[str, str]]:
    return _digests("1"), _digests("2")


def test_every_value_digests_the_same_in_two_processes(
    two_runs: tuple[dict[str, str], dict[str, str]],
) -> None:
    """Different hash seeds and addresses: the same digest for each value, or the same refusal."""
    first, second = two_runs
    assert first.keys() == second.keys()
    differ = sorted(name for name in first if first[name] != second[name])
    assert not differ, {name: (first[name], second[name]) for name in differ}


def test_no_value_raises_anything_but_key_pickling_error(
    two_runs: tuple[dict[str, str], dict[str, str]],
) -> None:
    """A value that cannot be keyed is refused with KeyPicklingError, never another error."""
    first, _ = two_runs
    raised = {name: result for name, result in first.items() if result.startswith("raised:")}
    assert not raised


def test_seaborn_plot_digest_is_stable(two_runs: tuple[dict[str, str], dict[str, str]]) -> None:
    """``so.Plot`` keeps ``id()`` of its data vectors; the digest must not see the address."""
    first, second = two_runs
    assert first["so.Plot"] == second["so.Plot"]
    assert not first["so.Plot"].startswith(("refused", "raised"))


class _Holder:
    def __init__(self, first: Any, second: Any, which: int) -> None:
        self.first, self.second = first, second
        self.points_at = id(first if which == 0 else second)


def test_an_id_kept_as_an_int_hashes_as_the_part_it_names() -> None:
    """Two equal values made apart (other addresses) digest alike; which part is named counts."""
    from nbcache.keys import digest

    assert digest(_Tracker([1, 2])) == digest(_Tracker([1, 2]))
    assert digest(_Holder([1], [2], 0)) == digest(_Holder([1], [2], 0))
    assert digest(_Holder([1], [2], 0)) != digest(_Holder([1], [2], 1))
    word = "".join(["stop", "words"])  # a str part, not an interned constant
    assert digest({"w": word, "id": id(word)}) == digest({"w": word[:], "id": id(word)})


def test_an_object_holding_its_own_id() -> None:
    from nbcache.keys import digest

    def make() -> types.SimpleNamespace:
        value = types.SimpleNamespace(data=[1, 2])
        value.me = id(value)
        return value

    assert digest(make()) == digest(make())


def test_numbers_that_look_like_addresses_stay_numbers() -> None:
    """An int in the range of addresses that names no part hashes as the number it is."""
    from nbcache.keys import digest

    number = 1 << 40
    assert digest([number, "x"]) == digest([number, "x"])
    assert digest([number, "x"]) != digest([number + 8, "x"])
    assert digest({"n": number}) != digest({"n": number + 16})


def test_global_generators_key_by_name_and_private_ones_by_state() -> None:
    """The global generators of `random` and numpy are module state; your own are values."""
    import random

    import numpy as np

    from nbcache.keys import digest

    before = digest((random.random, functools.partial(np.random.normal, 0.0)))
    random.random()
    np.random.normal()
    assert digest((random.random, functools.partial(np.random.normal, 0.0))) == before
    assert digest(random.Random(0)) != digest(random.Random(1))
    assert digest(np.random.RandomState(0)) != digest(np.random.RandomState(1))


def test_a_mapping_proxy_hashes_as_its_items() -> None:
    from nbcache.keys import digest

    proxy = types.MappingProxyType
    assert digest(proxy({"a": 1})) == digest(proxy({"a": 1}))
    assert digest(proxy({"a": 1})) != digest(proxy({"a": 2}))
    assert digest(proxy({"a": 1})) != digest({"a": 1})


def test_a_work_buffer_keys_by_its_shape_not_its_bytes() -> None:
    """GLM's buffer for ``hessian``: left as allocated by fit, so only dtype and shape count."""
    import numpy as np
    import statsmodels.api as sm

    from nbcache.keys import digest

    rows = np.arange(40.0)
    model = sm.GLM((rows % 2 == 0).astype(float), sm.add_constant(rows / 40))
    before = digest(model)
    model._tmp_like_exog.fill(7.0)  # what the allocator left could be anything
    assert digest(model) == before
    model._tmp_like_exog = np.empty((3, 2))
    assert digest(model) != before
    model._tmp_like_exog = np.empty_like(model.exog)
    model.freq_weights = model.freq_weights * 2  # the model's other arrays still count
    assert digest(model) != before


if __name__ == "__main__":
    _child()
