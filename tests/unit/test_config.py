"""Configuration: schema, YAML, dotted overrides, and one-line errors naming file and key."""

from __future__ import annotations

from pathlib import Path

import pytest

from wbray.cli import main
from wbray.config import SamplingParams, WbrayConfig, dump_config, load_config
from wbray.errors import ConfigError


def test_paper_defaults() -> None:
    cfg = load_config()
    g, j = cfg.generation.sampling, cfg.judge.sampling
    assert (g.temperature, g.top_p, g.top_k, g.max_tokens) == (0.7, 0.8, 20, 16000)
    assert (j.temperature, j.top_p, j.top_k, j.max_tokens, j.repetition_penalty) == (1.0, 0.95, -1, 2048, 1.0)
    assert cfg.judge.repeats == 1 and cfg.judge.template == "auto"


def test_yaml_and_overrides(tmp_path: Path) -> None:
    f = tmp_path / "c.yaml"
    f.write_text("judge:\n  repeats: 3\ndata:\n  lang: [en]\n  limit: 5\n")
    cfg = load_config(
        f, ["judge.sampling.temperature=0", "data.indices=[1, 2]", "generation.system_prompt=Be brief"]
    )
    assert cfg.judge.repeats == 3
    assert cfg.judge.sampling.temperature == 0
    assert cfg.judge.sampling.top_p == 0.95  # untouched sibling keeps its default
    assert cfg.data.lang == ["en"] and cfg.data.limit == 5 and cfg.data.indices == [1, 2]
    assert cfg.generation.system_prompt == "Be brief"
    assert load_config(f) != cfg


def test_round_trip(tmp_path: Path) -> None:
    cfg = load_config(None, ["judge.repeats=2"])
    f = tmp_path / "dump.yaml"
    f.write_text(dump_config(cfg))
    assert load_config(f) == cfg


def test_unknown_key_names_key_file_and_suggestion(tmp_path: Path) -> None:
    f = tmp_path / "bad.yaml"
    f.write_text("judge:\n  sampling:\n    temprature: 0.5\n")
    with pytest.raises(ConfigError) as info:
        load_config(f)
    msg = str(info.value)
    assert str(f) in msg
    assert "'judge.sampling.temprature'" in msg
    assert "did you mean 'temperature'" in msg
    assert "allowed here:" in msg and "top_p" in msg


def test_bad_values_and_files(tmp_path: Path) -> None:
    f = tmp_path / "c.yaml"
    f.write_text("judge:\n  repeats: 0\n")
    with pytest.raises(ConfigError, match=r"c\.yaml: judge\.repeats: .*greater than or equal to 1"):
        load_config(f)
    f.write_text("- a list\n")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(f)
    f.write_text("judge: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(f)
    with pytest.raises(ConfigError, match="cannot read config"):
        load_config(tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        load_config(None, ["judge.repeats"])
    with pytest.raises(ConfigError, match=r"with -o overrides\): unknown key 'judge\.nope'"):
        load_config(None, ["judge.nope=1"])


def test_sampling_merge() -> None:
    base = SamplingParams(temperature=1.0, top_p=0.95, max_tokens=2048)
    merged = base.merged(SamplingParams(temperature=0.0))
    assert (merged.temperature, merged.top_p, merged.max_tokens) == (0.0, 0.95, 2048)
    assert base.merged(None) is base


def test_every_field_is_documented() -> None:
    def walk(model: type) -> list[str]:
        missing = []
        for name, field in model.model_fields.items():  # type: ignore[attr-defined]
            if not field.description:
                missing.append(f"{model.__name__}.{name}")
            ann = field.annotation
            if isinstance(ann, type) and hasattr(ann, "model_fields"):
                missing += walk(ann)
        return missing

    assert walk(WbrayConfig) == []


def test_cli_error_is_one_line_and_debug_shows_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    f = tmp_path / "bad.yaml"
    f.write_text("jduge: {}\n")
    assert main(["config", "show", str(f)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("wbray: error: ") and "'jduge'" in err
    assert "Traceback" not in err
    with pytest.raises(ConfigError):
        main(["--debug", "config", "show", str(f)])
    assert main(["config", "show", "-o", "judge.repeats=4"]) == 0
    assert "repeats: 4" in capsys.readouterr().out


def test_custom_ray_resources_pin_a_pool_and_count_in_its_demand() -> None:
    from wbray.config import StageResources
    from wbray.engines._registry import pool_demand

    res = load_config(None, ["judge.resources={actors: 2, num_cpus: 0.5, resources: {worker_node: 1}}"])
    pool = res.judge.resources
    assert pool.resources == {"worker_node": 1.0}
    assert pool_demand(None, pool) == {"CPU": 1.0, "GPU": 0.0, "worker_node": 2.0}
    assert pool_demand(None, StageResources()) == {"CPU": 1.0, "GPU": 0.0}
