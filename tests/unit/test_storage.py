"""Storage layer on local paths: atomic writes, layout, commit markers, run discovery, settings."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError

from wbray.config import load_config
from wbray.errors import WbrayError
from wbray.storage import (
    RunLayout,
    commit_stage,
    discover_runs,
    list_files,
    normalize_uri,
    read_bytes,
    read_evaluations,
    read_scores,
    write_bytes,
    write_manifest,
    write_scores,
)
from wbray.storage._fs import S3Settings, _s3_error, split_s3


def _score(row_id: str, score: float | None = 5.0) -> dict[str, object]:
    return {
        "row_id": row_id,
        "model": "m",
        "judge": "j",
        "index": 1,
        "criterion": "c",
        "repeat": 0,
        "score": score,
        "status": "ok" if score is not None else "failed",
    }


def test_uris_and_atomic_writes(tmp_path: Path) -> None:
    assert normalize_uri(f"file://{tmp_path}/x") == f"{tmp_path}/x"
    assert normalize_uri("s3://bucket/a/b/") == "s3://bucket/a/b"
    assert split_s3("s3://bucket/a/b") == ("bucket", "a/b")
    with pytest.raises(WbrayError, match="needs a bucket"):
        split_s3("s3:///nokey")
    target = tmp_path / "deep" / "f.bin"
    write_bytes(str(target), b"one")
    write_bytes(str(target), b"two")
    assert read_bytes(str(target)) == b"two"
    assert list(target.parent.iterdir()) == [target]  # no temp files left behind
    (target.parent / ".hidden.tmp").write_bytes(b"x")
    assert list_files(str(tmp_path)) == [str(target)]


def test_layout_parts_and_commit_markers(tmp_path: Path) -> None:
    layout = RunLayout.at(str(tmp_path / "run"))
    assert layout.scores("j", "m").endswith("/scores/judge=j/model=m")
    first = write_scores(layout, "j", "m", [_score("a"), _score("b")])
    assert first == write_scores(layout, "j", "m", [_score("b"), _score("a")])  # same rows, same part
    write_manifest(layout, {"status": "running"})
    assert read_evaluations(layout, "j").empty  # not committed: readers ignore it
    assert len(read_scores(layout, "j")) == 2  # the resume path still sees it
    assert commit_stage(layout.scores("j", "m")) == 1
    write_scores(layout, "j", "m", [_score("c", None)])  # written after the seal: not part of it
    ev = read_evaluations(layout, "j")
    assert sorted(ev["score"]) == [5.0, 5.0]
    assert discover_runs(str(tmp_path)) == [layout.root]


def test_storage_options_win_over_the_environment_and_never_touch_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from wbray.storage import StorageOptions
    from wbray.storage._fs import S3Settings

    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://from-env:1")
    monkeypatch.setenv("AWS_REGION", "us-west-2")
    monkeypatch.delenv("WBRAY_S3_ADDRESSING_STYLE", raising=False)
    cfg = load_config(
        None, ["storage={endpoint_url: 'http://minio:9000', region: eu-west-1, addressing_style: path}"]
    )
    before = dict(os.environ)
    options = StorageOptions.of(cfg.storage)
    resolved = S3Settings.resolve(options)
    assert (resolved.endpoint_url, resolved.region, resolved.addressing_style) == (
        "http://minio:9000",
        "eu-west-1",
        "path",
    )
    assert dict(os.environ) == before  # explicit options, not environment variables
    # Unset options fall back to the environment where the code runs (a worker's own region).
    env_only = S3Settings.resolve(StorageOptions.of(load_config(None).storage))
    assert (env_only.endpoint_url, env_only.region, env_only.addressing_style) == (
        "http://from-env:1",
        "us-west-2",
        "auto",
    )
    # Options travel to workers by pickling; credentials are never part of them.
    import pickle

    assert pickle.loads(pickle.dumps(options)) == options
    assert "secret" not in repr(options).lower() and "key" not in repr(options).lower()


def test_s3_settings_and_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("WBRAY_S3_ADDRESSING_STYLE", "path")
    s = S3Settings.resolve()
    assert s.endpoint_url == "http://127.0.0.1:9" and s.addressing_style == "path"
    assert "SECRET" not in repr(s) and len(s.auth_id) == 12
    monkeypatch.setenv("WBRAY_S3_ADDRESSING_STYLE", "sideways")
    with pytest.raises(WbrayError, match="use auto, path or virtual"):
        S3Settings.resolve()
    monkeypatch.delenv("WBRAY_S3_ADDRESSING_STYLE")
    missing = ClientError({"Error": {"Code": "404", "Message": "Not Found"}}, "HeadBucket")
    assert "bucket 'b' does not exist" in str(_s3_error("s3://b/x", missing))
    denied = ClientError({"Error": {"Code": "InvalidAccessKeyId"}}, "HeadBucket")
    assert "check the AWS credentials" in str(_s3_error("s3://b/x", denied))
    assert "cannot reach the S3 endpoint http://127.0.0.1:9" in str(
        _s3_error("s3://b/x", EndpointConnectionError(endpoint_url="http://127.0.0.1:9"))
    )
    assert "no AWS credentials" in str(_s3_error("s3://b/x", NoCredentialsError()))


def test_token_ledger_and_prices(tmp_path: Path) -> None:
    from wbray.aggregate import price_ledger
    from wbray.storage import token_ledger, write_generations

    layout = RunLayout.at(str(tmp_path / "run"))
    write_generations(
        layout,
        "m",
        [
            {
                "row_id": "g",
                "model": "m",
                "index": 1,
                "sample": 0,
                "status": "ok",
                "prompt_tokens": 1000,
                "completion_tokens": 2000,
            }
        ],
    )
    write_scores(layout, "j", "m", [{**_score("s"), "prompt_tokens": 500_000, "completion_tokens": 10_000}])
    commit_stage(layout.generations("m"))
    commit_stage(layout.scores("j", "m"))
    ledger = token_ledger(layout)
    row = ledger.set_index("model").loc["m"]
    assert row["judge"] == "j" and row["generation_completion_tokens"] == 2000
    assert row["judge_prompt_tokens"] == 500_000
    priced = price_ledger(
        ledger,
        {
            "m": {"prompt_per_mtok": 1.0, "completion_per_mtok": 4.0},
            "j": {"prompt_per_mtok": 2.0, "completion_per_mtok": 10.0},
        },
    )
    got = priced.set_index("model").loc["m"]
    assert got["generation_cost"] == pytest.approx((1000 * 1.0 + 2000 * 4.0) / 1e6)
    assert got["judge_cost"] == pytest.approx((500_000 * 2.0 + 10_000 * 10.0) / 1e6)
    unpriced = price_ledger(ledger, {}).set_index("model").loc["m"]
    assert unpriced["judge_cost"] != unpriced["judge_cost"]  # NaN: unknown, not zero


def test_s3_retry_budget_travels_with_the_options_and_the_check_fails_fast(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from wbray.storage import StorageOptions
    from wbray.storage._fs import S3_CHECK_ATTEMPTS, S3_MAX_ATTEMPTS, _s3_client, _s3_filesystem

    monkeypatch.delenv("AWS_MAX_ATTEMPTS", raising=False)
    assert S3Settings.resolve().max_attempts == S3_MAX_ATTEMPTS >= 5  # a restart is a pause
    # The driver's setting rides in the options, so workers on other nodes retry alike.
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "4")
    options = StorageOptions().with_env_defaults()
    monkeypatch.delenv("AWS_MAX_ATTEMPTS")
    settings = S3Settings.resolve(options)
    assert options.max_attempts == settings.max_attempts == 4
    assert _s3_client(settings).meta.config.retries == {"total_max_attempts": 4, "mode": "standard"}
    assert _s3_client(settings, S3_CHECK_ATTEMPTS).meta.config.retries["total_max_attempts"] == 2
    assert _s3_filesystem(settings) is not None  # Arrow accepts the same budget
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "many")
    with pytest.raises(WbrayError, match="AWS_MAX_ATTEMPTS='many'"):
        S3Settings.resolve()


def test_verdicts_on_superseded_answers_are_left_out(tmp_path: Path) -> None:
    """After a changed response file, a model's older answers stay stored, but aggregation reads only
    the verdicts on its current answers; a model whose marker lists none keeps everything."""
    layout = RunLayout.at(str(tmp_path / "run"))
    cols = ["row_id", "model", "index"]

    def verdict(row_id: str, model: str, gen: str | None, index: int) -> dict[str, object]:
        return {**_score(row_id), "model": model, "gen_row_id": gen, "index": index}

    write_scores(
        layout,
        "j",
        "m",
        [verdict("s-old", "m", "g-old", 1), verdict("s-new", "m", "g-new", 1), verdict("s-2", "m", None, 2)],
    )
    write_scores(layout, "j", "other", [verdict("o-1", "other", "g-x", 1), verdict("o-2", "other", "g-y", 2)])
    commit_stage(layout.scores("j", "m"))
    commit_stage(layout.scores("j", "other"))
    everything = read_evaluations(layout, "j", columns=cols)
    assert sorted(everything["row_id"]) == ["o-1", "o-2", "s-2", "s-new", "s-old"]  # no markers: all count

    commit_stage(layout.generations("m"), current=["g-new"])
    current = read_evaluations(layout, "j", columns=cols)
    assert sorted(current["row_id"]) == ["o-1", "o-2", "s-new"]
    assert "gen_row_id" not in current.columns  # read for the filter, not handed on
    assert sorted(read_evaluations(layout, "j", indices={2}, columns=cols)["row_id"]) == ["o-2"]
    assert sorted(read_evaluations(layout, "j", models=["m"], columns=cols)["row_id"]) == ["s-new"]


def test_a_sealed_stage_with_a_row_written_twice_still_reads_it_once(tmp_path: Path) -> None:
    """The commit marker says whether its parts hold each row id once; only then do readers skip
    de-duplication. A batch written twice (a retried task) and a marker from before the flag
    existed are both read one row per id."""
    import json

    layout = RunLayout.at(str(tmp_path / "run"))
    write_scores(layout, "j", "clean", [{**_score("a"), "model": "clean"}, {**_score("b"), "model": "clean"}])
    write_scores(layout, "j", "twice", [{**_score("x"), "model": "twice"}, {**_score("y"), "model": "twice"}])
    write_scores(layout, "j", "twice", [{**_score("y", 7.0), "model": "twice"}])  # y again, another part
    commit_stage(layout.scores("j", "clean"))
    commit_stage(layout.scores("j", "twice"))
    markers = {
        m: json.loads(Path(layout.scores("j", m), "_COMMITTED.json").read_text()) for m in ("clean", "twice")
    }
    assert markers["clean"]["unique"] is True and markers["twice"]["unique"] is False
    cols = ["row_id", "model", "score"]
    rows = read_evaluations(layout, "j", columns=cols)
    assert sorted(rows["row_id"]) == ["a", "b", "x", "y"]  # y once
    # Only clean stages: read straight, still one row each, columns as asked.
    only_clean = RunLayout.at(str(tmp_path / "run2"))
    write_scores(only_clean, "j", "clean", [{**_score("a"), "model": "clean"}])
    commit_stage(only_clean.scores("j", "clean"))
    assert list(read_evaluations(only_clean, "j", columns=["model", "score"]).columns) == ["model", "score"]
    # A marker written before the flag (no "unique"): de-duplicated as before.
    marker = Path(layout.scores("j", "twice"), "_COMMITTED.json")
    marker.write_text(json.dumps({"parts": markers["twice"]["parts"]}))
    assert sorted(read_evaluations(layout, "j", columns=cols)["row_id"]) == ["a", "b", "x", "y"]
