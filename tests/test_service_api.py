"""The HTTP API through ``TestClient``: answers, options, errors, health, model info, metrics."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image
from pydantic import ValidationError

from model.inference.predictor import Predictor
from model.outputs.encoding import decode_iuv_png, decode_mask_png
from model.outputs.npz import read_npz
from service.app import create_app
from service.batching import BatchingPolicy
from service.client import encode_upload
from service.formats import FORMATS
from service.loading import ModelInfo, load_predictor
from service.settings import BatchMode, Settings
from service.testing import bomb_png, encode, random_image, tiny_checkpoint

MAX_UPLOAD_BYTES = 200_000
MAX_PIXELS = 1_000_000


def wait_ready(client: TestClient, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while client.get("/readyz").status_code != 200:
        assert time.monotonic() < deadline, client.get("/readyz").json()
        time.sleep(0.02)


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_checkpoint(tmp_path_factory.mktemp("weights") / "tiny.safetensors")


@pytest.fixture(scope="module")
def client(weights: Path) -> Iterator[TestClient]:
    settings = Settings(
        weights=weights,
        max_upload_bytes=MAX_UPLOAD_BYTES,
        max_image_pixels=MAX_PIXELS,
        max_wait_ms=0,
    )
    with TestClient(create_app(settings)) as test_client:
        wait_ready(test_client)
        yield test_client


@pytest.fixture(scope="module")
def png() -> bytes:
    return encode(random_image(0))


def post(client: TestClient, data: bytes, *, params: str = "", **headers: str):  # type: ignore[no-untyped-def]
    return client.post(
        f"/densepose{params}", files={"file": ("x", data, "image/png")}, headers=headers
    )


def assert_error(response, status: int, code: str) -> None:  # type: ignore[no-untyped-def]
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.json()["error"]["code"] == code
    assert response.json()["error"]["message"]


# -- answers ------------------------------------------------------------------------------


def test_json_answer(client: TestClient, png: bytes) -> None:
    response = post(client, png)
    assert response.status_code == 200
    body = response.json()
    assert body["image"] == {"height": 96, "width": 128}
    assert (
        body["model_id"].startswith("tiny@") and body["model_id"] == response.headers["x-model-id"]
    )
    assert set(body["timings"]) == {"decode_s", "queue_s", "model_s", "encode_s", "batch_size"}
    assert len(body["persons"]) == 3
    scores = [p["score"] for p in body["persons"]]
    assert scores == sorted(scores, reverse=True)
    for person in body["persons"]:
        x0, y0, x1, y1 = person["box_int"]
        parts, uv = decode_iuv_png(base64.b64decode(person["iuv_png_base64"]))
        mask = decode_mask_png(base64.b64decode(person["mask_png_base64"]))
        assert parts.shape == mask.shape == (y1 - y0, x1 - x0) and uv.shape[0] == 2
    assert "model;dur=" in response.headers["server-timing"]


def test_raw_body_upload_equals_multipart(client: TestClient, png: bytes) -> None:
    raw = client.post("/densepose", content=png, headers={"content-type": "image/png"})
    assert raw.status_code == 200
    assert raw.json()["persons"] == post(client, png).json()["persons"]


def test_npz_answer_by_accept_header(client: TestClient, png: bytes) -> None:
    response = post(client, png, accept="application/x-npz")
    assert response.headers["content-type"] == "application/x-npz"
    arrays = read_npz(response.content)  # the NPZ layout of docs/outputs.md
    assert arrays["instances"].shape == (1, 96, 128) and arrays["u"].dtype == np.float16
    assert arrays["person_score"].shape == (3,)


def test_png_overlay_by_format_option(client: TestClient, png: bytes) -> None:
    response = post(client, png, params="?format=png", accept="application/json")
    assert response.headers["content-type"] == "image/png"
    assert response.content.startswith(b"\x89PNG")


def test_unsatisfiable_accept_is_406(client: TestClient, png: bytes) -> None:
    assert_error(post(client, png, accept="text/html"), 406, "not_acceptable")


def test_options_select_persons_and_outputs(client: TestClient, png: bytes) -> None:
    body = post(client, png, params="?max_persons=2&outputs=mask").json()
    assert len(body["persons"]) == 2
    assert all("iuv_png_base64" not in p and "mask_png_base64" in p for p in body["persons"])


def test_zero_persons_is_200_with_empty_list(client: TestClient, png: bytes) -> None:
    response = post(client, png, params="?score_threshold=1.0")
    assert response.status_code == 200 and response.json()["persons"] == []
    arrays = read_npz(post(client, png, params="?score_threshold=1&format=npz").content)
    assert arrays["person_score"].shape == (0,) and not arrays["instances"].any()


def test_client_encodes_arrays_as_png() -> None:
    image = random_image(3, 10, 12)
    assert encode_upload(image).startswith(b"\x89PNG")


# -- bad input: each a clear JSON error, and the service keeps serving ---------------------


def half(data: bytes) -> bytes:
    return data[: len(data) // 2]


BAD_UPLOADS = {
    "empty": (b"", 400, "empty_body"),
    "not_an_image": (b"hello, world" * 10, 415, "unsupported_image"),
    "truncated_jpeg": (half(encode(random_image(1), "JPEG")), 400, "corrupt_image"),
    "truncated_png": (half(encode(random_image(1))), 400, "corrupt_image"),
    "bomb_100k_x_100k": (bomb_png(100_000, 100_000), 413, "too_many_pixels"),
    "over_pixel_limit": (bomb_png(1001, 1000), 413, "too_many_pixels"),
    "over_byte_limit": (b"\xff\xd8" + bytes(MAX_UPLOAD_BYTES), 413, "upload_too_large"),
}


@pytest.mark.parametrize("name", list(BAD_UPLOADS))
def test_bad_upload(client: TestClient, png: bytes, name: str) -> None:
    data, status, code = BAD_UPLOADS[name]
    assert_error(post(client, data), status, code)
    raw = client.post("/densepose", content=data, headers={"content-type": "image/jpeg"})
    assert_error(raw, status, code)
    assert post(client, png).status_code == 200


def test_a_raw_octet_stream_body_is_sniffed(client: TestClient, png: bytes) -> None:
    headers = {"content-type": "application/octet-stream"}
    answer = client.post("/densepose", content=png, headers=headers)
    assert answer.status_code == 200, answer.text
    not_an_image = client.post("/densepose", content=b"hello, world" * 10, headers=headers)
    assert_error(not_an_image, 415, "unsupported_image")


def test_wrong_content_type(client: TestClient, png: bytes) -> None:
    response = client.post("/densepose", content=png, headers={"content-type": "text/plain"})
    assert_error(response, 415, "unsupported_media_type")
    assert_error(client.post("/densepose", content=png), 415, "unsupported_media_type")


def test_multipart_without_file_part(client: TestClient) -> None:
    response = client.post("/densepose", files={"image": ("x", b"abc", "image/png")})
    assert_error(response, 400, "missing_file")


@pytest.mark.parametrize(
    "params",
    [
        "?score_threshold=1.5",
        "?score_threshold=-0.1",
        "?score_threshold=abc",
        "?max_persons=0",
        "?max_persons=101",
        "?outputs=skeleton",
        "?format=gif",
        "?unknown_option=1",
    ],
)
def test_absurd_options_are_422(client: TestClient, png: bytes, params: str) -> None:
    response = post(client, png, params=params)
    assert_error(response, 422, "invalid_request")
    assert params[1:].split("=")[0] in response.json()["error"]["message"]


@pytest.mark.parametrize("kind", ["L", "RGBA", "I;16"])
def test_grayscale_rgba_16bit_are_accepted(client: TestClient, kind: str) -> None:
    image = random_image(2)
    converted = {
        "L": image[..., 0],
        "RGBA": np.dstack([image, np.full(image.shape[:2], 255, np.uint8)]),
        "I;16": image[..., 0].astype(np.uint16) * 257,
    }[kind]
    response = post(client, encode(converted))
    assert response.status_code == 200
    assert response.json()["image"] == {"height": 96, "width": 128}


def test_exif_orientation_is_honoured(client: TestClient) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # stored 128 × 96, shown 96 × 128
    response = post(client, encode(random_image(4), "JPEG", exif=exif))
    assert response.json()["image"] == {"height": 128, "width": 96}


# -- batch modes: how a collected batch is split into forward passes ------------------------


@pytest.mark.parametrize(("mode", "passes"), [("group", {"1": 2, "2": 1}), ("pad", {"4": 1})])
def test_batch_modes_give_each_request_its_own_result(
    weights: Path, mode: BatchMode, passes: dict[str, int]
) -> None:
    """Four concurrent requests of three sizes fill one batch: ``group`` runs one forward pass
    per size, ``pad`` one pass for all four; each answer is its own image's, at its size: the
    image's result alone (group), or in one padded ``Predictor`` call of the four (pad)."""
    sizes = [(96, 128), (128, 96), (80, 80), (96, 128)]
    images = [random_image(seed, *size) for seed, size in enumerate(sizes)]
    predictor = Predictor.from_checkpoint(weights, device="cpu")
    expected = predictor(images) if mode == "pad" else [predictor([im])[0] for im in images]
    settings = Settings(weights=weights, max_batch_size=4, max_wait_ms=2000, batch_mode=mode)
    app = create_app(settings)
    with TestClient(app) as client:
        wait_ready(client)
        uploads = [encode(image) for image in images]
        with ThreadPoolExecutor(len(uploads)) as pool:
            responses = list(
                pool.map(lambda data: post(client, data, params="?format=npz"), uploads)
            )
        assert client.get("/v1/model").json()["batching"]["batch_mode"] == mode
    registry = app.state.service.metrics.registry
    forward_passes = {
        size: registry.get_sample_value("ddp_model_forward_seconds_count", {"batch_size": size})
        for size in ("1", "2", "3", "4")
    }
    assert {size: n for size, n in forward_passes.items() if n} == passes
    for (height, width), response, result in zip(sizes, responses, expected, strict=True):
        assert response.status_code == 200, response.text
        arrays = read_npz(response.content)
        assert arrays["instances"].shape == arrays["parts"].shape == (1, height, width)
        assert arrays["u"].shape == arrays["v"].shape == (1, height, width)
        boxes = arrays["person_box_xyxy"]
        assert (boxes >= 0).all() and (boxes[:, 2] <= width).all()
        assert (boxes[:, 3] <= height).all()
        best_first = result.best()
        np.testing.assert_allclose(arrays["person_score"], best_first.scores.numpy(), atol=1e-5)
        np.testing.assert_allclose(boxes, best_first.boxes_xyxy.numpy(), atol=1e-3)


# -- health, model, metrics, docs -----------------------------------------------------------


def test_health_and_readiness(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "alive", "detail": None}
    ready = client.get("/readyz").json()
    assert ready["ready"] is True and ready["model_id"].startswith("tiny@")


def test_model_info(client: TestClient, weights: Path) -> None:
    info = client.get("/v1/model").json()
    assert info["config"]["name"] == "tiny"
    assert info["weights_sha256"] == hashlib.sha256(weights.read_bytes()).hexdigest()
    assert info["weights_name"] == weights.name  # not the path on the server
    assert str(weights.parent) not in json.dumps(info)
    assert info["device"] == "cpu" and info["sparse_backend"] in ("torch", "spconv", "dense")
    assert info["batching"]["max_batch_size"] == 4  # the CPU default
    assert info["batching"]["batch_mode"] == "group"
    assert info["runtime"] == "torch" and info["runtime_setting"] == "auto"  # the default
    assert info["runtime_reason"].startswith("no benchmark record for these weights")


def test_the_batching_policy_is_worked_out_once_at_load_and_reported(
    weights: Path, png: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    devices: list[str] = []
    work_out = BatchingPolicy.of

    def counted(settings: Settings, device: torch.device) -> BatchingPolicy:
        devices.append(str(device))
        return work_out(settings, device)

    monkeypatch.setattr(BatchingPolicy, "of", counted)
    settings = Settings(
        weights=weights,
        warmup=False,
        max_batch_size=3,
        max_wait_ms=7.5,
        batch_mode="pad",
        queue_size=5,
        request_timeout_s=12.0,
        max_batch_pixels=300_000,
        max_queued_pixels=1_200_000,
    )
    app = create_app(settings)
    with TestClient(app) as client:
        wait_ready(client)
        assert post(client, png).status_code == 200
        reported = client.get("/v1/model").json()["batching"]
        assert client.get("/v1/model").json()["batching"] == reported
        policy = app.state.service.model.policy
    assert devices == ["cpu"]
    assert reported == dataclasses.asdict(policy)
    assert reported == {
        "max_batch_size": 3,
        "max_wait_ms": 7.5,
        "batch_mode": "pad",
        "queue_size": 5,
        "request_timeout_s": 12.0,
        "max_batch_pixels": 300_000,
        "max_queued_pixels": 1_200_000,
    }


def test_model_info_reports_the_upload_limits(client: TestClient) -> None:
    assert client.get("/v1/model").json()["limits"] == {
        "max_upload_bytes": MAX_UPLOAD_BYTES,
        "max_image_pixels": MAX_PIXELS,
        "max_image_side": Settings().max_image_side,
    }


def test_model_info_reports_the_video_limits(
    client: TestClient, weights: Path, tmp_path: Path
) -> None:
    defaults = Settings()
    assert client.get("/v1/model").json()["video"] == {
        "max_bytes": defaults.video_max_bytes,
        "max_seconds": defaults.video_max_seconds,
        "max_frames": defaults.video_max_frames,
        "max_pixels": defaults.video_max_pixels,
        "max_running": defaults.video_max_running,
        "max_queued": defaults.video_max_queued,
        "job_ttl_s": defaults.video_job_ttl_s,
        "raft_weights_configured": False,
    }
    settings = Settings(
        weights=weights,
        warmup=False,
        video_max_bytes=1234,
        video_max_seconds=2.5,
        video_max_frames=30,
        video_max_pixels=640 * 480,
        video_max_running=2,
        video_max_queued=0,
        video_job_ttl_s=60.0,
        video_raft_weights=tmp_path / "raft_small.pth",
    )
    with TestClient(create_app(settings)) as other:
        wait_ready(other)
        assert other.get("/v1/model").json()["video"] == {
            "max_bytes": 1234,
            "max_seconds": 2.5,
            "max_frames": 30,
            "max_pixels": 640 * 480,
            "max_running": 2,
            "max_queued": 0,
            "job_ttl_s": 60.0,
            "raft_weights_configured": True,
        }


def test_metrics_by_person_bucket(client: TestClient, png: bytes) -> None:
    for persons in (1, 2, 3):
        post(client, png, params=f"?max_persons={persons}")
    post(client, png, params="?score_threshold=1")
    text = client.get("/metrics").text
    for bucket in ("0", "1", "2", "3-4"):
        assert (
            f'ddp_request_duration_seconds_count{{endpoint="/densepose",persons="{bucket}"}}'
            in text
        )
    for name in (
        "ddp_model_forward_seconds_bucket{batch_size=",
        "ddp_queue_wait_seconds_count",
        "ddp_queue_depth",
        "ddp_batch_size_count",
        "ddp_persons_per_image_count",
        'ddp_requests_total{endpoint="/densepose",status="4xx"}',
        "ddp_model_info{",
    ):
        assert name in text, name


def test_openapi_documents_the_options(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    operation = schema["paths"]["/densepose"]["post"]
    names = {p["name"] for p in operation["parameters"]}
    assert names == {"score_threshold", "max_persons", "outputs", "format"}
    assert {"multipart/form-data", "image/jpeg", "image/png"} <= set(
        operation["requestBody"]["content"]
    )
    assert client.get("/docs").status_code == 200


def test_openapi_documents_the_answer_model_and_every_format(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    operation = schema["paths"]["/densepose"]["post"]
    content = operation["responses"]["200"]["content"]
    assert set(content) == {output.media_type for output in FORMATS.values()}
    assert content["application/json"]["schema"] == {
        "$ref": "#/components/schemas/DensePoseResponse"
    }
    person = schema["components"]["schemas"]["Person"]["properties"]
    assert set(person) == {"score", "box_xyxy", "box_int", "mask_png_base64", "iuv_png_base64"}
    (option,) = [p for p in operation["parameters"] if p["name"] == "format"]
    assert {"type": "string", "enum": list(FORMATS)} in option["schema"]["anyOf"]


def test_unknown_path_is_json_404(client: TestClient) -> None:
    assert_error(client.get("/nope"), 404, "not_found")


# -- start-up ------------------------------------------------------------------------------


def test_missing_weights_fail_at_start_with_a_clear_message(tmp_path: Path) -> None:
    app = create_app(Settings(weights=tmp_path / "missing.safetensors"))
    with pytest.raises(FileNotFoundError, match="DDP_UNTRAINED_CONFIG"), TestClient(app):
        pass


def test_untrained_config_must_name_a_config() -> None:
    with pytest.raises(ValidationError, match="tiny"):
        Settings(untrained_config="huge")


def test_untrained_config_serves_when_weights_are_missing(tmp_path: Path, png: bytes) -> None:
    settings = Settings(weights=tmp_path / "missing.safetensors", untrained_config="tiny")
    with TestClient(create_app(settings)) as client:
        wait_ready(client)
        assert client.get("/v1/model").json()["model_id"] == "tiny@untrained"
        assert post(client, png).status_code == 200


def test_not_ready_until_loaded(weights: Path, png: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    import service.state

    release = threading.Event()

    def slow_load(settings: Settings) -> tuple[Predictor, ModelInfo]:
        release.wait(10)
        return load_predictor(settings)

    monkeypatch.setattr(service.state, "load_predictor", slow_load)
    with TestClient(create_app(Settings(weights=weights))) as client:
        assert client.get("/healthz").status_code == 200
        response = client.get("/readyz")
        assert response.status_code == 503 and response.json()["status"] == "loading"
        refused = post(client, png)
        assert_error(refused, 503, "not_ready")
        assert response.headers["retry-after"] == refused.headers["retry-after"]
        release.set()
        wait_ready(client)
        assert json.loads(post(client, png).text)["persons"]
