"""The browser page in a real headless Chromium (Debian's package, driven through playwright).

Built from the constructed run of ``tests/helpers/run_tables.py``, whose failures, flags and texts
are known. Checks: the page loads from a file without console errors or network requests; clicking
leaderboard -> domain -> query shows each model's response and every criterion's reason; each filter
narrows the query list to exactly the expected queries; hostile markup in a response stays text; the
compressed embedding renders the same page. Screenshots go to pytest's tmp_path.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.run_tables import FAILED, FLAGGED, HOSTILE, MODELS, example_run, reason, response
from wbray.browse import write_browser
from wbray.injection import flag_responses
from wbray.stats import bootstrap_cis

CHROMIUM = "/usr/bin/chromium"
pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        shutil.which(CHROMIUM) is None,
        reason=f"{CHROMIUM} not found: install Debian's Chromium (apt-get install -y chromium)",
    ),
]
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


class Browser:
    """One page in a fresh Chromium profile, recording console errors, page errors and requests."""

    def __init__(self, profile: Path) -> None:
        from playwright.sync_api import sync_playwright

        self._pw = sync_playwright().start()
        self.context = self._pw.chromium.launch_persistent_context(
            str(profile), executable_path=CHROMIUM, headless=True, args=FLAGS
        )
        self.page = self.context.new_page()
        self.errors: list[str] = []
        self.requests: list[str] = []
        self.dialogs: list[str] = []
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("request", lambda r: self.requests.append(r.url))
        self.page.on("dialog", lambda d: (self.dialogs.append(d.message), d.dismiss()))

    def close(self) -> None:
        self.context.close()
        self._pw.stop()

    def open(self, path: Path) -> None:
        self.page.goto(path.as_uri())
        self.page.wait_for_selector("body[data-ready='1']")

    def rows(self) -> list[int]:
        return [
            int(v)
            for v in self.page.eval_on_selector_all("#queries tbody tr", "rs => rs.map(r => r.dataset.index)")
        ]


@pytest.fixture(scope="module")
def run() -> tuple[Any, Any, Any]:
    return example_run()


@pytest.fixture(scope="module")
def page_file(run: tuple[Any, Any, Any], tmp_path_factory: pytest.TempPathFactory) -> Path:
    bench, ev, gen = run
    cis = bootstrap_cis(ev, bench.queries, bench.requirements, resamples=300)
    out = tmp_path_factory.mktemp("page") / "browse.html"
    write_browser(
        ev, gen, bench, str(out), flags=flag_responses(gen), cis=cis, title="Constructed run", compress=False
    )
    return out


@pytest.fixture()
def browser(tmp_path: Path) -> Iterator[Browser]:
    b = Browser(tmp_path / "profile")
    yield b
    b.close()


def test_click_through_leaderboard_domain_query(
    browser: Browser, page_file: Path, run: Any, tmp_path: Path
) -> None:
    bench, ev, _ = run
    page = browser.page
    browser.open(page_file)
    assert page.title() == "Constructed run"
    # Leaderboard: one row per model, best first, Overall shown x10 with its half-width.
    assert page.eval_on_selector_all("#leaderboard tbody tr", "rs => rs.map(r => r.dataset.model)") == [
        "alpha",
        "beta",
    ]
    ok = ev[ev["status"] == "ok"]
    overall = ok[ok["model"] == "alpha"]["score"].mean() * 10
    first_cell = page.text_content("#leaderboard tbody tr[data-model='alpha'] td")
    assert first_cell is not None and first_cell.startswith(f"{overall:.1f}") and "±" in first_cell
    page.screenshot(path=str(tmp_path / "leaderboard.png"), full_page=True)

    # -> domain
    page.click("a.domain-link[data-domain='Education']")
    page.wait_for_selector("h2:has-text('Domain: Education')")
    education = [q.index for q in bench.queries if q.domain1 == "Education"]
    assert browser.rows() == education
    assert page.text_content("#count") == f"{len(education)} of 12 queries"

    # -> query: each model's response and every criterion's reason
    target = education[1]
    page.click(f"#queries tr[data-index='{target}'] a.query-link")
    page.wait_for_selector(f"h2:has-text('Query {target}')")
    q = bench.get(target)
    assert page.text_content(".query-text") == q.query
    for model in MODELS:
        section = f"section.model[data-model='{model}']"
        assert page.text_content(f"{section} pre.response") == response(model, target)
        reasons = page.eval_on_selector_all(f"{section} td.reason", "ts => ts.map(t => t.textContent)")
        assert reasons == [reason(model, target, k) for k in range(len(q.checklist))]
    page.screenshot(path=str(tmp_path / "query.png"), full_page=True)
    # The breadcrumb leads back to the domain.
    page.click("#crumbs a:has-text('Education')")
    page.wait_for_selector("h2:has-text('Domain: Education')")
    assert browser.errors == [] and browser.dialogs == []
    assert all(url.startswith("file://") for url in browser.requests), browser.requests


def test_each_filter_narrows_the_list(browser: Browser, page_file: Path, run: Any, tmp_path: Path) -> None:
    bench, _, _ = run
    page = browser.page
    browser.open(page_file)
    page.click("#all-queries")
    page.wait_for_selector("#queries")
    every = [q.index for q in bench.queries]
    assert browser.rows() == every

    def expect(rows: list[int]) -> None:
        page.wait_for_function(
            "n => document.querySelectorAll('#queries tbody tr').length === n && "
            "document.getElementById('count').textContent.startsWith(n + ' of')",
            arg=len(rows),
        )
        assert browser.rows() == rows

    page.select_option("#f-lang", "zh")
    expect([q.index for q in bench.queries if q.lang == "zh"])
    page.select_option("#f-domain", "Finance & Business")
    expect([q.index for q in bench.queries if q.lang == "zh" and q.domain1 == "Finance & Business"])
    page.select_option("#f-lang", "")
    page.select_option("#f-domain", "")
    expect(every)
    page.select_option("#f-req", "style")
    expect([i for i in every if i in set(bench.requirements["style"].r_indices)])
    page.select_option("#f-req", "")
    page.check("#f-failed")
    expect(sorted(FAILED))
    page.uncheck("#f-failed")
    page.check("#f-flagged")
    expect(sorted(FLAGGED))
    page.screenshot(path=str(tmp_path / "flagged.png"), full_page=True)
    # A flagged query shows the flag and its reason on the model that earned it.
    page.click(f"#queries tr[data-index='{min(FLAGGED)}'] a.query-link")
    page.wait_for_selector("section.model[data-model='beta'] .flag")
    assert "score_json" in (page.text_content("section.model[data-model='beta'] .flag") or "")
    assert page.query_selector("section.model[data-model='alpha'] .flag") is None
    assert browser.errors == []


def test_failures_show_and_hostile_markup_stays_text(browser: Browser, page_file: Path) -> None:
    page = browser.page
    browser.open(page_file)
    page.goto(page_file.as_uri() + "#/query/9")
    page.wait_for_selector("h2:has-text('Query 9')")
    assert "timeout after 60 s" in (page.text_content("section.model[data-model='alpha'] .gen-error") or "")
    assert page.eval_on_selector_all("section.model[data-model='alpha'] tr.failed", "rs => rs.length") == 5
    page.goto(page_file.as_uri() + "#/query/1")
    page.wait_for_selector("h2:has-text('Query 1')")
    text = page.text_content("section.model[data-model='alpha'] pre.response") or ""
    assert HOSTILE in text
    assert page.evaluate(
        "() => window.__pwned === undefined"
        " && document.querySelectorAll('main script, pre.response *').length === 0"
    )
    assert browser.errors == [] and browser.dialogs == []


def test_compressed_page_renders_the_same(browser: Browser, run: Any, tmp_path: Path) -> None:
    bench, ev, gen = run
    packed = tmp_path / "packed.html"
    write_browser(ev, gen, bench, str(packed), compress=True)
    assert 'data-encoding="gzip-base64"' in packed.read_text(encoding="utf-8")
    browser.open(packed)
    assert browser.page.eval_on_selector_all("#leaderboard tbody tr", "rs => rs.length") == 2
    browser.page.goto(packed.as_uri() + "#/query/3")
    browser.page.wait_for_selector("h2:has-text('Query 3')")
    assert browser.page.text_content("section.model[data-model='beta'] pre.response") == response("beta", 3)
    assert browser.errors == []
