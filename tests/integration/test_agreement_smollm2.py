"""Judge-human agreement with the real SmolLM2-135M judge on two pairs (mechanics only).

The 135M model has no judging signal (see the tiny-model notes), so nothing here is about quality:
rates are in [0, 1], every response gets a judge score under every mode, and the counts add up.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from wbray.agreement import MODES, example_file, judge_agreement, load_human_judgments
from wbray.config import JudgeConfig, SamplingParams, TransformersEngineConfig
from wbray.dataset import load_benchmark
from wbray.engines import create_engine
from wbray.prompts import load_judge_template

pytestmark = pytest.mark.integration


def test_agreement_with_the_tiny_judge(smollm2_dir: Path, tmp_path: Path) -> None:
    bench = load_benchmark("example")
    # The first two example pairs (English queries: the tiny model cannot read Chinese).
    lines = example_file().read_text(encoding="utf-8").splitlines()[:2]
    human_file = tmp_path / "two.jsonl"
    human_file.write_text("\n".join(lines) + "\n", encoding="utf-8")
    human = load_human_judgments(human_file, bench)
    judge = JudgeConfig(
        name="smollm2-judge",
        constrained=True,  # the tiny model needs a grammar to write {score, reason}
        reason_max_chars=24,
        max_reasks=0,
        sampling=SamplingParams(temperature=0, max_tokens=128),
    )
    engine = create_engine(TransformersEngineConfig(model=str(smollm2_dir), batch_size=4))
    try:
        report = asyncio.run(
            judge_agreement(human, engine, judge, load_judge_template(None, "builtin"), batch_size=16)
        )
    finally:
        asyncio.run(engine.close())
    calls = report.judging.set_index("mode")
    # 4 responses x 5 criteria per mode (global rubric, domain rubric, each query's checklist).
    assert calls["calls"].to_dict() == {"global": 20, "domain": 20, "query": 20}
    assert (calls["ok"] + calls["failed"] == calls["calls"]).all()
    assert calls["ok"].sum() > 0
    overall = report.summary[report.summary["domain1"] == "(all)"].set_index("mode")
    assert list(overall.index) == list(MODES)
    for mode in MODES:
        row = overall.loc[mode]
        assert row["pairs"] == 2
        assert 0 <= row["agree"] <= row["decisive"] <= row["scored"] <= 2
        if row["decisive"]:
            assert 0.0 <= row["rate"] <= 1.0
    assert len(report.details) == 2 * len(MODES)
    json.dumps(report.to_dict())  # the CLI's --out content serialises
