"""JupyterLab in headless Chromium, driven by Playwright: what a user sees and clicks.

One ``jupyter lab`` server and one Chromium per run of this package (``lab_server``,
``browser``; package scope, so both are gone before the rest of the suite runs), a fresh
browser context per test (``page``), and ``lab``, whose :meth:`Lab.run_notebook` writes a
notebook into the server's root, opens it, waits for its kernel, runs every cell and
waits for every prompt to show a number.

The server and its kernels run with an environment built from scratch like
:func:`tests.notebooks.nbrun.kernel_env`: their own nbcache store and secret, and
Jupyter, JupyterLab and IPython folders under a tmp folder, never the user's.

:meth:`Lab.use` picks the front end (JupyterLab 4, or Notebook 7 served by the same
server) and the theme (light or dark) before a notebook is opened; :func:`overflows` and
:func:`contrast` measure what a user would see as cut-off text or faint colours.

Each kernel's store is ``.nbcache`` in its notebook's folder (its working folder), as a
user's is, so widgets say ``.nbcache``, never a temporary path; ``LabServer.store`` is
the one of notebooks in the root.

Every test's page is saved as ``artifacts/<module>-<test>.png`` beside this file when the
test ends; a failed test also leaves ``<module>-<test>-failed.png`` and the browser's
console as ``<module>-<test>-console.log``.

Chromium is Debian's ``/usr/bin/chromium`` (``bash scripts/install-system.sh``); these
tests fail, rather than skip, without it.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Generator, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import nbformat
import pytest
from playwright.sync_api import Browser, Locator, Page, sync_playwright
from playwright.sync_api import Error as PlaywrightError

from ..notebooks import nbrun

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
# nbcache's JupyterLab extension as built from js/ in this checkout (scripts/build-extension.sh)
LABEXTENSION = Path(__file__).resolve().parents[2] / "nbcache" / "labextension"
CHROMIUM = "/usr/bin/chromium"
# Keep Chromium off the network and out of the sandbox it cannot set up as root.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
SERVER_START_TIMEOUT = 60.0  # seconds until /api/status answers
SERVER_STOP_TIMEOUT = 10.0  # seconds between SIGTERM and SIGKILL
KERNEL_TIMEOUT = 60_000  # ms until an opened notebook's kernel is connected and idle
RUN_TIMEOUT = 60_000  # ms until every cell of a run has a number
DEFAULT_TIMEOUT = 20_000  # ms for Playwright's actions and expect()

# JupyterLab's user settings: no news toast over the notebook, no confirmation dialog
# when a test restarts a kernel.
LAB_SETTINGS = {
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {
        "fetchNews": "false",
        "checkForUpdates": False,
    },
    "@jupyterlab/apputils-extension/sessionDialogs.jupyterlab-settings": {
        "skipKernelRestartDialog": True,
    },
}


# -- the server ----------------------------------------------------------------------


@dataclass
class LabServer:
    """A running ``jupyter lab``: its base URL (ending in ``/``), notebook root, the store
    its kernels use, its log file and its process."""

    url: str
    root: Path
    store: Path
    log: Path
    process: subprocess.Popen[bytes]

    def api(self, method: str, path: str, body: Any = None) -> Any:
        """A REST call (no token, no xsrf needed); the decoded JSON answer or None."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path.lstrip("/"), data=data, method=method)
        if data is not None:
            request.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(request, timeout=10) as response:
            body = response.read()
        return json.loads(body) if body else None

    def log_tail(self, lines: int = 40) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def lab_env(base: Path) -> dict[str, str]:
    """The server's (so every kernel's) environment: nbrun's kernel environment, but with
    no NBCACHE_DIR, so each kernel's store is ``.nbcache`` in its notebook's folder as a
    user's is; without any Jupyter settings of this process, with Jupyter's and
    JupyterLab's folders under ``base`` and this venv's scripts first on PATH.

    JupyterLab finds nbcache's extension first on ``JUPYTER_PATH``, where it is this
    checkout's build, whatever an earlier install copied into the venv."""
    env = nbrun.kernel_env(base, base / "unused")
    env = {
        k: v for k, v in env.items() if not k.startswith(("JUPYTER", "JPY_")) and k != "NBCACHE_DIR"
    }
    env.update(
        JUPYTER_CONFIG_DIR=str(base / "jupyter-config"),
        JUPYTER_DATA_DIR=str(base / "jupyter-data"),
        JUPYTER_RUNTIME_DIR=str(base / "jupyter-runtime"),
        JUPYTERLAB_SETTINGS_DIR=str(base / "lab-settings"),
        JUPYTERLAB_WORKSPACES_DIR=str(base / "lab-workspaces"),
        JUPYTER_PATH=str(_extension_path(base / "jupyter-path")),
        PATH=os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")]),
    )
    return env


def _extension_path(folder: Path) -> Path:
    """A Jupyter data folder whose ``labextensions/nbcache`` is this checkout's build."""
    link = folder / "labextensions" / "nbcache"
    if not link.exists():
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(LABEXTENSION, target_is_directory=True)
    return folder


def _write_settings(folder: Path) -> None:
    for name, values in LAB_SETTINGS.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values, indent=2))


def _stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM (the server then shuts its kernels down), SIGKILL if it is still there."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=SERVER_STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=SERVER_STOP_TIMEOUT)


def _wait_until_up(server: LabServer) -> None:
    deadline = time.monotonic() + SERVER_START_TIMEOUT
    while True:
        code = server.process.poll()
        if code is not None:
            raise RuntimeError(
                f"jupyter lab exited with code {code} before answering; its log:\n"
                + server.log_tail()
            )
        try:
            server.api("GET", "api/status")
            return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"jupyter lab did not answer {server.url}api/status within "
                f"{SERVER_START_TIMEOUT:.0f} s; its log:\n" + server.log_tail()
            )
        time.sleep(0.2)


@pytest.fixture(scope="package")
def lab_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabServer]:
    """``jupyter lab`` of this venv on 127.0.0.1, no token, no xsrf check, its notebook
    root and every folder it writes under one tmp folder."""
    base = tmp_path_factory.mktemp("lab")
    root = base / "notebooks"
    root.mkdir()
    _write_settings(base / "lab-settings")
    port = _free_port()
    log = base / "server.log"
    command = [
        sys.executable,
        "-m",
        "jupyterlab",
        "--no-browser",
        "--allow-root",
        "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.port={port}",
        "--ServerApp.port_retries=0",
        f"--ServerApp.root_dir={root}",
        "--IdentityProvider.token=",
        "--ServerApp.disable_check_xsrf=True",
        "--LabApp.expose_app_in_browser=True",
        "--JupyterNotebookApp.expose_app_in_browser=True",
        "--LabApp.news_url=None",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        f"--LabApp.user_settings_dir={base / 'lab-settings'}",
        f"--LabApp.workspaces_dir={base / 'lab-workspaces'}",
    ]
    with log.open("wb") as out:
        process = subprocess.Popen(
            command,
            cwd=root,
            env=lab_env(base),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # a Ctrl-C in pytest reaches pytest, which stops it
        )
    server = LabServer(f"http://127.0.0.1:{port}/", root, root / ".nbcache", log, process)
    try:
        _wait_until_up(server)
        yield server
    finally:
        _stop(process)


# -- the browser ---------------------------------------------------------------------


@pytest.fixture(scope="package")
def browser() -> Iterator[Browser]:
    """Debian's Chromium, headless, through Playwright (never a downloaded build)."""
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"{CHROMIUM} is missing: run `bash scripts/install-system.sh` (as root)")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield chromium
        finally:
            chromium.close()


_REPORTS = pytest.StashKey[dict[str, pytest.TestReport]]()
_ARTIFACTS = pytest.StashKey["PageArtifacts"]()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    item.stash.setdefault(_REPORTS, {})[report.when] = report
    return report


def artifact_name(node: pytest.Item) -> str:
    """``<module>-<test>`` (parameters included) as a file name."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{node.path.stem}-{node.name}")


@dataclass
class PageArtifacts:
    """A test's page as it was when the test ended: ``<name>.png``; if the test failed,
    also ``<name>-failed.png`` and the browser console in ``<name>-console.log``."""

    node: pytest.Item
    page: Page
    console: list[str] = field(default_factory=list)
    saved: bool = False

    @property
    def name(self) -> str:
        return artifact_name(self.node)

    def collapse_left(self) -> None:
        """Close JupyterLab's left side bar (Notebook 7 has none), leaving the notebook the
        whole width of the window."""
        self.page.evaluate(
            "() => { const s = window.jupyterapp.shell; if (s.collapseLeft) s.collapseLeft(); }"
        )

    def save(self) -> None:
        """Save once (the first caller wins: ``lab`` saves before it stops the kernels)."""
        if self.saved:
            return
        self.saved = True
        failed = any(report.failed for report in self.node.stash.get(_REPORTS, {}).values())
        shot = ARTIFACTS / f"{self.name}.png"
        try:
            self.page.screenshot(path=shot, full_page=True)
            if failed:
                shutil.copyfile(shot, ARTIFACTS / f"{self.name}-failed.png")
        except PlaywrightError as exc:
            self.console.append(f"screenshot failed: {exc}")
        if failed:
            (ARTIFACTS / f"{self.name}-console.log").write_text("\n".join(self.console) + "\n")


@pytest.fixture
def page(browser: Browser, request: pytest.FixtureRequest) -> Iterator[Page]:
    """A page in a fresh browser context; its screenshot is saved when the test ends."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    name = artifact_name(request.node)
    for stale in [*ARTIFACTS.glob(f"{name}.png"), *ARTIFACTS.glob(f"{name}-*")]:
        stale.unlink()
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(DEFAULT_TIMEOUT)
    tab = context.new_page()
    artifacts = PageArtifacts(request.node, tab)
    request.node.stash[_ARTIFACTS] = artifacts
    tab.on("console", lambda message: artifacts.console.append(f"{message.type}: {message.text}"))
    tab.on("pageerror", lambda error: artifacts.console.append(f"pageerror: {error}"))
    try:
        yield tab
    finally:
        artifacts.save()
        context.close()


# -- notebooks in Lab ----------------------------------------------------------------

# JavaScript run in the page.  `panel(path)` finds the open notebook panel of `path`.
_PANEL = """
const panel = (path) => {
  const app = window.jupyterapp;
  if (!app || !app.shell) return null;
  for (const w of app.shell.widgets('main')) {
    if (w.context && w.context.path === path && w.sessionContext && w.content) return w;
  }
  return null;
};
"""

# True once the notebook is loaded and its session's kernel is connected and idle.
_KERNEL_IDLE = (
    "(path) => {"
    + _PANEL
    + """
  const w = panel(path);
  if (!w || !w.context.isReady || !w.sessionContext.isReady) return false;
  const k = w.sessionContext.session && w.sessionContext.session.kernel;
  return !!k && k.connectionStatus === 'connected' && k.status === 'idle'
    && (!window.__nbtestRestart || window.__nbtestRestart.seen);
}"""
)

# 'done' once every code cell has an execution count and shows it as [n]:, 'error' once
# the kernel is idle, nothing is running and a cell shows an error; otherwise false.
_RUN_STATE = (
    "(path) => {"
    + _PANEL
    + """
  const w = panel(path);
  if (!w) return false;
  if (window.__nbtestRunError) return 'error';
  const k = w.sessionContext.session && w.sessionContext.session.kernel;
  const idle = !!k && k.status === 'idle';
  const cells = w.content.widgets.filter((c) => c.model.type === 'code');
  const prompt = (c) => {
    const node = c.node.querySelector('.jp-InputArea-prompt');
    return node ? node.textContent.trim() : '';
  };
  const numbered = (c) => c.model.executionCount !== null && /^\\[\\d+\\]:$/.test(prompt(c));
  const done = cells.every(numbered);
  if (done && idle) return 'done';
  const running = cells.some((c) => prompt(c) === '[*]:');
  const errored = cells.some((c) => {
    const outputs = c.model.outputs;
    for (let i = 0; i < outputs.length; i++) if (outputs.get(i).type === 'error') return true;
    return false;
  });
  return idle && !running && errored ? 'error' : false;
}"""
)


THEMES = {"light": "JupyterLab Light", "dark": "JupyterLab Dark"}

# True once the page wears the theme asked for: the flag on <body>, and (the colours land
# later than the flag) a notebook background as light or as dark as that theme's.
_THEME_LANDED = """(dark) => {
  const body = document.body;
  if (!body || body.dataset.jpThemeLight !== String(!dark)) return false;
  const nb = document.querySelector('.jp-Notebook');
  if (!nb) return false;
  const m = getComputedStyle(nb).backgroundColor.match(/[\\d.]+/g);
  if (!m) return false;
  const lum = (0.2126 * m[0] + 0.7152 * m[1] + 0.0722 * m[2]) / 255;
  return dark ? lum < 0.3 : lum > 0.7;
}"""


@dataclass
class Lab:
    """Notebooks opened and run in JupyterLab (or Notebook 7), in ``page``, on ``server``."""

    server: LabServer
    page: Page
    prefix: str
    opened: list[str] = field(default_factory=list)
    frontend: str = "lab"  # or "notebook": Notebook 7 on the same server
    theme: str = "light"

    def use(self, frontend: str = "lab", theme: str = "light") -> None:
        """Open the next notebooks in ``frontend`` ("lab" or "notebook") wearing ``theme``
        ("light" or "dark"); the theme is a server-wide setting, so it is set now."""
        self.frontend, self.theme = frontend, theme
        raw = json.dumps({"theme": THEMES[theme]})
        self.server.api(
            "PUT", "lab/api/settings/@jupyterlab/apputils-extension:themes", {"raw": raw}
        )

    def change_theme(self, theme: str) -> None:
        """Switch the page open now to ``theme`` ("light" or "dark"), as the Settings menu
        does, and wait for its colours to land."""
        self.theme = theme
        self.page.evaluate(
            "(name) => window.jupyterapp.commands.execute('apputils:change-theme', {theme: name})",
            THEMES[theme],
        )
        self.page.wait_for_function(_THEME_LANDED, arg=theme == "dark")

    # -- opening and running

    def write(self, cells: Sequence[str], name: str | None = None) -> str:
        """A notebook of code cells (kernel ``python3``) in the server's root; its path."""
        path = name or f"{self.prefix}-{len(self.opened) + 1}.ipynb"
        nbformat.write(nbrun.build(cells), self.server.root / path)
        return path

    def open(self, path: str) -> Page:
        """Open ``path`` in a workspace of its own and wait until its kernel is idle."""
        if self.frontend == "notebook":
            self.page.goto(f"{self.server.url}notebooks/{quote(path)}")
        else:
            workspace = f"{self.prefix}-{uuid.uuid4().hex[:8]}"
            self.page.goto(f"{self.server.url}lab/workspaces/{workspace}/tree/{quote(path)}")
        self.page.wait_for_function(_KERNEL_IDLE, arg=path, timeout=KERNEL_TIMEOUT)
        self.page.wait_for_function(_THEME_LANDED, arg=self.theme == "dark")
        self.opened.append(path)
        return self.page

    def collapse_left(self) -> None:
        """Close JupyterLab's left side bar (Notebook 7 has none), leaving the notebook the
        whole width of the window."""
        self.page.evaluate(
            "() => { const s = window.jupyterapp.shell; if (s.collapseLeft) s.collapseLeft(); }"
        )

    def save(self) -> None:
        """Save the current notebook (its outputs, so a reload shows them again)."""
        self.page.evaluate("() => window.jupyterapp.commands.execute('docmanager:save')")
        self.page.wait_for_function(
            "(path) => {"
            + _PANEL
            + "const w = panel(path); return !!w && !w.context.model.dirty; }",
            arg=self.opened[-1],
        )

    def run_all(self, path: str | None = None, timeout: float = RUN_TIMEOUT) -> Page:
        """Clear every output, run all cells, wait until every prompt shows a number.

        Raises AssertionError with every cell's prompt and outputs if a cell fails."""
        path = path or self.opened[-1]
        self.page.evaluate(
            """async () => {
              window.__nbtestRunError = null;
              const app = window.jupyterapp;
              await app.commands.execute('notebook:clear-all-cell-outputs');
              app.commands.execute('notebook:run-all-cells')
                .catch((e) => { window.__nbtestRunError = String(e); });
            }"""
        )
        state = self.page.wait_for_function(_RUN_STATE, arg=path, timeout=timeout)
        if state.json_value() != "error":
            return self.page
        error = self.page.evaluate("window.__nbtestRunError")
        raise AssertionError(
            f"running {path} failed{': ' + error if error else ''}\n" + self.describe()
        )

    def run_notebook(self, cells: Sequence[str], name: str | None = None) -> Page:
        """Write ``cells`` as a new notebook, open it, run it; the page."""
        self.open(self.write(cells, name))
        return self.run_all()

    def restart_kernel(self, path: str | None = None) -> None:
        """Restart the notebook's kernel (no dialog: see LAB_SETTINGS) and wait until the
        new one is connected and idle."""
        path = path or self.opened[-1]
        self.page.evaluate(
            "async (path) => {"
            + _PANEL
            + """
              const k = panel(path).sessionContext.session.kernel;
              const seen = { seen: false };
              k.statusChanged.connect((_, status) => {
                if (status === 'restarting' || status === 'autorestarting') seen.seen = true;
              });
              window.__nbtestRestart = seen;
              await window.jupyterapp.commands.execute('notebook:restart-kernel');
            }""",
            path,
        )
        self.page.wait_for_function(_KERNEL_IDLE, arg=path, timeout=KERNEL_TIMEOUT)
        self.page.evaluate("window.__nbtestRestart = null")

    # -- reading

    def cell(self, index: int) -> Locator:
        """The ``index``-th cell of the current notebook."""
        return self.page.locator(".jp-NotebookPanel:visible .jp-Notebook .jp-Cell").nth(index)

    def outputs(self, index: int) -> Locator:
        """Cell ``index``'s outputs (``.jp-OutputArea-output``), status lines included."""
        return self.cell(index).locator(".jp-OutputArea-output")

    def output_texts(self, index: int) -> list[str]:
        return [text.strip() for text in self.outputs(index).all_inner_texts()]

    def describe(self) -> str:
        """Every cell's prompt and output texts, for failure messages."""
        lines = []
        cells = self.page.locator(".jp-NotebookPanel:visible .jp-Notebook .jp-Cell")
        for i in range(cells.count()):
            prompt = cells.nth(i).locator(".jp-InputArea-prompt").inner_text().strip()
            lines.append(f"cell {i} {prompt} {self.output_texts(i)!r}")
        return "\n".join(lines)

    def screenshot(self, label: str) -> Path:
        """Save the page now as ``artifacts/<prefix>-<label>.png``."""
        path = ARTIFACTS / f"{self.prefix}-{label}.png"
        self.page.screenshot(path=path, full_page=True)
        return path


@pytest.fixture
def lab(lab_server: LabServer, page: Page, request: pytest.FixtureRequest) -> Iterator[Lab]:
    """Notebooks in JupyterLab, light theme (see :meth:`Lab.use`); their kernels are shut
    down when the test ends."""
    helper = Lab(lab_server, page, artifact_name(request.node))
    helper.use("lab", "light")
    yield helper
    request.node.stash[_ARTIFACTS].save()
    for session in lab_server.api("GET", "api/sessions") or []:
        lab_server.api("DELETE", f"api/sessions/{session['id']}")


# -- what a user sees ------------------------------------------------------------------

# Every element under `root` whose text does not fit: wider content than its box
# (scrollWidth > clientWidth), or a box reaching outside `root`, except where that is
# by design: a scroll container, and a one-line ellipsis whose tooltip gives the text.
_OVERFLOWS = """(root) => {
  const out = [];
  const edge = root.getBoundingClientRect();
  const scrolls = (el) => {
    for (let p = el; p && p !== root; p = p.parentElement) {
      const ox = getComputedStyle(p).overflowX;
      if (ox === 'auto' || ox === 'scroll') return true;
    }
    return false;
  };
  for (const el of [root, ...root.querySelectorAll('*')]) {
    if (el.closest('.nbcache-style') || el.tagName === 'STYLE') continue;
    const cs = getComputedStyle(el);
    const box = el.getBoundingClientRect();
    if (cs.visibility === 'hidden' || box.width === 0 || box.height === 0) continue;
    if (scrolls(el)) continue;
    const label = `${el.tagName.toLowerCase()}.${[...el.classList].join('.')}`;
    const text = (el.textContent || '').trim().slice(0, 60);
    const tipped = cs.textOverflow === 'ellipsis' && el.title
      && el.title.includes((el.textContent || '').trim());
    if (el.clientWidth > 0 && el.scrollWidth > el.clientWidth + 1 && !tipped
        && cs.overflowX !== 'auto' && cs.overflowX !== 'scroll') {
      out.push(`${label} "${text}": content ${el.scrollWidth}px in ${el.clientWidth}px`);
    }
    if (box.right > edge.right + 1 || box.left < edge.left - 1) {
      out.push(`${label} "${text}": ${box.left}..${box.right} outside ${edge.left}..${edge.right}`);
    }
  }
  return out;
}"""


def overflows(locator: Locator) -> list[str]:
    """What does not fit in ``locator``'s element (empty when everything fits)."""
    found: list[str] = locator.evaluate(_OVERFLOWS)
    return found


# WCAG contrast of an element's text colour against the first opaque background behind it.
_CONTRAST = """(el) => {
  const rgb = (c) => {
    const n = (c.match(/[\\d.]+/g) || []).map(Number);
    // color-mix() computes to color(srgb r g b / a), its channels 0..1
    return c.startsWith("color(srgb") ? n.map((v, i) => (i < 3 ? v * 255 : v)) : n;
  };
  const lum = ([r, g, b]) => {
    const f = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; };
    return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
  };
  let bg = null;
  for (let p = el; p; p = p.parentElement) {
    const c = rgb(getComputedStyle(p).backgroundColor);
    if (c.length >= 3 && (c.length === 3 || c[3] > 0.9)) { bg = c; break; }
  }
  bg = bg || [255, 255, 255];
  // Translucent text (JupyterLab's secondary colours are white or black at 54%) shows
  // as its blend with what is behind it.
  const [r, g, b, alpha = 1] = rgb(getComputedStyle(el).color);
  const fg = [r, g, b].map((v, i) => alpha * v + (1 - alpha) * bg[i]);
  const [hi, lo] = [lum(fg), lum(bg)].sort((x, y) => y - x);
  return (hi + 0.05) / (lo + 0.05);
}"""


def contrast(locator: Locator) -> float:
    """The WCAG contrast ratio of ``locator``'s text against what is behind it.

    A card's clock redraws its label every tick: read while it was being replaced,
    the element has no computed colour and the ratio is NaN. Read it again then."""
    ratio: float = locator.evaluate(_CONTRAST)
    for _ in range(20):
        if not math.isnan(ratio):
            break
        time.sleep(0.05)
        ratio = locator.evaluate(_CONTRAST)
    return ratio
