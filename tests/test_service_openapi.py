"""The service's OpenAPI document as other tools read it: every error status with the error
model, typed health and model answers, readable operation ids; a client generated from it by
``openapi-python-client`` that works; and ``/docs``, ``/redoc`` served without any CDN."""

from __future__ import annotations

import importlib
import io
import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.settings import Settings
from service.testing import encode, random_image, tiny_checkpoint

ERROR_MODEL = {"$ref": "#/components/schemas/ErrorResponse"}


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    weights = tiny_checkpoint(tmp_path_factory.mktemp("weights") / "tiny.safetensors")
    settings = Settings(weights=weights, max_wait_ms=0, warmup=False)
    with TestClient(create_app(settings)) as test_client:
        deadline = time.monotonic() + 60
        while test_client.get("/readyz").status_code != 200:
            assert time.monotonic() < deadline, test_client.get("/readyz").json()
            time.sleep(0.02)
        yield test_client


@pytest.fixture(scope="module")
def spec(client: TestClient) -> dict[str, Any]:
    document: dict[str, Any] = client.get("/openapi.json").json()
    return document


def operations(spec: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, methods in spec["paths"].items():
        for method, operation in methods.items():
            yield method, path, operation


def json_schema(response: dict[str, Any]) -> Any:
    return response.get("content", {}).get("application/json", {}).get("schema")


# -- the document ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "statuses"),
    [
        ("post", "/densepose", {"400", "406", "413", "415", "422", "503", "504"}),
        ("post", "/densepose/video", {"400", "413", "415", "422", "429", "503"}),
        ("get", "/densepose/video/{job_id}/result.npz", {"404", "409"}),
    ],
)
def test_the_error_statuses_of_a_route_have_the_error_model(
    spec: dict[str, Any], method: str, path: str, statuses: set[str]
) -> None:
    responses = spec["paths"][path][method]["responses"]
    assert statuses <= set(responses)
    for status in statuses:
        assert json_schema(responses[status]) == ERROR_MODEL, status


@pytest.mark.parametrize(
    ("method", "path", "statuses"),
    [
        ("post", "/densepose", {"503", "504"}),
        ("post", "/densepose/video", {"429"}),
        ("get", "/readyz", {"503"}),
    ],
)
def test_the_refusals_that_say_when_to_retry_document_retry_after(
    spec: dict[str, Any], method: str, path: str, statuses: set[str]
) -> None:
    responses = spec["paths"][path][method]["responses"]
    for status, response in responses.items():
        header = response.get("headers", {}).get("Retry-After")
        if status in statuses:
            assert header is not None and header["required"], (path, status)
            assert header["schema"] == {"type": "integer", "minimum": 1}
        else:
            assert header is None, (path, status)


def test_every_documented_error_has_a_schema_and_none_is_fastapis_own(
    spec: dict[str, Any],
) -> None:
    for method, path, operation in operations(spec):
        for status, response in operation["responses"].items():
            if int(status) >= 400:
                assert json_schema(response) is not None, (method, path, status)
    assert "HTTPValidationError" not in spec["components"]["schemas"]
    error = spec["components"]["schemas"]["ErrorInfo"]
    assert set(error["required"]) == {"code", "message"}


def test_an_error_answer_is_what_the_error_model_says(client: TestClient) -> None:
    answer = client.post("/densepose?max_persons=0", files={"file": ("x", b"x", "image/png")})
    assert answer.status_code == 422
    assert set(answer.json()) == {"error"} and set(answer.json()["error"]) == {"code", "message"}


def test_operation_ids_are_the_route_names_in_camel_case(spec: dict[str, Any]) -> None:
    ids = {(method, path): operation["operationId"] for method, path, operation in operations(spec)}
    assert ids[("post", "/densepose")] == "densepose"
    assert ids[("post", "/densepose/video")] == "submitVideoJob"
    assert ids[("get", "/densepose/video/{job_id}")] == "videoJobStatus"
    assert ids[("get", "/v1/model")] == "modelInfo"
    assert all(re.fullmatch(r"[a-z][A-Za-z0-9]*", name) for name in ids.values()), ids
    assert len(set(ids.values())) == len(ids)


def test_health_readiness_and_model_answers_are_typed(spec: dict[str, Any]) -> None:
    schemas = spec["components"]["schemas"]
    readyz = spec["paths"]["/readyz"]["get"]["responses"]
    ref = {"$ref": "#/components/schemas/Readiness"}
    assert json_schema(readyz["200"]) == json_schema(readyz["503"]) == ref
    assert set(schemas["Readiness"]["properties"]) == {"ready", "status", "model_id", "detail"}
    model = spec["paths"]["/v1/model"]["get"]["responses"]["200"]
    assert json_schema(model) == {"$ref": "#/components/schemas/ServedModel"}
    served = schemas["ServedModel"]["properties"]
    assert {"model_id", "weights_name", "weights_sha256", "batching", "limits", "video"} <= set(
        served
    )
    assert "weights_path" not in served
    assert served["config"] == {"$ref": "#/components/schemas/DDPConfig"}
    assert "detection_score_threshold" in schemas["InstanceConfig"]["properties"]


def test_the_answers_follow_their_models(client: TestClient) -> None:
    ready = client.get("/readyz").json()
    assert ready == {
        "ready": True,
        "status": "ready",
        "model_id": ready["model_id"],
        "detail": None,
    }
    assert client.get("/healthz").json() == {"status": "alive", "detail": None}
    served = client.get("/v1/model").json()
    assert served["weights_name"] == "tiny.safetensors"
    assert "/" not in json.dumps(served["weights_name"]) and "weights_path" not in served
    assert served["config"]["instance"]["max_detections"] == 3


# -- a generated client -----------------------------------------------------------------------


def test_a_client_generated_from_the_document_calls_the_service(
    client: TestClient, spec: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "openapi.json").write_text(json.dumps(spec))
    (tmp_path / "config.json").write_text(json.dumps({"post_hooks": []}))
    generator = Path(sys.executable).with_name("openapi-python-client")
    command = [str(generator), "generate", "--path", str(tmp_path / "openapi.json")]
    command += ["--meta", "none", "--output-path", str(tmp_path / "ddp_generated_client")]
    command += ["--config", str(tmp_path / "config.json")]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr

    monkeypatch.syspath_prepend(str(tmp_path))
    package = importlib.import_module("ddp_generated_client")
    densepose = importlib.import_module("ddp_generated_client.api.densepose.densepose")
    readyz = importlib.import_module("ddp_generated_client.api.health.readyz")
    model_info = importlib.import_module("ddp_generated_client.api.model.model_info")
    models = importlib.import_module("ddp_generated_client.models")
    types = importlib.import_module("ddp_generated_client.types")
    try:
        generated = package.Client(base_url=str(client.base_url)).set_httpx_client(client)

        assert readyz.sync(client=generated).ready is True
        assert model_info.sync(client=generated).weights_name == "tiny.safetensors"

        def upload(data: bytes) -> Any:
            file = types.File(payload=io.BytesIO(data), file_name="x.png", mime_type="image/png")
            return models.DenseposeFilesBody(file=file)

        png = encode(random_image(0))
        answer = densepose.sync(client=generated, body=upload(png), max_persons=2)
        assert isinstance(answer, models.DensePoseResponse)
        assert len(answer.persons) == 2 and answer.image.width == 128
        assert answer.persons[0].mask_png_base64

        refused = densepose.sync(client=generated, body=upload(b"hello, world" * 10))
        assert isinstance(refused, models.ErrorResponse)
        assert refused.error.code == "unsupported_image"
    finally:
        for name in [name for name in sys.modules if name.startswith("ddp_generated_client")]:
            del sys.modules[name]


# -- offline documentation --------------------------------------------------------------------


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_the_documentation_pages_load_only_assets_of_the_service(
    client: TestClient, page: str
) -> None:
    html = client.get(page).text
    assert "http://" not in html and "https://" not in html
    assets = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert any(asset.endswith(".js") for asset in assets), assets
    for asset in assets:
        assert asset.startswith("/"), asset
        answer = client.get(asset)
        assert answer.status_code == 200 and len(answer.content) > 1000, asset
    assert "/openapi.json" in html


def test_the_spec_offers_raft_only_where_the_service_has_raft_weights(tmp_path):
    """A request the spec allows must not be refused: without RAFT weights ``flow=raft``
    would get 422, so the spec lists ``dis`` alone; with them, both."""

    def flow_enum(settings: Settings) -> list[str]:
        spec = create_app(settings).openapi()
        parameters = spec["paths"]["/densepose/video"]["post"]["parameters"]
        (flow,) = (p for p in parameters if p["name"] == "flow")
        return flow["schema"]["enum"]

    base = Settings(weights=tmp_path / "missing.safetensors", untrained_config="tiny")
    assert flow_enum(base) == ["dis"]
    with_raft = base.model_copy(update={"video_raft_weights": tmp_path / "raft.safetensors"})
    assert flow_enum(with_raft) == ["dis", "raft"]
