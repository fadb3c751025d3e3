"""The ready-to-use files under configs/ and `wbray config check`, which validates them (no Ray, no GPU)."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import pytest
import yaml

from wbray.cli import build_parser, main
from wbray.cli._check import KINDS, check_file, detect_kind, expand
from wbray.config import CandidateConfig, JudgeConfig, VLLMEngineConfig, load_config
from wbray.serve import load_serve_config

REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "configs"
SWEEP = CONFIGS / "sweeps" / "paper-grid.yaml"
CRITIC = CONFIGS / "judges" / "writingbench-critic.yaml"
SERVED_CRITIC = CONFIGS / "judges" / "writingbench-critic-served.yaml"
CRITIC_SERVE = CONFIGS / "serve" / "critic.serve.yaml"
CRITIC_MODEL = "AQuarterMile/WritingBench-Critic-Model-Qwen-7B"

#: The open models of the paper's table -> (HF id, parameters in billions, weight bytes per parameter).
PAPER_MODELS = {
    "qwen2.5-7b-instruct": ("Qwen/Qwen2.5-7B-Instruct", 7.6, 2),
    "qwen2.5-72b-instruct": ("Qwen/Qwen2.5-72B-Instruct", 72.7, 2),
    "llama-3.1-8b-instruct": ("meta-llama/Llama-3.1-8B-Instruct", 8.0, 2),
    "llama-3.3-70b-instruct": ("meta-llama/Llama-3.3-70B-Instruct", 70.6, 2),
    "mistral-large-instruct": ("mistralai/Mistral-Large-Instruct-2411", 122.6, 2),
}
#: GPU memory in GB of the accelerator types the configs name.
GPU_GB = {"L40S": 48, "H100": 80, "H200": 141}
#: The paper's generation budget, and the median benchmark prompt (tokens, estimated in cluster/README.md).
BUDGET, MEDIAN_PROMPT = 16_000, 1_200


@pytest.fixture(autouse=True)
def _repo_cwd(monkeypatch: pytest.MonkeyPatch) -> None:
    # Serve-native files name their wbray config relative to the working directory, as `serve run` does.
    monkeypatch.chdir(REPO)


def _yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def _config_files() -> list[Path]:
    return expand([CONFIGS])


# -- every file validates ---------------------------------------------------------------------------


@pytest.mark.parametrize("path", _config_files(), ids=lambda p: str(p.relative_to(CONFIGS)))
def test_every_config_file_validates(path: Path) -> None:
    result = check_file(path)
    if result.kind == "sweep":
        pytest.importorskip("wbray.sweeps", reason="sweep files validate once the sweep schema exists")
    assert result.ok, result.error
    assert result.skipped is None, result.line()


def test_every_config_file_has_a_header_saying_what_and_how() -> None:
    for path in _config_files():
        first = path.read_text(encoding="utf-8").splitlines()[0]
        assert first.startswith("# "), f"{path}: no header comment"


def test_config_check_cli_one_line_per_file_and_exit_status(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    files = _config_files()
    assert main(["config", "check", str(CONFIGS)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == len(files)
    assert all(line.startswith(("ok ", "skip ")) for line in lines)

    bad = tmp_path / "bad.yaml"
    bad.write_text("judge:\n  engine: {backend: vllm, model: m, tensor_paralel_size: 2}\n")
    assert main(["config", "check", str(CRITIC), str(bad)]) == 1
    out = capsys.readouterr()
    ok_line, fail_line = out.out.splitlines()
    assert ok_line.startswith("ok ") and str(CRITIC) in ok_line
    assert fail_line.startswith(f"FAIL {bad}: ") and "tensor_paralel_size" in fail_line
    assert "1 of 2 file(s) failed" in out.err


def test_parser_offers_every_kind() -> None:
    parser = build_parser()
    for kind in KINDS:
        assert parser.parse_args(["config", "check", "x.yaml", "--kind", kind]).kind == kind
    with pytest.raises(SystemExit):
        parser.parse_args(["config", "check", "x.yaml", "--kind", "nonsense"])


@pytest.mark.parametrize(
    ("doc", "kind"),
    [
        ({"judge": {"name": "j"}}, "eval"),
        ({}, "eval"),
        ({"models": [], "name": "x"}, "serve"),
        ({"applications": []}, "serve-native"),
        ({"cluster_name": "c", "provider": {"type": "aws"}}, "ray-cluster"),
        ({"name": "s", "judges": []}, "sweep"),
        ({"base": "b.yaml"}, "sweep"),
        ({"apiVersion": "v1", "kind": "ConfigMap"}, "kuberay"),
    ],
)
def test_kind_detection(doc: dict[str, Any], kind: str) -> None:
    assert detect_kind([doc], "f.yaml") == kind


def test_failures_name_the_file_and_the_key(tmp_path: Path) -> None:
    # An embedded LLMConfig with a misspelt key (Ray's LLMConfig forbids unknown keys).
    serve = _yaml(CRITIC_SERVE)
    serve["applications"][0]["args"]["llm_configs"][0]["accelerator_typ"] = "L40S"
    f = tmp_path / "s.serve.yaml"
    f.write_text(yaml.safe_dump(serve))
    error = check_file(f).error or ""
    assert error.startswith(
        f"{f}: applications[0] (writingbench-critic): args.llm_configs[0]: accelerator_typ"
    )

    # A misspelt Serve key (Ray's own schema would drop it silently).
    serve = _yaml(CRITIC_SERVE)
    serve["applications"][0]["route_prefx"] = "/"
    f.write_text(yaml.safe_dump(serve))
    assert "unknown key 'applications.0.route_prefx'" in (check_file(f).error or "")

    # An import path that does not resolve.
    serve = _yaml(CRITIC_SERVE)
    serve["applications"][0]["import_path"] = "ray.serve.llm:build_openai_ap"
    f.write_text(yaml.safe_dump(serve))
    assert "defines no 'build_openai_ap'" in (check_file(f).error or "")

    # A ConfigMap file with a bad key names the manifest, the object and the data key.
    cm = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "cfg"},
        "data": {"base.yaml": "judge:\n  repeat: 2\n"},
    }
    f = tmp_path / "cm.yaml"
    f.write_text(yaml.safe_dump(cm))
    error = check_file(f).error or ""
    assert error.startswith(f"{f}: ConfigMap/cfg data[base.yaml]: unknown key 'judge.repeat'"), error

    # A launcher file against Ray's autoscaler schema.
    f = tmp_path / "launcher.yaml"
    f.write_text("cluster_name: c\nprovider: {type: aws}\nmax_worker: 2\n")
    assert "max_worker" in (check_file(f).error or "")


# -- the WritingBench critic ------------------------------------------------------------------------


def _critic_judge() -> JudgeConfig:
    return load_config(CRITIC).judge


def test_critic_runs_upstreams_model_with_upstreams_sampling_sent_explicitly() -> None:
    judge = _critic_judge()
    assert isinstance(judge.engine, VLLMEngineConfig) and judge.engine.model == CRITIC_MODEL
    s = judge.sampling
    # Upstream: vLLM SamplingParams(temperature=1.0, top_p=0.95, max_tokens=2048); top_k and
    # repetition_penalty written out so no engine takes them from the model's generation_config.json.
    assert (s.temperature, s.top_p, s.max_tokens, s.top_k, s.repetition_penalty) == (1.0, 0.95, 2048, -1, 1.0)
    raw = _yaml(CRITIC)["judge"]["sampling"]
    assert {"temperature", "top_p", "max_tokens", "top_k", "repetition_penalty"} <= raw.keys()
    assert judge.engine.engine_kwargs["generation_config"] == "vllm"
    assert judge.template == "official" and not judge.constrained


def test_served_critic_points_at_the_served_model() -> None:
    judge = load_config(SERVED_CRITIC).judge
    serve = _yaml(CRITIC_SERVE)
    (llm,) = serve["applications"][0]["args"]["llm_configs"]
    assert judge.engine is not None and judge.engine.backend == "openai"
    assert judge.engine.model == llm["model_loading_config"]["model_id"]
    assert llm["model_loading_config"]["model_source"] == CRITIC_MODEL
    # The server fills what the openai engine does not send (top_k -1) from vLLM's defaults.
    assert llm["engine_kwargs"]["generation_config"] == "vllm"
    # KubeRay names the RayService's Serve Service <name>-serve-svc.
    service = _yaml(REPO / "cluster" / "kuberay" / "rayservice-critic.yaml")["metadata"]["name"]
    assert judge.engine.base_url == f"http://{service}-serve-svc:8000/v1"
    assert judge.sampling == _critic_judge().sampling
    assert judge.name != _critic_judge().name  # different engines, different score partitions


def test_api_judges() -> None:
    claude = load_config(CONFIGS / "judges" / "claude.yaml").judge
    assert claude.engine is not None and claude.engine.backend == "openai"
    # Never top_p with temperature (the gateway refuses both), never vLLM-only fields.
    assert (
        claude.engine.omit_sampling == ["top_p", "top_k", "repetition_penalty"] and claude.engine.api_key_env
    )
    assert claude.sampling.temperature == 1.0 and claude.sampling.max_tokens == 2048
    gpt = load_config(CONFIGS / "judges" / "gpt-4o.yaml").judge
    assert gpt.engine is not None and gpt.engine.backend == "openai"
    assert gpt.engine.model.startswith("gpt-4o") and gpt.engine.api_key_env == "OPENAI_API_KEY"
    assert (gpt.sampling.temperature, gpt.sampling.top_p) == (1.0, 0.95)
    assert set(gpt.engine.omit_sampling) == {"top_k", "repetition_penalty"}


# -- the paper's candidates -------------------------------------------------------------------------


def _paper_candidates() -> dict[str, CandidateConfig]:
    out: dict[str, CandidateConfig] = {}
    for path in sorted((CONFIGS / "paper").glob("*.yaml")):
        if path.name == "base.yaml":
            continue
        (candidate,) = load_config(path).candidates
        assert path.stem == candidate.name, f"{path}: file named after its candidate"
        out[candidate.name] = candidate
    return out


def test_paper_candidates_are_the_papers_open_models() -> None:
    assert set(_paper_candidates()) == {*PAPER_MODELS, "deepseek-r1"}


@pytest.mark.parametrize("name", sorted(PAPER_MODELS))
def test_vllm_candidates_fit_their_gpus_and_the_budget(name: str) -> None:
    from ray.util.accelerators import accelerators

    engine = _paper_candidates()[name].engine
    model, billions, bytes_per_param = PAPER_MODELS[name]
    assert isinstance(engine, VLLMEngineConfig) and engine.model == model
    assert engine.accelerator_type in vars(accelerators).values(), "Ray must know the accelerator type"
    gb = GPU_GB[engine.accelerator_type]
    weights_per_gpu = billions * bytes_per_param / engine.tensor_parallel_size
    # Weights take at most 60% of what vLLM may use, leaving the rest for the KV cache.
    assert weights_per_gpu < 0.6 * engine.gpu_memory_utilization * gb, (name, weights_per_gpu, gb)
    assert engine.max_model_len is not None and engine.max_model_len >= BUDGET + MEDIAN_PROMPT
    assert 8 % engine.tensor_parallel_size == 0  # engines pack whole 8-GPU nodes


def test_deepseek_r1_is_called_at_its_served_endpoint() -> None:
    engine = _paper_candidates()["deepseek-r1"].engine
    serve = _yaml(CONFIGS / "serve" / "deepseek-r1.serve.yaml")
    (llm,) = serve["applications"][0]["args"]["llm_configs"]
    assert engine.backend == "openai" and engine.model == llm["model_loading_config"]["model_id"]
    assert engine.base_url.endswith(f":{serve['http_options']['port']}/v1")
    assert llm["model_loading_config"]["model_source"] == "deepseek-ai/DeepSeek-R1"
    # FP8 weights (~690 GB) on one 8-GPU node of the named type, with room for the KV cache.
    assert llm["engine_kwargs"]["tensor_parallel_size"] * GPU_GB[llm["accelerator_type"]] > 690 * 1.3
    # Thoughts stay in the text (the judge prompt strips them, as upstream): no reasoning parser.
    assert "reasoning_parser" not in llm["engine_kwargs"]
    assert llm["engine_kwargs"]["max_model_len"] >= BUDGET + MEDIAN_PROMPT
    # Its answers start with thoughts: the judge sees the text after the first "</think>\n\n".
    from wbray.prompts import strip_think

    assert strip_think("<think>\nplan</think>\n\nThe essay.") == "The essay."


# -- the sweep --------------------------------------------------------------------------------------


def _resolve(ref: str) -> Path:
    return (SWEEP.parent / ref).resolve()


def test_paper_grid_parts_validate_with_todays_schemas() -> None:
    # What can be checked before the sweep schema exists: base, includes, judges, baseline.
    sweep = _yaml(SWEEP)
    assert set(sweep) == {"name", "out", "base", "candidates", "judges", "baseline", "max_concurrent"}
    assert sweep["out"].startswith("s3://") and sweep["max_concurrent"] >= 1
    base = load_config(_resolve(sweep["base"]))
    assert not base.candidates and base.ray.address == "auto"
    names = []
    for entry in sweep["candidates"]:
        if set(entry) == {"include"}:
            names += [c.name for c in load_config(_resolve(entry["include"])).candidates]
        else:
            names.append(CandidateConfig.model_validate(entry).name)
    assert sorted(names) == sorted(_paper_candidates())
    assert sweep["baseline"] in names
    (judge,) = (JudgeConfig.model_validate(j) for j in sweep["judges"])
    # The inline critic is configs/judges/writingbench-critic.yaml's, not a drifting copy.
    assert judge == _critic_judge()
    assert len(set(names)) == len(names)


def test_paper_grid_validates_with_the_sweep_schema() -> None:
    pytest.importorskip("wbray.sweeps", reason="the sweep schema (wbray.sweeps) does not exist yet")
    result = check_file(SWEEP)
    assert result.kind == "sweep" and result.ok and result.skipped is None, result.line()


# -- the rest ---------------------------------------------------------------------------------------


def test_minio_example_sets_only_where_the_store_is() -> None:
    storage = load_config(CONFIGS / "storage" / "minio.yaml").storage
    assert (
        storage.addressing_style == "path"
        and storage.endpoint_url
        and storage.endpoint_url.startswith("http")
    )
    from wbray.storage import StorageOptions

    options = StorageOptions.of(storage)
    assert options.endpoint_url and options.region and options.addressing_style == "path"


def test_example_calls_the_local_serve_app() -> None:
    example = load_config(CONFIGS / "example.yaml")
    served = load_serve_config(CONFIGS / "serve" / "local.yaml")
    url = f"http://{served.http.host}:{served.http.port}/v1"
    engines = [example.candidates[0].engine, example.judge.engine]
    for engine in engines:
        assert engine is not None and engine.backend == "openai"
        assert engine.base_url == url and engine.model in {m.name for m in served.models}
    # The served tiny model needs constrained decoding to write JSON at all.
    assert example.judge.constrained


def test_quickstart_is_untouched_and_runnable_offline() -> None:
    cfg = load_config(CONFIGS / "quickstart.yaml")
    assert cfg.candidates[0].engine.backend == "transformers"
    assert cfg.judge.engine is not None and cfg.judge.engine.backend == "transformers"


def test_sweep_loader_is_used_once_it_exists(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # `config check` hands sweeps to wbray.sweeps.load_sweep; simulate the module to prove the wiring.
    import sys
    import types

    calls: list[Path] = []
    fake = types.ModuleType("wbray.sweeps")
    fake.load_sweep = lambda path: calls.append(Path(path))  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "wbray.sweeps", fake)
    assert importlib.import_module("wbray.sweeps") is fake
    result = check_file(SWEEP)
    assert result.ok and result.skipped is None and calls == [SWEEP]


def test_kuberay_embedded_serve_configs_and_configmap_keys(tmp_path: Path) -> None:
    # A RayService running wbray's builder: an inline serve config is checked; a config path names a
    # file in the pods, which is noted rather than failed.
    inline = {"models": [{"name": "m", "engine": {"backend": "transformers"}}]}
    serve = {"applications": [{"name": "a", "import_path": "wbray.serve:build_app", "args": inline}]}
    service = {
        "apiVersion": "ray.io/v1",
        "kind": "RayService",
        "metadata": {"name": "svc"},
        "spec": {"serveConfigV2": yaml.safe_dump(serve)},
    }
    f = tmp_path / "svc.yaml"
    f.write_text(yaml.safe_dump(service))
    result = check_file(f)
    assert result.ok and "inline serve config, models m" in result.line()

    serve["applications"][0]["args"] = {"config": "/opt/app/serve.yaml"}
    service["spec"]["serveConfigV2"] = yaml.safe_dump(serve)
    f.write_text(yaml.safe_dump(service))
    result = check_file(f)
    assert result.ok and "path in the pods, not checked" in result.line()

    inline["models"][0]["engine"]["backend"] = "nope"
    serve["applications"][0]["args"] = inline
    service["spec"]["serveConfigV2"] = yaml.safe_dump(serve)
    f.write_text(yaml.safe_dump(service))
    error = check_file(f).error or ""
    assert error.startswith(
        f"{f}: RayService/svc spec.serveConfigV2: applications[0] (a) args: models.0.engine"
    )

    # ConfigMap keys are files in one directory: nothing may point outside it.
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"..": "x: 1"}}
    f.write_text(yaml.safe_dump(cm))
    assert "not a valid ConfigMap key" in (check_file(f).error or "")
