"""``-o key.path=value`` overrides: numbers index into lists; every misuse names the override."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from wbray.config import VLLMEngineConfig, load_config
from wbray.errors import ConfigError

TWO_CANDIDATES: dict[str, Any] = {
    "candidates": [
        {"name": "a", "engine": {"backend": "transformers"}},
        {"name": "b", "engine": {"backend": "openai", "base_url": "http://127.0.0.1:9/v1", "model": "b"}},
    ],
    "data": {"indices": [1, 2]},
}


def test_a_number_indexes_into_a_list() -> None:
    config = load_config(TWO_CANDIDATES, ["candidates.1.engine.batch_size=2", "candidates.0.name=first"])
    assert [c.name for c in config.candidates] == ["first", "b"]
    assert config.candidates[1].engine.batch_size == 2
    assert config.candidates[0].engine.batch_size == 4  # the transformers default: untouched


def test_a_list_item_itself_can_be_replaced() -> None:
    assert load_config(TWO_CANDIDATES, ["data.indices.1=7"]).data.indices == [1, 7]


def test_the_callers_mapping_is_not_modified() -> None:
    before = copy.deepcopy(TWO_CANDIDATES)
    load_config(TWO_CANDIDATES, ["candidates.0.engine.batch_size=8", "data.indices.0=5"])
    assert before == TWO_CANDIDATES


def test_a_number_under_a_mapping_stays_a_key() -> None:
    base = {"judge": {"engine": {"backend": "vllm", "model": "m"}}}
    engine = load_config(base, ["judge.engine.engine_kwargs.7=x"]).judge.engine
    assert isinstance(engine, VLLMEngineConfig) and engine.engine_kwargs == {"7": "x"}


@pytest.mark.parametrize(
    ("base", "override", "message"),
    [
        (
            TWO_CANDIDATES,
            "candidates.2.engine.batch_size=2",
            "<args>: override 'candidates.2.engine.batch_size=2': candidates has 2 item(s), "
            "so index 2 is out of range (valid: 0..1)",
        ),
        (
            {},
            "candidates.0.engine.batch_size=2",
            "<args>: override 'candidates.0.engine.batch_size=2': candidates has 0 item(s), "
            "so index 0 is out of range",
        ),
        (
            TWO_CANDIDATES,
            "candidates.a.name=x",
            "<args>: override 'candidates.a.name=x': candidates is a list: write an item number in place "
            "of 'a' (valid: 0..1)",
        ),
        (
            TWO_CANDIDATES,
            "candidates.-1.name=x",
            "<args>: override 'candidates.-1.name=x': candidates is a list: write an item number in place "
            "of '-1' (valid: 0..1)",
        ),
        (
            TWO_CANDIDATES,
            "data.indices.5=3",
            "<args>: override 'data.indices.5=3': data.indices has 2 item(s), so index 5 is out of range "
            "(valid: 0..1)",
        ),
        (
            {},
            "judge..name=x",
            "<args>: override 'judge..name=x': empty key segment (write dotted keys such as "
            "judge.sampling.temperature)",
        ),
    ],
)
def test_a_misused_override_names_itself(base: dict[str, Any], override: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(base, [override])
    assert str(info.value) == message


def test_a_bad_value_in_a_list_item_names_the_field_as_written() -> None:
    with pytest.raises(ConfigError) as info:
        load_config(TWO_CANDIDATES, ["candidates.1.engine.max_concurrency=0"])
    assert str(info.value) == (
        "<args> (with -o overrides): candidates.1.engine.max_concurrency: "
        "Input should be greater than or equal to 1 (got 0)"
    )
