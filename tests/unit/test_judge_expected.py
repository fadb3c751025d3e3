"""Probability-weighted scores on constructed logprob tables with hand-computed expectations."""

from __future__ import annotations

import math

import pytest

from wbray.judge import TokenLogprobs, expected_score, score_distribution

ln = math.log


def test_single_token_ten() -> None:
    dist = score_distribution({"7": ln(0.5), "8": ln(0.3), "10": ln(0.2)})
    assert dist is not None
    assert dist.expected == pytest.approx(0.5 * 7 + 0.3 * 8 + 0.2 * 10)
    assert dist.mass == pytest.approx(1.0)
    assert dist.probs[9] == pytest.approx(0.2) and dist.probs[0] == 0.0
    assert dist.ambiguous == 0.0 and dist.low == dist.high == dist.expected


def test_two_positions_split_one_and_ten() -> None:
    # P(first="1") = .4, P(9) = .6; after "1": "0" .75, "}" .2, "5" .05 (=15, out of range).
    dist = score_distribution({"1": ln(0.4), "9": ln(0.6)}, {"0": ln(0.75), "}": ln(0.2), "5": ln(0.05)})
    assert dist is not None
    p10, p1, p9 = 0.4 * 0.75, 0.4 * (1 - 0.75 - 0.05), 0.6
    mass = p10 + p1 + p9
    assert dist.mass == pytest.approx(mass)
    assert dist.probs[9] == pytest.approx(p10 / mass)
    assert dist.probs[0] == pytest.approx(p1 / mass)
    assert dist.expected == pytest.approx((10 * p10 + 1 * p1 + 9 * p9) / mass)
    assert sum(dist.probs) == pytest.approx(1.0)


def test_mass_beyond_the_top_list_after_one_ends_the_number() -> None:
    # Only "0" is listed after "1" (p .3): the unlisted .7 is some non-digit, i.e. the score 1.
    dist = score_distribution({"1": 0.0}, {"0": ln(0.3)})
    assert dist is not None
    assert dist.probs[9] == pytest.approx(0.3) and dist.probs[0] == pytest.approx(0.7)
    assert dist.expected == pytest.approx(0.3 * 10 + 0.7 * 1)


def test_unresolved_one_gives_bounds_not_a_guess() -> None:
    dist = score_distribution({"1": ln(0.5), "8": ln(0.5)})
    assert dist is not None
    assert dist.expected is None
    assert dist.ambiguous == pytest.approx(0.5)
    assert dist.low == pytest.approx(0.5 * 1 + 0.5 * 8)
    assert dist.high == pytest.approx(0.5 * 10 + 0.5 * 8)


def test_negligible_unresolved_one_is_tolerated() -> None:
    dist = score_distribution({"1": ln(0.005), "8": ln(0.995)})
    assert dist is not None and dist.expected is not None
    assert dist.expected == pytest.approx(0.005 * 1 + 0.995 * 8)
    strict = score_distribution({"1": ln(0.005), "8": ln(0.995)}, tolerance=0.001)
    assert strict is not None and strict.expected is None


def test_token_spellings_add_up_and_junk_is_ignored() -> None:
    table = {
        "\u01207": ln(0.2),
        " 7": ln(0.1),
        "\u25818": ln(0.2),
        "8,": ln(0.1),
        '"': ln(0.2),
        "11": ln(0.1),
    }
    dist = score_distribution(table)
    assert dist is not None
    assert dist.mass == pytest.approx(0.6)  # the quote and the out-of-range "11" are not scores
    assert dist.expected == pytest.approx((7 * 0.3 + 8 * 0.3) / 0.6)


def test_no_valid_score_is_none() -> None:
    assert score_distribution({"a": 0.0, "0": ln(0.5)}) is None


def _steps(tokens: list[str], tops: dict[int, dict[str, float]]) -> list[TokenLogprobs]:
    return [TokenLogprobs(t, tops.get(i, {}).get(t, 0.0), tops.get(i, {})) for i, t in enumerate(tokens)]


def test_sampled_reply_with_two_token_ten() -> None:
    tokens = ['{"', "score", '":', " ", "1", "0", ",", ' "', "reason", '":', ' "', "ok", '"}']
    steps = _steps(tokens, {4: {"1": ln(0.6), "9": ln(0.4)}, 5: {"0": ln(0.9), ",": ln(0.1)}})
    dist = expected_score(steps)
    assert dist is not None
    assert dist.expected == pytest.approx(0.6 * 0.9 * 10 + 0.6 * 0.1 * 1 + 0.4 * 9)


def test_sampled_seven_cannot_split_a_large_one() -> None:
    tokens = ['{"score": ', "7", ', "reason": "x"}']
    steps = _steps(tokens, {1: {"7": ln(0.6), "1": ln(0.4)}, 2: {', "reason': ln(0.99)}})
    dist = expected_score(steps)
    assert dist is not None
    assert dist.expected is None
    assert (dist.low, dist.high) == pytest.approx((0.6 * 7 + 0.4 * 1, 0.6 * 7 + 0.4 * 10))


def test_token_merging_colon_and_digit() -> None:
    tokens = ['{"score', '": 7', ', "reason": "x"}']
    steps = _steps(tokens, {1: {'": 7': ln(0.7), '": 8': ln(0.3), '":': ln(0.0001)}})
    dist = expected_score(steps)
    assert dist is not None
    assert dist.expected == pytest.approx((0.7 * 7 + 0.3 * 8) / 1.0, rel=1e-3)


def test_thinking_before_the_answer_is_skipped() -> None:
    tokens = ['<think>maybe "score": ', "3", "</think>", '{"score": ', "6", "}"]
    steps = _steps(tokens, {1: {"3": 0.0}, 4: {"6": ln(0.5), "5": ln(0.5)}})
    dist = expected_score(steps)
    assert dist is not None and dist.expected == pytest.approx(5.5)


def test_reply_without_score_key() -> None:
    assert expected_score(_steps(["The", " answer", " is", " 7"], {})) is None
