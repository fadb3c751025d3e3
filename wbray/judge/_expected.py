"""Probability-weighted judge scores: the expected score over 1-10 from the judge's token logprobs.

A sampled score is one draw from the judge's distribution; its expectation is smoother and cheaper to
stabilise than repeats. The catch is tokenisation: many tokenizers write every digit as its own
token, so "10" is "1" then "0" and the first score position cannot tell 1 from 10. Two positions
resolve it: P(first digit) at the score position, and P(next token | "1") right after a "1" — the
"0" continuation makes 10, a non-digit ends the number at 1, another digit (11..19) is out of range
and dropped. Tokenizers with a single "10" token (e.g. tiktoken's) need only the first position.

Pure functions over logprob tables; asking an engine for the logprobs is the engine's job.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

from wbray.judge._parse import SCORE_MAX, SCORE_MIN

#: Leading markers some tokenizers put on a piece that starts with a space (GPT-2 "Ġ", SentencePiece "▁").
_SPACE_MARKERS: Final[str] = " \t\n\r\u0120\u2581"
_DIGITS: Final[re.Pattern[str]] = re.compile(r"\d+")
# Where a score value starts in a judge reply (JSON key, optional whitespace, colon).
_SCORE_KEY: Final[re.Pattern[str]] = re.compile(r'"score"\s*:\s*')
_THINK_END: Final[str] = "</think>"
#: Ambiguous "1" mass (share of the valid mass) below which the expectation is still reported.
DEFAULT_TOLERANCE: Final[float] = 0.01


@dataclass(frozen=True)
class ScoreDistribution:
    """The judge's distribution over the scores 1..10 at one score position.

    Attributes:
        probs: P(score = s) for s = 1..10, renormalised over the valid scores (sums to 1).
        expected: The expected score; None when the "1"-versus-"10" split is unknown for more than the
            tolerance share of the mass (see ``ambiguous``).
        low: The expected score if all ambiguous "1" mass were score 1.
        high: The expected score if all of it were score 10 (``low == high`` when resolved).
        mass: Probability of a valid score at the first position before renormalisation (how well the
            judge kept to the format; low values mean the top-k list missed most of the mass).
        ambiguous: Share of the valid mass that is a bare "1" whose continuation is unknown.
    """

    probs: tuple[float, ...]
    expected: float | None
    low: float
    high: float
    mass: float
    ambiguous: float


@dataclass(frozen=True)
class TokenLogprobs:
    """One generated token with the top alternatives at its position.

    Attributes:
        token: The sampled token's decoded text (e.g. ``" 7"``).
        logprob: Its natural-log probability.
        top: Decoded text -> logprob of the top-k alternatives at this position (may include the
            sampled token).
    """

    token: str
    logprob: float
    top: Mapping[str, float] = field(default_factory=dict)


def _strip_space(text: str) -> str:
    return text.lstrip(_SPACE_MARKERS)


def _first_position(first: Mapping[str, float]) -> tuple[dict[int, float], float]:
    """Probability per complete score, and the bare-"1" probability that may continue into "10"."""
    complete = dict.fromkeys(range(SCORE_MIN, SCORE_MAX + 1), 0.0)
    bare_one = 0.0
    for token, logprob in first.items():
        text = _strip_space(token)
        m = _DIGITS.match(text)
        if not m:
            continue
        p = math.exp(logprob)
        digits, rest = m.group(), text[m.end() :]
        if digits == "1" and not rest:
            bare_one += p
        elif digits.isdigit() and str(int(digits)) == digits and SCORE_MIN <= int(digits) <= SCORE_MAX:
            # "7", "7,", "10", "10}": the number is complete. A bare "2".."9" could still continue
            # into 20..99, out of range; that is the judge breaking the format, not a score.
            complete[int(digits)] += p
    return complete, bare_one


def _after_one(after: Mapping[str, float]) -> tuple[float, float]:
    """(P(continuation "0" then end), P(end right after "1")) from the position after a "1"."""
    zero = other_digit = 0.0
    for token, logprob in after.items():
        p = math.exp(logprob)
        if token.startswith("0"):
            # "0" or "0}" ends the number at 10; "00" would make 100.
            if len(token) > 1 and token[1].isdigit():
                other_digit += p
            else:
                zero += p
        elif token[:1].isdigit():
            other_digit += p  # 11..19: out of range, dropped
    # Whatever is not a digit ends the number at 1, including the mass beyond the top-k list.
    end = max(0.0, 1.0 - zero - other_digit)
    return zero, end


def score_distribution(
    first: Mapping[str, float],
    after_one: Mapping[str, float] | None = None,
    *,
    tolerance: float = DEFAULT_TOLERANCE,
) -> ScoreDistribution | None:
    """The score distribution from the top logprobs at the score position (and after a "1").

    Tokens are matched on their decoded text with leading whitespace (and the "Ġ"/"▁" space markers)
    removed: "7", " 7", "7," and "7}" are score 7, "10" is 10, a bare "1" is 1 or the start of 10.
    Several tokens meaning the same score add up.

    Args:
        first: Decoded token -> logprob at the first position of the score value (top-k; k >= 10 so
            that every digit can appear).
        after_one: Decoded token -> logprob at the next position, conditioned on a "1" there (from a
            sampled "1", or from a forced second pass over prompt + prefix + "1"); None when unknown.
            Here "0" makes 10, another digit (11..19) is dropped, and the rest of the mass — any
            non-digit, listed or not — ends the number at 1.
        tolerance: Largest share of unresolved bare-"1" mass for which ``expected`` is still given
            (counting that mass as score 1); above it ``expected`` is None and ``low``/``high`` bound it.

    Returns:
        The distribution, or None when no listed token is a valid score.
    """
    complete, bare_one = _first_position(first)
    resolved = after_one is not None
    if after_one is not None:
        zero, end = _after_one(after_one)
        complete[10] += bare_one * zero
        complete[1] += bare_one * end
        bare_one = 0.0
    mass = sum(complete.values()) + bare_one
    if mass <= 0.0:
        return None
    probs_low = dict(complete)
    probs_low[1] += bare_one
    probs = tuple(probs_low[s] / mass for s in range(SCORE_MIN, SCORE_MAX + 1))
    low = sum(s * p for s, p in zip(range(SCORE_MIN, SCORE_MAX + 1), probs, strict=True))
    share = 0.0 if resolved else bare_one / mass
    high = low + share * (10 - 1)
    expected = low if share <= tolerance else None
    return ScoreDistribution(probs=probs, expected=expected, low=low, high=high, mass=mass, ambiguous=share)


def _score_token(steps: Sequence[TokenLogprobs]) -> tuple[int, int] | None:
    """(token position, character offset inside it) where the reply's score value starts."""
    text = "".join(s.token for s in steps)
    start = text.find(_THINK_END)
    # Like the reply parser, only what follows the first </think> is the answer.
    search_from = start + len(_THINK_END) if start >= 0 else 0
    m = _SCORE_KEY.search(text, search_from)
    if m is None:
        return None
    value_at = m.end()
    offset = 0
    for i, step in enumerate(steps):
        if offset <= value_at < offset + len(step.token):
            return i, value_at - offset
        offset += len(step.token)
    return None


def expected_score(
    steps: Sequence[TokenLogprobs], *, tolerance: float = DEFAULT_TOLERANCE
) -> ScoreDistribution | None:
    """The score distribution of a sampled judge reply, from its per-token top logprobs.

    Finds the first ``"score":`` key (after ``</think>`` when present) in the reply, takes the top
    alternatives at the token where the value starts, and — when that token is a bare "1" — the
    alternatives at the next position, which are then conditioned on "1". When the sampled first
    digit is not "1", the next position says nothing about "1" versus "10", so a large "1"
    alternative leaves ``expected`` None (bounded by ``low``/``high``); a forced second pass
    (:func:`score_distribution` with ``after_one``) resolves it.

    A token that starts before the value (e.g. ``": 7"`` in a tokenizer that merges them) is handled
    by removing that same leading text from every alternative at the position.

    Returns:
        The distribution, or None when the reply has no ``"score":`` key followed by a token, or no
        valid score among the alternatives.
    """
    found = _score_token(steps)
    if found is None:
        return None
    i, cut = found
    step = steps[i]
    prefix = step.token[:cut]
    top = dict(step.top) or {step.token: step.logprob}
    top.setdefault(step.token, step.logprob)
    first = {t[len(prefix) :]: lp for t, lp in top.items() if t.startswith(prefix)}
    after: Mapping[str, float] | None = None
    if _strip_space(step.token[cut:]) == "1" and i + 1 < len(steps):
        nxt = steps[i + 1]
        after = dict(nxt.top) or {nxt.token: nxt.logprob}
    return score_distribution(first, after, tolerance=tolerance)
