"""Inline SVG charts for the HTML report: pure functions from numbers to SVG text.

No script, no external asset: the SVG is part of the page, so it shows in any browser, in
an email client that renders HTML, and on paper.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from html import escape

WIDTH, HEIGHT = 640, 220
LEFT, RIGHT, TOP, BOTTOM = 44, 12, 14, 34
_INK, _GRID, _BAR, _LINE = "#1f2933", "#d9e2ec", "#3b82c4", "#2f855a"


def _nice_max(value: float) -> int:
    """A round axis maximum at or above ``value`` (at least 1)."""
    step = 1
    while True:
        for factor in (1, 2, 5):
            top = step * factor
            if top >= value:
                return max(top, 1)
        step *= 10


def _frame(body: list[str], label: str) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'role="img" aria-label="{escape(label)}" class="chart">'
        f"<title>{escape(label)}</title>{''.join(body)}</svg>"
    )


def _y_axis(top_value: float, ticks: int, unit: str) -> list[str]:
    plot_h = HEIGHT - TOP - BOTTOM
    parts = []
    for i in range(ticks + 1):
        value = top_value * i / ticks
        y = TOP + plot_h - plot_h * i / ticks
        parts.append(
            f'<line x1="{LEFT}" y1="{y:.1f}" x2="{WIDTH - RIGHT}" y2="{y:.1f}" '
            f'stroke="{_GRID}" stroke-width="1"/>'
            f'<text x="{LEFT - 6}" y="{y + 4:.1f}" font-size="11" text-anchor="end" '
            f'fill="{_INK}">{value:g}{unit}</text>'
        )
    return parts


def bar_chart(labels: Sequence[str], values: Sequence[int], label: str) -> str:
    """Vertical bars, one per label, with the count above each non-empty bar."""
    top_value = _nice_max(max(values, default=0))
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    slot = plot_w / max(len(values), 1)
    # Whole-number ticks: 1, 2 or 5 steps for the small maxima, else five or four steps.
    ticks = top_value if top_value <= 5 else 5 if top_value % 5 == 0 else 4
    body = _y_axis(top_value, ticks, "")
    for index, (name, value) in enumerate(zip(labels, values, strict=True)):
        h = plot_h * value / top_value
        x = LEFT + index * slot + slot * 0.15
        y = TOP + plot_h - h
        body.append(
            f'<rect x="{x:.1f}" y="{y:.1f}" width="{slot * 0.7:.1f}" height="{h:.1f}" '
            f'fill="{_BAR}"><title>{escape(name)}: {value}</title></rect>'
        )
        if value:
            body.append(
                f'<text x="{x + slot * 0.35:.1f}" y="{y - 3:.1f}" font-size="11" '
                f'text-anchor="middle" fill="{_INK}">{value}</text>'
            )
        body.append(
            f'<text x="{x + slot * 0.35:.1f}" y="{HEIGHT - BOTTOM + 16}" font-size="11" '
            f'text-anchor="middle" fill="{_INK}">{escape(name)}</text>'
        )
    return _frame(body, label)


def line_chart(points: Sequence[tuple[datetime, float]], label: str) -> str:
    """Percentages (0-100) over time; a single point is drawn as a dot in the middle."""
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    body = _y_axis(100, 4, "%")
    if not points:
        return _frame(body, label)
    start, end = points[0][0], points[-1][0]
    span = (end - start).total_seconds()

    def xy(at: datetime, value: float) -> tuple[float, float]:
        share = (at - start).total_seconds() / span if span > 0 else 0.5
        return LEFT + plot_w * share, TOP + plot_h - plot_h * max(0.0, min(value, 100.0)) / 100

    coords = [xy(at, value) for at, value in points]
    if len(coords) > 1:
        path = " ".join(f"{x:.1f},{y:.1f}" for x, y in coords)
        body.append(
            f'<polyline points="{path}" fill="none" stroke="{_LINE}" stroke-width="2"/>'
        )
    for (at, value), (x, y) in zip(points, coords, strict=True):
        body.append(
            f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3.5" fill="{_LINE}">'
            f"<title>{at:%Y-%m-%d %H:%M}Z: {value:g}%</title></circle>"
        )
    for at, anchor, x in ((start, "start", coords[0][0]), (end, "end", coords[-1][0])):
        if span <= 0 and anchor == "start":
            continue
        body.append(
            f'<text x="{x:.1f}" y="{HEIGHT - BOTTOM + 16}" font-size="11" '
            f'text-anchor="{"middle" if span <= 0 else anchor}" fill="{_INK}">'
            f"{at:%Y-%m-%d}</text>"
        )
    return _frame(body, label)
