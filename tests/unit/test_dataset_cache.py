"""The cache of strictly loaded benchmarks: an unchanged data directory is checked once."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from wbray.dataset import _cache, _loader, example_dir, load_benchmark
from wbray.dataset._layout import detect_layout
from wbray.errors import DataError


@pytest.fixture
def data(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    shutil.copytree(example_dir(), root)
    return root


def _no_strict_scan(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the files were checked again")

    monkeypatch.setattr(_loader, "scan_layout", refuse)


def test_a_second_load_of_unchanged_files_comes_from_the_cache_and_is_equal(
    data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    strict = load_benchmark(data)
    _no_strict_scan(monkeypatch)
    cached = load_benchmark(data)
    assert cached == strict  # queries (criteria in file key order), subsets, data version
    assert [list(c.item) for q in cached.queries for c in q.checklist] == [
        list(c.item) for q in strict.queries for c in q.checklist
    ]


def test_the_official_data_round_trips(official_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    strict = load_benchmark(official_dir)
    _no_strict_scan(monkeypatch)
    assert load_benchmark(official_dir) == strict


def test_a_changed_file_is_checked_again_and_its_defect_reported(data: Path) -> None:
    load_benchmark(data)
    queries = data / "queries.jsonl"
    with queries.open("a", encoding="utf-8") as f:
        f.write('{"index": "seven"}\n')
    with pytest.raises(DataError, match=r"queries\.jsonl:\d+.*index"):
        load_benchmark(data)


def test_a_file_going_away_is_noticed(data: Path) -> None:
    load_benchmark(data)
    r_file, _ = detect_layout(data).subset_files("style")  # type: ignore[union-attr]
    r_file.unlink()
    with pytest.raises(DataError, match="needs both its R and C files"):
        load_benchmark(data)


def test_same_size_and_content_but_a_new_mtime_misses(data: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    load_benchmark(data)
    queries = data / "queries.jsonl"
    st = queries.stat()
    os.utime(queries, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    _no_strict_scan(monkeypatch)
    with pytest.raises(AssertionError, match="checked again"):
        load_benchmark(data)


def test_a_corrupt_entry_is_ignored(data: Path) -> None:
    strict = load_benchmark(data)
    layout = detect_layout(data)
    assert layout is not None
    entry = _cache._entry_path(layout)
    assert entry.is_file()
    entry.write_bytes(b"\x93not msgpack at all")
    assert load_benchmark(data) == strict
    assert _cache.load_cached(layout, _cache.file_stamp(layout)) is not None  # rewritten


def test_a_cache_that_cannot_be_written_is_not_an_error(
    data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("x")
    monkeypatch.setenv("WBRAY_CACHE_DIR", str(blocker))
    first, second = load_benchmark(data), load_benchmark(data)
    assert first == second


def test_a_defective_directory_is_never_cached(data: Path) -> None:
    (data / "queries.jsonl").write_text('{"index": 1}\n', encoding="utf-8")
    for _ in range(2):
        with pytest.raises(DataError):
            load_benchmark(data)
    layout = detect_layout(data)
    assert layout is not None and not _cache._entry_path(layout).exists()
