"""cluster/: the AWS launcher file and the KubeRay manifests, validated without a cluster.

- KubeRay manifests against the KubeRay v1.7.0 CRDs in ../shared/kuberay/crds/ (never copied here),
  strictly: an object schema that lists properties is closed unless it says
  x-kubernetes-preserve-unknown-fields, as `kubectl apply --validate=strict` treats it;
- the launcher file against the autoscaler schema inside the installed ray package;
- images and rayVersion against the ray pin in pyproject.toml; credentials never literal;
- every Serve import path resolved and every embedded wbray config validated.
"""

from __future__ import annotations

import copy
import importlib
import importlib.util
import json
import os
import re
import tomllib
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from wbray.cli._check import check_file, check_serve_document, expand
from wbray.config import CandidateConfig, JudgeConfig, load_config

REPO = Path(__file__).resolve().parents[2]
CLUSTER = REPO / "cluster"
KUBERAY = CLUSTER / "kuberay"
LAUNCHER = CLUSTER / "aws" / "wbray-cluster.yaml"
CRD_DIR = Path(os.environ.get("WBRAY_TEST_KUBERAY_CRDS", REPO.parent / "shared" / "kuberay" / "crds"))
CRD_FILES = {
    "RayCluster": "ray.io_rayclusters.yaml",
    "RayJob": "ray.io_rayjobs.yaml",
    "RayService": "ray.io_rayservices.yaml",
}
#: GPUs per instance type the launcher and the node selectors name.
INSTANCE_GPUS = {"g6e.2xlarge": 1, "g6e.48xlarge": 8, "p5.48xlarge": 8, "p5en.48xlarge": 8}
AWS_CREDENTIAL_VARS = {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"}


@pytest.fixture(autouse=True)
def _repo_cwd(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)


# -- helpers ----------------------------------------------------------------------------------------


def strict_schema(schema: Any) -> Any:
    """A copy of an OpenAPI v3 schema where every object schema listing ``properties`` is closed,
    unless it says ``x-kubernetes-preserve-unknown-fields: true`` (kubectl --validate=strict)."""
    if isinstance(schema, list):
        return [strict_schema(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: strict_schema(v) for k, v in schema.items()}
    if (
        "properties" in out
        and not out.get("x-kubernetes-preserve-unknown-fields")
        and "additionalProperties" not in out
    ):
        out["additionalProperties"] = False
    return out


@cache
def crd_validator(kind: str) -> jsonschema.protocols.Validator:
    """The strict validator of a KubeRay kind: the CRD's ``v1`` ``openAPIV3Schema``, closed."""
    path = CRD_DIR / CRD_FILES[kind]
    if not path.is_file():
        pytest.fail(
            f"KubeRay CRDs not found at {CRD_DIR}; put ../shared/kuberay next to the repository "
            "or set WBRAY_TEST_KUBERAY_CRDS"
        )
    # libyaml's loader where available: the CRDs are ~60,000 lines.
    crd = yaml.load(path.read_text(encoding="utf-8"), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    assert crd["spec"]["names"]["kind"] == kind
    (version,) = (v for v in crd["spec"]["versions"] if v["name"] == "v1")
    return jsonschema.Draft7Validator(strict_schema(version["schema"]["openAPIV3Schema"]))


def validate_strict(doc: dict[str, Any]) -> list[str]:
    """Every violation of a ray.io/v1 document against its CRD, as ``path: message`` lines."""
    assert doc.get("apiVersion") == "ray.io/v1", doc.get("apiVersion")
    validator = crd_validator(doc["kind"])
    return [
        f"{'.'.join(str(p) for p in e.absolute_path) or '<root>'}: {e.message}"
        for e in sorted(validator.iter_errors(doc), key=lambda e: list(map(str, e.absolute_path)))
    ]


def manifests() -> list[tuple[Path, int, dict[str, Any]]]:
    out = []
    for path in sorted(KUBERAY.glob("*.yaml")):
        for n, doc in enumerate(yaml.safe_load_all(path.read_text(encoding="utf-8"))):
            if doc is not None:
                out.append((path, n, doc))
    return out


def ray_documents() -> list[tuple[Path, int, dict[str, Any]]]:
    return [m for m in manifests() if m[2].get("apiVersion") == "ray.io/v1"]


def _id(m: tuple[Path, int, dict[str, Any]]) -> str:
    return f"{m[0].name}:{m[2]['kind']}"


def cluster_specs(doc: dict[str, Any]) -> dict[str, Any]:
    """The RayCluster spec a RayCluster, RayJob or RayService holds."""
    spec = doc["spec"]
    return {
        "RayCluster": spec,
        "RayJob": spec.get("rayClusterSpec"),
        "RayService": spec.get("rayClusterConfig"),
    }[doc["kind"]]


def pod_groups(doc: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(group name, group spec) for the head and every worker group."""
    spec = cluster_specs(doc)
    yield "head", spec["headGroupSpec"]
    for group in spec.get("workerGroupSpecs") or []:
        yield group["groupName"], group


def containers(pod_spec: dict[str, Any]) -> list[dict[str, Any]]:
    return [*(pod_spec.get("initContainers") or []), *pod_spec["containers"]]


def ray_pin() -> str:
    """'2.60' from pyproject's ``ray[serve,data]==2.60.*``."""
    deps = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]["dependencies"]
    (ray_dep,) = (d for d in deps if re.match(r"ray\[", d))
    match = re.fullmatch(r"ray\[[^\]]*\]==(\d+\.\d+)\.\*", ray_dep)
    assert match, f"unexpected ray pin {ray_dep!r}"
    return match.group(1)


def image_ok(image: str, gpu: bool) -> str | None:
    """Why an image does not fit the ray pin (or a GPU group), or None."""
    m = re.fullmatch(r"rayproject/(ray|ray-llm):(\d+\.\d+)\.\d+(-py311)?(-(gpu|cu\d+))?", image)
    if m is None:
        return f"{image}: not a versioned rayproject/ray or rayproject/ray-llm image"
    if m.group(2) != ray_pin():
        return f"{image}: Ray {m.group(2)} does not match the pin {ray_pin()}.*"
    if m.group(1) == "ray" and m.group(3) is None:
        return f"{image}: no -py311 tag (wbray needs Python 3.11)"
    if gpu and m.group(4) is None:
        return f"{image}: a GPU group needs a CUDA image (-gpu or -cuXXX)"
    return None


def pip_specs(text: str) -> list[str]:
    return re.findall(r"wbray(?:\[[a-z,]+\])? @ [^\s\"']+", text)


def walk(value: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(value, dict):
        for k, v in value.items():
            yield from walk(v, f"{path}.{k}" if path else str(k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from walk(v, f"{path}[{i}]")
    else:
        yield path, value


# -- the strict CRD validation ----------------------------------------------------------------------


@pytest.mark.parametrize("manifest", ray_documents(), ids=_id)
def test_kuberay_manifest_validates_strictly_against_the_crd(
    manifest: tuple[Path, int, dict[str, Any]],
) -> None:
    path, _, doc = manifest
    assert validate_strict(doc) == [], path


def test_every_ray_kind_is_shipped() -> None:
    assert {doc["kind"] for _, _, doc in ray_documents()} == set(CRD_FILES)


@pytest.mark.parametrize(
    ("kind", "mutate", "expected"),
    [
        # A misspelt field is silently pruned by Kubernetes; the strict check refuses it.
        ("RayCluster", lambda d: d["spec"]["workerGroupSpecs"][0].update(minReplica=0), "minReplica"),
        ("RayJob", lambda d: d["spec"].update(shutdownAfterJobFinish=True), "shutdownAfterJobFinish"),
        ("RayService", lambda d: d["spec"].update(serveConfig="x"), "serveConfig"),
        # Deep inside the embedded pod template too.
        (
            "RayCluster",
            lambda d: d["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0].update(
                imagePullPolicyy="x"
            ),
            "imagePullPolicyy",
        ),
        # Wrong types and values still fail as the CRD says.
        ("RayJob", lambda d: d["spec"].update(ttlSecondsAfterFinished="1h"), "ttlSecondsAfterFinished"),
        ("RayCluster", lambda d: d["spec"].update(authOptions={"mode": "tokens"}), "authOptions.mode"),
    ],
)
def test_strict_validation_catches_what_kubernetes_would_drop(kind: str, mutate: Any, expected: str) -> None:
    (doc,) = (copy.deepcopy(d) for _, _, d in ray_documents() if d["kind"] == kind)
    mutate(doc)
    errors = validate_strict(doc)
    assert any(expected in e for e in errors), errors


def test_strict_schema_keeps_open_what_the_crd_leaves_open() -> None:
    schema = {
        "type": "object",
        "properties": {
            "closed": {"type": "object", "properties": {"a": {"type": "string"}}},
            "open": {"type": "object", "x-kubernetes-preserve-unknown-fields": True, "properties": {}},
            "map": {"type": "object", "additionalProperties": {"type": "string"}},
            "free": {"type": "object"},
        },
    }
    v = jsonschema.Draft7Validator(strict_schema(schema))
    assert v.is_valid({"open": {"x": 1}, "map": {"k": "v"}, "free": {"y": 2}, "closed": {"a": "s"}})
    assert not v.is_valid({"closed": {"b": "s"}})
    assert not v.is_valid({"other": 1})


# -- images, versions, credentials ------------------------------------------------------------------


def test_ray_versions_and_images_match_the_pin() -> None:
    pin = ray_pin()
    seen = 0
    for path, _, doc in ray_documents():
        spec = cluster_specs(doc)
        assert spec["rayVersion"].startswith(f"{pin}."), (path, spec["rayVersion"])
        for group, group_spec in pod_groups(doc):
            pod = group_spec["template"]["spec"]
            gpu = any(
                "nvidia.com/gpu" in (c.get("resources") or {}).get("limits", {}) for c in pod["containers"]
            )
            assert gpu == (group != "head"), f"{path}: {group}: heads are CPU only, worker groups have GPUs"
            for c in containers(pod):
                problem = image_ok(c["image"], gpu)
                assert problem is None, f"{path}: {group}/{c['name']}: {problem}"
                seen += 1
    launcher = yaml.safe_load(LAUNCHER.read_text(encoding="utf-8"))
    docker = launcher["docker"]
    gpu_types = [t for t in launcher["available_node_types"].values() if t["resources"].get("GPU")]
    for key in ("image", "head_image", "worker_image"):
        if key in docker:
            assert image_ok(docker[key], gpu=bool(gpu_types) and key != "head_image") is None, docker[key]
            seen += 1
    assert seen >= 10


def test_image_check_refuses_wrong_images() -> None:
    pin = ray_pin()
    assert image_ok(f"rayproject/ray-llm:{pin}.0-py311-cu128", gpu=True) is None
    assert image_ok(f"rayproject/ray:{pin}.1-py311", gpu=False) is None
    assert image_ok(f"rayproject/ray:{pin}.1-py311", gpu=True) is not None
    assert image_ok("rayproject/ray:2.9.0-py311-gpu", gpu=True) is not None
    assert image_ok("rayproject/ray:latest", gpu=False) is not None
    assert image_ok(f"example.com/wbray:{pin}.0", gpu=False) is not None


def test_s3_credentials_come_from_a_service_account_or_a_secret() -> None:
    accounts = {
        doc["metadata"]["name"]: doc for _, _, doc in manifests() if doc.get("kind") == "ServiceAccount"
    }
    for path, _, doc in ray_documents():
        for group, group_spec in pod_groups(doc):
            pod = group_spec["template"]["spec"]
            env = [e for c in containers(pod) for e in c.get("env") or []]
            for e in env:
                if e["name"] in AWS_CREDENTIAL_VARS:
                    assert "value" not in e and "secretKeyRef" in e["valueFrom"], (path, group, e["name"])
            needs_s3 = any(e["name"] == "WBRAY_DATA_DIR" for e in env)  # pods that run wbray
            if not needs_s3:
                continue
            secret_env = {e["name"] for e in env if e["name"] in AWS_CREDENTIAL_VARS}
            account = accounts.get(pod.get("serviceAccountName", ""))
            irsa = (
                (account or {}).get("metadata", {}).get("annotations", {}).get("eks.amazonaws.com/role-arn")
            )
            assert irsa or secret_env >= {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}, (path, group)
            if irsa:
                assert re.fullmatch(r"arn:aws:iam::\d{12}:role/[\w+=,.@-]+", irsa), irsa
    launcher = yaml.safe_load(LAUNCHER.read_text(encoding="utf-8"))
    for name, node_type in launcher["available_node_types"].items():
        arn = node_type["node_config"]["IamInstanceProfile"]["Arn"]
        assert re.fullmatch(r"arn:aws:iam::\d{12}:instance-profile/[\w+=,.@-]+", arn), (name, arn)


#: What a leaked AWS credential looks like: an access key id, or a secret key assigned in place.
_KEY_ID = re.compile(
    r"(?<![A-Z0-9])(AKIA|ASIA|ABIA|ACCA|AGPA|AIDA|AIPA|ANPA|ANVA|AROA|APKA)[A-Z0-9]{16}(?![A-Z0-9])"
)
_SECRET_ASSIGNED = re.compile(
    r"(aws_secret_access_key|aws_session_token|secret_access_key)\s*[:=]\s*['\"]?[A-Za-z0-9/+=]{16,}", re.I
)
_SECRET_LIKE = re.compile(r"(?<![A-Za-z0-9/+=])[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+=])")


def _leaks(text: str) -> list[str]:
    found = [m.group(0) for m in _KEY_ID.finditer(text)] + [
        m.group(0) for m in _SECRET_ASSIGNED.finditer(text)
    ]
    for m in _SECRET_LIKE.finditer(text):
        s = m.group(0)
        # A secret access key is 40 random base64 characters: mixed case and digits. Paths and
        # lowercase hex (git commits) are not.
        if re.search(r"[a-z]", s) and re.search(r"[A-Z]", s) and re.search(r"\d", s):
            found.append(s)
    return found


def test_no_aws_key_literal_anywhere_in_cluster_or_configs() -> None:
    files = [f for root in (CLUSTER, REPO / "configs") for f in root.rglob("*") if f.is_file()]
    assert len(files) >= 10
    for f in files:
        assert _leaks(f.read_text(encoding="utf-8")) == [], f


def test_leak_detector_finds_keys() -> None:
    # AWS's documented example credentials (docs.aws.amazon.com), built here so no literal exists.
    key_id = "AKIA" + "IOSFODNN7EXAMPLE"
    secret = "wJalrXUtnFEMI/K7MDENG/" + "bPxRfiCYEXAMPLEKEY"
    assert _leaks(f"env:\n  - name: AWS_ACCESS_KEY_ID\n    value: {key_id}\n")
    assert _leaks(f"aws_secret_access_key = {secret}\n")
    assert _leaks(f"token: {secret}\n")
    assert not _leaks("commit: 59d663aeec13760646da3db9c1cf8cfe883e30b7\n")


def test_secrets_are_referenced_never_inlined() -> None:
    for path, _, doc in manifests():
        for where, value in walk(doc):
            if where.endswith(".name") and value in {*AWS_CREDENTIAL_VARS, "HF_TOKEN", "RAY_AUTH_TOKEN"}:
                parent = where.rsplit(".", 1)[0]
                entry = dict(walk(doc))
                assert f"{parent}.value" not in entry, (path, parent)
                assert f"{parent}.valueFrom.secretKeyRef.name" in entry, (path, parent)
        runtime_env = (doc.get("spec") or {}).get("runtimeEnvYAML")
        if runtime_env:
            env_vars = (yaml.safe_load(runtime_env) or {}).get("env_vars") or {}
            assert not set(env_vars) & {*AWS_CREDENTIAL_VARS, "HF_TOKEN"}, path


def test_wbray_is_installed_at_this_checkouts_version_with_the_gpu_extra() -> None:
    version = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]["version"]
    specs = [s for f in expand([CLUSTER]) for s in pip_specs(f.read_text(encoding="utf-8"))]
    assert len(specs) >= 5
    assert len(set(specs)) == 1, f"every install must be the same: {sorted(set(specs))}"
    (spec,) = set(specs)
    assert spec.startswith("wbray[gpu] @ ") and f"/v{version}." in spec, spec


# -- the AWS launcher -------------------------------------------------------------------------------


def _launcher() -> dict[str, Any]:
    return yaml.safe_load(LAUNCHER.read_text(encoding="utf-8"))


def test_launcher_validates_against_the_autoscaler_schema_in_ray() -> None:
    import ray

    schema_path = Path(os.path.dirname(ray.__file__)) / "autoscaler" / "ray-schema.json"
    schema = json.loads(schema_path.read_text(encoding="utf-8"))
    jsonschema.validate(_launcher(), schema)
    bad = _launcher()
    bad["available_node_types"]["gpu.l40s.x1"]["min_worker"] = 0
    with pytest.raises(jsonschema.ValidationError, match="min_worker"):
        jsonschema.validate(bad, schema)


def test_launcher_node_types() -> None:
    cfg = _launcher()
    types = cfg["available_node_types"]
    head = types[cfg["head_node_type"]]
    assert not head["resources"].get("GPU"), "the head is CPU only"
    workers = {k: v for k, v in types.items() if k != cfg["head_node_type"]}
    accelerators = set()
    for name, node_type in workers.items():
        instance = node_type["node_config"]["InstanceType"]
        assert node_type["resources"]["GPU"] == INSTANCE_GPUS[instance], name
        assert node_type["min_workers"] == 0 < node_type["max_workers"], f"{name}: autoscale from zero"
        (acc,) = (k.split(":", 1)[1] for k in node_type["resources"] if k.startswith("accelerator_type:"))
        accelerators.add(acc)
    # L40S and H100 nodes at least (the configs name L40S, H100 and H200).
    assert {"L40S", "H100"} <= accelerators
    assert sum(t["min_workers"] for t in workers.values()) <= cfg["max_workers"]
    assert cfg["max_workers"] <= sum(t["max_workers"] for t in workers.values())
    # The dashboard / jobs API listens on the head only; reach it through `ray dashboard` (SSH).
    assert "--dashboard-host=127.0.0.1" in " ".join(cfg["head_start_ray_commands"])
    setup = " ".join(cfg["setup_commands"])
    assert "pip install" in setup and "wbray data download" in setup


def test_accelerators_of_the_configs_exist_on_the_clusters() -> None:
    # Every accelerator a config asks for is offered by the launcher (and L40S by the KubeRay groups).
    launcher_acc = {
        k.split(":", 1)[1]
        for t in _launcher()["available_node_types"].values()
        for k in t["resources"]
        if ":" in k
    }
    asked = set()
    for f in expand([REPO / "configs"]):
        for where, value in walk(yaml.safe_load(f.read_text(encoding="utf-8"))):
            if where.endswith("accelerator_type") and value:
                asked.add(value)
    assert asked and asked <= launcher_acc, asked - launcher_acc
    for path, _, doc in ray_documents():
        for group, spec in pod_groups(doc):
            if group == "head":
                continue
            selector = spec["template"]["spec"]["nodeSelector"]["node.kubernetes.io/instance-type"]
            (limits,) = (c["resources"]["limits"] for c in spec["template"]["spec"]["containers"])
            assert limits["nvidia.com/gpu"] == INSTANCE_GPUS[selector], (path, group)


# -- embedded Serve configs and wbray configs -------------------------------------------------------


def _doc(name: str, kind: str) -> dict[str, Any]:
    (doc,) = (d for p, _, d in manifests() if p.name == name and d.get("kind") == kind)
    return doc


def test_rayservice_serves_the_critic_serve_config_verbatim() -> None:
    service = _doc("rayservice-critic.yaml", "RayService")
    embedded = yaml.safe_load(service["spec"]["serveConfigV2"])
    assert embedded == yaml.safe_load((REPO / "configs" / "serve" / "critic.serve.yaml").read_text())
    (app,) = embedded["applications"]
    (llm,) = app["args"]["llm_configs"]
    autoscaling = llm["deployment_config"]["autoscaling_config"]
    assert 1 <= autoscaling["min_replicas"] < autoscaling["max_replicas"]
    (group,) = service["spec"]["rayClusterConfig"]["workerGroupSpecs"]
    assert group["maxReplicas"] >= autoscaling["max_replicas"], "room for every replica"
    assert f"accelerator_type:{llm['accelerator_type']}" in group["rayStartParams"]["resources"]
    assert service["spec"]["rayClusterConfig"]["enableInTreeAutoscaling"] is True


def test_every_serve_import_path_resolves() -> None:
    # wbray's builder imports here; ray.serve.llm needs vLLM to import, so its builder is found in
    # the module's source instead (what `wbray config check` does too).
    assert callable(importlib.import_module("wbray.serve").build_app)
    spec = importlib.util.find_spec("ray.serve.llm")
    assert spec is not None and spec.origin is not None
    assert re.search(r"^def build_openai_app\(", Path(spec.origin).read_text(encoding="utf-8"), re.M)
    serve_docs = [yaml.safe_load(_doc("rayservice-critic.yaml", "RayService")["spec"]["serveConfigV2"])]
    serve_docs += [yaml.safe_load(f.read_text()) for f in (REPO / "configs" / "serve").glob("*.serve.yaml")]
    paths = {app["import_path"] for d in serve_docs for app in d["applications"]}
    assert paths == {"wbray.serve:build_app", "ray.serve.llm:build_openai_app"}
    for d in serve_docs:
        notes = check_serve_document(d, "doc")
        assert notes and all("not checked" not in n for n in notes), notes


def test_every_manifest_and_embedded_config_passes_config_check() -> None:
    for f in expand([CLUSTER]):
        result = check_file(f)
        assert result.ok, result.error
        assert result.kind in {"kuberay", "ray-cluster"}, (f, result.kind)


def test_rayjob_runs_the_mounted_sweep() -> None:
    job = _doc("rayjob-sweep.yaml", "RayJob")
    spec = job["spec"]
    assert spec["submissionMode"] in {"K8sJobMode", "HTTPMode", "SidecarMode", "InteractiveMode"}
    assert spec["shutdownAfterJobFinishes"] is True and spec["ttlSecondsAfterFinished"] > 0
    runtime_env = yaml.safe_load(spec["runtimeEnvYAML"])
    assert pip_specs(" ".join(runtime_env["pip"]))

    words = spec["entrypoint"].split()
    assert words[:2] == ["wbray", "sweep"]
    sweep_path = Path(words[2])
    out = words[words.index("--out") + 1]
    address = words[words.index("--address") + 1]
    assert address == "http://127.0.0.1:8265", "the driver runs on the head: its own jobs API"

    # The sweep file is in the ConfigMap mounted at its directory in the head pod.
    head = spec["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]
    (mount,) = (m for m in head["containers"][0]["volumeMounts"] if m["mountPath"] == str(sweep_path.parent))
    (volume,) = (v for v in head["volumes"] if v["name"] == mount["name"])
    configmap = _doc("rayjob-sweep.yaml", "ConfigMap")
    assert volume["configMap"]["name"] == configmap["metadata"]["name"]
    files = configmap["data"]
    sweep = yaml.safe_load(files[sweep_path.name])
    assert sweep["out"] == out

    # Its parts validate with today's schemas (the whole sweep once wbray.sweeps exists).
    assert sweep["base"] in files
    base = load_config(yaml.safe_load(files[sweep["base"]]))
    assert base.ray.address == "auto"
    names = [CandidateConfig.model_validate(c).name for c in sweep["candidates"]]
    assert sweep["baseline"] in names
    (judge,) = (JudgeConfig.model_validate(j) for j in sweep["judges"])
    served = load_config(REPO / "configs" / "judges" / "writingbench-critic-served.yaml").judge
    assert judge == served, "the ConfigMap's judge is configs/judges/writingbench-critic-served.yaml's"
    # The candidates match the paper fragments of the same name.
    for c in sweep["candidates"]:
        (fragment,) = load_config(REPO / "configs" / "paper" / f"{c['name']}.yaml").candidates
        assert CandidateConfig.model_validate(c) == fragment


def test_rayjob_sweep_validates_with_the_sweep_schema(tmp_path: Path) -> None:
    sweeps = pytest.importorskip("wbray.sweeps", reason="the sweep schema (wbray.sweeps) does not exist yet")
    for key, text in _doc("rayjob-sweep.yaml", "ConfigMap")["data"].items():
        (tmp_path / key).write_text(text)
    sweeps.load_sweep(tmp_path / "sweep.yaml")


def test_pods_running_wbray_get_the_benchmark() -> None:
    # Any node may host a run's driver, so every pod that runs wbray has the data at WBRAY_DATA_DIR.
    for path, _, doc in ray_documents():
        if doc["kind"] == "RayService":
            continue  # serves a model only; no wbray there
        for group, spec in pod_groups(doc):
            pod = spec["template"]["spec"]
            (init,) = pod["initContainers"]
            assert "wbray.cli data download --dest /data/writingbench" in " ".join(init["args"]), (
                path,
                group,
            )
            env = {e["name"]: e.get("value") for e in pod["containers"][0]["env"]}
            assert env["WBRAY_DATA_DIR"] == "/data/writingbench", (path, group)


# -- the GPU-hours estimate -------------------------------------------------------------------------


@cache
def _estimator() -> Any:
    import sys

    spec = importlib.util.spec_from_file_location("wbray_cluster_gpu_hours", CLUSTER / "gpu_hours.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_readme_gpu_hours_table_is_the_estimators_output(official_dir: Path) -> None:
    est = _estimator()
    prompts = est.measure(official_dir)
    readme = (CLUSTER / "README.md").read_text(encoding="utf-8")
    assert est.table(prompts) in readme, "regenerate with: python cluster/gpu_hours.py --data DIR"
    assert est.inputs(prompts) in readme
    assert "Estimates, not measurements" in readme
    # The judge cost the table states: 5 criteria x 1,000 answers.
    assert est.QUERIES * est.CRITERIA == 5_000 and "5,000 critic calls" in readme
    # The model stays within a stated margin of the published figure it is checked against.
    assert abs(est.calibration_tokens_per_s() / est.CALIBRATION_PUBLISHED_TOKS - 1) < 0.35


def test_estimator_inputs_come_from_the_benchmark(official_dir: Path) -> None:
    est = _estimator()
    assert est.estimate_tokens("abcd" * 10) == 10
    assert est.estimate_tokens("写作评测") == pytest.approx(2.8)
    prompts = est.measure(official_dir)
    assert prompts.median < prompts.mean < prompts.longest
    # Every paper config's context covers the median prompt plus the 16k budget.
    assert prompts.median + est.BUDGET_OUT < 32_768
    # A deployment that cannot hold its weights is refused, not estimated.
    too_small = est.Deployment("x", est.MISTRAL_123B, est.L40S, 4, 1_500)
    with pytest.raises(ValueError, match="does not fit"):
        est.gpu_hours(too_small, 1_000, 1_000)
