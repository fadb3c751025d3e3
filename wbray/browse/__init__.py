"""A browsable, self-contained HTML page per run: leaderboard -> domain -> query -> each model's
response and every criterion's score and reason, with filters (domain, language, requirement,
failed, flagged). One file, inline CSS and script, no network; opens offline.
"""

from wbray.browse._data import SCHEMA, browser_data
from wbray.browse._page import build_browser, embed_json, render_page, write_browser
from wbray.browse._run import browse_run

__all__ = [
    "SCHEMA",
    "browse_run",
    "browser_data",
    "build_browser",
    "embed_json",
    "render_page",
    "write_browser",
]
