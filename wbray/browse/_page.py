"""Assemble the self-contained page: one HTML file with its CSS, script and data inline.

The data is embedded once as JSON in a ``<script type="application/json">`` element and rendered by
a small vanilla script (``assets/page.js``); every text reaches the page through ``textContent``,
never as HTML, so a response holding markup or script shows as text. The page loads nothing from
the network and opens from a file.
"""

from __future__ import annotations

import base64
import gzip
import html
import json
from importlib import resources
from typing import Any

import pandas as pd

from wbray.browse._data import browser_data
from wbray.dataset import Benchmark

#: Above this many characters of JSON the data is embedded compressed (when not forced either way).
COMPRESS_OVER = 2_000_000


def _asset(name: str) -> str:
    return resources.files("wbray.browse").joinpath("assets", name).read_text(encoding="utf-8")


def embed_json(data: Any) -> str:
    """JSON that is safe inside a ``<script>`` element.

    Every ``<`` is written as ``\\u003c`` (and the two line separators JavaScript once refused as
    ``\\u2028``/``\\u2029``), so no text — ``</script>``, ``<!--`` — can end or confuse the element.
    """
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return text.replace("<", "\\u003c").replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


def _data_element(data: dict[str, Any], compress: bool | None) -> str:
    text = embed_json(data)
    if compress is None:
        compress = len(text) > COMPRESS_OVER
    if not compress:
        return f'<script type="application/json" id="wb-data">{text}</script>'
    # mtime=0: the same data gives the same bytes (reproducible reports).
    packed = base64.b64encode(gzip.compress(text.encode("utf-8"), compresslevel=6, mtime=0)).decode("ascii")
    return (
        f'<script type="application/octet-stream" id="wb-data" data-encoding="gzip-base64">{packed}</script>'
    )


def render_page(data: dict[str, Any], *, compress: bool | None = None) -> str:
    """The complete HTML document for :func:`~wbray.browse.browser_data` output.

    Args:
        data: The page data.
        compress: Embed the data gzip-compressed and base64-encoded (the page inflates it with the
            browser's built-in ``DecompressionStream``); None decides by size (over
            :data:`COMPRESS_OVER` characters of JSON). Real text shrinks about 2.5x this way.
    """
    title = html.escape(str(data.get("title", "WritingBench results")))
    # The stylesheet and script are our own files; only the data is untrusted, and it stays JSON.
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        # No network: a strict policy makes any accidental fetch fail loudly instead of leaking.
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
        "style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:\">\n"
        f"<title>{title}</title>\n<style>\n{_asset('page.css')}</style>\n</head>\n<body>\n"
        '<header><h1 id="title"></h1><nav id="crumbs" aria-label="breadcrumbs"></nav></header>\n'
        '<main id="app"><p>Loading…</p></main>\n'
        f"{_data_element(data, compress)}\n"
        f"<script>\n{_asset('page.js')}</script>\n</body>\n</html>\n"
    )


def build_browser(
    evaluations: pd.DataFrame,
    generations: pd.DataFrame | None,
    benchmark: Benchmark,
    *,
    flags: pd.DataFrame | None = None,
    cis: pd.DataFrame | None = None,
    title: str = "WritingBench results",
    compress: bool | None = None,
) -> str:
    """The browser page for one run, as an HTML string.

    Args:
        evaluations: The long evaluations table (with ``reason`` and ``error`` to show them).
        generations: ``model``, ``index``, ``response`` (optional ``sample``, ``status``, ``error``).
        benchmark: The benchmark (queries, criteria, domains, languages, requirement subsets).
        flags: :func:`wbray.injection.flag_responses` output, for the "flagged" filter and badges.
        cis: :func:`wbray.stats.bootstrap_cis` output, for ``score ± half-width`` on the leaderboard.
        title: Page title.
        compress: Embed the data gzip+base64 (see :func:`render_page`; None decides by size).
    """
    data = browser_data(evaluations, generations, benchmark, flags=flags, cis=cis, title=title)
    return render_page(data, compress=compress)


def write_browser(
    evaluations: pd.DataFrame,
    generations: pd.DataFrame | None,
    benchmark: Benchmark,
    uri: str,
    *,
    flags: pd.DataFrame | None = None,
    cis: pd.DataFrame | None = None,
    title: str = "WritingBench results",
    compress: bool | None = None,
    storage: Any = None,
) -> str:
    """Write the browser page to ``uri`` (a local path, ``file://`` or ``s3://``) and return it.

    See :func:`build_browser` for the arguments; ``storage`` is the
    :class:`wbray.storage.StorageOptions` that reach ``uri``. The write is atomic.
    """
    from wbray.storage import write_bytes

    page = build_browser(
        evaluations, generations, benchmark, flags=flags, cis=cis, title=title, compress=compress
    )
    write_bytes(uri, page.encode("utf-8"), storage)
    return uri
