"""Small inline SVG charts for the evaluation report.

The report must open anywhere, offline, as one file (the Kubeflow UI shows it in a
sandboxed frame), so charts are plain SVG strings: no plotting library, no scripts, no
network. Only what the report needs: line charts, a scatter and horizontal bars.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass

PALETTE = ("#0969da", "#bf8700", "#8250df", "#1a7f37", "#cf222e")
MARGIN_LEFT, MARGIN_RIGHT, MARGIN_TOP, MARGIN_BOTTOM = 52, 12, 12, 40


@dataclass
class Series:
    """One named line or point cloud."""

    label: str
    x: Sequence[float]
    y: Sequence[float]


def _scale(value: float, low: float, high: float, start: float, end: float) -> float:
    span = high - low or 1.0
    return start + (value - low) / span * (end - start)


def _frame(
    *,
    width: int,
    height: int,
    x_range: tuple[float, float],
    y_range: tuple[float, float],
    x_label: str,
    y_label: str,
    title: str,
) -> list[str]:
    left, right = MARGIN_LEFT, width - MARGIN_RIGHT
    top, bottom = MARGIN_TOP, height - MARGIN_BOTTOM
    parts = [
        f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height}' "
        f"viewBox='0 0 {width} {height}' role='img' aria-label='{html.escape(title)}' "
        "font-family='sans-serif' font-size='11'>",
        f"<title>{html.escape(title)}</title>",
        f"<rect x='{left}' y='{top}' width='{right - left}' height='{bottom - top}' "
        "fill='none' stroke='#999'/>",
    ]
    for step in range(5):
        fraction = step / 4
        x_value = x_range[0] + fraction * (x_range[1] - x_range[0])
        y_value = y_range[0] + fraction * (y_range[1] - y_range[0])
        x = _scale(x_value, *x_range, left, right)
        y = _scale(y_value, *y_range, bottom, top)
        parts.append(
            f"<line x1='{x:.1f}' y1='{bottom}' x2='{x:.1f}' y2='{bottom + 4}' "
            "stroke='#999'/>"
            f"<text x='{x:.1f}' y='{bottom + 15}' text-anchor='middle'>"
            f"{x_value:.3g}</text>"
            f"<line x1='{left - 4}' y1='{y:.1f}' x2='{left}' y2='{y:.1f}' "
            "stroke='#999'/>"
            f"<text x='{left - 6}' y='{y + 4:.1f}' text-anchor='end'>{y_value:.3g}</text>"
        )
    parts.append(
        f"<text x='{(left + right) / 2:.0f}' y='{height - 6}' text-anchor='middle'>"
        f"{html.escape(x_label)}</text>"
        f"<text transform='translate(12 {(top + bottom) / 2:.0f}) rotate(-90)' "
        f"text-anchor='middle'>{html.escape(y_label)}</text>"
    )
    return parts


def _legend(labels: Sequence[str], *, x: float, y: float) -> str:
    items = []
    for index, label in enumerate(labels):
        colour = PALETTE[index % len(PALETTE)]
        row = y + 14 * index
        items.append(
            f"<rect x='{x}' y='{row - 8}' width='10' height='10' fill='{colour}'/>"
            f"<text x='{x + 14}' y='{row + 1}'>{html.escape(label)}</text>"
        )
    return "".join(items)


def line_chart(
    series: Sequence[Series],
    *,
    title: str,
    x_label: str,
    y_label: str,
    diagonal: bool = False,
    x_range: tuple[float, float] = (0.0, 1.0),
    y_range: tuple[float, float] = (0.0, 1.0),
    width: int = 380,
    height: int = 300,
    markers: bool = False,
    legend_at: str = "top-left",
) -> str:
    """Draw lines (optionally the y = x diagonal) inside fixed axes.

    `legend_at` (`top-left`, `bottom-left`, `bottom-right`) puts the legend where the
    chart's curves usually leave room.
    """
    left, right = MARGIN_LEFT, width - MARGIN_RIGHT
    top, bottom = MARGIN_TOP, height - MARGIN_BOTTOM
    parts = _frame(
        width=width,
        height=height,
        x_range=x_range,
        y_range=y_range,
        x_label=x_label,
        y_label=y_label,
        title=title,
    )
    if diagonal:
        parts.append(
            f"<line x1='{left}' y1='{bottom}' x2='{right}' y2='{top}' "
            "stroke='#bbb' stroke-dasharray='4 3'/>"
        )
    for index, line in enumerate(series):
        colour = PALETTE[index % len(PALETTE)]
        points = " ".join(
            f"{_scale(x, *x_range, left, right):.1f},"
            f"{_scale(y, *y_range, bottom, top):.1f}"
            for x, y in zip(line.x, line.y, strict=True)
        )
        parts.append(
            f"<polyline points='{points}' fill='none' stroke='{colour}' "
            "stroke-width='1.8'/>"
        )
        if markers:
            parts.extend(
                f"<circle cx='{_scale(x, *x_range, left, right):.1f}' "
                f"cy='{_scale(y, *y_range, bottom, top):.1f}' r='2.5' fill='{colour}'/>"
                for x, y in zip(line.x, line.y, strict=True)
            )
    legend_x = right - 170 if legend_at.endswith("right") else left + 8
    legend_y = bottom - 14 * len(series) if legend_at.startswith("bottom") else top + 14
    parts.append(_legend([s.label for s in series], x=legend_x, y=legend_y))
    parts.append("</svg>")
    return "".join(parts)


def scatter_chart(
    points: Series, *, title: str, x_label: str, y_label: str, width: int = 380
) -> str:
    """Draw a point cloud with the y = x diagonal (predicted against actual)."""
    values = [*points.x, *points.y]
    low, high = (min(values), max(values)) if values else (0.0, 1.0)
    height = 300
    left, right = MARGIN_LEFT, width - MARGIN_RIGHT
    top, bottom = MARGIN_TOP, height - MARGIN_BOTTOM
    parts = _frame(
        width=width,
        height=height,
        x_range=(low, high),
        y_range=(low, high),
        x_label=x_label,
        y_label=y_label,
        title=title,
    )
    parts.append(
        f"<line x1='{left}' y1='{bottom}' x2='{right}' y2='{top}' "
        "stroke='#bbb' stroke-dasharray='4 3'/>"
    )
    parts.extend(
        f"<circle cx='{_scale(x, low, high, left, right):.1f}' "
        f"cy='{_scale(y, low, high, bottom, top):.1f}' r='2' fill='{PALETTE[0]}' "
        "fill-opacity='0.5'/>"
        for x, y in zip(points.x, points.y, strict=True)
    )
    parts.append("</svg>")
    return "".join(parts)


def bar_chart(
    bars: Sequence[tuple[str, float]],
    *,
    title: str,
    value_label: str,
    highlight: set[str] | None = None,
    width: int = 560,
) -> str:
    """Draw labelled horizontal bars from a zero line (negative values go left)."""
    row_height, label_width = 18, 170
    height = MARGIN_TOP + row_height * max(len(bars), 1) + MARGIN_BOTTOM
    values = [value for _, value in bars] or [0.0]
    low, high = min(0.0, *values), max(0.0, *values)
    left, right = label_width, width - 60
    zero = _scale(0.0, low, high, left, right)
    parts = [
        f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height}' "
        f"viewBox='0 0 {width} {height}' role='img' aria-label='{html.escape(title)}' "
        "font-family='sans-serif' font-size='11'>",
        f"<title>{html.escape(title)}</title>",
    ]
    for index, (label, value) in enumerate(bars):
        y = MARGIN_TOP + index * row_height
        end = _scale(value, low, high, left, right)
        colour = "#cf222e" if highlight and label in highlight else PALETTE[0]
        parts.append(
            f"<text x='{left - 6}' y='{y + 12}' text-anchor='end'>"
            f"{html.escape(label[:28])}</text>"
            f"<rect x='{min(zero, end):.1f}' y='{y + 3}' "
            f"width='{max(abs(end - zero), 0.5):.1f}' height='{row_height - 6}' "
            f"fill='{colour}'/>"
            f"<text x='{max(zero, end) + 4:.1f}' y='{y + 12}'>{value:.4g}</text>"
        )
    bottom = MARGIN_TOP + row_height * len(bars)
    parts.append(
        f"<line x1='{zero:.1f}' y1='{MARGIN_TOP}' x2='{zero:.1f}' y2='{bottom}' "
        "stroke='#666'/>"
        f"<text x='{(left + right) / 2:.0f}' y='{bottom + 24}' text-anchor='middle'>"
        f"{html.escape(value_label)}</text></svg>"
    )
    return "".join(parts)
