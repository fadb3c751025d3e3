"""Judge-human agreement: known answers on constructed files, and what the judge is asked.

The judge here is a scripted engine returning fixed scores: what is under test is the judge's
*inputs* (which criteria each mode sends, for which responses, how often) and the agreement
arithmetic over its outputs, not the judge.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from wbray.agreement import (
    agreement_rates,
    example_file,
    judge_agreement,
    load_human_judgments,
    load_rubrics,
)
from wbray.config import JudgeConfig, SamplingParams
from wbray.dataset import load_benchmark
from wbray.engines import ChatRequest, Completion
from wbray.errors import DataError, WbrayError
from wbray.prompts import load_judge_template

RUBRICS = load_rubrics()
GLOBAL_NAMES = {c.name for c in RUBRICS.global_criteria}
EDU_NAMES = {c.name for c in RUBRICS.domain["Education"]}
ADS_NAMES = {c.name for c in RUBRICS.domain["Advertising & Marketing"]}


def _item(name: str) -> dict[str, str]:
    return {
        "name": name,
        "criteria_description": f"about {name}",
        "1-2": "bad",
        "3-4": "weak",
        "5-6": "fair",
        "7-8": "good",
        "9-10": "excellent",
    }


CHECKLIST = [_item("Own criterion one"), _item("Own criterion two")]


def _resp(tag: str, g: int, d: int, q: int) -> str:
    """A response carrying the scores the scripted judge will give it under each mode."""
    return f"Answer {tag}. [G={g} D={d} Q={q}]"


class ScriptedJudge:
    """Replies with the score written in the response for the mode its criterion belongs to."""

    model_id = "scripted-judge"

    def __init__(self, fail_tags: Sequence[str] = (), jitter: bool = False) -> None:
        self.requests: list[ChatRequest] = []
        self.fail_tags = set(fail_tags)
        # With jitter, the 2nd call of the same prompt scores one more (so repeats must be averaged).
        self.jitter = jitter
        self.seen: dict[str, int] = {}

    async def generate(self, requests: Sequence[ChatRequest], sampling: SamplingParams) -> list[Completion]:
        out = []
        for req in requests:
            self.requests.append(req)
            user = req.messages[-1]["content"]
            tag = re.search(r"Answer (\w+)\.", user)
            if tag and tag.group(1) in self.fail_tags:
                out.append(Completion(text="no idea"))  # unparseable, every time
                continue
            scores = dict(re.findall(r"([GDQ])=(\d+)", user))
            name = criterion_name(user)
            mode = "G" if name in GLOBAL_NAMES else "D" if name in EDU_NAMES | ADS_NAMES else "Q"
            bump = self.seen.get(user, 0) % 2 if self.jitter else 0
            self.seen[user] = self.seen.get(user, 0) + 1
            score = int(scores[mode]) + bump
            out.append(Completion(text=json.dumps({"score": score, "reason": f"{mode} says so"})))
        return out

    async def close(self) -> None:
        return None


def criterion_name(prompt: str) -> str:
    m = re.search(r"'name': '([^']+)'", prompt)
    assert m, prompt
    return m.group(1)


def _write(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def _pair(
    pid: str, domain: str, a: str, b: str, preferred: str, query: str = "Write a thing."
) -> dict[str, Any]:
    return {
        "id": pid,
        "query": f"{query} ({pid})",
        "domain1": domain,
        "checklist": CHECKLIST,
        "response_a": a,
        "response_b": b,
        "preferred": preferred,
    }


ED, AD = "Education", "Advertising & Marketing"
# Hand-built expectations per pair: (human, judge's preference under G, D, Q).
PAIRS = [
    _pair("p1", ED, _resp("a1", 8, 8, 8), _resp("b1", 3, 3, 3), "a"),  # G a, D a, Q a
    _pair("p2", ED, _resp("a2", 4, 4, 9), _resp("b2", 6, 3, 2), "a"),  # G b, D a, Q a
    _pair("p3", AD, _resp("a3", 5, 2, 2), _resp("b3", 5, 7, 7), "b"),  # G tie, D b, Q b
    _pair("p4", AD, _resp("a4", 9, 9, 1), _resp("b4", 2, 2, 6), "b"),  # G a, D a, Q b
    _pair("p5", ED, _resp("a5", 6, 6, 6), _resp("b5", 6, 6, 6), "tie"),  # G tie, D tie, Q tie
    _pair("p6", AD, _resp("a6", 7, 7, 7), _resp("b6", 4, 4, 4), "tie"),  # G a, D a, Q a
]


def _run(human_path: Path, judge: JudgeConfig | None = None, engine: ScriptedJudge | None = None, **kw: Any):
    human = load_human_judgments(human_path)
    engine = engine or ScriptedJudge()
    judge = judge or JudgeConfig(max_reasks=0)
    return asyncio.run(
        judge_agreement(human, engine, judge, load_judge_template(None, "builtin"), **kw)
    ), engine


def test_agreement_known_answer(tmp_path: Path) -> None:
    report, engine = _run(_write(tmp_path / "h.jsonl", PAIRS))
    # Decisive pairs p1..p4. Global: p1 agrees, p2 disagrees, p3 judge tie, p4 disagrees -> 1/4.
    # Domain: p1, p2, p3 agree, p4 disagrees -> 3/4. Query: all four agree -> 4/4.
    assert report.rate("global") == pytest.approx(1 / 4)
    assert report.rate("domain") == pytest.approx(3 / 4)
    assert report.rate("query") == pytest.approx(4 / 4)
    s = report.summary.set_index(["mode", "domain1"])
    assert s.loc[("global", "(all)"), "judge_ties"] == 1
    # With ties (all 6 pairs): global matches p1, p5 -> 2/6; domain p1-p3, p5 -> 4/6; query p1-p5 -> 5/6.
    assert s.loc[("global", "(all)"), "rate_with_ties"] == pytest.approx(2 / 6)
    assert s.loc[("domain", "(all)"), "rate_with_ties"] == pytest.approx(4 / 6)
    assert s.loc[("query", "(all)"), "rate_with_ties"] == pytest.approx(5 / 6)
    # Per domain: Education decisive p1, p2; Advertising p3, p4.
    assert s.loc[("global", ED), "rate"] == pytest.approx(1 / 2)
    assert s.loc[("global", AD), "rate"] == pytest.approx(0 / 2)
    assert s.loc[("domain", AD), "rate"] == pytest.approx(1 / 2)
    assert s.loc[("query", ED), ["pairs", "scored", "decisive", "agree"]].tolist() == [3, 3, 2, 2]
    # Every response judged once per criterion per mode: 12 responses x (5 + 5 + 2) criteria.
    assert len(engine.requests) == 12 * (5 + 5 + 2)
    assert report.judging.set_index("mode")["calls"].to_dict() == {"global": 60, "domain": 60, "query": 24}
    assert report.meta["engine"] == "scripted-judge"


def test_each_mode_sends_its_own_criteria(tmp_path: Path) -> None:
    _, engine = _run(_write(tmp_path / "h.jsonl", PAIRS[:2]), modes=["domain", "query"])
    sent: dict[str, set[str]] = {}
    for req in engine.requests:
        user = req.messages[-1]["content"]
        tag = re.search(r"Answer (\w+)\.", user)
        assert tag
        sent.setdefault(tag.group(1), set()).add(criterion_name(user))
    # Education rubric for domain mode plus the inline checklist for query mode, nothing global.
    want = EDU_NAMES | {"Own criterion one", "Own criterion two"}
    assert sent == {t: want for t in ("a1", "b1", "a2", "b2")}


def test_repeats_are_averaged_and_failures_leave_pairs_unscored(tmp_path: Path) -> None:
    engine = ScriptedJudge(fail_tags=["b2"], jitter=True)
    report, _ = _run(
        _write(tmp_path / "h.jsonl", PAIRS[:3]), JudgeConfig(repeats=2, max_reasks=1), engine, modes=["query"]
    )
    row = report.summary.set_index(["mode", "domain1"]).loc[("query", "(all)")]
    assert (row["pairs"], row["scored"], row["decisive"], row["agree"]) == (3, 2, 2, 2)
    details = report.details.set_index("pair_id")
    assert pd.isna(details.loc["p2", "judge"]) and pd.isna(details.loc["p2", "agree"])
    assert math.isnan(details.loc["p2", "score_b"])
    # Repeats score Q and Q + 1: the response score is their mean.
    assert details.loc["p1", "score_a"] == pytest.approx(8.5)
    assert details.loc["p1", "score_b"] == pytest.approx(3.5)
    # 6 responses x 2 criteria x 2 repeats, plus one re-ask per failed call of b2 (2 criteria x 2 repeats).
    assert len(engine.requests) == 6 * 2 * 2 + 4
    assert report.judging.set_index("mode").loc["query", "failed"] == 4


def test_scores_file_pairs_and_correlations(tmp_path: Path) -> None:
    rows = []
    human = {"r1": 9.0, "r2": 5.0, "r3": 5.0, "r4": 2.0, "r5": 8.0}
    judge = {"r1": 8, "r2": 6, "r3": 4, "r4": 5, "r5": 3}
    for tag, query in (("r1", "qa"), ("r2", "qa"), ("r3", "qa"), ("r4", "qb"), ("r5", "qb")):
        rows.append(
            {
                "query": query,
                "domain1": ED,
                "checklist": CHECKLIST,
                "response": _resp(tag, 1, 1, judge[tag]),
                "score": human[tag],
            }
        )
    report, _ = _run(_write(tmp_path / "s.jsonl", rows), modes=["query"])
    # Pairs: qa: (r1,r2) a/a, (r1,r3) a/a, (r2,r3) human tie, judge a; qb: (r4,r5) human b, judge a.
    d = report.details
    assert d["human"].tolist() == ["a", "a", "tie", "b"]
    assert d["judge"].tolist() == ["a", "a", "a", "a"]
    assert report.rate("query") == pytest.approx(2 / 3)
    corr = report.correlations.set_index("mode").loc["query"]
    hs = [human[t] for t in ("r1", "r2", "r3", "r4", "r5")]
    js = [float(judge[t]) for t in ("r1", "r2", "r3", "r4", "r5")]
    assert corr["n"] == 5
    assert corr["pearson"] == pytest.approx(_pearson(hs, js))
    assert corr["spearman"] == pytest.approx(_pearson(_ranks(hs), _ranks(js)))


def _pearson(x: list[float], y: list[float]) -> float:
    mx, my = sum(x) / len(x), sum(y) / len(y)
    num = sum((a - mx) * (b - my) for a, b in zip(x, y, strict=True))
    den = math.sqrt(sum((a - mx) ** 2 for a in x) * sum((b - my) ** 2 for b in y))
    return num / den


def _ranks(values: list[float]) -> list[float]:
    """Average ranks (1-based), ties sharing the mean of their positions."""
    order = sorted(values)
    return [sum(i + 1 for i, v in enumerate(order) if v == x) / order.count(x) for x in values]


def test_pure_rates_from_supplied_scores(tmp_path: Path) -> None:
    human = load_human_judgments(_write(tmp_path / "h.jsonl", PAIRS[:2]))
    keys = list(human.responses)  # a1, b1, a2, b2
    scores = pd.DataFrame({"mode": ["global"] * 4, "key": keys, "score": [7.0, 2.0, 1.0, float("nan")]})
    report = agreement_rates(human, scores)
    assert report.rate("global") == 1.0
    assert report.summary.iloc[0][["pairs", "scored", "decisive", "agree"]].tolist() == [2, 1, 1, 1]
    with pytest.raises(WbrayError, match="unknown criteria mode"):
        agreement_rates(human, scores, ["static"])
    out = report.to_dict()
    assert json.loads(json.dumps(out))["summary"][0]["rate"] == 1.0


def test_bundled_example_resolves_against_the_example_benchmark() -> None:
    human = load_human_judgments(example_file(), load_benchmark("example"))
    assert human.kind == "pairwise" and len(human.pairs) == 6
    assert [p.preferred for p in human.pairs].count("tie") == 1
    assert all(r.checklist and r.domain1 for r in human.responses.values())


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([{"query": "q", "response_a": "x", "response_b": "y", "preferred": "A"}], r"h\.jsonl:1: preferred"),
        ([{"query": "q", "response_a": "x", "preferred": "a"}], r"h\.jsonl:1: response_b: missing"),
        (
            [{"index": 3, "response_a": "x", "response_b": "y", "preferred": "a"}],
            r"h\.jsonl:1: index: needs the",
        ),
        ([{"response_a": "x", "response_b": "y", "preferred": "a"}], r'h\.jsonl:1: needs "query"'),
        (
            [
                {"query": "q", "response_a": "x", "response_b": "y", "preferred": "a"},
                {"query": "q", "response": "x", "score": 3},
            ],
            r"h\.jsonl:2: a scores row, but line 1 is a pairwise row",
        ),
        ([{"query": "q", "response": "x", "score": "high"}], r"h\.jsonl:1: score: must be a finite number"),
        ([{"query": "q", "response_a": "x", "response_b": "x", "preferred": "a"}], r"identical"),
        ([{"query": "q", "text": "x"}], r"h\.jsonl:1: neither a pairwise row"),
        (
            [
                {
                    "query": "q",
                    "checklist": [{"name": "n"}],
                    "response_a": "x",
                    "response_b": "y",
                    "preferred": "a",
                }
            ],
            r"h\.jsonl:1: checklist\[0\]: keys must be exactly",
        ),
    ],
)
def test_bad_lines_name_file_line_and_field(tmp_path: Path, rows: list[dict[str, Any]], message: str) -> None:
    with pytest.raises(DataError, match=message):
        load_human_judgments(_write(tmp_path / "h.jsonl", rows))


def test_unknown_index_and_wrong_domain_against_a_benchmark(tmp_path: Path) -> None:
    bench = load_benchmark("example")
    rows = [
        {"index": 99, "response_a": "x", "response_b": "y", "preferred": "a"},
        {"index": 1, "domain1": "Education", "response_a": "x", "response_b": "y", "preferred": "a"},
    ]
    with pytest.raises(DataError) as err:
        load_human_judgments(_write(tmp_path / "h.jsonl", rows), bench)
    text = "\n".join(map(str, err.value.defects))
    assert "h.jsonl:1: index: no query 99" in text
    assert "h.jsonl:2: domain1: 'Education' but query 1 is in 'Academic & Engineering'" in text


def test_mode_needs_are_checked_before_any_judge_call(tmp_path: Path) -> None:
    rows = [{"query": "q", "response_a": "x", "response_b": "y", "preferred": "a"}]  # no domain, no checklist
    engine = ScriptedJudge()
    with pytest.raises(DataError) as err:
        _run(_write(tmp_path / "h.jsonl", rows), engine=engine, modes=["global", "domain", "query"])
    fields = sorted({d.field for d in err.value.defects})
    assert fields == ["checklist", "domain1"] and all(d.line == 1 for d in err.value.defects)
    assert engine.requests == []
