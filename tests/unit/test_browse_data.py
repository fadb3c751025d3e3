"""The browser page's data and HTML, without a browser (the browser test drives the real page)."""

from __future__ import annotations

import base64
import gzip
import json
import re
from pathlib import Path

import pytest

from tests.helpers.run_tables import FAILED, FLAGGED, HOSTILE, MODELS, example_run, reason, score
from wbray.browse import browser_data, embed_json, render_page, write_browser
from wbray.errors import WbrayError
from wbray.injection import flag_responses
from wbray.stats import bootstrap_cis


def _embedded(page: str) -> dict:
    m = re.search(r'<script type="application/json" id="wb-data">(.*?)</script>', page, re.DOTALL)
    assert m, "no plain data element"
    return json.loads(m.group(1))


def test_data_holds_every_score_reason_and_response() -> None:
    bench, ev, gen = example_run()
    data = browser_data(ev, gen, bench, flags=flag_responses(gen))
    assert data["models"] == list(MODELS)
    assert [q[0] for q in data["queries"]] == [q.index for q in bench.queries]
    by_pos = {q.index: {c.name: k for k, c in enumerate(q.checklist)} for q in bench.queries}
    assert len(data["ev"]) == len(ev)
    for (m, j, k, _rep, s, why, err), row in zip(data["ev"], ev.to_dict("records"), strict=True):
        model, index = MODELS[m], data["queries"][j][0]
        assert (model, index) == (row["model"], row["index"])
        assert k == by_pos[index][row["criterion"]]
        if row["status"] == "ok":
            assert (s, why, err) == (score(model, index, k), reason(model, index, k), None)
        else:
            assert s is None and err == row["error"]
    # Query score = mean of the ok criterion scores, computed here from the constructed values.
    q1 = bench.get(1)
    want = sum(score("alpha", 1, k) for k in range(len(q1.checklist))) / len(q1.checklist)
    assert data["scores"][0][0] == pytest.approx(want)
    assert data["scores"][0][8] is None  # alpha, query 9: every evaluation failed
    flagged = {data["queries"][j][0] for _, j, _, _ in data["flags"]}
    assert flagged == FLAGGED
    failed_queries = {data["queries"][r[1]][0] for r in data["ev"] if r[6] is not None}
    failed_queries |= {data["queries"][r[1]][0] for r in data["gen"] if r[4] is not None}
    assert failed_queries == FAILED
    assert data["failures"] == [[5, 1], [1, 1]]


def test_leaderboard_values_come_from_the_intervals() -> None:
    bench, ev, gen = example_run()
    cis = bootstrap_cis(ev, bench.queries, bench.requirements, resamples=200, seed=3)
    data = browser_data(ev, gen, bench, cis=cis)
    labels = [g[2] for g in data["groups"]]
    assert (
        labels[:2] == ["Overall", "Academic & Engineering"] and "Chinese" in labels and "Style (R)" in labels
    )
    rec = cis[(cis["model"] == "beta") & (cis["scope"] == "overall")].iloc[0]
    assert data["board"][1][0] == [
        pytest.approx(rec["estimate"], abs=1e-4),
        pytest.approx(rec["low"], abs=1e-4),
        pytest.approx(rec["high"], abs=1e-4),
        12,
    ]


def test_page_is_self_contained_and_inert() -> None:
    bench, ev, gen = example_run()
    page = render_page(browser_data(ev, gen, bench), compress=False)
    # The hostile response is data, never markup: the only script elements are ours.
    assert page.count("<script") == 2 and page.count("</script>") == 2
    assert "<!--" not in page and "<b>bold" not in page
    assert not re.search(r"""(?:src|href)=["']?(?:https?:)?//""", page)  # nothing fetched
    assert "default-src 'none'" in page
    data = _embedded(page)
    assert HOSTILE in json.dumps(data, ensure_ascii=False)


def test_compressed_embedding_round_trips() -> None:
    bench, ev, gen = example_run()
    data = browser_data(ev, gen, bench)
    page = render_page(data, compress=True)
    m = re.search(r'data-encoding="gzip-base64">([A-Za-z0-9+/=]+)</script>', page)
    assert m
    assert json.loads(gzip.decompress(base64.b64decode(m.group(1)))) == json.loads(embed_json(data))
    assert render_page(data, compress=True) == page  # reproducible bytes


def test_embed_json_escapes_script_breakers() -> None:
    text = embed_json({"a": "</script><!-- \u2028 <b>"})
    assert "<" not in text and "\u2028" not in text
    assert json.loads(text) == {"a": "</script><!-- \u2028 <b>"}


def test_write_browser_to_a_local_path(tmp_path: Path) -> None:
    bench, ev, gen = example_run()
    out = tmp_path / "reports" / "browse.html"
    assert write_browser(ev, gen, bench, str(out), title="Example <run>") == str(out)
    page = out.read_text(encoding="utf-8")
    assert "<title>Example &lt;run&gt;</title>" in page
    assert _embedded(page)["title"] == "Example <run>"


def test_no_generations_and_unknown_index() -> None:
    bench, ev, _ = example_run()
    data = browser_data(ev, None, bench)
    assert data["gen"] == []
    with pytest.raises(WbrayError, match="not in the benchmark"):
        browser_data(ev.assign(index=ev["index"] + 100), None, bench)
