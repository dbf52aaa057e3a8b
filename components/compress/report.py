"""The compression report: a JSON document for machines and an HTML page for people.

The HTML page needs no network: its size-vs-quality plot is an inline SVG.
"""

from __future__ import annotations

import html
import math
from typing import Any

PLOT_WIDTH = 640
PLOT_HEIGHT = 360
MARGIN = 60


def render_html(report: dict[str, Any], *, title: str = "plumb compression") -> str:
    """Render the report as a self-contained HTML page."""
    metric_name = html.escape(str(report["metric_name"]))
    rows = "\n".join(_table_row(c) for c in report["candidates"])
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body {{ font-family: sans-serif; margin: 2em; color: #222; }}
table {{ border-collapse: collapse; }}
td, th {{ border: 1px solid #ccc; padding: 4px 8px; text-align: right; }}
td:first-child, th:first-child {{ text-align: left; }}
tr.selected {{ background: #e6f4e6; font-weight: bold; }}
tr.over-budget {{ color: #999; }}
</style></head>
<body>
<h1>{html.escape(title)}</h1>
<p>{html.escape(report["summary"])}</p>
<p>Objective: <b>{html.escape(report["objective"])}</b>; budget: a {metric_name} drop
of at most {report["max_metric_drop"]:.4f} from the float model
({report["baseline_metric"]:.4f}).</p>
{_plot(report)}
<table>
<tr><th>candidate</th><th>size (bytes)</th><th>gzip (bytes)</th><th>size ratio</th>
<th>1-row latency (ms)</th><th>batch latency (ms)</th><th>latency ratio</th>
<th>{metric_name}</th><th>drop</th><th>within budget</th></tr>
{rows}
</table>
<p>Latency: median over repeats, one CPU thread, transformed rows in, in the runtime
that serves the format. Size ratio and latency ratio are float / candidate (above 1:
smaller / faster).</p>
</body></html>
"""


def _table_row(candidate: dict[str, Any]) -> str:
    css = "selected" if candidate["selected"] else ""
    if not candidate["eligible"]:
        css = "over-budget"
    cells = [
        html.escape(candidate["name"]),
        f"{candidate['size_bytes']:,}",
        f"{candidate['gzip_size_bytes']:,}",
        f"{candidate['size_ratio']:.2f}x",
        f"{candidate['single_row_latency_ms']:.4f}",
        f"{candidate['batch_latency_ms']:.3f}",
        f"{candidate['latency_ratio']:.2f}x",
        f"{candidate['metric']:.4f}",
        f"{candidate['metric_drop']:+.4f}",
        "yes" if candidate["eligible"] else "no",
    ]
    body = "".join(f"<td>{cell}</td>" for cell in cells)
    return f'<tr class="{css}">{body}</tr>'


def _plot(report: dict[str, Any]) -> str:
    """Scatter of size (log scale) against the metric, with the budget line."""
    candidates = report["candidates"]
    sizes = [math.log10(max(c["size_bytes"], 1)) for c in candidates]
    floor = report["baseline_metric"] - report["max_metric_drop"]
    metrics = [c["metric"] for c in candidates] + [floor, report["baseline_metric"]]
    x_low, x_high = _padded(min(sizes), max(sizes))
    y_low, y_high = _padded(min(metrics), max(metrics))

    def x_at(value: float) -> float:
        span = PLOT_WIDTH - 2 * MARGIN
        return MARGIN + (value - x_low) / (x_high - x_low) * span

    def y_at(value: float) -> float:
        span = PLOT_HEIGHT - 2 * MARGIN
        return PLOT_HEIGHT - MARGIN - (value - y_low) / (y_high - y_low) * span

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{PLOT_WIDTH}" '
        f'height="{PLOT_HEIGHT}" role="img" aria-label="size versus quality">',
        f'<rect x="{MARGIN}" y="{MARGIN}" width="{PLOT_WIDTH - 2 * MARGIN}" '
        f'height="{PLOT_HEIGHT - 2 * MARGIN}" fill="none" stroke="#888"/>',
        f'<line x1="{MARGIN}" x2="{PLOT_WIDTH - MARGIN}" y1="{y_at(floor):.1f}" '
        f'y2="{y_at(floor):.1f}" stroke="#c33" stroke-dasharray="6 4"/>',
        f'<text x="{PLOT_WIDTH - MARGIN}" y="{y_at(floor) - 4:.1f}" font-size="11" '
        'text-anchor="end" fill="#c33">budget</text>',
        f'<text x="{PLOT_WIDTH / 2}" y="{PLOT_HEIGHT - 15}" font-size="12" '
        'text-anchor="middle">served model size (bytes, log scale)</text>',
        f'<text x="15" y="{PLOT_HEIGHT / 2}" font-size="12" text-anchor="middle" '
        f'transform="rotate(-90 15 {PLOT_HEIGHT / 2})">'
        f"{html.escape(report['metric_name'])} (validation)</text>",
    ]
    for tick in (x_low, (x_low + x_high) / 2, x_high):
        parts.append(
            f'<text x="{x_at(tick):.1f}" y="{PLOT_HEIGHT - MARGIN + 15}" '
            f'font-size="10" text-anchor="middle">{10**tick:,.0f}</text>'
        )
    for tick in (y_low, (y_low + y_high) / 2, y_high):
        parts.append(
            f'<text x="{MARGIN - 5}" y="{y_at(tick) + 3:.1f}" font-size="10" '
            f'text-anchor="end">{tick:.4f}</text>'
        )
    for candidate, size in zip(candidates, sizes, strict=True):
        colour = "#2a2" if candidate["selected"] else "#36c"
        if not candidate["eligible"]:
            colour = "#aaa"
        x, y = x_at(size), y_at(candidate["metric"])
        parts.append(
            f'<circle cx="{x:.1f}" cy="{y:.1f}" r="5" fill="{colour}">'
            f"<title>{html.escape(candidate['name'])}</title></circle>"
        )
        parts.append(
            f'<text x="{x + 7:.1f}" y="{y - 6:.1f}" font-size="10">'
            f"{html.escape(candidate['name'])}</text>"
        )
    parts.append("</svg>")
    return "\n".join(parts)


def _padded(low: float, high: float) -> tuple[float, float]:
    span = high - low
    pad = span * 0.08 if span > 0 else max(abs(high) * 0.01, 1e-3)
    return low - pad, high + pad
