"""Loading the official data, the first release and the bundled example; selection; stats."""

from __future__ import annotations

import json
import pickle
import shutil
from collections import Counter
from pathlib import Path

import pytest

from wbray.dataset import (
    UPSTREAM_COMMIT,
    Benchmark,
    compute_stats,
    example_dir,
    load_benchmark,
    load_queries,
    load_requirements,
    resolve_data_dir,
)
from wbray.env import cache_dir
from wbray.errors import DataNotFoundError, WbrayError
from wbray.records import CRITERION_KEYS, DOMAIN1_ORDER, REQUIREMENTS


@pytest.fixture(scope="module")
def bench(official_dir: Path) -> Benchmark:
    return load_benchmark(official_dir)


@pytest.fixture(scope="module")
def example() -> Benchmark:
    return load_benchmark("example")


# --- the official data -------------------------------------------------------------------------


def test_official_counts(bench: Benchmark) -> None:
    assert len(bench.queries) == 1000
    assert [q.index for q in bench.queries] == list(range(1, 1001))
    assert Counter(q.lang for q in bench.queries) == {"en": 555, "zh": 445}
    assert len({q.domain2 for q in bench.queries}) == 100
    assert set(q.domain1 for q in bench.queries) == set(DOMAIN1_ORDER)
    assert sum(len(q.checklist) for q in bench.queries) == 5000
    assert not bench.is_example
    assert bench.data_version == "2d04c2d4c82f"


def test_official_requirements(bench: Benchmark) -> None:
    assert list(bench.requirements) == list(REQUIREMENTS)
    assert {k: len(v.r_indices) for k, v in bench.requirements.items()} == {
        "style": 442,
        "format": 498,
        "length": 222,
    }
    assert {k: v.c_count for k, v in bench.requirements.items()} == {
        "style": 498,
        "format": 511,
        "length": 226,
    }
    for sub in bench.requirements.values():
        assert set(sub.c_criteria) == set(sub.r_indices)
        for index, names in sub.c_criteria.items():
            checklist_names = {c.name for c in bench.get(index).checklist}
            assert set(names) <= checklist_names


def test_first_release_requirements(official_dir: Path) -> None:
    reqs = load_requirements(official_dir / "v1_1239")
    assert {k: len(v.r_indices) for k, v in reqs.items()} == {"style": 395, "format": 342, "length": 214}
    assert {k: v.c_count for k, v in reqs.items()} == {"style": 425, "format": 351, "length": 219}


def test_load_queries_accepts_both_formats(official_dir: Path) -> None:
    current = load_queries(official_dir / "benchmark_query/benchmark_all.jsonl")
    assert len(current) == 1000 and current[0].lang == "zh"
    # A first-release file: "criteria" instead of "checklist", and no "lang".
    first = load_queries(official_dir / "v1_1239/benchmark_query/requirement/style/style_subset.jsonl")
    assert len(first) == 395
    assert {q.lang for q in first} == {None}
    assert all(len(q.checklist) == 5 for q in first)


def test_criterion_items_keep_file_order(bench: Benchmark, official_dir: Path) -> None:
    first_line = (official_dir / "benchmark_query/benchmark_all.jsonl").read_bytes().split(b"\n", 1)[0]
    row = json.loads(first_line)
    query = bench.get(1)
    for criterion, item in zip(query.checklist, row["checklist"], strict=True):
        assert type(criterion.item) is dict
        assert tuple(criterion.item) == CRITERION_KEYS
        # The judge prompt embeds this repr, so it must be byte-identical to the file's dict's.
        assert repr(criterion.item) == repr(item)
        assert criterion.name == item["name"]


def test_get(bench: Benchmark) -> None:
    assert bench.get(42).index == 42
    assert bench.by_index[1000].index == 1000
    with pytest.raises(WbrayError, match=r"no query with index 1001 .*1\.\.1000, 1000 queries"):
        bench.get(1001)


# --- selection -----------------------------------------------------------------------------------


def test_select_filters(bench: Benchmark) -> None:
    edu = bench.select(domain1=["Education"])
    assert len(edu.queries) == 111 and {q.domain1 for q in edu.queries} == {"Education"}
    assert edu.requirements == bench.requirements
    assert edu.data_version == bench.data_version and edu.root == bench.root

    lesson = bench.select(domain2=["Lesson Plan"])
    assert lesson.queries and {q.domain2 for q in lesson.queries} == {"Lesson Plan"}

    en = bench.select(lang=["en"])
    assert len(en.queries) == 555

    picked = bench.select(indices=[30, 3, 10])
    assert [q.index for q in picked.queries] == [3, 10, 30]  # file order, not argument order

    both = bench.select(domain1=["Education", "Politics & Law"], lang=["zh"], limit=5)
    assert len(both.queries) == 5
    assert all(q.lang == "zh" and q.domain1 in ("Education", "Politics & Law") for q in both.queries)
    indices = [q.index for q in both.queries]
    assert indices == sorted(indices)

    assert len(bench.select(limit=7).queries) == 7
    assert bench.select().queries == bench.queries


def test_select_limit_is_applied_last(bench: Benchmark) -> None:
    en = [q.index for q in bench.queries if q.lang == "en"][:3]
    assert [q.index for q in bench.select(lang=["en"], limit=3).queries] == en


def test_selection_get_names_the_range(bench: Benchmark) -> None:
    sel = bench.select(indices=[5, 9])
    with pytest.raises(WbrayError, match=r"valid indices 5\.\.9, 2 queries"):
        sel.get(6)


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        (
            {"domain1": ["Educaton"]},
            r"unknown domain1 'Educaton'; did you mean 'Education'\?.*'Finance & Business'",
        ),
        ({"domain2": ["Haiku"]}, r"unknown domain2 'Haiku'.*'Lesson Plan'"),
        ({"lang": ["fr"]}, r"unknown lang 'fr'.*'zh', 'en'"),
        ({"indices": [0, 1, 5000]}, r"unknown query index\(es\) 0, 5000.*1\.\.1000"),
        ({"domain1": "Education"}, r"must be a list"),
        ({"limit": 0}, r"limit must be at least 1"),
    ],
)
def test_select_rejects_unknown(bench: Benchmark, kwargs: dict[str, object], pattern: str) -> None:
    with pytest.raises(WbrayError, match=pattern):
        bench.select(**kwargs)  # type: ignore[arg-type]


# --- locating the data ---------------------------------------------------------------------------


def test_resolve_example() -> None:
    assert resolve_data_dir("example") == example_dir()
    assert (example_dir() / "queries.jsonl").is_file()


def test_resolve_explicit_and_env(official_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert resolve_data_dir(official_dir) == official_dir.resolve()
    assert resolve_data_dir(str(official_dir)) == official_dir.resolve()
    monkeypatch.setenv("WBRAY_DATA_DIR", str(official_dir))
    assert resolve_data_dir(None) == official_dir.resolve()


def test_resolve_env_pointing_nowhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WBRAY_DATA_DIR", str(tmp_path))
    with pytest.raises(DataNotFoundError, match=r"\$WBRAY_DATA_DIR=.*not a WritingBench data directory"):
        resolve_data_dir(None)


def test_resolve_explicit_not_data(tmp_path: Path) -> None:
    with pytest.raises(DataNotFoundError, match="not a WritingBench data directory"):
        resolve_data_dir(tmp_path)


def test_resolve_nothing_found() -> None:
    with pytest.raises(DataNotFoundError) as info:
        resolve_data_dir(None)
    message = str(info.value)
    assert "wbray data download" in message and "--data-dir" in message
    assert str(cache_dir() / "writingbench" / UPSTREAM_COMMIT) in message


def test_resolve_download_cache(official_dir: Path) -> None:
    cache = cache_dir() / "writingbench" / UPSTREAM_COMMIT
    shutil.copytree(official_dir / "benchmark_query", cache / "benchmark_query")
    assert resolve_data_dir(None) == cache.resolve()
    # An incomplete download is not picked up.
    (cache / "benchmark_query/requirement/length/length_subset_C.jsonl").unlink()
    with pytest.raises(DataNotFoundError):
        resolve_data_dir(None)


def test_load_requirements_without_subsets(tmp_path: Path) -> None:
    (tmp_path / "benchmark_query").mkdir()
    assert load_requirements(tmp_path) == {}
    with pytest.raises(DataNotFoundError):
        load_requirements(tmp_path / "missing")


def test_benchmark_without_subsets(tmp_path: Path) -> None:
    shutil.copy(example_dir() / "queries.jsonl", tmp_path / "queries.jsonl")
    loaded = load_benchmark(tmp_path)
    assert loaded.requirements == {}
    assert len(loaded.queries) == 12 and not loaded.is_example


# --- the bundled example -------------------------------------------------------------------------


def test_example_shape(example: Benchmark) -> None:
    assert example.is_example
    assert [q.index for q in example.queries] == list(range(1, 13))
    for domain in DOMAIN1_ORDER:
        in_domain = [q for q in example.queries if q.domain1 == domain]
        assert sorted(q.lang or "" for q in in_domain) == ["en", "zh"], domain
    for query in example.queries:
        assert len(query.checklist) == 5
        assert len({c.name for c in query.checklist}) == 5
        assert all(tuple(c.item) == CRITERION_KEYS for c in query.checklist)
        assert query.domain2 and len(query.query) > 80


def test_example_requirements(example: Benchmark) -> None:
    assert list(example.requirements) == list(REQUIREMENTS)
    for name, sub in example.requirements.items():
        assert 3 <= len(sub.r_indices) <= 5, name
        assert list(sub.c_criteria) == list(sub.r_indices)
        assert all(1 <= len(names) <= 2 for names in sub.c_criteria.values())
        # C items are exact copies of the query's items.
        c_rows = [json.loads(line) for line in (example_dir() / "requirement" / name / "C.jsonl").open()]
        for row in c_rows:
            query = example.get(row["index"])
            for item in row["checklist"]:
                assert query.criterion(item["name"]).item == item


def test_example_uses_no_upstream_file_names() -> None:
    names = {p.name for p in example_dir().rglob("*")}
    assert "benchmark_all.jsonl" not in names
    assert not [n for n in names if n.endswith(("_subset.jsonl", "_subset_C.jsonl"))]


def test_benchmark_pickles(example: Benchmark) -> None:
    # Benchmarks travel to Ray workers.
    _ = example.by_index
    copy = pickle.loads(pickle.dumps(example))
    assert copy == example
    assert copy.get(3) == example.get(3)


# --- stats ---------------------------------------------------------------------------------------


def test_stats_official(bench: Benchmark) -> None:
    stats = compute_stats(bench.queries)
    assert stats.total == 1000
    assert dict(stats.by_lang) == {"zh": 445, "en": 555}
    assert list(stats.by_domain1) == list(DOMAIN1_ORDER)
    assert stats.by_domain1["Education"] == 111
    assert len(stats.by_domain2) == 100
    assert sum(len(v) for v in stats.domain2_by_domain1.values()) == 100
    length = stats.query_length
    assert length is not None
    assert length.min <= length.p10 <= length.p25 <= length.median <= length.p75 <= length.p90 <= length.max
    assert length.mean == pytest.approx(sum(len(q.query) for q in bench.queries) / 1000)
    json.dumps(stats.to_dict())


def test_stats_percentiles(example: Benchmark) -> None:
    from dataclasses import replace

    base = example.queries[0]
    queries = [replace(base, index=i, query="x" * n) for i, n in enumerate([10, 20, 30, 40, 50], start=1)]
    length = compute_stats(queries).query_length
    assert length is not None
    assert (length.min, length.p25, length.median, length.p75, length.max) == (10, 20, 30, 40, 50)
    assert length.p10 == pytest.approx(14.0) and length.p90 == pytest.approx(46.0)
    assert length.mean == 30
    assert compute_stats([]).query_length is None
    assert compute_stats([replace(base, lang=None)]).by_lang == {"unknown": 1}
