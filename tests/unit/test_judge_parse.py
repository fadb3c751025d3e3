"""Judge reply parsing: one fixture file per case, expectations in expected.json."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from wbray.judge import JudgeParseFailure, JudgeVerdict, parse_judge_reply

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "judge_replies"
EXPECTED: dict[str, dict[str, object]] = json.loads((FIXTURES / "expected.json").read_text(encoding="utf-8"))
CASES = sorted(p.name for p in FIXTURES.iterdir() if p.name != "expected.json")


def _read(name: str) -> str:
    # Bytes, not read_text: a fixture's \r or missing final newline is part of the case.
    return (FIXTURES / name).read_bytes().decode("utf-8")


def test_every_fixture_has_an_expectation_and_vice_versa() -> None:
    assert sorted(EXPECTED) == CASES, (
        f"without expectation: {sorted(set(CASES) - set(EXPECTED))}; "
        f"expectation without file: {sorted(set(EXPECTED) - set(CASES))}"
    )


def test_fixture_names_say_valid_or_invalid() -> None:
    for name in CASES:
        want_valid = "score" in EXPECTED.get(name, {})
        assert name.startswith("valid_" if want_valid else "invalid_"), name


@pytest.mark.parametrize("name", CASES)
def test_fixture(name: str) -> None:
    assert name in EXPECTED, f"{name} has no entry in expected.json"
    raw = _read(name)
    want = EXPECTED[name]
    got = parse_judge_reply(raw)
    if "why" in want:
        assert isinstance(got, JudgeParseFailure), got
        assert got.why == want["why"], got.detail
        assert got.raw == raw
        assert got.detail
    else:
        assert got == JudgeVerdict(score=want["score"], reason=want["reason"])  # type: ignore[arg-type]
        assert type(got.score) is int


@pytest.mark.parametrize(
    ("text", "score"),
    [
        ('{"score": 1e1, "reason": "x"}', 10),  # integral float in exponent form
        ('{"score": 3, "reason": "x", "details": {"score": 9, "reason": "nested"}}', 3),
        ('Verdict: {"score": 4, "reason": "x"} ({"score": 4, "reason": "x"})', 4),
        ('\ufeff{"score": 2, "reason": "leading BOM"}', 2),
        ('{"score": 6, "reason": "x"}\r\n', 6),
    ],
)
def test_more_valid_replies(text: str, score: int) -> None:
    got = parse_judge_reply(text)
    assert isinstance(got, JudgeVerdict), got
    assert got.score == score


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ('{"score": 7.000001, "reason": "x"}', "score_not_integer"),
        ('{"score": 1e400, "reason": "x"}', "score_not_integer"),  # decodes to inf
        ('{"score": Infinity, "reason": "x"}', "invalid_json"),
        ('{"score": {"value": 7}, "reason": "x"}', "score_not_integer"),
        ('{"score": 7, "reason": null}', "reason_not_string"),
        ('{"score": 7, "reason": "x", "reason": "y"}', "ambiguous"),
        ('[7, "good"]', "no_json_object"),
        ("{}", "missing_score"),
        ('{"score": 7, "reason": "a"} {"score": 7.0, "reason": "b"}', "ambiguous"),
        ("</think>", "empty"),
    ],
)
def test_more_invalid_replies(text: str, why: str) -> None:
    got = parse_judge_reply(text)
    assert isinstance(got, JudgeParseFailure), got
    assert got.why == why, got.detail


def test_does_not_evaluate_python() -> None:
    # A Python expression that would be a valid dict under eval/literal_eval stays a failure.
    got = parse_judge_reply("{'score': 3 + 4, 'reason': str(1)}")
    assert isinstance(got, JudgeParseFailure)
    assert got.why == "invalid_json"


def test_failure_keeps_the_full_raw_text_including_thoughts() -> None:
    raw = "<think>hmm</think>\n\nno verdict here"
    got = parse_judge_reply(raw)
    assert isinstance(got, JudgeParseFailure)
    assert got.raw == raw
    assert got.why == "no_json_object"


def test_long_reply_with_many_braces_is_fast() -> None:
    # Every "{" is a decode attempt; a reply full of them must still parse quickly.
    text = "{ " * 20_000 + '{"score": 5, "reason": "x"}'
    got = parse_judge_reply(text)
    assert got == JudgeVerdict(5, "x")
