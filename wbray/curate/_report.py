"""The curation's score distribution as a text table and as one self-contained HTML page (inline
SVG, no script, no external file: it opens offline and from an object store)."""

from __future__ import annotations

import html
from collections.abc import Mapping
from typing import Any, Final

from wbray.curate._select import Histogram

#: Width of the longest bar of the text table, in characters.
BAR_WIDTH: Final[int] = 40
_KEPT_COLOUR: Final[str] = "#2f6f9f"
_DROPPED_COLOUR: Final[str] = "#c9d6e3"


def _label(lo: float, hi: float) -> str:
    return f"{lo:g}-{hi:g}"


def histogram_text(hist: Histogram) -> str:
    """A fixed-width table: one line per bin with pairs, kept, and a bar (█ kept, ░ dropped)."""
    top = max((b.count for b in hist.bins), default=0)
    lines = [f"{'score':<7}{'pairs':>6}{'kept':>6}  distribution (█ kept, ░ dropped)"]
    for b in hist.bins:
        width = round(BAR_WIDTH * b.count / top) if top else 0
        kept = round(width * b.kept / b.count) if b.count else 0
        lines.append(f"{_label(b.lo, b.hi):<7}{b.count:>6}{b.kept:>6}  {'█' * kept}{'░' * (width - kept)}")
    total = sum(b.count for b in hist.bins)
    lines.append(f"{'all':<7}{total:>6}{sum(b.kept for b in hist.bins):>6}")
    return "\n".join(lines) + "\n"


def histogram_svg(hist: Histogram, cut: float | None = None) -> str:
    """An inline SVG bar chart: stacked kept/dropped bars per bin, the cut score as a dashed line."""
    width, height, left, right, top, bottom = 560, 260, 44, 16, 16, 36
    plot_w, plot_h = width - left - right, height - top - bottom
    peak = max((b.count for b in hist.bins), default=0) or 1
    lo, hi = hist.bins[0].lo, hist.bins[-1].hi
    slot = plot_w / len(hist.bins)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="score histogram">',
        f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}" stroke="#333"/>',
        f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + plot_h}" stroke="#333"/>',
        f'<text x="{left - 6}" y="{top + 4}" text-anchor="end" font-size="11">{peak}</text>',
        f'<text x="{left - 6}" y="{top + plot_h}" text-anchor="end" font-size="11">0</text>',
    ]
    for i, b in enumerate(hist.bins):
        x = left + i * slot + 3
        w = slot - 6
        total_h = plot_h * b.count / peak
        kept_h = plot_h * b.kept / peak
        base = top + plot_h
        title = html.escape(f"{_label(b.lo, b.hi)}: {b.count} pairs, {b.kept} kept")
        parts.append(
            f"<g><title>{title}</title>"
            f'<rect x="{x:.1f}" y="{base - total_h:.1f}" width="{w:.1f}" height="{total_h - kept_h:.1f}" '
            f'fill="{_DROPPED_COLOUR}"/>'
            f'<rect x="{x:.1f}" y="{base - kept_h:.1f}" width="{w:.1f}" height="{kept_h:.1f}" '
            f'fill="{_KEPT_COLOUR}"/></g>'
        )
        if b.count:
            parts.append(
                f'<text x="{x + w / 2:.1f}" y="{base - total_h - 3:.1f}" text-anchor="middle" '
                f'font-size="11">{b.count}</text>'
            )
        parts.append(
            f'<text x="{x + w / 2:.1f}" y="{base + 14}" text-anchor="middle" font-size="11">'
            f"{_label(b.lo, b.hi)}</text>"
        )
    if cut is not None:
        cx = left + plot_w * (cut - lo) / (hi - lo)
        parts.append(
            f'<line x1="{cx:.1f}" y1="{top}" x2="{cx:.1f}" y2="{top + plot_h}" stroke="#b03030" '
            f'stroke-dasharray="4 3"><title>lowest kept score {cut:.3g}</title></line>'
        )
    parts.append(
        f'<text x="{left + plot_w / 2}" y="{height - 4}" text-anchor="middle" font-size="12">'
        "pair score (mean of criterion scores)</text>"
    )
    parts.append("</svg>")
    return "".join(parts)


def histogram_html(hist: Histogram, report: Mapping[str, Any]) -> str:
    """One self-contained page: counts, the selection rule, the chart and the table."""
    counts = report.get("counts", {})
    stats = hist.stats
    cut = report.get("cut_score")

    def num(value: Any) -> str:
        return "–" if value is None else f"{float(value):.3g}"

    facts = [
        ("input", report.get("input", "")),
        ("rule", report.get("rule", "")),
        ("pairs", counts.get("pairs", 0)),
        ("kept", counts.get("kept", 0)),
        ("dropped", counts.get("dropped", 0)),
        ("unscored", counts.get("unscored", 0)),
        ("lowest kept score", num(cut)),
        ("mean / median score", f"{num(stats.get('mean'))} / {num(stats.get('median'))}"),
        ("judge", report.get("judge", {}).get("name", "")),
    ]
    rows = "".join(f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>" for k, v in facts)
    table = "".join(
        f"<tr><td>{_label(b.lo, b.hi)}</td><td>{b.count}</td><td>{b.kept}</td></tr>" for b in hist.bins
    )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        "<title>wbray curation: score distribution</title>"
        "<style>body{font-family:sans-serif;margin:24px;color:#222}"
        "table{border-collapse:collapse;margin:12px 0}"
        "th,td{border:1px solid #ccc;padding:3px 8px;text-align:left}td{text-align:right}"
        ".legend span{display:inline-block;width:12px;height:12px;margin:0 4px 0 12px}</style></head><body>"
        "<h1>Score distribution</h1>"
        f"<table>{rows}</table>"
        f'<p class="legend"><span style="background:{_KEPT_COLOUR}"></span>kept'
        f'<span style="background:{_DROPPED_COLOUR}"></span>dropped</p>'
        f"{histogram_svg(hist, cut)}"
        "<table><tr><th>score</th><th>pairs</th><th>kept</th></tr>"
        f"{table}</table></body></html>\n"
    )
