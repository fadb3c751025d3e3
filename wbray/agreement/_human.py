"""Reading a file of human judgments: pairwise preferences, or scores of single responses.

One JSON object per line (JSONL), one kind per file:

- pairwise: ``{"index": 5 | "query": "...", "response_a": "...", "response_b": "...",
  "preferred": "a" | "b" | "tie"}``
- scores:   ``{"index": 5 | "query": "...", "response": "...", "score": 7.5}``

Optional on both: ``"id"`` (names the row in reports), ``"domain1"`` (the primary domain, for the
per-domain rubric), ``"checklist"`` (the query's own criteria, in the benchmark's schema). With an
``index`` the query text, domain and checklist come from the benchmark when the row does not give
them. Other keys (annotator ids, notes) are ignored.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

from wbray._jsonl import read_jsonl
from wbray.agreement._rubrics import criteria_defects, to_criteria
from wbray.config import content_hash
from wbray.dataset import Benchmark
from wbray.errors import DataError, Defect
from wbray.records import Criterion

Preference = Literal["a", "b", "tie"]
PREFERENCES: Final[tuple[str, ...]] = ("a", "b", "tie")
Kind = Literal["pairwise", "scores"]
#: Two human (or judge) scores closer than this are a tie.
TIE_TOLERANCE: Final[float] = 1e-9


@dataclass(frozen=True)
class HumanResponse:
    """One response a human judged, with what the judge needs to score it.

    Attributes:
        key: Content id of (query, response); the same text for the same query is judged once.
        query: The writing request.
        response: The response text.
        domain1: Primary domain (None when neither the row nor the benchmark gives it).
        checklist: The query's own criteria (None when neither the row nor the benchmark gives them).
        index: The benchmark index, when the row has one.
        line: The first line of the file holding this response.
    """

    key: str
    query: str
    response: str
    domain1: str | None
    checklist: tuple[Criterion, ...] | None
    index: int | None
    line: int


@dataclass(frozen=True)
class HumanPair:
    """A human preference between two responses to one query.

    Attributes:
        pair_id: The row's ``id``, or ``line N`` (scores files: ``line N-M``).
        line: The line it comes from (scores files: the first response's line).
        a: Key of response A.
        b: Key of response B.
        preferred: ``"a"``, ``"b"`` or ``"tie"``.
        domain1: Primary domain, when known.
    """

    pair_id: str
    line: int
    a: str
    b: str
    preferred: Preference
    domain1: str | None


@dataclass(frozen=True)
class HumanJudgments:
    """A loaded human-judgment file.

    Attributes:
        source: The file path.
        kind: ``"pairwise"`` or ``"scores"``.
        responses: Key -> response, in file order.
        pairs: The preferences; for a scores file, every pair of responses to the same query, the
            preference following the higher human score (equal scores: tie).
        scores: Key -> human score (scores files only; empty for pairwise files).
    """

    source: str
    kind: Kind
    responses: Mapping[str, HumanResponse]
    pairs: tuple[HumanPair, ...]
    scores: Mapping[str, float]


def _text(obj: dict[str, Any], key: str, path: str, line: int, defects: list[Defect]) -> str | None:
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        defects.append(Defect(path, line, key, f"must be a non-empty string, got {value!r}"[:200]))
        return None
    return value


def _context(
    obj: dict[str, Any], path: str, line: int, benchmark: Benchmark | None, defects: list[Defect]
) -> tuple[str, str | None, tuple[Criterion, ...] | None, int | None] | None:
    """(query, domain1, checklist, index) of a row, from the row first and the benchmark second."""
    n_before = len(defects)
    query = _text(obj, "query", path, line, defects)
    domain1 = _text(obj, "domain1", path, line, defects)
    checklist: tuple[Criterion, ...] | None = None
    if "checklist" in obj:
        found = criteria_defects(obj["checklist"], path, "checklist", line)
        defects += found
        if not found:
            checklist = to_criteria(obj["checklist"])
    index = obj.get("index")
    if index is not None:
        if isinstance(index, bool) or not isinstance(index, int):
            defects.append(Defect(path, line, "index", f"must be an integer, got {index!r}"))
            return None
        if benchmark is None:
            if query is None:
                defects.append(
                    Defect(path, line, "index", "needs the benchmark to look the query up (give --data-dir)")
                )
        elif index not in benchmark.by_index:
            defects.append(Defect(path, line, "index", f"no query {index} in the benchmark {benchmark.root}"))
        else:
            bq = benchmark.by_index[index]
            if query is not None and query.strip() != bq.query.strip():
                defects.append(
                    Defect(
                        path, line, "query", f"differs from the benchmark's query {index}; give one of them"
                    )
                )
            if domain1 is not None and domain1 != bq.domain1:
                defects.append(
                    Defect(path, line, "domain1", f"{domain1!r} but query {index} is in {bq.domain1!r}")
                )
            query = query or bq.query
            domain1 = domain1 or bq.domain1
            checklist = checklist or bq.checklist
    elif query is None:
        defects.append(
            Defect(path, line, "", 'needs "query" (the request text) or "index" (a benchmark query)')
        )
    if len(defects) > n_before or query is None:
        return None
    return query, domain1, checklist, index


def _kind_of(obj: dict[str, Any]) -> Kind | None:
    if "preferred" in obj or "response_a" in obj or "response_b" in obj:
        return "pairwise"
    if "score" in obj or "response" in obj:
        return "scores"
    return None


def load_human_judgments(path: str | Path, benchmark: Benchmark | None = None) -> HumanJudgments:
    """Read and validate a human-judgment file (see the module docstring for the two row shapes).

    Args:
        path: A JSONL file.
        benchmark: Resolves rows that give an ``index`` (query text, domain, checklist); None when
            every row carries its own ``query``.

    Returns:
        The judgments.

    Raises:
        DataError: every defect of every line (file:line: field: what is wrong), e.g. a missing
            ``preferred``, a ``preferred`` other than a/b/tie, a non-numeric score, an unknown index,
            or rows of both kinds in one file.
    """
    p = Path(path)
    source = str(p)
    _, rows, defects = read_jsonl(p)
    responses: dict[str, HumanResponse] = {}
    pairs: list[HumanPair] = []
    scored: list[tuple[HumanResponse, float]] = []
    kind: Kind | None = None
    kind_line = 0

    def add(query: str, text: str, ctx: tuple[Any, ...], line: int) -> HumanResponse:
        key = content_hash([query, text])
        if key not in responses:
            responses[key] = HumanResponse(key, query, text, ctx[1], ctx[2], ctx[3], line)
        return responses[key]

    for row in rows:
        line, obj = row.line, row.value
        if not isinstance(obj, dict):
            defects.append(Defect(source, line, "", f"expected a JSON object, got {type(obj).__name__}"))
            continue
        this = _kind_of(obj)
        if this is None:
            defects.append(
                Defect(
                    source,
                    line,
                    "",
                    'neither a pairwise row ("response_a", "response_b", "preferred") '
                    'nor a scored row ("response", "score")',
                )
            )
            continue
        if kind is None:
            kind, kind_line = this, line
        elif this != kind:
            defects.append(
                Defect(
                    source, line, "", f"a {this} row, but line {kind_line} is a {kind} row; one kind per file"
                )
            )
            continue
        ctx = _context(obj, source, line, benchmark, defects)
        if this == "pairwise":
            ra = _text(obj, "response_a", source, line, defects)
            rb = _text(obj, "response_b", source, line, defects)
            pref = obj.get("preferred")
            if pref not in PREFERENCES:
                defects.append(Defect(source, line, "preferred", f'must be "a", "b" or "tie", got {pref!r}'))
                continue
            if ra is None or rb is None:
                for k, v in (("response_a", ra), ("response_b", rb)):
                    if v is None and obj.get(k) is None:
                        defects.append(Defect(source, line, k, "missing"))
                continue
            if ra == rb:
                defects.append(Defect(source, line, "response_b", "is identical to response_a"))
                continue
            if ctx is None:
                continue
            a, b = add(ctx[0], ra, ctx, line), add(ctx[0], rb, ctx, line)
            pair_id = str(obj["id"]) if obj.get("id") is not None else f"line {line}"
            pairs.append(HumanPair(pair_id, line, a.key, b.key, pref, ctx[1]))
        else:
            text = _text(obj, "response", source, line, defects)
            score = obj.get("score")
            if isinstance(score, bool) or not isinstance(score, int | float) or not math.isfinite(score):
                defects.append(Defect(source, line, "score", f"must be a finite number, got {score!r}"))
                continue
            if text is None:
                if obj.get("response") is None:
                    defects.append(Defect(source, line, "response", "missing"))
                continue
            if ctx is None:
                continue
            key = content_hash([ctx[0], text])
            if key in responses:
                first = responses[key].line
                defects.append(
                    Defect(source, line, "response", f"the same response to the same query as line {first}")
                )
                continue
            scored.append((add(ctx[0], text, ctx, line), float(score)))
    if not rows and not defects:
        defects.append(Defect(source, 0, "", "the file holds no judgments"))
    if defects:
        raise DataError(defects)
    scores = {r.key: s for r, s in scored}
    if kind == "scores":
        pairs = _pairs_from_scores(scored)
    return HumanJudgments(source, kind or "pairwise", responses, tuple(pairs), scores)


def _pairs_from_scores(scored: list[tuple[HumanResponse, float]]) -> list[HumanPair]:
    """Every pair of responses to the same query; the human prefers the higher score."""
    by_query: dict[str, list[tuple[HumanResponse, float]]] = {}
    for resp, score in scored:
        by_query.setdefault(resp.query, []).append((resp, score))
    pairs = []
    for group in by_query.values():
        for (ra, sa), (rb, sb) in itertools.combinations(group, 2):
            pref: Preference = "tie" if abs(sa - sb) <= TIE_TOLERANCE else ("a" if sa > sb else "b")
            pairs.append(HumanPair(f"line {ra.line}-{rb.line}", ra.line, ra.key, rb.key, pref, ra.domain1))
    return sorted(pairs, key=lambda p: p.line)
