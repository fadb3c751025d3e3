"""Reading upstream score files: the fast path agrees with the strict one, and every malformed file
gets one clear defect naming file:line and field."""

from __future__ import annotations

import json
import random
import threading
from pathlib import Path

import numpy as np
import pytest

from wbray.aggregate import _scorefile, load_scores
from wbray.aggregate._keys import BenchKeys
from wbray.errors import DataError
from wbray.records import Criterion, Query


def _q(index: int, names: list[str]) -> Query:
    crits = tuple(Criterion(n, {"name": n}) for n in names)
    return Query(
        index=index, domain1="Education", domain2="Lesson Plan", query="q", checklist=crits, lang="en"
    )


QUERIES = [_q(1, ["a", "b"]), _q(2, ["a", "c"]), _q(3, ["清晰度", "d"])]
KEYS = BenchKeys.of(QUERIES)
GOOD = '{"index": 1, "scores": {"a": [{"score": 7, "reason": "ok"}], "b": [{"score": 3, "reason": "x"}]}}'


def _file(tmp_path: Path, data: bytes | str, name: str = "m.jsonl") -> Path:
    path = tmp_path / name
    path.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    return path


def _defects(path: Path) -> list[str]:
    cols, defects = _scorefile.read_score_file(path, keys=KEYS)
    assert defects, "expected defects"
    assert len(cols) == 0  # nothing half-read
    return [str(d) for d in defects]


BAD = {
    "truncated JSON": (GOOD + '\n{"index": 2, "scores": {"a": [{"score": 7', 2, "", "malformed JSON"),
    "index as text": (
        '{"index": "1", "scores": {"a": [{"score": 7}]}}',
        1,
        "index",
        "must be an integer, got '1'",
    ),
    "index true": (
        '{"index": true, "scores": {"a": [{"score": 7}]}}',
        1,
        "index",
        "must be an integer, got True",
    ),
    "scores a list": ('{"index": 1, "scores": [7]}', 1, "scores", "must be a non-empty object"),
    "scores empty": ('{"index": 1, "scores": {}}', 1, "scores", "must be a non-empty object"),
    "evaluations empty": ('{"index": 1, "scores": {"a": []}}', 1, "scores.a", "must be a non-empty list"),
    "evaluation not an object": ('{"index": 1, "scores": {"a": [7]}}', 1, "scores.a[0]", "must be an object"),
    "score as text": ('{"index": 1, "scores": {"a": [{"score": "7"}]}}', 1, "scores.a[0].score", "got '7'"),
    "score true": ('{"index": 1, "scores": {"a": [{"score": true}]}}', 1, "scores.a[0].score", "got True"),
    "score 7.5": ('{"index": 1, "scores": {"a": [{"score": 7.5}]}}', 1, "scores.a[0].score", "got 7.5"),
    "score 11": ('{"index": 1, "scores": {"a": [{"score": 11}]}}', 1, "scores.a[0].score", "got 11"),
    "score NaN": ('{"index": 1, "scores": {"a": [{"score": NaN}]}}', 1, "scores.a[0].score", "got nan"),
    "huge score": (
        '{"index": 1, "scores": {"a": [{"score": 1' + "0" * 400 + "}]}}",
        1,
        "scores.a[0].score",
        "...",
    ),
    "missing index": ('{"scores": {"a": [{"score": 7}]}}', 1, "index", "missing"),
    "missing scores": ('{"index": 1}', 1, "scores", "missing"),
    "missing score": (
        '{"index": 1, "scores": {"a": [{"reason": "no score"}]}}',
        1,
        "scores.a[0].score",
        "missing",
    ),
    "unknown index": (
        GOOD + '\n{"index": 99, "scores": {"a": [{"score": 7}]}}',
        2,
        "index",
        "99 is not a query",
    ),
    "unknown criterion": (
        '{"index": 2, "scores": {"a": [{"score": 7}], "b": [{"score": 7}]}}',
        1,
        "scores.b",
        "criterion 'b' for query 2 is not in its checklist",
    ),
    "blank line": (GOOD + "\n\n" + GOOD, 2, "", "blank line"),
    "two objects on a line": (GOOD + " " + GOOD, 1, "", "malformed JSON: Extra data"),
    "a JSON array": ("[1, 2]", 1, "", "expected a JSON object, got list"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_malformed_file_names_file_line_and_field(case: str, tmp_path: Path) -> None:
    content, line, field, message = BAD[case]
    path = _file(tmp_path, content + "\n")
    # The fast path hands it over (a decode it refuses, or a benchmark check that fails).
    fast = _scorefile._fast(path.read_bytes(), _scorefile._Vocabulary(KEYS.names))
    assert fast is None or _scorefile._checked(fast, KEYS) is None
    where = f"{path}:{line}: {field}: " if field else f"{path}:{line}: "
    shown = _defects(path)
    assert any(d.startswith(where) and message in d for d in shown), shown


def test_encoding_defects(tmp_path: Path) -> None:
    second = b'{"index": 2, "scores": {"a": [{"score": 7, "reason": "\xff"}]}}'
    bad_byte = _file(tmp_path, GOOD.encode() + b"\n" + second + b"\n")
    offset = second.index(b"\xff") + 1
    assert _defects(bad_byte) == [f"{bad_byte}:2: not valid UTF-8 (byte 0xff at offset {offset})"]
    bom = _file(tmp_path, b"\xef\xbb\xbf" + GOOD.encode() + b"\n", "bom.jsonl")
    assert _defects(bom) == [
        f"{bom}:1: starts with a UTF-8 byte-order mark (BOM): save the file as UTF-8 without BOM"
    ]
    deep = _file(
        tmp_path,
        '{"index": 1, "scores": {"a": [{"score": 7, "reason": ' + "[" * 200_000 + "]" * 200_000 + "}]}}\n",
        "deep.jsonl",
    )
    assert _defects(deep) == [f"{deep}:1: malformed JSON: nested too deeply to parse"]


def test_every_defect_of_every_file_in_one_error(tmp_path: Path) -> None:
    a = _file(
        tmp_path,
        '{"index": 1, "scores": {"a": [{"score": 0}]}}\n{"index": 77, "scores": {"a": [{"score": 1}]}}\n',
        "a.jsonl",
    )
    b = _file(tmp_path, "{oops\n", "b.jsonl")
    with pytest.raises(DataError) as info:
        load_scores([a, b], QUERIES)
    shown = [str(d) for d in info.value.defects]
    assert [s.split(": ")[0] for s in shown] == [f"{a}:1", f"{a}:2", f"{b}:1"]
    assert str(info.value).count("\n") == 0  # one line for the CLI


def test_a_50_mb_line(tmp_path: Path) -> None:
    reason = "长" * (50 * 2**20 // 3)
    line = json.dumps({"index": 1, "scores": {"a": [{"score": 4, "reason": reason}]}}, ensure_ascii=False)
    good = _file(tmp_path, line + "\n" + GOOD + "\n", "big.jsonl")
    cols, defects = _scorefile.read_score_file(good, keys=KEYS)
    assert not defects and cols.score.tolist() == [4.0, 7.0, 3.0] and cols.line.tolist() == [1, 2, 2]
    cut = _file(tmp_path, line[:-10] + "\n", "cut.jsonl")
    (shown,) = _defects(cut)
    assert shown.startswith(f"{cut}:1: malformed JSON") and len(shown) < 200 + len(str(cut))


def _random_file(rng: random.Random) -> str:
    lines = []
    for _ in range(30):
        q = rng.choice(QUERIES)
        names = [c.name for c in q.checklist if rng.random() < 0.8] or [q.checklist[0].name]
        obj = {
            "model": "extra keys are ignored, as upstream does",
            "index": q.index,
            "scores": {
                n: [
                    {
                        "score": rng.choice([rng.randint(1, 10), float(rng.randint(1, 10))]),
                        "reason": rng.choice(["", "x", {"nested": [1]}]),
                    }
                    for _ in range(rng.randint(1, 3))
                ]
                for n in names
            },
        }
        lines.append(json.dumps(obj, ensure_ascii=rng.random() < 0.5))
    end = rng.choice(["\n", "\r\n"])
    return end.join(lines) + rng.choice(["", end])


def test_fast_and_strict_paths_agree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Random valid files (repeated indices, float scores, CRLF, with or without a last newline, extra
    keys): the fast path reads them without falling back, and gives what the strict path gives."""
    rng = random.Random(5)
    for i in range(40):
        path = _file(tmp_path, _random_file(rng), f"r{i}.jsonl")
        for dedupe in (False, True):
            with monkeypatch.context() as m:
                m.setattr(_scorefile, "_strict", None)  # would raise if the fast path gave up
                fast, none = _scorefile.read_score_file(path, keys=KEYS, dedupe=dedupe)
            strict, none2 = _scorefile.read_score_file(path, keys=KEYS, dedupe=dedupe, reasons=True)
            assert not none and not none2
            for field in ("line", "index", "criterion", "repeat", "score"):
                assert np.array_equal(getattr(fast, field), getattr(strict, field)), (i, field)
            assert [str(n) for n in fast.notes] == [str(n) for n in strict.notes]
            assert strict.reason is not None and len(strict.reason) == len(strict.score)


def test_prefetch_in_worker_processes_reads_the_same(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Files decoded in forked workers give the same table, notes and defects as reading them here."""
    rng = random.Random(9)
    paths = [_file(tmp_path, _random_file(rng), f"m{i}.jsonl") for i in range(6)]
    bad = _file(tmp_path, GOOD + '\n{"index": 99, "scores": {"a": [{"score": 7}]}}\n', "bad.jsonl")
    monkeypatch.setattr(_scorefile, "PREFETCH_MIN_BYTES", 0)
    # Threads left by other tests in this process (servers, clients) would turn forking off.
    monkeypatch.setattr(_scorefile, "_other_threads", lambda: False)
    with _scorefile.Prefetch(paths, workers=2) as prefetch:
        assert prefetch.active
        fetched = load_scores(paths, QUERIES, prefetch=prefetch)
    plain = load_scores(paths, QUERIES)
    assert fetched.evaluations.equals(plain.evaluations)
    assert [str(n) for n in fetched.notes] == [str(n) for n in plain.notes] and plain.notes
    with _scorefile.Prefetch([*paths, bad], workers=2) as prefetch, pytest.raises(DataError) as info:
        load_scores([*paths, bad], QUERIES, prefetch=prefetch)
    assert [str(d) for d in info.value.defects] == [
        f"{bad}:2: index: 99 is not a query of the benchmark; were these scores made on another version?"
    ]
    # Not worth forking for a few bytes: the caller reads the files itself.
    monkeypatch.setattr(_scorefile, "PREFETCH_MIN_BYTES", 1 << 30)
    with _scorefile.Prefetch(paths, workers=2) as prefetch:
        assert not prefetch.active and prefetch.take(KEYS) == {}
    # Nor with another thread running, which a fork could catch holding a lock.
    monkeypatch.undo()
    monkeypatch.setattr(_scorefile, "PREFETCH_MIN_BYTES", 0)
    stop = threading.Event()
    other = threading.Thread(target=stop.wait, daemon=True)
    other.start()
    try:
        with _scorefile.Prefetch(paths, workers=2) as prefetch:
            assert not prefetch.active
        assert load_scores(paths, QUERIES).evaluations.equals(plain.evaluations)
    finally:
        stop.set()
        other.join()
