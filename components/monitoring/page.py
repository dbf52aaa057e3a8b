"""The monitor's page for people: drift share over time and the latest windows.

Server-rendered HTML with inline SVG plots and inline CSS: no script, no font or
stylesheet from the network, so it renders inside a cluster without internet access.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime
from html import escape
from typing import Any

PLOT_WIDTH = 640
PLOT_HEIGHT = 180
PLOT_MARGIN = 32
WINDOWS_PLOTTED = 100
WINDOWS_LISTED = 20

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem; color: #1d2733; }
h1 { font-size: 1.4rem; } h2 { font-size: 1.1rem; margin-top: 2rem; }
table { border-collapse: collapse; margin-top: .5rem; }
td, th { border-bottom: 1px solid #d5dbe1; padding: .3rem .6rem; text-align: left; }
.drifted { color: #b3261e; font-weight: 600; } .stable { color: #1b6e3a; }
svg { background: #f7f9fb; border: 1px solid #d5dbe1; }
.muted { color: #5f6b76; }
"""


def render_page(
    history: list[dict[str, Any]],
    *,
    open_windows: dict[str, int],
    drift_share_threshold: float,
    window_rows: int,
) -> str:
    """Render the page from the window history (oldest first).

    Args:
        history: Window summaries as `ReportStore` keeps them.
        open_windows: Rows in each open window, keyed `<service>/<endpoint>`.
        drift_share_threshold: The configured `drift_share`, drawn as a line.
        window_rows: Rows that close a window, for the open-window table.
    """
    by_endpoint: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for summary in history:
        by_endpoint[f"{summary['inference_service']}/{summary['endpoint']}"].append(
            summary
        )
    sections = []
    for key in sorted(by_endpoint):
        windows = by_endpoint[key]
        sections.append(
            f"<h2>{escape(key)}</h2>"
            + _plot(
                windows[-WINDOWS_PLOTTED:], threshold=drift_share_threshold, key=key
            )
            + _table(windows[-WINDOWS_LISTED:][::-1])
        )
    if not sections:
        sections.append(
            '<p class="muted">No window has closed yet. Windows close after '
            f"{window_rows} rows.</p>"
        )
    filling = "".join(
        f"<tr><td>{escape(key)}</td><td>{rows} / {window_rows}</td></tr>"
        for key, rows in sorted(open_windows.items())
    )
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<link rel="icon" href="data:,">'
        "<title>plumb drift monitor</title>"
        f"<style>{_STYLE}</style></head><body>"
        "<h1>plumb drift monitor</h1>"
        '<p class="muted">Share of drifted feature columns per closed window; the '
        f"dashed line is the drift share threshold ({drift_share_threshold:.2f}). "
        '<a href="/metrics">Prometheus metrics</a></p>'
        + "".join(sections)
        + "<h2>Open windows</h2>"
        + (
            f"<table><tr><th>endpoint</th><th>rows</th></tr>{filling}</table>"
            if filling
            else '<p class="muted">none</p>'
        )
        + "</body></html>"
    )


def _plot(windows: list[dict[str, Any]], *, threshold: float, key: str) -> str:
    inner_w = PLOT_WIDTH - 2 * PLOT_MARGIN
    inner_h = PLOT_HEIGHT - 2 * PLOT_MARGIN

    def x_of(index: int) -> float:
        if len(windows) == 1:
            return PLOT_MARGIN + inner_w / 2
        return PLOT_MARGIN + inner_w * index / (len(windows) - 1)

    def y_of(share: float) -> float:
        return PLOT_MARGIN + inner_h * (1.0 - min(max(share, 0.0), 1.0))

    points = " ".join(
        f"{x_of(i):.1f},{y_of(float(w['drift_share'])):.1f}"
        for i, w in enumerate(windows)
    )
    dots = "".join(
        f'<circle cx="{x_of(i):.1f}" cy="{y_of(float(w["drift_share"])):.1f}" r="3" '
        f'fill="{"#b3261e" if w["drifted"] else "#1b6e3a"}">'
        f"<title>{escape(w['window_id'])}: drift share {float(w['drift_share']):.2f}"
        "</title></circle>"
        for i, w in enumerate(windows)
    )
    line_y = y_of(threshold)
    first, last = _when(windows[0]["closed_at"]), _when(windows[-1]["closed_at"])
    return (
        f'<svg role="img" aria-label="drift share over time for {escape(key)}" '
        f'width="{PLOT_WIDTH}" height="{PLOT_HEIGHT}" '
        f'viewBox="0 0 {PLOT_WIDTH} {PLOT_HEIGHT}" xmlns="http://www.w3.org/2000/svg">'
        f'<line x1="{PLOT_MARGIN}" y1="{line_y:.1f}" x2="{PLOT_WIDTH - PLOT_MARGIN}" '
        f'y2="{line_y:.1f}" stroke="#b3261e" stroke-dasharray="4 4"/>'
        f'<polyline points="{points}" fill="none" stroke="#2f5d8a" stroke-width="2"/>'
        f"{dots}"
        f'<text x="4" y="{PLOT_MARGIN + 4}" font-size="11">1.0</text>'
        f'<text x="4" y="{PLOT_HEIGHT - PLOT_MARGIN + 4}" font-size="11">0.0</text>'
        f'<text x="{PLOT_MARGIN}" y="{PLOT_HEIGHT - 8}" font-size="11">'
        f"{escape(first)}</text>"
        f'<text x="{PLOT_WIDTH - PLOT_MARGIN}" y="{PLOT_HEIGHT - 8}" font-size="11" '
        f'text-anchor="end">{escape(last)}</text></svg>'
    )


def _table(windows: list[dict[str, Any]]) -> str:
    rows = []
    for window in windows:
        verdict = "drifted" if window["drifted"] else "stable"
        links = f'<a href="{escape(window["json_url"])}">JSON</a>'
        if window.get("html_url"):
            links = (
                f'<a href="{escape(window["html_url"])}">Evidently report</a> · '
                + links
            )
        quality = ", ".join(
            f"{name} {value:.3f}"
            for name, value in sorted((window.get("quality") or {}).items())
            if isinstance(value, int | float)
        )
        rows.append(
            f"<tr><td>{escape(_when(window['closed_at']))}</td>"
            f"<td>{window['rows']}</td>"
            f'<td class="{verdict}">{verdict} ({float(window["drift_share"]):.2f})</td>'
            f"<td>{escape(', '.join(window['drifted_column_names']) or '-')}</td>"
            f"<td>{escape(quality or '-')}</td><td>{links}</td></tr>"
        )
    return (
        "<table><tr><th>closed (UTC)</th><th>rows</th><th>drift</th>"
        "<th>drifted columns</th><th>quality</th><th>report</th></tr>"
        + "".join(rows)
        + "</table>"
    )


def _when(timestamp: float) -> str:
    return datetime.fromtimestamp(float(timestamp), tz=UTC).strftime(
        "%Y-%m-%d %H:%M:%S"
    )
