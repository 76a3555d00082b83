"""``python -m tests.notebooks.transparency``: the transparency run outside pytest.

Prints the summary and writes the JSON and Markdown report (to
``$NBCACHE_TRANSPARENCY_REPORT`` or tests/notebooks/transparency/report/).
``--only`` picks notebooks by a part of their id; ``--plain`` runs each
notebook once, plain, and prints its time and errors (to try out a corpus);
``--vendor`` fetches the notebooks the manifest names into the repository.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from . import corpus, harness


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.notebooks.transparency")
    parser.add_argument("--manifest", type=Path, default=corpus.MANIFEST)
    parser.add_argument("--only", action="append", default=[], help="part of a notebook id")
    parser.add_argument("--workers", type=int, default=harness.WORKERS)
    parser.add_argument("--timeout", type=int, default=harness.CELL_TIMEOUT)
    parser.add_argument("--report", type=Path, default=None)
    parser.add_argument(
        "--nbcache", default=None, help="folder with another nbcache package for the kernels"
    )
    parser.add_argument(
        "--write-known",
        action="store_true",
        help="after the run, make every issue found the manifest's known list (so the test "
        "passes today and fails on anything new or fixed)",
    )
    parser.add_argument("--plain", action="store_true", help="one plain run each, to try a corpus")
    parser.add_argument(
        "--vendor",
        action="store_true",
        help="fetch the manifest's archives with pip and write their notebooks and licence "
        "files into notebooks/ (when a version in the manifest changes)",
    )
    args = parser.parse_args(argv)
    if args.vendor:
        written = corpus.vendor(corpus.load_manifest(args.manifest), log=print)
        print(f"transparency: wrote {len(written)} files under {corpus.VENDORED}")
        return 0

    books = corpus.notebooks(corpus.load_manifest(args.manifest))
    if args.only:
        books = [b for b in books if any(part in b.id for part in args.only)]
    if args.plain:
        return _plain(books, args.timeout)
    folder = args.report or harness.report_dir()
    report = harness.run_corpus(
        books,
        workers=args.workers,
        timeout=args.timeout,
        keep_notebooks=folder / "notebooks",
        nbcache=args.nbcache,
    )
    js, md = harness.write_report(report, folder)
    for line in harness.summary_lines(report):
        print(line)
    print(f"transparency: report in {md} and {js}")
    if args.write_known:
        write_known(args.manifest, report)
        print(f"transparency: wrote {len(report['issues'])} known issues into {args.manifest}")
    return 0


def write_known(manifest_path: Path, report: dict) -> None:
    """Every issue of ``report`` as its notebook's known list (reason: the issue's detail,
    to be replaced by the root cause by hand)."""
    manifest = corpus.load_manifest(manifest_path)
    found: dict[str, dict[tuple[int, str], str]] = {}
    for issue in report["issues"]:
        key = (issue["cell"], issue["kind"])
        found.setdefault(issue["notebook"], {}).setdefault(key, issue["detail"][:160])
    for entry in manifest["notebooks"]:
        if entry["id"] not in {nb["id"] for nb in report["notebooks"]}:
            continue  # not run (--only): its list stays
        entry["known"] = [
            {"cell": cell, "kind": kind, "reason": reason}
            for (cell, kind), reason in sorted(found.get(entry["id"], {}).items())
        ]
    manifest_path.write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")


def _plain(books: list[corpus.Notebook], timeout: int) -> int:
    total = 0.0
    for book in books:
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            (root / "work").mkdir()
            env = harness._env(root, root / "store", root / "shared")
            t0 = time.monotonic()
            ran = harness.execute(
                ["pass", *book.cells],
                ["setup"] + [f"c{n}" for n in book.numbers],
                cwd=root / "work",
                env=env,
                timeout=timeout,
            )
            wall = time.monotonic() - t0
        total += wall
        errors = []
        for cell in ran["nb"]["cells"]:
            for out in cell.get("outputs", []):
                if out["output_type"] == "error":
                    errors.append(f"{cell['id']}: {out['ename']}: {out['evalue'][:150]}")
        slow = sorted(
            (
                (_cell_seconds(c), c["id"])
                for c in ran["nb"]["cells"]
                if _cell_seconds(c) is not None
            ),
            reverse=True,
        )[:3]
        print(
            f"{book.id}: {wall:.1f}s, {len(book.cells)} cells, stopped={ran['stopped'] or '-'}, "
            f"slowest {[(i, round(s, 1)) for s, i in slow]}"
        )
        for e in errors:
            print("   ", e)
    print(f"total plain: {total:.1f}s")
    return 0


def _cell_seconds(cell: dict) -> float | None:
    from datetime import datetime

    ex = cell.get("metadata", {}).get("execution", {})
    a, b = ex.get("iopub.execute_input"), ex.get("shell.execute_reply")
    if not a or not b:
        return None
    fmt = lambda s: datetime.fromisoformat(s.replace("Z", "+00:00"))  # noqa: E731
    return (fmt(b) - fmt(a)).total_seconds()


if __name__ == "__main__":
    sys.exit(main())
