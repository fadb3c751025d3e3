"""``wbray.dataset.download`` against a real local HTTP server (no internet)."""

from __future__ import annotations

import contextlib
import http.server
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from wbray._jsonl import git_blob_sha1
from wbray.dataset import PINNED_FILES, UPSTREAM_COMMIT, download, load_benchmark, resolve_data_dir
from wbray.dataset._download import DATA_FILES, extract_prompt_constants
from wbray.errors import IntegrityError, WbrayError

STYLE_C = "benchmark_query/requirement/style/style_subset_C.jsonl"


def reconstruct_prompt_py(official_dir: Path) -> bytes:
    """Upstream's prompt.py rebuilt from the mirror's two text files (reproduces the pinned blob)."""
    system = (official_dir / "prompts/judge_system.txt").read_text(encoding="utf-8")
    user = (official_dir / "prompts/judge_user.txt").read_text(encoding="utf-8")
    text = f'evaluate_system = """\n{system}\n""".strip()\n\nevaluate_prompt = """\n{user}\n""".strip()\n'
    return text.encode("utf-8")


@dataclass
class Upstream:
    """A raw-file server serving ``/<commit>/<relpath>`` from the official mirror."""

    url: str
    files: dict[str, bytes]
    requests: list[str] = field(default_factory=list)


def mirror_files(official_dir: Path) -> dict[str, bytes]:
    """What upstream serves for each pinned path, read from the mirror."""
    files = {rel: (official_dir / rel).read_bytes() for rel in DATA_FILES}
    files["prompt.py"] = reconstruct_prompt_py(official_dir)
    return files


@contextlib.contextmanager
def serve_upstream(files: dict[str, bytes]) -> Iterator[Upstream]:
    """Serve ``files`` (editable while running) under ``/<commit>/<relpath>`` on 127.0.0.1, port 0."""
    state = Upstream(url="", files=dict(files))
    prefix = f"/{UPSTREAM_COMMIT}/"

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            state.requests.append(self.path)
            rel = self.path[len(prefix) :] if self.path.startswith(prefix) else None
            body = state.files.get(rel) if rel is not None else None
            if body is None:
                self.send_error(404, "Not Found")
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture(scope="session")
def upstream_files(official_dir: Path) -> dict[str, bytes]:
    return mirror_files(official_dir)


@pytest.fixture
def upstream(upstream_files: dict[str, bytes]) -> Iterator[Upstream]:
    with serve_upstream(upstream_files) as state:
        yield state


def test_reconstructed_prompt_py_matches_the_pin(upstream_files: dict[str, bytes]) -> None:
    assert git_blob_sha1(upstream_files["prompt.py"]) == PINNED_FILES["prompt.py"]


def test_pins_cover_the_mirror(official_dir: Path) -> None:
    assert len(PINNED_FILES) == 8
    for rel, blob in DATA_FILES.items():
        assert git_blob_sha1((official_dir / rel).read_bytes()) == blob, rel


def test_full_download_loads_like_the_mirror(upstream: Upstream, official_dir: Path) -> None:
    dest = download(base_url=upstream.url)
    assert dest.name == UPSTREAM_COMMIT and dest.parent.name == "writingbench"
    assert len(upstream.requests) == 8
    # The default destination is where resolve_data_dir looks on its own.
    assert resolve_data_dir(None) == dest.resolve()
    bench = load_benchmark()
    assert len(bench.queries) == 1000
    assert {k: len(v.r_indices) for k, v in bench.requirements.items()} == {
        "style": 442,
        "format": 498,
        "length": 222,
    }
    assert {k: v.c_count for k, v in bench.requirements.items()} == {
        "style": 498,
        "format": 511,
        "length": 226,
    }
    assert bench.data_version == "2d04c2d4c82f"
    for name in ("judge_system.txt", "judge_user.txt"):
        assert (dest / "prompts" / name).read_bytes() == (official_dir / "prompts" / name).read_bytes()
    assert (dest / "prompt.py").read_bytes() == upstream.files["prompt.py"]
    assert not list(dest.rglob("*.part"))


def test_second_download_fetches_nothing(upstream: Upstream, tmp_path: Path) -> None:
    seen: list[tuple[str, str]] = []
    download(tmp_path, base_url=upstream.url)
    upstream.requests.clear()
    download(tmp_path, base_url=upstream.url, progress=lambda rel, what: seen.append((rel, what)))
    assert upstream.requests == []
    assert {what for _, what in seen} == {"present"}


def test_corrupted_local_file_is_fetched_again(upstream: Upstream, tmp_path: Path) -> None:
    download(tmp_path, base_url=upstream.url)
    (tmp_path / STYLE_C).write_bytes(b"{}\n")
    upstream.requests.clear()
    download(tmp_path, base_url=upstream.url)
    assert upstream.requests == [f"/{UPSTREAM_COMMIT}/{STYLE_C}"]
    assert git_blob_sha1((tmp_path / STYLE_C).read_bytes()) == PINNED_FILES[STYLE_C]


def test_tampered_file_is_rejected_and_the_others_kept(upstream: Upstream, tmp_path: Path) -> None:
    good = upstream.files[STYLE_C]
    tampered = bytearray(good)
    tampered[100] ^= 0x01
    upstream.files[STYLE_C] = bytes(tampered)
    with pytest.raises(IntegrityError) as info:
        download(tmp_path, base_url=upstream.url)
    message = str(info.value)
    assert STYLE_C in message
    assert PINNED_FILES[STYLE_C] in message
    assert git_blob_sha1(bytes(tampered)) in message
    assert not (tmp_path / STYLE_C).exists()
    assert not list(tmp_path.rglob("*.part"))
    for rel, blob in PINNED_FILES.items():
        if rel != STYLE_C:
            assert git_blob_sha1((tmp_path / rel).read_bytes()) == blob, rel
    assert (tmp_path / "prompts" / "judge_user.txt").is_file()

    # Once upstream is fixed, only the rejected file is fetched.
    upstream.files[STYLE_C] = good
    upstream.requests.clear()
    download(tmp_path, base_url=upstream.url)
    assert upstream.requests == [f"/{UPSTREAM_COMMIT}/{STYLE_C}"]


def test_tampered_prompt_py_writes_no_prompts(upstream: Upstream, tmp_path: Path) -> None:
    upstream.files["prompt.py"] = upstream.files["prompt.py"].replace(b"Scoring", b"Sc0ring", 1)
    with pytest.raises(IntegrityError, match=r"prompt\.py"):
        download(tmp_path, base_url=upstream.url)
    assert not (tmp_path / "prompt.py").exists()
    assert not (tmp_path / "prompts").exists()


def test_missing_file_names_the_url(upstream: Upstream, tmp_path: Path) -> None:
    del upstream.files["benchmark_query/benchmark_all.jsonl"]
    url = f"{upstream.url}/{UPSTREAM_COMMIT}/benchmark_query/benchmark_all.jsonl"
    with pytest.raises(WbrayError, match="HTTP 404") as info:
        download(tmp_path, base_url=upstream.url)
    assert url in str(info.value)
    assert not list(tmp_path.rglob("*.part"))


def test_env_upstream_url_is_used(
    upstream: Upstream, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WBRAY_UPSTREAM_URL", upstream.url + "/")
    download(tmp_path)
    assert len(upstream.requests) == 8


def test_unreachable_server_names_the_url(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    # The port is closed again now, so the connection is refused.
    with pytest.raises(WbrayError, match=rf"http://127\.0\.0\.1:{port}/{UPSTREAM_COMMIT}/"):
        download(tmp_path, base_url=f"http://127.0.0.1:{port}", timeout=5)


def test_bad_base_url_scheme(tmp_path: Path) -> None:
    with pytest.raises(WbrayError, match="http://, https:// or file://"):
        download(tmp_path, base_url="raw.githubusercontent.com/X-PLUG/WritingBench")


def test_file_url_mirror(official_dir: Path, upstream_files: dict[str, bytes], tmp_path: Path) -> None:
    mirror = tmp_path / "mirror"
    for rel, data in upstream_files.items():
        (mirror / UPSTREAM_COMMIT / rel).parent.mkdir(parents=True, exist_ok=True)
        (mirror / UPSTREAM_COMMIT / rel).write_bytes(data)
    dest = download(tmp_path / "dest", base_url=mirror.as_uri())
    assert (dest / "prompts" / "judge_system.txt").read_bytes() == (
        official_dir / "prompts" / "judge_system.txt"
    ).read_bytes()


# prompt.py is data: extraction never runs it


def test_extract_accepts_literals_and_strip() -> None:
    source = 'evaluate_system = "  sys  "\nevaluate_prompt = """\nuser {query}\n""".strip()\n'
    assert extract_prompt_constants(source) == {
        "evaluate_system": "  sys  ",
        "evaluate_prompt": "user {query}",
    }


def test_extract_rejects_dynamic_constant_without_running_it(tmp_path: Path) -> None:
    marker = tmp_path / "side-effect"
    source = (
        "import os\n"
        f"os.system('touch {marker}')\n"
        f"open({str(marker)!r}, 'w').write('ran')\n"
        "evaluate_system = ''.join(['a', 'b'])\n"
        'evaluate_prompt = """x""".strip()\n'
    )
    with pytest.raises(WbrayError, match=r"prompt\.py:4: evaluate_system must be a string literal"):
        extract_prompt_constants(source)
    assert not marker.exists()


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ('evaluate_system = "a"\n', "no module-level assignment of evaluate_prompt"),
        ('evaluate_system = "a"\nevaluate_prompt = "b"\nevaluate_prompt = "c"\n', "assigned more than once"),
        ('evaluate_system = f"{x}"\nevaluate_prompt = "b"\n', "must be a string literal"),
        ('evaluate_system = "a".strip("x")\nevaluate_prompt = "b"\n', "must be a string literal"),
        ('evaluate_system = "a".upper()\nevaluate_prompt = "b"\n', "must be a string literal"),
        ("evaluate_system = (\n", "not valid Python"),
    ],
)
def test_extract_rejects(source: str, message: str) -> None:
    with pytest.raises(WbrayError, match=message):
        extract_prompt_constants(source)
