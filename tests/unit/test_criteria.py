"""Criteria for new queries, without Ray or a model: the schema, the prompt, strict reply parsing,
the input checks and the batch task's re-ask mechanics (completions constructed by hand)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from wbray._rows import SourceRow
from wbray.config import load_config
from wbray.criteria import (
    CRITERIA_INPUT,
    CriteriaConfig,
    CriteriaParseFailure,
    CriteriaTask,
    CurationConfig,
    QueryDefaults,
    check_query_rows,
    criteria_schema,
    guess_lang,
    load_new_queries,
    parse_criteria_reply,
    prompt_version,
    render_criteria_messages,
)
from wbray.engines import Completion
from wbray.errors import ConfigError, DataError
from wbray.records import CRITERION_KEYS


def item(name: str, **changes: Any) -> dict[str, Any]:
    base = {
        "name": name,
        "criteria_description": f"Checks {name}.",
        "1-2": "missing",
        "3-4": "weak",
        "5-6": "partial",
        "7-8": "good",
        "9-10": "excellent",
    }
    return {**base, **changes}


FIVE = [item(n) for n in ("Tone", "Facts", "Structure", "Length", "Audience")]


def reply(items: list[Any], **extra: Any) -> str:
    return json.dumps({"criteria": items, **extra}, ensure_ascii=False)


# -- parsing ---------------------------------------------------------------------------------------


def test_a_valid_reply_gives_five_items_in_checklist_key_order() -> None:
    shuffled = [{k: v for k, v in reversed(list(it.items()))} for it in FIVE]
    got = parse_criteria_reply(f"Here you are:\n```json\n{reply(shuffled)}\n```")
    assert not isinstance(got, CriteriaParseFailure)
    assert [i["name"] for i in got] == ["Tone", "Facts", "Structure", "Length", "Audience"]
    assert all(list(i) == list(CRITERION_KEYS) for i in got)


def test_surrounding_whitespace_is_trimmed() -> None:
    got = parse_criteria_reply(reply([item(" Tone ", **{"9-10": " top\n"}), *FIVE[1:]]))
    assert not isinstance(got, CriteriaParseFailure)
    assert got[0]["name"] == "Tone" and got[0]["9-10"] == "top"


def test_thoughts_before_the_answer_are_skipped() -> None:
    text = '<think>maybe {"criteria": []}</think>\n' + reply(FIVE)
    assert not isinstance(parse_criteria_reply(text), CriteriaParseFailure)


@pytest.mark.parametrize(
    ("text", "why", "detail"),
    [
        ("", "empty", "no text"),
        ("  \n", "empty", "no text"),
        (None, "empty", "no text"),
        ("Tone, Facts, Structure", "no_json_object", '"criteria"'),
        ("{'criteria': []}", "no_json_object", "double quotes"),
        (json.dumps({"items": FIVE}), "no_json_object", '"criteria"'),
        (reply(FIVE) + reply(FIVE[:4]), "ambiguous", "2 different"),
        (reply(FIVE[:4]), "invalid_criteria", "expected exactly 5 criteria, got 4"),
        (reply([*FIVE, item("Six")]), "invalid_criteria", "got 6"),
        (
            reply([*FIVE[:4], item("tone ")]),
            "invalid_criteria",
            "criteria[4].name: 'tone' repeats criteria[0]",
        ),
        (reply([*FIVE[:4], item("Style", **{"5-6": "  "})]), "invalid_criteria", "criteria[4].5-6: empty"),
        (
            reply([*FIVE[:4], item("Style", **{"7-8": 7})]),
            "invalid_criteria",
            "criteria[4].7-8: expected a string",
        ),
        (reply([*FIVE[:4], item("Style", score="x")]), "invalid_criteria", "unknown key(s) 'score'"),
        (reply([*FIVE[:4], {"name": "Style"}]), "invalid_criteria", "missing key(s) criteria_description"),
        (reply([*FIVE[:4], "Style"]), "invalid_criteria", "criteria[4]: expected an object"),
        (reply(FIVE, note="hi"), "invalid_criteria", "unknown top-level key(s) 'note'"),
        (json.dumps({"criteria": "five"}), "invalid_criteria", "expected an array"),
        (reply([*FIVE[:4], item("Style", **{"1-2": "\ud800"})]), "invalid_criteria", "unpaired surrogate"),
    ],
)
def test_bad_replies_fail_with_a_reason(text: str | None, why: str, detail: str) -> None:
    got = parse_criteria_reply(text)
    assert isinstance(got, CriteriaParseFailure)
    assert (got.why, got.raw) == (why, text or "")
    assert detail in got.detail


def test_every_problem_of_a_reply_is_named_at_once() -> None:
    bad = [item("A"), item("a"), item("B", **{"3-4": ""}), item("C"), item("D", extra="x")]
    got = parse_criteria_reply(reply(bad))
    assert isinstance(got, CriteriaParseFailure)
    assert got.detail.split("; ") == [
        "criteria[1].name: 'a' repeats criteria[0]'s name",
        "criteria[2].3-4: empty",
        "criteria[4]: unknown key(s) 'extra' (allowed: name, criteria_description, 1-2, 3-4, 5-6, 7-8, 9-10)",
    ]


def test_a_repeated_key_is_not_silently_collapsed() -> None:
    text = reply(FIVE)[:-3] + ', "name": "Other"}]}'  # the last item names itself twice
    got = parse_criteria_reply(text)
    assert isinstance(got, CriteriaParseFailure) and "name given twice" in got.detail


# -- schema and prompt -----------------------------------------------------------------------------


def test_the_schema_asks_for_exactly_five_bounded_checklist_items() -> None:
    schema = criteria_schema(name_max_chars=30, text_max_chars=200)
    arr = schema["properties"]["criteria"]
    assert (arr["minItems"], arr["maxItems"]) == (5, 5)
    props = arr["items"]["properties"]
    assert list(props) == list(CRITERION_KEYS) == arr["items"]["required"]
    assert props["name"]["maxLength"] == 30
    assert {props[k]["maxLength"] for k in CRITERION_KEYS[1:]} == {200}
    assert all(p["minLength"] == 1 for p in props.values())
    assert arr["items"]["additionalProperties"] is False and schema["additionalProperties"] is False


def test_the_prompt_carries_the_query_context_and_language() -> None:
    msgs = render_criteria_messages("Write a toast.", "Life", "Speeches", "zh")
    assert [m["role"] for m in msgs] == ["system", "user"]
    user = msgs[1]["content"]
    assert "Write a toast." in user and "(Life / Speeches)" in user and "Simplified Chinese" in user
    assert '{"criteria": [{"name": "...", "criteria_description": "..."' in user
    assert "English" in render_criteria_messages("q", "a", "b", "en")[1]["content"]


def test_a_reask_shows_the_rejected_reply_and_its_problems() -> None:
    msgs = render_criteria_messages("q", "a", "b", "en", retry=("{bad}", "criteria[1].name: empty"))
    assert [m["role"] for m in msgs] == ["system", "user", "assistant", "user"]
    assert msgs[2]["content"] == "{bad}"
    assert "criteria[1].name: empty" in msgs[3]["content"]


def test_the_prompt_version_names_the_wording() -> None:
    version = prompt_version()
    assert version.startswith("criteria-") and len(version) == len("criteria-") + 12


# -- input -----------------------------------------------------------------------------------------


def rows(*values: Any) -> list[SourceRow]:
    return [SourceRow(i, v) for i, v in enumerate(values, start=1)]


def test_missing_fields_take_stated_defaults_and_queries_are_numbered() -> None:
    queries, defects = check_query_rows(
        rows({"query": "Write a toast."}, {"query": "写一首关于春天的诗。", "domain1": "Literature & Arts"}),
        "q.jsonl",
        QueryDefaults(domain1="Team", domain2="Misc"),
    )
    assert defects == []
    assert [(q.index, q.domain1, q.domain2, q.lang) for q in queries] == [
        (1, "Team", "Misc", "en"),
        (2, "Literature & Arts", "Misc", "zh"),
    ]
    assert queries[0].defaulted == ("index", "domain1", "domain2", "lang")
    assert queries[1].defaulted == ("index", "domain2", "lang")


def test_given_fields_win_and_nulls_count_as_absent() -> None:
    queries, defects = check_query_rows(
        rows(
            {"index": 7, "query": "Q", "domain1": "A", "domain2": "B", "lang": "zh"},
            {"index": 3, "query": "R", "domain1": None, "lang": None},
        ),
        "q.parquet",
        QueryDefaults(lang="en"),
    )
    assert defects == []
    assert [(q.index, q.domain1, q.lang) for q in queries] == [(7, "A", "zh"), (3, "Custom", "en")]


def test_every_defect_is_named_by_file_line_and_field() -> None:
    _, defects = check_query_rows(
        rows(
            {"index": 1, "query": "ok"},
            {"index": 1, "query": "dup"},
            {"query": "no index"},
            {"index": True, "query": "bool"},
            {"index": 5, "query": "  "},
            {"index": 6, "query": "x", "lang": "fr", "qurey": "typo"},
            ["not", "an", "object"],
        ),
        "q.jsonl",
        QueryDefaults(),
    )
    shown = [str(d) for d in defects]
    assert shown == [
        "q.jsonl:2: index: duplicate index 1 (also on line 1)",
        "q.jsonl:3: index: missing, while other rows give one (give every row an index, or none and "
        "they are numbered 1..N in file order)",
        "q.jsonl:4: index: expected a non-negative integer, got True",
        "q.jsonl:5: query: empty",
        "q.jsonl:6: qurey: unknown key (a query row has: index, domain1, domain2, lang, query)",
        "q.jsonl:6: lang: expected one of 'zh', 'en', got 'fr'",
        "q.jsonl:7: expected a JSON object, got list",
    ]


@pytest.mark.parametrize(
    ("text", "lang"),
    [
        ("Write a poem.", "en"),
        ("请写一首诗。", "zh"),
        ("用 Python 写一个 README 的介绍段落", "zh"),
        ("Explain 气", "en"),
    ],
)
def test_lang_detection(text: str, lang: str) -> None:
    assert guess_lang(text) == lang


def test_a_bad_file_is_one_error_naming_the_line(tmp_path: Path) -> None:
    path = tmp_path / "q.jsonl"
    path.write_text('{"query": "fine"}\n{"query": 3}\nnot json\n', encoding="utf-8")
    with pytest.raises(DataError) as err:
        load_new_queries(str(path))
    assert str(err.value) == f"bad query file: {path}:2: query: expected a string, got int (and 1 more)"
    assert [d.line for d in err.value.defects] == [2, 3]


def test_parquet_queries_are_read(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "q.parquet"
    pq.write_table(pa.table({"query": ["A task.", "Another."], "lang": ["en", None]}), path)
    queries = load_new_queries(str(path))
    assert [(q.index, q.query, q.lang, q.line) for q in queries] == [
        (1, "A task.", "en", 1),
        (2, "Another.", "en", 2),
    ]


def test_an_unknown_extension_is_refused(tmp_path: Path) -> None:
    from wbray.errors import WbrayError

    with pytest.raises(WbrayError, match=r"unknown file type \(use one of .jsonl, .ndjson, .parquet\)"):
        load_new_queries(str(tmp_path / "q.csv"))


# -- config ----------------------------------------------------------------------------------------


def test_the_config_file_is_strict(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("criteria:\n  engine: {backend: transformers}\n  max_reask: 1\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"unknown key 'criteria.max_reask'; did you mean 'max_reasks'\?"):
        load_config(path, None, CurationConfig)
    path.write_text("criteria:\n  sampling: {temperature: 0}\njudge:\n", encoding="utf-8")
    cfg = load_config(path, ["criteria.defaults.lang=zh"], CurationConfig)
    # A sampling field given in the file overrides the default one by one.
    assert (cfg.criteria.sampling.temperature, cfg.criteria.sampling.max_tokens) == (0, 4096)
    assert cfg.criteria.defaults.lang == "zh" and cfg.judge.engine is None


# -- the batch task --------------------------------------------------------------------------------


def task_rows() -> list[dict[str, Any]]:
    return [
        {"key": "1", "query": "Write a toast.", "domain1": "Life", "domain2": "Speech", "lang": "en"},
        {"key": "2", "query": "Write a memo.", "domain1": "Work", "domain2": "Memo", "lang": "en"},
        {"key": "3", "query": "Write a poem.", "domain1": "Art", "domain2": "Poem", "lang": "en"},
    ]


def test_the_task_reasks_with_the_problems_then_fails_with_a_reason() -> None:
    task = CriteriaTask(CriteriaConfig(max_reasks=1))
    assert task.max_passes == 2
    state = task.prepare(task_rows())
    first = task.requests(state)
    assert all(r is not None and r.json_schema == task.schema for r in first)
    dup = reply([*FIVE[:4], item("Tone")])
    state = task.absorb(
        state,
        {
            0: Completion(text=reply(FIVE), prompt_tokens=10, completion_tokens=5),
            1: Completion(text=dup, finish_reason="stop"),
            2: Completion.failed("http 500 after 2 retries"),
        },
    )
    assert [r["status"] for r in state] == ["ok", "pending", "failed"]
    second = task.requests(state)
    assert second[0] is None and second[2] is None  # settled rows are not asked again
    assert second[1] is not None
    assert (
        second[1].messages[2]["content"] == dup and "repeats criteria[0]" in second[1].messages[3]["content"]
    )
    state = task.absorb(state, {1: Completion(text="{", finish_reason="length")})
    done = task.finish(state)
    assert [r["status"] for r in done] == ["ok", "failed", "failed"]
    assert json.loads(done[0]["checklist_json"])[0]["name"] == "Tone"
    assert done[1]["error"].startswith(
        "no valid criteria after 2 call(s): no_json_object (the reply was cut off"
    )
    assert done[1]["raw"] == "{" and done[1]["attempts"] == 2
    assert done[2]["error"] == "engine: http 500 after 2 retries" and done[2]["attempts"] == 1
    assert done[0]["prompt_tokens"] == 10 and done[0]["completion_tokens"] == 5


def test_the_task_states_its_row_contract() -> None:
    from wbray.errors import WbrayError

    task = CriteriaTask(CriteriaConfig())
    with pytest.raises(WbrayError, match=r"criteria: input rows lack columns \['lang'\]"):
        task.prepare([{k: "x" for k in CRITERIA_INPUT if k != "lang"}])
    prepared = task.prepare(task_rows())
    assert task.prepare(prepared) == prepared  # idempotent: a processor backend prepares every pass


def test_the_task_runs_as_vllm_processor_passes() -> None:
    """The vLLM backend drives a task one ``ray.data.llm`` pass per round (pre/postprocess per row);
    recorded processor output columns stand in for the engine."""
    from wbray.engines._vllm import processor_request, processor_result

    task = CriteriaTask(CriteriaConfig(max_reasks=1))

    def run_pass(rows: list[dict[str, Any]], first: bool, texts: list[str]) -> tuple[list[Any], list[Any]]:
        sent = [processor_request(task, r, first) for r in rows]
        outputs = [{"generated_text": t, "num_input_tokens": 50, "num_generated_tokens": 9} for t in texts]
        return sent, [processor_result(task, {**s, **o}) for s, o in zip(sent, outputs, strict=True)]

    sent, rows = run_pass(task_rows()[:2], True, [reply(FIVE), reply(FIVE[:3])])
    assert all(s["sampling_params"]["structured_outputs"]["json"] == task.schema for s in sent)
    sent, rows = run_pass(rows, False, ["unused", reply(FIVE)])
    assert sent[0]["__wbray_skip__"] and not sent[1]["__wbray_skip__"]
    assert "expected exactly 5 criteria, got 3" in sent[1]["messages"][3]["content"]  # the re-ask says why
    done = task.finish(rows)
    assert [(r["status"], r["attempts"]) for r in done] == [("ok", 1), ("ok", 2)]


def test_the_readme_config_example_loads() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    section = readme.split("## SFT data curation", 1)[1]
    block = section.split("```yaml\n", 1)[1].split("```", 1)[0]
    cfg = load_config(yaml.safe_load(block), None, CurationConfig)
    assert cfg.criteria.engine is not None and cfg.judge.engine is not None
