"""``wbray browse`` and ``wbray agreement`` end to end (a run on disk, export dirs, a real HTTP judge)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.run_tables import FLAGGED, MODELS, example_run
from tests.helpers.scripted_openai import ScriptedOpenAIServer, reply
from wbray.aggregate import write_upstream_responses, write_upstream_scores
from wbray.cli import main
from wbray.storage import RunLayout, commit_stage, write_generations, write_manifest, write_scores


def _page_data(path: Path) -> dict[str, Any]:
    page = path.read_text(encoding="utf-8")
    m = re.search(r'<script type="application/json" id="wb-data">(.*?)</script>', page, re.DOTALL)
    assert m, "expected a plain data element"
    return json.loads(m.group(1))


def test_browse_example_scores(tmp_path: Path) -> None:
    out = tmp_path / "page.html"
    assert main(["browse", "example", "--out", str(out), "--resamples", "50"]) == 0
    data = _page_data(out)
    assert data["models"] == ["demo-model-a", "demo-model-b"]
    assert data["gen"] == [] and len(data["queries"]) == 12
    assert data["board"][0][0][1] is not None  # an interval, not just the estimate


def test_browse_export_dir_picks_up_responses_and_flags(tmp_path: Path) -> None:
    _, ev, gen = example_run()
    write_upstream_scores(ev, tmp_path / "export")
    write_upstream_responses(gen, tmp_path / "export")
    out = tmp_path / "page.html"
    code = main(
        ["browse", str(tmp_path / "export"), "--data-dir", "example", "--out", str(out), "--resamples", "0"]
    )
    assert code == 0
    data = _page_data(out)
    assert sorted(data["models"]) == sorted(MODELS)
    assert len(data["gen"]) == len(gen)  # 23 answers and the failed one from the sidecar
    assert {data["queries"][j][0] for _, j, _, _ in data["flags"]} == FLAGGED
    assert any(r[5] for r in data["ev"])  # reasons came along


def _write_run(root: Path) -> RunLayout:
    """A run on disk without Ray: committed parquet parts and a manifest naming the example data."""
    _, ev, gen = example_run()
    layout = RunLayout.at(str(root))
    for model in MODELS:
        g = gen[gen["model"] == model].to_dict("records")
        write_generations(layout, model, [{**r, "row_id": f"g-{model}-{r['index']}"} for r in g])
        commit_stage(layout.generations(model))
        s = ev[ev["model"] == model].to_dict("records")
        write_scores(layout, "j", model, [{**r, "row_id": f"s-{model}-{i}"} for i, r in enumerate(s)])
        commit_stage(layout.scores("j", model))
    write_manifest(layout, {"data": {"source": "example"}})
    return layout


def test_browse_run_defaults_to_its_reports_dir(tmp_path: Path) -> None:
    layout = _write_run(tmp_path / "run")
    assert main(["browse", layout.root, "--resamples", "20"]) == 0
    page = Path(layout.report("browse.html"))
    data = _page_data(page)
    assert sorted(data["models"]) == sorted(MODELS)
    assert len(data["ev"]) == sum(len(q) for q in [data["queries"][j][6] for j in range(12)]) * 2
    assert any(r[6] for r in data["ev"]) and any(r[4] for r in data["gen"])  # failures kept


def test_browse_needs_out_unless_one_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["browse", "example"]) == 1
    assert "give --out" in capsys.readouterr().err


def test_browse_refuses_a_model_from_two_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    one, two = _write_run(tmp_path / "one"), _write_run(tmp_path / "two")
    assert main(["browse", one.root, two.root, "--out", str(tmp_path / "p.html")]) == 1
    assert "model 'alpha' appears twice" in capsys.readouterr().err


HUMAN = [
    {
        "query": "Write a slogan.",
        "domain1": "Advertising & Marketing",
        "response_a": "GOOD one",
        "response_b": "BAD one",
        "preferred": "a",
    },
    {
        "query": "Write a memo.",
        "domain1": "Finance & Business",
        "response_a": "BAD two",
        "response_b": "GOOD two",
        "preferred": "b",
    },
    {
        "query": "Write a poem.",
        "domain1": "Literature & Arts",
        "response_a": "GOOD three",
        "response_b": "BAD three",
        "preferred": "b",
    },
    {
        "query": "Write a plan.",
        "domain1": "Education",
        "response_a": "GOOD four",
        "response_b": "BAD four",
        "preferred": "tie",
    },
]


def _judge(request: Any, attempt: int) -> Any:
    user = request["messages"][-1]["content"]
    return reply(json.dumps({"score": 8 if "GOOD" in user else 2, "reason": "scripted"}))


def test_agreement_cli_with_an_http_judge(tmp_path: Path) -> None:
    human = tmp_path / "human.jsonl"
    human.write_text("".join(json.dumps(r) + "\n" for r in HUMAN), encoding="utf-8")
    out = tmp_path / "agreement.json"
    with ScriptedOpenAIServer(_judge) as srv:
        cfg = tmp_path / "judge.yaml"
        cfg.write_text(
            f"name: http-judge\nmax_reasks: 0\n"
            f"engine: {{backend: openai, base_url: '{srv.base_url}', model: m, max_retries: 0}}\n"
        )
        code = main(
            [
                "agreement",
                str(human),
                "--judge-config",
                str(cfg),
                "--modes",
                "global,domain",
                "--out",
                str(out),
            ]
        )
        n_requests = len(srv.requests)
    assert code == 0
    report = json.loads(out.read_text(encoding="utf-8"))
    overall = {r["mode"]: r for r in report["summary"] if r["domain1"] == "(all)"}
    # Decisive pairs 1-3: the judge prefers GOOD each time; humans preferred GOOD twice.
    assert {m: (r["decisive"], r["agree"]) for m, r in overall.items()} == {
        "global": (3, 2),
        "domain": (3, 2),
    }
    assert overall["global"]["rate"] == pytest.approx(2 / 3)
    assert n_requests == 8 * 5 * 2  # 8 responses x 5 criteria x 2 modes
    assert report["meta"]["judge"] == "http-judge" and len(report["pairs"]) == 8


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--modes", "static"], "--modes 'static'"),
        (["-o", "engine=null"], "the judge has no engine"),
    ],
)
def test_agreement_cli_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    cfg = tmp_path / "judge.yaml"
    cfg.write_text("engine: {backend: openai, base_url: 'http://127.0.0.1:9/v1', model: m}\n")
    assert main(["agreement", "example", "--judge-config", str(cfg), *extra]) == 1
    assert message in capsys.readouterr().err
