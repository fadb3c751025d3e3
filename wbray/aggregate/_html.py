# ruff: noqa: E501  (SVG and HTML markup reads better unwrapped)
"""A self-contained HTML report: leaderboard tables and inline SVG plots (no scripts, no CDN)."""

from __future__ import annotations

import html
import math
import time
from typing import Any

import pandas as pd

from wbray.aggregate._compute import LEADERBOARD_SCALE, Leaderboard
from wbray.aggregate._report import (
    COMPARISONS_TEXT,
    NOISE_TEXT,
    comparison_rows,
    coverage_note,
    coverage_table,
    noise_rows,
    summary_rows,
)
from wbray.records import DOMAIN1_ORDER

_PALETTE = ("#4C78A8", "#F58518", "#54A24B", "#E45756", "#72B7B2", "#B279A2", "#FF9DA6", "#9D755D", "#BAB0AC")
_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:2rem;color:#222;max-width:1200px}
table{border-collapse:collapse;margin:1rem 0;font-size:.9rem}
th,td{border:1px solid #ddd;padding:.3rem .6rem;text-align:right}
th:first-child,td:first-child{text-align:left}
th{background:#f3f3f3}
.note{color:#666;font-size:.9rem}
.incomplete{color:#a33;font-weight:600}
svg text{font-family:inherit}
"""


def _num(value: Any) -> float | None:
    if value is None:
        return None
    v = float(value)
    return None if math.isnan(v) else v


def _cell(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def _table(header: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _domain_bars(board: Leaderboard) -> str:
    """Grouped bars: one group per domain, one bar per model (x10 scale)."""
    models = board.models
    data = board.official.set_index("Model")
    group_w, bar_w, height, top, left = 150, max(8, min(24, 120 // max(len(models), 1))), 260, 20, 40
    width = left + group_w * len(DOMAIN1_ORDER) + 20
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height + 70}" role="img">']
    for tick in range(0, 101, 20):
        y = top + height - height * tick / 100
        parts.append(f'<line x1="{left}" x2="{width - 10}" y1="{y}" y2="{y}" stroke="#eee"/>')
        parts.append(f'<text x="{left - 6}" y="{y + 4}" font-size="10" text-anchor="end">{tick}</text>')
    for g, domain in enumerate(DOMAIN1_ORDER):
        x0 = left + g * group_w + (group_w - bar_w * len(models)) / 2
        for m, model in enumerate(models):
            value = _num(data.loc[model, f"Domain1_{domain}"])
            if value is None:
                continue
            v = value * LEADERBOARD_SCALE
            h = height * v / 100
            color = _PALETTE[m % len(_PALETTE)]
            title = html.escape(f"{model} · {domain}: {v:.2f}")
            parts.append(
                f'<rect x="{x0 + m * bar_w:.1f}" y="{top + height - h:.1f}" width="{bar_w - 2}" height="{h:.1f}" '
                f'fill="{color}"><title>{title}</title></rect>'
            )
        label = html.escape(domain.split(" & ")[0])
        parts.append(
            f'<text x="{left + g * group_w + group_w / 2}" y="{top + height + 16}" font-size="11" '
            f'text-anchor="middle">{label}</text>'
        )
    for m, model in enumerate(models):
        y = top + height + 34 + 14 * (m // 4)
        x = left + (m % 4) * 260
        parts.append(
            f'<rect x="{x}" y="{y - 9}" width="10" height="10" fill="{_PALETTE[m % len(_PALETTE)]}"/>'
        )
        parts.append(f'<text x="{x + 14}" y="{y}" font-size="11">{html.escape(model)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _overall_bars(board: Leaderboard) -> str:
    """Horizontal bars of the overall score per model, best first (x10 scale)."""
    rows = sorted(
        ((m, _num(v)) for m, v in zip(board.official["Model"], board.official["Overall"], strict=True)),
        key=lambda r: -(r[1] or 0),
    )
    label_w, bar_max, row_h = 220, 600, 22
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{label_w + bar_max + 60}" height="{row_h * len(rows) + 10}">'
    ]
    for i, (model, value) in enumerate(rows):
        y = 5 + i * row_h
        parts.append(
            f'<text x="{label_w - 8}" y="{y + 14}" font-size="12" text-anchor="end">{html.escape(str(model))}</text>'
        )
        if value is not None:
            w = bar_max * value * LEADERBOARD_SCALE / 100
            parts.append(
                f'<rect x="{label_w}" y="{y}" width="{w:.1f}" height="{row_h - 6}" fill="{_PALETTE[0]}"/>'
            )
            parts.append(
                f'<text x="{label_w + w + 6}" y="{y + 14}" font-size="12">{value * LEADERBOARD_SCALE:.2f}</text>'
            )
    parts.append("</svg>")
    return "".join(parts)


def to_html(
    board: Leaderboard, ledger: pd.DataFrame | None = None, title: str = "WritingBench leaderboard"
) -> str:
    """The whole report as one HTML string (inline CSS and SVG; opens offline)."""
    header, rows = summary_rows(board)
    cover = coverage_table(board)
    d2 = [c for c in board.official.columns if c.startswith("Domain2_")]
    sub_rows = [
        [
            c.removeprefix("Domain2_"),
            *[f"{v * LEADERBOARD_SCALE:.2f}" if _num(v) is not None else "–" for v in board.official[c]],
        ]
        for c in d2
    ]
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f"<p class='note'>Generated {time.strftime('%Y-%m-%d %H:%M:%S %Z')}. Scores are judge scores 1-10 "
        f"x{LEADERBOARD_SCALE}. Failed evaluations are excluded from every mean and counted, never scored 0; "
        "Coverage is queries scored / queries selected.</p>",
        *[f"<p class='incomplete'>{html.escape(n)}</p>" for n in board.notes],
        "<h2>Overall</h2>",
        _overall_bars(board),
        "<h2>By domain</h2>",
        _domain_bars(board),
        "<h2>Leaderboard</h2>",
        _table(header, rows),
        *([f"<p class='incomplete'>{html.escape(note)}</p>"] if (note := coverage_note(board)) else []),
        "<h2>Subdomains</h2>",
        _table(["Subdomain", *board.models], sub_rows),
        "<h2>Coverage</h2>",
        _table(list(cover.columns), [[_cell(v) for v in r] for r in cover.values.tolist()]),
        "<h2>Failures</h2>",
        _table(list(board.failures.columns), board.failures.values.tolist()),
    ]
    for title, text, (head, body) in (
        ("Paired comparisons", COMPARISONS_TEXT, comparison_rows(board)),
        ("Judge noise", NOISE_TEXT, noise_rows(board)),
    ):
        if body:
            parts += [f"<h2>{title}</h2>", f"<p class='note'>{html.escape(text)}</p>", _table(head, body)]
    if ledger is not None and len(ledger):
        parts += ["<h2>Token ledger</h2>", _table(list(ledger.columns), ledger.values.tolist())]
    parts.append("</body></html>")
    return "\n".join(parts)
