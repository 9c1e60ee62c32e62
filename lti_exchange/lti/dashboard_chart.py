"""Submissions over time as a small inline SVG, drawn on the server (no scripts, no libraries)."""

from __future__ import annotations

from datetime import datetime

from markupsafe import Markup, escape

WIDTH, HEIGHT, PAD = 260, 70, 4


def submissions_chart(
    times: list[datetime], due: datetime | None, start: datetime | None, total: int
) -> Markup:
    """A step line of how many students had submitted by each moment, up to the due date (a
    red line) or the last submission; ``total`` (the roster, or the submitters) is the top."""
    label = f"{len(times)} of {max(total, len(times))} students submitted"
    if due:
        label += f"; due {due:%Y-%m-%d %H:%M} UTC"
    if not times:
        return Markup(
            f'<svg class="chart" role="img" width="{WIDTH}" height="{HEIGHT}" '
            f'viewBox="0 0 {WIDTH} {HEIGHT}"><title>{escape(label)}</title>'
            f'<text x="{PAD}" y="{HEIGHT // 2}" font-size="12">no submissions yet</text></svg>'
        )
    begin = min([t for t in (start, times[0]) if t is not None])
    end = max([t for t in (due, times[-1]) if t is not None])
    span = max((end - begin).total_seconds(), 1.0)
    top = max(total, len(times), 1)

    def x(moment: datetime) -> float:
        return PAD + (WIDTH - 2 * PAD) * (moment - begin).total_seconds() / span

    def y(count: int) -> float:
        return HEIGHT - PAD - (HEIGHT - 2 * PAD) * count / top

    points = [f"{x(begin):.1f},{y(0):.1f}"]
    for count, moment in enumerate(times, start=1):
        points.append(f"{x(moment):.1f},{y(count - 1):.1f}")
        points.append(f"{x(moment):.1f},{y(count):.1f}")
    points.append(f"{x(end):.1f},{y(len(times)):.1f}")
    due_line = ""
    if due and begin <= due <= end:  # a date before the first release is only in the title
        dx = x(due)
        due_line = (
            f'<line x1="{dx:.1f}" y1="0" x2="{dx:.1f}" y2="{HEIGHT}" stroke="#b00020" '
            'stroke-dasharray="3,2"/>'
        )
    return Markup(
        f'<svg class="chart" role="img" width="{WIDTH}" height="{HEIGHT}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}"><title>{escape(label)}</title>'
        f'<rect x="0" y="0" width="{WIDTH}" height="{HEIGHT}" fill="#f6f8fa"/>{due_line}'
        f'<polyline fill="none" stroke="#0b5394" stroke-width="2" points="{" ".join(points)}"/>'
        "</svg>"
    )
