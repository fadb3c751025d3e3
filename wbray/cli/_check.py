"""``wbray config check``: validate any wbray config file and say so in one line per file.

What a file is comes from its content (``--kind`` forces it):

- ``eval``: an evaluation config (:class:`wbray.config.WbrayConfig`); the default.
- ``serve``: a served application (:class:`wbray.serve.ServeAppConfig`); it has ``models``.
- ``serve-native``: Ray Serve's own config file; it has ``applications``. Ray's schema is applied with
  unknown keys refused, every ``import_path`` is resolved, ``wbray.serve:build_app`` args are checked
  as a serve config (a ``config:`` path resolves against the working directory, as ``serve run`` does),
  and ``ray.serve.llm:build_openai_app`` args as Ray's ``LLMConfig`` (importable without vLLM).
- ``kuberay``: Kubernetes manifests; they have ``apiVersion`` and ``kind``, several documents allowed.
  The wbray configs they embed are checked: the files of a ConfigMap (laid out in a directory, as
  the pod mounts them, so they may refer to each other) and a RayService's ``serveConfigV2``. The
  manifests themselves are checked against the KubeRay CRDs by the test suite.
- ``ray-cluster``: a Ray cluster launcher file (``ray up``); it has ``cluster_name`` and ``provider``.
  Checked against the autoscaler schema shipped inside the installed ``ray`` package.
- ``sweep``: a sweep of candidates x judges; it has ``judges``, ``base``, ``baseline`` or
  ``max_concurrent``. Checked by ``wbray.sweeps.load_sweep`` where that module exists, skipped
  (and said so) where it does not.

Nothing here starts Ray or loads a model.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import re
import tempfile
import types
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

import yaml
from pydantic import BaseModel, ValidationError

from wbray.errors import ConfigError, WbrayError

Kind = Literal["eval", "serve", "serve-native", "kuberay", "ray-cluster", "sweep"]
KINDS: Final[tuple[Kind, ...]] = ("eval", "serve", "serve-native", "kuberay", "ray-cluster", "sweep")
KIND_NAMES: Final[Mapping[str, str]] = {
    "eval": "evaluation config",
    "serve": "serve config",
    "serve-native": "Ray Serve config",
    "kuberay": "Kubernetes manifests",
    "ray-cluster": "Ray cluster launcher config",
    "sweep": "sweep",
}
#: Top-level keys only a sweep has (an evaluation config has ``judge``, never ``judges``).
SWEEP_KEYS: Final = frozenset({"judges", "base", "baseline", "max_concurrent"})
#: The builder ``serve run`` / ``serve deploy`` / a RayService call for a wbray application.
WBRAY_BUILDER: Final = "wbray.serve:build_app"
#: Ray's builder of an OpenAI-compatible vLLM application.
LLM_BUILDER: Final = "ray.serve.llm:build_openai_app"
#: The keys of ``LLMServingArgs`` (Ray 2.60); its class cannot be imported without vLLM.
LLM_SERVING_ARGS_KEYS: Final = frozenset({"llm_configs", "ingress_cls_config", "ingress_deployment_config"})
YAML_SUFFIXES: Final = (".yaml", ".yml")
_CONFIGMAP_KEY: Final = re.compile(r"[-._a-zA-Z0-9]+")


@dataclass(frozen=True)
class CheckResult:
    """The outcome for one file.

    Attributes:
        path: The file as given.
        kind: What it was checked as (None when it could not even be read).
        error: One line naming the file and the key at fault, or None.
        skipped: Why nothing was checked, or None.
        notes: What was checked beyond the schema, or could not be.
    """

    path: str
    kind: Kind | None
    error: str | None = None
    skipped: str | None = None
    notes: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        """True unless the file failed (a skipped file does not fail)."""
        return self.error is None

    def line(self) -> str:
        """The one line ``wbray config check`` prints."""
        if self.error is not None:
            return f"FAIL {self.error}"
        what = KIND_NAMES.get(self.kind or "", "config")
        if self.skipped is not None:
            return f"skip {self.path} ({what}: {self.skipped})"
        extra = "; ".join(self.notes)
        return f"ok   {self.path} ({what}{': ' + extra if extra else ''})"


def expand(paths: Iterable[str | Path]) -> list[Path]:
    """Files to check: each file as given, each directory's YAML files (recursively, sorted)."""
    out: list[Path] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            out.extend(sorted(f for f in p.rglob("*") if f.suffix in YAML_SUFFIXES and f.is_file()))
        else:
            out.append(p)
    return out


def check_file(path: str | Path, kind: Kind | None = None) -> CheckResult:
    """Validate one file; never raises for a bad file (the result carries the error).

    Args:
        path: The YAML file.
        kind: What to check it as; None detects it from the content.
    """
    source = str(path)
    try:
        docs = _read_documents(Path(path))
        detected = kind or detect_kind(docs, source)
    except ConfigError as exc:
        return CheckResult(source, None, error=str(exc))
    try:
        if detected == "sweep":
            skipped = _check_sweep(Path(path))
            return CheckResult(source, detected, skipped=skipped)
        notes = _CHECKERS[detected](Path(path), docs)
    except WbrayError as exc:
        return CheckResult(source, detected, error=_with_source(str(exc), source))
    return CheckResult(source, detected, notes=tuple(notes))


def detect_kind(docs: list[Any], source: str) -> Kind:
    """What a file is, from its parsed YAML documents.

    Raises:
        ConfigError: The file is empty of mappings, e.g. a bare list.
    """
    if len(docs) > 1 or any(isinstance(d, dict) and "apiVersion" in d and "kind" in d for d in docs):
        return "kuberay"
    doc = docs[0] if docs else {}
    if not isinstance(doc, dict):
        raise ConfigError(f"{source}: the top level must be a mapping, got {type(doc).__name__}")
    if "applications" in doc:
        return "serve-native"
    if "cluster_name" in doc and "provider" in doc:
        return "ray-cluster"
    if "models" in doc:
        return "serve"
    if SWEEP_KEYS & doc.keys():
        return "sweep"
    return "eval"


# -- reading ----------------------------------------------------------------------------------------


def _read_documents(path: Path) -> list[Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror})") from None
    try:
        return [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None


def _with_source(message: str, source: str) -> str:
    # Messages about a mapping rather than a file start with "<args>"; every line must name the file.
    if message.startswith("<args>"):
        return source + message[len("<args>") :]
    return message if message.startswith(source) else f"{source}: {message}"


def _relabel(exc: ConfigError, where: str) -> ConfigError:
    return ConfigError(_with_source(str(exc), where))


# -- evaluation and serve configs -------------------------------------------------------------------


def _check_eval(path: Path, docs: list[Any]) -> list[str]:
    from wbray.config import load_config

    config = load_config(path)
    notes = [f"{len(config.candidates)} candidate(s)"] if config.candidates else []
    if config.judge.engine is not None:
        notes.append(f"judge {config.judge.name} ({config.judge.engine.backend})")
    return notes


def _check_serve(path: Path, docs: list[Any]) -> list[str]:
    from wbray.serve import load_serve_config

    config = load_serve_config(path)
    return [f"models {', '.join(m.name for m in config.models)}"]


# -- Ray Serve's own format -------------------------------------------------------------------------


def _check_serve_native(path: Path, docs: list[Any]) -> list[str]:
    return check_serve_document(docs[0] if docs else {}, str(path))


def check_serve_document(doc: Any, where: str, *, local_paths: bool = True) -> list[str]:
    """Check a Ray Serve config (the file of ``serve deploy`` or a RayService's ``serveConfigV2``).

    Args:
        doc: The parsed document.
        where: How messages name it, e.g. ``file.yaml`` or ``file.yaml: RayService/x spec.serveConfigV2``.
        local_paths: Whether a ``config:`` path in wbray args names a file here (a RayService's
            names one inside its pods, which is only checked when it happens to exist here too).

    Returns:
        Notes on what was checked per application.

    Raises:
        ConfigError: Naming ``where`` and the key at fault.
    """
    from ray.serve.schema import ServeDeploySchema

    if not isinstance(doc, dict):
        raise ConfigError(f"{where}: a Serve config must be a mapping, got {type(doc).__name__}")
    # Ray's schema ignores unknown keys (so a misspelt one is silently dropped); refuse them here.
    _closed_keys(doc, ServeDeploySchema, where, ())
    try:
        ServeDeploySchema.model_validate(doc)
    except ValidationError as exc:
        raise _pydantic_error(exc, where) from None
    notes = []
    for i, app in enumerate(doc.get("applications") or []):
        name = app.get("name", "default")
        at = f"{where}: applications[{i}] ({name})"
        import_path = str(app.get("import_path", ""))
        _resolve_import_path(import_path, at)
        args = app.get("args") or {}
        if import_path == WBRAY_BUILDER:
            notes.append(f"{name}: {_check_wbray_app_args(args, at, local_paths)}")
        elif import_path == LLM_BUILDER:
            notes.append(f"{name}: {_check_llm_app_args(args, at)}")
        else:
            notes.append(f"{name}: {import_path} is not a wbray or ray.serve.llm builder, args not checked")
    return notes


def _check_wbray_app_args(args: Any, at: str, local_paths: bool) -> str:
    from wbray.serve import load_serve_config

    if not isinstance(args, dict):
        raise ConfigError(f"{at}: args must be a mapping, got {type(args).__name__}")
    if "config" not in args:
        try:
            config = load_serve_config(args)
        except ConfigError as exc:
            raise _relabel(exc, f"{at} args") from None
        return f"inline serve config, models {', '.join(m.name for m in config.models)}"
    extra = sorted(set(args) - {"config", "overrides"})
    if extra:
        raise ConfigError(f"{at}: args: with 'config' only 'overrides' may be given, not {', '.join(extra)}")
    # Like `serve run`, the builder resolves the path against its working directory.
    target = Path(str(args["config"]))
    if not target.is_file() and not local_paths:
        return f"serve config {target} is a path in the pods, not checked"
    if not target.is_file():
        raise ConfigError(
            f"{at}: args.config: {target} is not a file (paths resolve against the working directory, "
            f"{Path.cwd()}, as they do for `serve run`)"
        )
    overrides = [str(o) for o in args.get("overrides") or []]
    config = load_serve_config(target, overrides)
    return f"serve config {target}, models {', '.join(m.name for m in config.models)}"


def _check_llm_app_args(args: Any, at: str) -> str:
    if not isinstance(args, dict):
        raise ConfigError(f"{at}: args must be a mapping, got {type(args).__name__}")
    extra = sorted(set(args) - LLM_SERVING_ARGS_KEYS)
    if extra:
        allowed = ", ".join(sorted(LLM_SERVING_ARGS_KEYS))
        raise ConfigError(f"{at}: args: unknown key(s) {', '.join(extra)} (allowed: {allowed})")
    configs = args.get("llm_configs")
    if not isinstance(configs, list) or not configs:
        raise ConfigError(f"{at}: args.llm_configs must be a non-empty list of LLMConfig mappings")
    try:
        # ray.serve.llm itself needs vLLM to import; its LLMConfig lives here and imports without it.
        from ray.llm._internal.serve.core.configs.llm_config import LLMConfig
    except ImportError:
        return "LLMConfig not importable with this Ray, llm_configs not checked"
    ids = []
    for j, entry in enumerate(configs):
        if not isinstance(entry, dict):
            raise ConfigError(f"{at}: args.llm_configs[{j}] must be a mapping (an LLMConfig)")
        try:
            llm = LLMConfig.model_validate(entry)
        except ValidationError as exc:
            raise _pydantic_error(exc, f"{at}: args.llm_configs[{j}]") from None
        ids.append(llm.model_id)
    return f"ray.serve.llm LLMConfig ok, models {', '.join(ids)}"


def _resolve_import_path(import_path: str, at: str) -> None:
    """Check ``module:attribute`` resolves; where the module needs what is not installed here (e.g.
    ``ray.serve.llm`` needs vLLM), find the attribute in the module's source without running it."""
    module_name, sep, attr = import_path.partition(":")
    if not sep:
        module_name, _, attr = import_path.rpartition(".")
    if not module_name or not attr:
        raise ConfigError(f"{at}: import_path {import_path!r} is not of the form module:attribute")
    try:
        spec = importlib.util.find_spec(module_name)
    except ImportError:
        spec = None
    if spec is None:
        raise ConfigError(f"{at}: import_path {import_path!r}: no module {module_name!r} here")
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        if not _defines(spec.origin, attr):
            raise ConfigError(
                f"{at}: import_path {import_path!r}: {module_name} defines no {attr!r}"
            ) from None
        return
    if not callable(getattr(module, attr, None)):
        raise ConfigError(f"{at}: import_path {import_path!r}: {module_name} has no callable {attr!r}")


def _defines(origin: str | None, name: str) -> bool:
    if origin is None or not origin.endswith(".py"):
        return False
    tree = ast.parse(Path(origin).read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) and node.name == name:
            return True
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == name for t in node.targets
        ):
            return True
        if isinstance(node, ast.ImportFrom) and any((a.asname or a.name) == name for a in node.names):
            return True
    return False


def _closed_keys(value: Any, model: type[BaseModel], where: str, loc: tuple[str | int, ...]) -> None:
    """Refuse keys a pydantic model does not declare, recursively (like ``extra="forbid"``)."""
    if not isinstance(value, dict):
        return
    fields = model.model_fields
    known = set(fields) | {f.alias for f in fields.values() if f.alias}
    for key, item in value.items():
        if key not in known:
            dotted = ".".join(str(p) for p in (*loc, key))
            raise ConfigError(f"{where}: unknown key {dotted!r} (allowed here: {', '.join(sorted(fields))})")
        name = key if key in fields else next(n for n, f in fields.items() if f.alias == key)
        sub, is_list = _model_in(fields[name].annotation)
        if sub is None:
            continue
        if is_list and isinstance(item, list):
            for i, element in enumerate(item):
                _closed_keys(element, sub, where, (*loc, key, i))
        else:
            _closed_keys(item, sub, where, (*loc, key))


def _model_in(annotation: Any) -> tuple[type[BaseModel] | None, bool]:
    """The pydantic model a field holds (directly, optionally, or as a list of them)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation, False
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (list, typing.List):  # noqa: UP006 - Ray's schema annotates with typing.List
        inner, _ = _model_in(args[0]) if args else (None, False)
        return inner, True
    if origin in (typing.Union, types.UnionType):
        models = [m for m in (_model_in(a) for a in args) if m[0] is not None]
        if len(models) == 1:
            return models[0]
    return None, False


def _pydantic_error(exc: ValidationError, where: str) -> ConfigError:
    err = exc.errors()[0]
    dotted = ".".join(str(p) for p in err["loc"]) or "<root>"
    more = f" (and {exc.error_count() - 1} more problems)" if exc.error_count() > 1 else ""
    return ConfigError(f"{where}: {dotted}: {err['msg']} (got {err.get('input')!r}){more}")


# -- Kubernetes manifests ---------------------------------------------------------------------------


def _check_kuberay(path: Path, docs: list[Any]) -> list[str]:
    notes = []
    for n, doc in enumerate(docs):
        if not isinstance(doc, dict):
            raise ConfigError(f"{path}: document {n + 1} is not a mapping")
        kind = doc.get("kind")
        name = (doc.get("metadata") or {}).get("name", f"#{n + 1}")
        where = f"{path}: {kind}/{name}"
        spec = doc.get("spec") or {}
        if kind == "ConfigMap":
            notes.append(f"{kind}/{name}: {_check_configmap(doc.get('data') or {}, where)}")
        elif kind == "RayService" and "serveConfigV2" in spec:
            serve_doc = _yaml_string(spec["serveConfigV2"], f"{where} spec.serveConfigV2")
            apps = check_serve_document(serve_doc, f"{where} spec.serveConfigV2", local_paths=False)
            notes.append(f"{kind}/{name}: serveConfigV2 {'; '.join(apps)}")
        elif kind == "RayJob" and "runtimeEnvYAML" in spec:
            env = _yaml_string(spec["runtimeEnvYAML"], f"{where} spec.runtimeEnvYAML")
            if not isinstance(env, dict):
                raise ConfigError(f"{where}: spec.runtimeEnvYAML must hold a mapping")
            notes.append(f"{kind}/{name}: runtimeEnvYAML parses")
        else:
            notes.append(f"{kind}/{name}: nothing of wbray's embedded")
    return notes


# -- Ray cluster launcher ---------------------------------------------------------------------------


def _check_ray_cluster(path: Path, docs: list[Any]) -> list[str]:
    import json
    import os

    import ray

    # jsonschema comes with ray; imported by name so that mypy needs no stubs for it.
    jsonschema: Any = importlib.import_module("jsonschema")
    schema_file = Path(os.path.dirname(ray.__file__)) / "autoscaler" / "ray-schema.json"
    schema = json.loads(schema_file.read_text(encoding="utf-8"))
    errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(docs[0] if docs else {}), key=str)
    if errors:
        first = errors[0]
        dotted = ".".join(str(p) for p in first.absolute_path) or "<root>"
        more = f" (and {len(errors) - 1} more problems)" if len(errors) > 1 else ""
        raise ConfigError(f"{path}: {dotted}: {first.message}{more}")
    types_ = sorted(docs[0].get("available_node_types") or {})
    return [f"Ray {ray.__version__} autoscaler schema, node types {', '.join(types_)}"]


def _yaml_string(value: Any, where: str) -> Any:
    if not isinstance(value, str):
        raise ConfigError(f"{where}: must be a YAML string, got {type(value).__name__}")
    try:
        return yaml.safe_load(value)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{where}: not valid YAML: {exc}") from None


def _check_configmap(data: Mapping[str, Any], where: str) -> str:
    """Check a ConfigMap's YAML files laid out as the pod sees them (so relative references work)."""
    for key, text in data.items():
        # Kubernetes' own rule for ConfigMap keys; it also keeps every file inside the directory.
        if not _CONFIGMAP_KEY.fullmatch(key) or key in (".", ".."):
            raise ConfigError(f"{where}: data key {key!r} is not a valid ConfigMap key ([-._a-zA-Z0-9]+)")
        if not isinstance(text, str):
            raise ConfigError(f"{where}: data[{key}] must be a string")
    files = sorted(k for k in data if k.endswith(YAML_SUFFIXES))
    if not files:
        return "no YAML files"
    with tempfile.TemporaryDirectory(prefix="wbray-configmap-") as tmp:
        for key, text in data.items():
            (Path(tmp) / key).write_text(text, encoding="utf-8")
        checked = []
        for key in files:
            result = check_file(Path(tmp) / key)
            if result.error is not None:
                raise ConfigError(result.error.replace(str(Path(tmp) / key), f"{where} data[{key}]"))
            what = KIND_NAMES.get(result.kind or "", "config")
            checked.append(f"{key} {'skipped' if result.skipped else 'ok'} ({what})")
    return ", ".join(checked)


# -- sweeps -----------------------------------------------------------------------------------------


def _check_sweep(path: Path) -> str | None:
    """Check a sweep with the sweep schema; return why it was skipped when there is none."""
    try:
        sweeps = importlib.import_module("wbray.sweeps")
    except ModuleNotFoundError:
        return "not checked: this wbray has no sweep schema (wbray.sweeps)"
    load = getattr(sweeps, "load_sweep", None)
    if not callable(load):
        raise ConfigError(f"{path}: wbray.sweeps has no load_sweep(path) to check sweep files with")
    load(path)
    return None


_CHECKERS: Final = {
    "eval": _check_eval,
    "serve": _check_serve,
    "serve-native": _check_serve_native,
    "kuberay": _check_kuberay,
    "ray-cluster": _check_ray_cluster,
}
