"""nbcache is transparent on real notebooks that nobody here wrote.

The corpus (tests/notebooks/transparency/corpus.json) names public tutorials
and gallery examples shipped in PyPI packages; they are kept in the repository
(tests/notebooks/transparency/notebooks/, with their licences), so no run needs
the network.  Each runs in
fresh kernels four ways: plain, plain again (to know which cells vary by
themselves), every code cell under ``%%cache`` on an empty store, and again on
that store after a restart.  See docs/transparency.md.

The fast tests here check the manifest and the harness's own pieces; the one
marked ``transparency`` runs the corpus (a few minutes with 2 workers) and
asserts the targets: no output differences, no nbcache tracebacks, no hangs,
every deterministic cell restored on the third run.  Issues listed as known in
the manifest are allowed while fixes land; a new issue fails, and so does a
known one that no longer occurs, so the list only shrinks.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from .transparency import corpus, harness

KINDS = {
    f"{run}:{kind}"
    for run in harness.WRAPPED
    for kind in (
        *harness.CATEGORIES,
        "nbcache-traceback",
        "hang",
        "dead",
        "failed",
        "setup",
    )
} | {"hit:not-restored"}


# -- the manifest and the harness's pieces (fast, no kernels, no downloads) -------------


def test_manifest_names_source_licence_and_version_of_every_notebook() -> None:
    manifest = corpus.load_manifest()
    books = manifest["notebooks"]
    assert len(books) >= 15
    assert len({b["id"] for b in books}) == len(books)
    for name, pkg in manifest["packages"].items():
        for key in ("version", "archive", "file", "sha256", "url", "licence"):
            assert pkg.get(key), (name, key)
        assert pkg["archive"] in ("sdist", "wheel"), name
    for book in books:
        assert book["package"] in manifest["packages"], book["id"]
        assert book["path"] and len(book["sha256"]) == 64, book["id"]
        for edit in book.get("edits", []):
            assert edit.get("why"), (book["id"], edit)
            assert "drop" in edit or "replace" in edit, (book["id"], edit)
        for known in book.get("known", []):
            assert known["kind"] in KINDS, (book["id"], known)
            assert isinstance(known["cell"], int) and known.get("reason"), (book["id"], known)


def test_wrapping_leaves_other_cell_magics_and_empty_cells_alone() -> None:
    assert harness.wrap("x = 1") == "%%cache\nx = 1"
    assert harness.wrap("%matplotlib inline") == "%%cache\n%matplotlib inline"
    assert harness.wrap("%%javascript\nalert(1)") == "%%javascript\nalert(1)"
    assert harness.wrap("\n%%time\nx = 1") == "\n%%time\nx = 1"
    assert harness.wrap("  \n") == "  \n"


def test_gallery_scripts_split_into_cells_like_sphinx_gallery() -> None:
    script = (
        '"""\nTitle\n=====\nText.\n"""\n\nimport numpy as np\n\n'
        "# %%\n# Some text\n# more text\n\nx = np.arange(3)\nx\n\n"
        "##############################################################################\n"
        "# Text again\ny = 2  # a comment stays\n# %%\n# only text\n"
    )
    assert corpus.split_script(script) == [
        "import numpy as np",
        "x = np.arange(3)\nx",
        "y = 2  # a comment stays",
    ]


def test_edits_name_source_cells_and_fail_when_the_source_changed() -> None:
    cells = ["a = 1", "download()", "print(a)"]
    edits = [{"drop": [1], "why": "network"}, {"cell": 2, "replace": ["a", "a + 1"], "why": "x"}]
    assert corpus.apply_edits("t", cells, edits) == [(0, "a = 1"), (2, "print(a + 1)")]
    with pytest.raises(corpus.CorpusError):
        corpus.apply_edits("t", cells, [{"cell": 0, "replace": ["zzz", ""], "why": "gone"}])
    with pytest.raises(corpus.CorpusError):
        corpus.apply_edits("t", cells, [{"drop": [0]}])


def _display(text: str, meta: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"output_type": "display_data", "data": {"text/plain": text}, "metadata": meta or {}}


def test_normalising_drops_what_legitimately_varies() -> None:
    status = _display("nbcache: restored x (1 KB) in 2 ms", {"nbcache": {"status": True}})
    plain = [
        {"output_type": "stream", "name": "stdout", "text": "at 0x7f12ab34cd56\n"},
        {"output_type": "stream", "name": "stdout", "text": "Wall time: 1.2 s\n"},
        {
            "output_type": "execute_result",
            "data": {"text/plain": "Time: 10:11:12"},
            "metadata": {},
            "execution_count": 3,
        },
    ]
    cached = [
        {"output_type": "stream", "name": "stdout", "text": "at 0x55aa00bb11cc\nWall time: 9 ms\n"},
        {
            "output_type": "stream",
            "name": "stderr",
            "text": "/x/y.py:3: UserWarning: nbcache: kept in memory only, not stored: no\n"
            "  warn()\n",
        },
        {
            "output_type": "execute_result",
            "data": {"text/plain": "Time: 23:59:01"},
            "metadata": {},
            "execution_count": 9,
        },
        status,
    ]
    a = harness.analyse_cell(plain, [])
    b = harness.analyse_cell(cached, [])
    assert a["normal"] == b["normal"]
    assert b["status"] == ["nbcache: restored x (1 KB) in 2 ms"]
    assert b["messages"] == [
        "/x/y.py:3: UserWarning: nbcache: kept in memory only, not stored: no\n  warn()"
    ]


def test_stdout_and_stderr_interleaving_between_displays_does_not_count() -> None:
    def stream(name: str, text: str) -> dict[str, Any]:
        return {"output_type": "stream", "name": name, "text": text}

    one = [
        stream("stderr", "warn\n"),
        stream("stdout", "a\n"),
        _display("x"),
        stream("stdout", "b"),
    ]
    two = [
        stream("stdout", "a\n"),
        stream("stderr", "warn\n"),
        _display("x"),
        stream("stdout", "b"),
    ]
    assert harness.analyse_cell(one, [])["normal"] == harness.analyse_cell(two, [])["normal"]
    three = [
        stream("stdout", "a\n"),
        _display("x"),
        stream("stderr", "warn\n"),
        stream("stdout", "b"),
    ]
    assert harness.differences(
        harness.analyse_cell(one, [])["normal"], harness.analyse_cell(three, [])["normal"]
    ) == ["order"]


def test_differences_are_sorted_by_kind() -> None:
    figure = {
        "output_type": "display_data",
        "data": {"image/png": "AAAA", "text/plain": "<Figure size 640x480 with 1 Axes>"},
        "metadata": {},
    }
    result = {"output_type": "execute_result", "data": {"text/plain": "1"}, "metadata": {}}
    norm = lambda outs: harness.analyse_cell(outs, [])["normal"]  # noqa: E731
    assert harness.differences(norm([result, figure]), norm([figure, result])) == ["order"]
    assert harness.differences(norm([result]), norm([])) == ["result"]
    other = {**figure, "data": {**figure["data"], "image/png": "BBBB"}}
    assert harness.differences(norm([figure]), norm([other])) == ["image"]
    traceback = {
        "output_type": "error",
        "ename": "KeyError",
        "evalue": "'x'",
        "traceback": ["File /site-packages/nbcache/cells.py:10, in run"],
    }
    assert harness.analyse_cell([traceback], [])["tracebacks"]


def test_known_issues_only_shrink() -> None:
    book = corpus.Notebook(
        id="p/nb",
        package="p",
        version="1",
        path="a.ipynb",
        url="u",
        licence="l",
        cells=["x"],
        numbers=[0],
        known=[
            {"cell": 0, "kind": "hit:result", "reason": "r"},
            {"cell": 1, "kind": "miss:stdout", "reason": "r"},
        ],
    )
    issues = [
        {"notebook": "p/nb", "cell": 0, "kind": "hit:result", "detail": ""},
        {"notebook": "p/nb", "cell": 2, "kind": "hit:image", "detail": ""},
    ]
    new, gone = harness.compare_known([book], issues)
    assert [(i["cell"], i["kind"]) for i in new] == [(2, "hit:image")]
    assert [(k["cell"], k["kind"]) for k in gone] == [(1, "miss:stdout")]


# -- the run ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def transparency(pytestconfig: pytest.Config) -> Iterator[dict[str, Any]]:
    say = harness.terminal_lines(pytestconfig)
    books = corpus.notebooks()
    folder = harness.report_dir()
    report = harness.run_corpus(books, log=say, keep_notebooks=folder / "notebooks")
    _, md = harness.write_report(report, folder)
    for line in harness.summary_lines(report):
        say(line)
    say(f"transparency: report in {md}")
    yield report


def _listing(issues: list[dict[str, Any]], limit: int = 40) -> str:
    lines = []
    for i in issues[:limit]:
        detail = i.get("detail", i.get("reason", ""))[:160]
        lines.append(f"  {i['notebook']} cell {i['cell']} {i['kind']}: {detail}")
    if len(issues) > limit:
        lines.append(f"  ... and {len(issues) - limit} more (see the report)")
    return "\n".join(lines)


@pytest.mark.transparency
@pytest.mark.timeout(1800)  # the whole corpus, several kernels a notebook
def test_cached_notebooks_show_what_plain_ones_show(transparency: dict[str, Any]) -> None:
    report = transparency
    figures = report["figures"]
    setup = [i for i in report["issues"] if i["kind"].endswith(":setup")]
    assert not setup, "%load_ext nbcache itself failed:\n" + _listing(setup)
    assert not report["problems"], "the corpus itself does not run plain:\n" + "\n".join(
        report["problems"]
    )
    assert figures["notebooks"] >= 15
    assert figures["restorable"] > 0.5 * figures["cells"], figures
    message = []
    if report["new"]:
        message.append(
            f"{len(report['new'])} transparency issues not in the known list "
            f"({json.dumps(figures['issues_by_kind'])}):\n" + _listing(report["new"])
        )
    if report["gone"]:
        message.append(
            f"{len(report['gone'])} known issues no longer occur: remove them from "
            f"{corpus.MANIFEST.name}:\n" + _listing(report["gone"])
        )
    assert not message, "\n".join(message) + f"\nreport: {harness.report_dir()}"
