"""The look of nbcache's widgets: one stylesheet, coloured by JupyterLab's theme variables.

Every colour is a ``--jp-*`` variable, so JupyterLab's light and dark themes (and
Notebook 7, which shares them) both look right; each has a ``--vscode-*`` or plain
fallback for front ends that define neither.  The sheet travels inside the widgets
themselves, as a ``<style>`` element in an ``HTML`` widget, because the built-in
ipywidgets controls render in every front end that speaks ipywidgets 8 (JupyterLab,
Notebook 7, VS Code, Colab) with no JavaScript of nbcache's own to install: see
``docs/decisions.md``, "Widgets".  Every rule is scoped under an ``nbcache-`` class.
"""

from __future__ import annotations

import html
from typing import Any

__all__ = ["CSS", "escape", "style_widget"]

_FG = "var(--jp-ui-font-color1, var(--vscode-foreground, #212121))"
_FG_MUTED = "var(--jp-ui-font-color2, var(--vscode-descriptionForeground, #616161))"
_BG = "var(--jp-layout-color1, var(--vscode-editor-background, #ffffff))"
_BG_SUNK = "var(--jp-layout-color2, var(--vscode-editorWidget-background, #eeeeee))"
_BORDER = "var(--jp-border-color2, var(--vscode-editorWidget-border, #e0e0e0))"
_BRAND = "var(--jp-brand-color1, var(--vscode-progressBar-background, #1976d2))"
_OK = "var(--jp-success-color1, var(--vscode-testing-iconPassed, #388e3c))"
_WARN = "var(--jp-warn-color1, var(--vscode-editorWarning-foreground, #f57c00))"
_ERR = "var(--jp-error-color1, var(--vscode-errorForeground, #d32f2f))"
# State colours as text: a fifth of the text colour mixed in keeps them recognisable and
# lifts them past WCAG's 4.5:1 on either theme (dark's error red alone is 4.4:1).
_OK_TEXT = f"color-mix(in srgb, {_OK} 80%, {_FG})"
_WARN_TEXT = f"color-mix(in srgb, {_WARN} 80%, {_FG})"
_ERR_TEXT = f"color-mix(in srgb, {_ERR} 80%, {_FG})"
_BRAND_TEXT = f"color-mix(in srgb, {_BRAND} 80%, {_FG})"
_FONT = "var(--jp-ui-font-family, var(--vscode-font-family, system-ui, sans-serif))"
_MONO = "var(--jp-code-font-family, var(--vscode-editor-font-family, monospace))"
_SIZE = "var(--jp-ui-font-size1, 13px)"

CSS = f"""
.nbcache-card, .nbcache-status, .nbcache-browser {{
  font-family: {_FONT}; font-size: {_SIZE}; color: {_FG};
  box-sizing: border-box; max-width: 100%; min-width: 0;
}}
.nbcache-card *, .nbcache-status *, .nbcache-browser * {{ box-sizing: border-box; }}
.nbcache-card .widget-html, .nbcache-browser .widget-html, .nbcache-status .widget-html {{
  margin: 0; min-width: 0; max-width: 100%; height: auto; line-height: normal;
}}
.nbcache-card .widget-html-content, .nbcache-browser .widget-html-content,
.nbcache-status .widget-html-content {{
  height: auto; line-height: 1.45; white-space: normal; overflow: visible;
  font-family: inherit; font-size: inherit; color: inherit; max-width: 100%;
}}
.nbcache-style {{ display: none !important; }}

/* -- the task card -- */
.nbcache-card {{
  width: 100%; max-width: 760px; border: 1px solid {_BORDER}; border-radius: 6px;
  background: {_BG}; padding: 8px 12px 10px; gap: 6px; margin: 2px 0;
}}
.nbcache-card-top {{ width: 100%; align-items: center; gap: 8px; min-width: 0; }}
.nbcache-card-top > .nbcache-card-head {{ flex: 1 1 auto; }}
.nbcache-head {{ display: flex; align-items: center; gap: 8px; min-width: 0; }}
.nbcache-card-name {{
  font-weight: 600; min-width: 0; max-width: 60ch; flex: 0 1 auto;
  overflow: hidden; text-overflow: ellipsis; white-space: nowrap;
}}
.nbcache-chip {{
  flex: 0 0 auto; border-radius: 10px; padding: 1px 8px; font-size: 11px; font-weight: 600;
  line-height: 16px; white-space: nowrap; border: 1px solid currentColor;
  color: {_FG_MUTED}; background: transparent;
}}
.nbcache-chip[data-state="running"] {{ color: {_BRAND_TEXT}; }}
.nbcache-chip[data-state="cancelling"], .nbcache-chip[data-state="cancelled"] {{
  color: {_WARN_TEXT};
}}
.nbcache-chip[data-state="done"], .nbcache-chip[data-state="hit"] {{ color: {_OK_TEXT}; }}
.nbcache-chip[data-state="failed"] {{ color: {_ERR_TEXT}; }}
.nbcache-card .widget-button.nbcache-card-cancel {{
  flex: 0 0 auto; width: auto; height: 24px; line-height: 22px; padding: 0 10px; margin: 0;
  font-size: 12px; background: transparent; color: {_FG}; border: 1px solid {_BORDER};
  border-radius: 4px; box-shadow: none;
}}
.nbcache-card .widget-button.nbcache-card-cancel:hover {{ border-color: {_WARN}; color: {_WARN}; }}
.nbcache-card-body {{ width: 100%; }}
.nbcache-progress {{ display: flex; align-items: center; gap: 10px; min-width: 0; }}
.nbcache-card-bar {{
  flex: 1 1 auto; min-width: 60px; height: 10px; border-radius: 5px; overflow: hidden;
  background: {_BG_SUNK}; border: 1px solid {_BORDER};
}}
.nbcache-card-fill {{ height: 100%; background: {_BRAND}; transition: width 0.3s ease; }}
.nbcache-card-bar[data-state="done"] .nbcache-card-fill {{ background: {_OK}; }}
.nbcache-card-bar[data-state="failed"] .nbcache-card-fill {{ background: {_ERR}; }}
.nbcache-card-bar[data-state="cancelled"] .nbcache-card-fill,
.nbcache-card-bar[data-state="cancelling"] .nbcache-card-fill {{ background: {_WARN}; }}
.nbcache-card-bar[data-busy] .nbcache-card-fill {{
  width: 30% !important; animation: nbcache-busy 1.4s ease-in-out infinite alternate;
}}
@keyframes nbcache-busy {{ from {{ margin-left: 0; }} to {{ margin-left: 70%; }} }}
.nbcache-card-count {{
  flex: 0 0 auto; color: {_FG_MUTED}; font-variant-numeric: tabular-nums; white-space: nowrap;
}}
.nbcache-card-time, .nbcache-card-result {{
  color: {_FG_MUTED}; margin-top: 4px; overflow-wrap: anywhere;
  font-variant-numeric: tabular-nums;
}}
.nbcache-card-result b, .nbcache-status b {{ color: {_FG}; font-weight: 600; }}
.nbcache-card-error {{
  color: {_ERR_TEXT}; font-weight: 600; margin-top: 4px; overflow-wrap: anywhere;
}}
.nbcache-card-tb {{
  margin: 4px 0 0; padding: 6px 8px; border-radius: 4px; background: {_BG_SUNK};
  font-family: {_MONO}; font-size: 12px; line-height: 1.4;
  white-space: pre-wrap; overflow-wrap: anywhere; max-height: 24em; overflow-y: auto;
}}
.nbcache-card .jupyter-widget-Accordion, .nbcache-card .widget-accordion,
.nbcache-card .lm-Accordion, .nbcache-card .p-Accordion {{ width: 100%; min-width: 0; }}
.nbcache-card .widget-output {{ min-width: 0; max-width: 100%; }}
/* The folded pane's title: ipywidgets greys it (4.2:1 on dark); it is the card's text. */
.nbcache-card .jupyter-widget-Collapse-header {{ color: {_FG}; }}
/* Long output scrolls inside the card and, like a terminal, stays at its newest line. */
.nbcache-card .widget-output.nbcache-card-output {{
  max-height: 20em; overflow-y: auto; display: flex; flex-direction: column-reverse;
}}
.nbcache-card .nbcache-card-output > .jp-OutputArea {{ flex: 0 0 auto; }}
/* JupyterLab breaks output text anywhere (word-break: break-all), mid-word; wrap at
   spaces, and break only a word longer than the line. */
.nbcache-card .widget-output pre {{
  white-space: pre-wrap; word-break: normal; overflow-wrap: anywhere;
}}
/* nbcache's warnings come as stderr lines in the cell that shows a status line: the same
   wrapping there (the cell's other stderr lines too; nothing is hidden by it). */
.jp-OutputArea:has(> .jp-OutputArea-child .nbcache-status)
  > .jp-OutputArea-child [data-mime-type="application/vnd.jupyter.stderr"] pre {{
  word-break: normal; overflow-wrap: anywhere;
}}

/* -- the status line -- */
.nbcache-status {{ width: 100%; }}
.nbcache-status-line {{
  display: flex; align-items: baseline; gap: 8px; min-width: 0; color: {_FG_MUTED};
  font-variant-numeric: tabular-nums;
}}
.nbcache-status-line .nbcache-chip {{ align-self: center; }}
.nbcache-status-text {{ min-width: 0; overflow-wrap: anywhere; }}

/* -- the cache browser -- */
.nbcache-browser {{
  width: 100%; max-width: 1100px; border: 1px solid {_BORDER}; border-radius: 6px;
  background: {_BG}; padding: 10px 12px; gap: 8px; container: nbcache-browser / inline-size;
}}
.nbcache-browser-totals {{ width: 100%; }}
.nbcache-totals b {{ font-weight: 600; }}
.nbcache-totals-where {{ color: {_FG_MUTED}; overflow-wrap: anywhere; }}
.nbcache-browser-tools {{ width: 100%; gap: 8px; align-items: center; flex-wrap: wrap; }}
.nbcache-browser .widget-text.nbcache-browser-filter {{
  flex: 1 1 200px; min-width: 160px; max-width: 360px; margin: 0; width: auto;
}}
.nbcache-browser .widget-text.nbcache-browser-filter input {{
  background: {_BG}; color: {_FG}; border: 1px solid {_BORDER}; border-radius: 4px;
}}
.nbcache-browser .widget-button {{
  width: auto; height: 26px; line-height: 24px; padding: 0 12px; margin: 0; font-size: 12px;
  border-radius: 4px; box-shadow: none; flex: 0 0 auto;
}}
.nbcache-browser .widget-button.nbcache-plain {{
  background: transparent; color: {_FG}; border: 1px solid {_BORDER};
}}
.nbcache-browser .widget-button.nbcache-plain:disabled {{ opacity: 0.45; }}
.nbcache-browser-selected {{ color: {_FG_MUTED}; white-space: nowrap; }}
.nbcache-browser-confirm {{
  width: 100%; gap: 8px; align-items: center; flex-wrap: wrap; padding: 6px 8px;
  border-radius: 4px; border: 1px solid {_WARN};
  background: color-mix(in srgb, {_WARN} 10%, transparent);
}}
.nbcache-browser-confirm > .widget-html {{ flex: 1 1 240px; }}
.nbcache-browser-message {{ color: {_FG_MUTED}; }}
.nbcache-browser-scroll {{ width: 100%; overflow-x: auto; overflow-y: hidden; }}
/* --nbcache-name: the page's longest name, set by each browser for its own rows. */
.nbcache-browser-grid {{
  width: 100%; min-width: max(720px, calc(var(--nbcache-name, 9em) + 38em + 104px));
}}
.nbcache-row {{
  width: 100%; align-items: center; border-bottom: 1px solid {_BORDER}; min-height: 30px;
  gap: 0;
}}
.nbcache-row.nbcache-row-selected {{
  background: color-mix(in srgb, {_BRAND} 12%, transparent);
}}
.nbcache-row-head {{ border-bottom: 2px solid {_BORDER}; }}
.nbcache-row .widget-checkbox {{ flex: 0 0 32px; width: 32px; margin: 0; justify-content: center; }}
.nbcache-row .widget-checkbox input {{ margin: 0 auto; }}
.nbcache-row .widget-checkbox > .widget-label {{ display: none; }}
.nbcache-row .widget-checkbox label.widget-label-basic {{ width: auto; margin: 0 auto; }}
.nbcache-row > .widget-html, .nbcache-row > .nbcache-heads {{ flex: 1 1 auto; min-width: 0; }}
.nbcache-cols, .nbcache-heads {{
  display: grid; align-items: center; column-gap: 12px; min-width: 0;
  grid-template-columns:
    minmax(var(--nbcache-name, 9em), 1.6fr) minmax(8em, 1.6fr) 5.5em 7.5em 7.5em 3.5em 6em;
}}
.nbcache-heads {{ padding: 2px 0; }}
.nbcache-cols > span {{
  min-width: 0; overflow: hidden; text-overflow: ellipsis; white-space: nowrap; padding: 5px 0;
}}
.nbcache-cols .nbcache-num, .nbcache-heads .nbcache-num {{ text-align: right; }}
.nbcache-cols .nbcache-code {{ font-family: {_MONO}; font-size: 12px; color: {_FG_MUTED}; }}
.nbcache-pin {{ color: {_BRAND_TEXT}; font-weight: 600; }}
.nbcache-browser .widget-button.nbcache-th {{
  background: transparent; color: {_FG_MUTED}; border: none; padding: 0; height: 24px;
  font-weight: 600; text-align: left; justify-content: flex-start; width: 100%; min-width: 0;
  overflow: hidden; text-overflow: ellipsis; white-space: nowrap;
}}
.nbcache-browser .widget-button.nbcache-th.nbcache-num {{
  text-align: right; justify-content: flex-end;
}}
.nbcache-browser .widget-button.nbcache-th.nbcache-sorted {{ color: {_FG}; }}
.nbcache-browser .widget-button.nbcache-th:hover {{ color: {_BRAND}; }}
.nbcache-card .widget-button:hover:enabled, .nbcache-card .widget-button:focus:enabled,
.nbcache-browser .widget-button:hover:enabled, .nbcache-browser .widget-button:focus:enabled {{
  box-shadow: none;
}}
.nbcache-browser .widget-button.nbcache-th:hover:enabled,
.nbcache-browser .widget-button.nbcache-th:focus:enabled {{
  outline: none; background: transparent;
}}
.nbcache-browser .widget-button.nbcache-th:focus-visible {{ outline: 1px solid {_BRAND}; }}
.nbcache-empty {{ padding: 18px 8px; color: {_FG_MUTED}; text-align: center; }}
.nbcache-empty b {{ color: {_FG}; }}
.nbcache-empty code, .nbcache-totals code {{ font-family: {_MONO}; }}
/* A narrow browser (a phone, a split screen) stacks each row instead of scrolling
   sideways: the whole name on one line, then its code line, size and time saved. */
@container nbcache-browser (max-width: 600px) {{
  .nbcache-browser-grid {{ min-width: 0; }}
  .nbcache-cols, .nbcache-heads {{ grid-template-columns: minmax(0, 1fr) 5.5em 6em; }}
  .nbcache-cols > span {{ padding: 2px 0; }}
  .nbcache-cols > .nbcache-name {{
    grid-column: 1 / -1; grid-row: 1; white-space: normal; overflow-wrap: anywhere;
  }}
  .nbcache-cols > .nbcache-code {{ grid-column: 1; grid-row: 2; }}
  .nbcache-cols > span:nth-child(3) {{ grid-column: 2; grid-row: 2; }}
  .nbcache-cols > span:nth-child(7) {{ grid-column: 3; grid-row: 2; }}
  .nbcache-cols > span:nth-child(4), .nbcache-cols > span:nth-child(5),
  .nbcache-cols > span:nth-child(6) {{ display: none; }}
  .nbcache-browser .widget-button.nbcache-th-code,
  .nbcache-browser .widget-button.nbcache-th-created,
  .nbcache-browser .widget-button.nbcache-th-last_used,
  .nbcache-browser .widget-button.nbcache-th-uses {{ display: none; }}
}}
.nbcache-browser-pager {{ width: 100%; gap: 8px; align-items: center; justify-content: flex-end; }}
.nbcache-browser-pager > .widget-html {{ flex: 0 1 auto; color: {_FG_MUTED}; }}
"""


def escape(text: object) -> str:
    """``text`` made safe to put inside HTML, quotes included (for attributes)."""
    return html.escape(str(text), quote=True)


_sheet: list[Any] = []  # the one stylesheet widget of this kernel, once made


def style_widget() -> Any:
    """The hidden ``HTML`` widget holding the stylesheet.  Each top-level widget shows it
    as a child, so a widget looks right wherever it is shown, even alone in a re-opened
    notebook; it is one widget model for them all, so the sheet is sent (and saved with
    widget state) once, not once per status line."""
    import ipywidgets as w

    if _sheet and _sheet[0].comm is not None:
        return _sheet[0]
    sheet = w.HTML(value=f"<style>{CSS}</style>")
    sheet.add_class("nbcache-style")
    _sheet[:] = [sheet]
    return sheet
