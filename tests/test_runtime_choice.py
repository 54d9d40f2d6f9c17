"""``auto``: the fastest recorded runtime within the GPS AP limit (``model.runtimes.choice``),
what can run here (``selection.unavailable_runtimes``), the record beside the weights, and the
service reporting its choice in ``/v1/model``. Every speed here is a recorded number: nothing
is timed."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import pytest
import torch
from fastapi.testclient import TestClient

from model.checkpoint import file_sha256
from model.config import tiny_config
from model.device import CpuInfo, read_cpu_info
from model.inference.predictor import Predictor
from model.network.ddp import build_ddp
from model.paths import DEFAULT_WEIGHTS
from model.runtimes import selection
from model.runtimes.choice import MAX_GPS_AP_LOSS, choose_runtime
from model.runtimes.names import REFERENCE_RUNTIME
from model.runtimes.record import Accuracy, RuntimeRecord, Speed, read_record, record_path
from model.runtimes.selection import select_runtime, unavailable_runtimes
from service.app import create_app
from service.settings import Settings
from service.testing import tiny_checkpoint

SHA = "ab" * 32
EPYC = CpuInfo(name="AMD EPYC", capability="AVX2", flags=frozenset({"avx2"}))
XEON = CpuInfo(name="Intel Xeon 8480", capability="AVX512", flags=frozenset({"amx_bf16"}))


def speed(cpu: CpuInfo, date: str = "2025-01-01", **seconds: float) -> Speed:
    return Speed(
        cpu=cpu.name,
        capability=cpu.capability,
        threads=2,
        date=date,
        seconds_per_image={name.replace("_", "-"): s for name, s in seconds.items()},
    )


def record(*speeds: Speed, **gps_ap: float) -> RuntimeRecord:
    return RuntimeRecord(
        weights_sha256=SHA,
        heldout="heldout",
        images=200,
        accuracy={name.replace("_", "-"): Accuracy(ap, 30.0) for name, ap in gps_ap.items()},
        speeds=list(speeds),
    )


TABLE = record(
    speed(EPYC, torch=0.6, torch_channels_last=0.5, torch_compile=0.4, onnxruntime=0.25),
    torch=21.5,
    torch_channels_last=21.5,
    torch_compile=21.4,
    onnxruntime=21.2,
)


def test_auto_picks_the_fastest_recorded_runtime_and_says_by_how_much() -> None:
    choice = choose_runtime(TABLE, weights_sha256=SHA, cpu=EPYC, unavailable={})
    assert choice.name == "onnxruntime"
    assert choice.reason.startswith("2.40x torch (0.250 s vs 0.600 s per image on AMD EPYC")
    assert "GPS AP -0.3 on heldout (200 images)" in choice.reason


def test_a_runtime_losing_more_than_the_limit_is_passed_over_however_fast() -> None:
    lossy = record(
        speed(EPYC, torch=0.6, torch_compile=0.4, onnxruntime=0.25),
        torch=21.5,
        torch_compile=21.5 - MAX_GPS_AP_LOSS,  # at the limit: allowed
        onnxruntime=21.5 - MAX_GPS_AP_LOSS - 0.01,
    )
    choice = choose_runtime(lossy, weights_sha256=SHA, cpu=EPYC, unavailable={})
    assert choice.name == "torch-compile"
    assert "faster but passed over: onnxruntime (GPS AP -0.5)" in choice.reason


def test_a_runtime_that_cannot_run_here_is_passed_over_with_its_reason() -> None:
    unavailable = {"onnxruntime": "its export is not cached"}
    choice = choose_runtime(TABLE, weights_sha256=SHA, cpu=EPYC, unavailable=unavailable)
    assert choice.name == "torch-compile"
    assert "onnxruntime (its export is not cached)" in choice.reason


def test_an_unscored_runtime_is_never_chosen() -> None:
    unscored = record(speed(EPYC, torch=0.6, openvino=0.3), torch=21.5)
    choice = choose_runtime(unscored, weights_sha256=SHA, cpu=EPYC, unavailable={})
    assert choice.name == "torch" and "openvino (not scored)" in choice.reason


def test_equal_recorded_times_go_to_the_earlier_runtime_name() -> None:
    tie = record(speed(EPYC, torch=0.6, openvino=0.3, onnxruntime=0.3), torch=1, openvino=1,
                 onnxruntime=1)  # fmt: skip
    assert choose_runtime(tie, weights_sha256=SHA, cpu=EPYC, unavailable={}).name == "onnxruntime"


def test_without_a_record_for_these_weights_or_this_cpu_auto_runs_torch() -> None:
    missing = choose_runtime(None, weights_sha256=SHA, cpu=EPYC, unavailable={})
    assert missing.name == "torch" and "no benchmark record" in missing.reason
    other = choose_runtime(TABLE, weights_sha256="cd" * 32, cpu=EPYC, unavailable={})
    assert other.name == "torch" and "is for weights abababababab" in other.reason
    arm = CpuInfo(name="Neoverse", capability="SVE256", flags=frozenset())
    elsewhere = choose_runtime(TABLE, weights_sha256=SHA, cpu=arm, unavailable={})
    assert elsewhere.name == "torch" and "no speed recorded on this CPU" in elsewhere.reason


def test_the_speeds_of_this_cpu_model_win_over_those_of_the_same_isa() -> None:
    other_epyc = CpuInfo(name="AMD EPYC 9B14", capability="AVX2", flags=frozenset())
    table = record(
        speed(EPYC, date="2025-03-01", torch=0.6, openvino=0.3),
        speed(other_epyc, date="2025-01-01", torch=0.6, onnxruntime=0.3),
        torch=21.5,
        openvino=21.5,
        onnxruntime=21.5,
    )
    assert choose_runtime(table, weights_sha256=SHA, cpu=other_epyc, unavailable={}).name == (
        "onnxruntime"
    )
    same_isa = CpuInfo(name="AMD EPYC 7763", capability="AVX2", flags=frozenset())
    assert choose_runtime(table, weights_sha256=SHA, cpu=same_isa, unavailable={}).name == (
        "openvino"  # the latest of the same ISA
    )


def test_a_record_round_trips_and_merges_by_cpu_and_runtime(tmp_path: Path) -> None:
    weights = tmp_path / "net.safetensors"
    assert record_path(weights) == tmp_path / "net.runtimes.json"
    assert read_record(weights) is None
    TABLE.write(record_path(weights))
    assert read_record(weights) == TABLE
    newer = record(speed(EPYC, torch=0.5), speed(XEON, torch=0.2), torch=22.0)
    merged = TABLE.merged(newer)
    assert merged.accuracy["torch"].gps_ap == 22.0 and "onnxruntime" in merged.accuracy
    assert [s.cpu for s in merged.speeds] == ["AMD EPYC", "Intel Xeon 8480"]
    assert merged.speeds[0].seconds_per_image == {"torch": 0.5}
    record_path(weights).write_text('{"weights_sha256": "x"}')
    with pytest.raises(ValueError, match="not a runtime record"):
        read_record(weights)


def test_cpu_info_reads_the_name_and_the_bf16_units(tmp_path: Path) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(
        "processor\t: 0\nmodel name\t: Intel Xeon 8480\nflags\t\t: fpu avx2 amx_bf16\n\n"
        "processor\t: 1\nmodel name\t: Intel Xeon 8480\nflags\t\t: fpu avx2 amx_bf16\n"
    )
    info = read_cpu_info(cpuinfo)
    assert info.name == "Intel Xeon 8480" and info.bf16_unit == "AMX"
    assert CpuInfo("x", "AVX512", frozenset({"avx512_bf16"})).bf16_unit == "AVX-512-BF16"
    assert EPYC.bf16_unit is None


def _predictor() -> Predictor:
    return Predictor(build_ddp(tiny_config()).eval(), tiny_config(), torch.device("cpu"))


def test_auto_never_exports_unless_allowed_and_knows_a_missing_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    predictor = _predictor()
    unavailable = unavailable_runtimes(
        predictor, allow_export=False, allow_compile=False, cache_root=tmp_path
    )
    for name in ("onnxruntime", "onnxruntime-int8", "openvino"):
        assert "its export is not cached" in unavailable[name]
    assert "compiles for minutes" in unavailable["torch-compile"]
    allowed = unavailable_runtimes(
        predictor, allow_export=True, allow_compile=True, cache_root=tmp_path
    )
    assert not {"onnxruntime", "onnxruntime-int8", "openvino", "torch-compile"} & set(allowed)
    monkeypatch.setattr(selection.importlib.util, "find_spec", lambda name: None)
    missing = unavailable_runtimes(predictor, allow_export=True, allow_compile=True)
    assert "export extra is not installed" in missing["onnxruntime"]
    monkeypatch.setattr(selection.shutil, "which", lambda name: None)
    monkeypatch.delenv("CXX", raising=False)
    no_cxx = unavailable_runtimes(predictor, allow_export=True, allow_compile=True)
    assert "no C++ compiler" in no_cxx["torch-compile"]


def test_a_runtime_named_explicitly_overrides_auto() -> None:
    choice = select_runtime("openvino", _predictor(), weights_sha256=SHA, record=TABLE)
    assert choice.name == "openvino" and choice.reason == "asked for by name"


def test_the_service_reports_what_auto_chose_and_why(tmp_path: Path) -> None:
    weights = tiny_checkpoint(tmp_path / "tiny.safetensors")
    recorded = record(
        speed(read_cpu_info(), torch=0.6, torch_channels_last=0.3, onnxruntime=0.1),
        torch=21.5,
        torch_channels_last=21.5,
        onnxruntime=21.5,
    )
    dataclasses.replace(recorded, weights_sha256=file_sha256(weights)).write(record_path(weights))
    settings = Settings(weights=weights, max_wait_ms=0, warmup=False)
    assert settings.runtime == "auto" and not settings.auto_export and not settings.auto_compile
    with TestClient(create_app(settings)) as client:
        deadline = time.monotonic() + 60
        while client.get("/readyz").status_code != 200:
            assert time.monotonic() < deadline, client.get("/healthz").json()
            time.sleep(0.05)
        info = client.get("/v1/model").json()
    assert info["runtime"] == "torch-channels-last" and info["runtime_setting"] == "auto"
    assert info["runtime_detail"].endswith("(eager, channels-last)")
    assert info["runtime_reason"].startswith("2.00x torch")
    assert "faster but passed over: onnxruntime (" in info["runtime_reason"]  # not exported


def test_the_shipped_record_is_for_the_shipped_weights() -> None:
    """Weights retrained without a new ``cpu_paths --record`` would make ``auto`` ignore it."""
    shipped = read_record(DEFAULT_WEIGHTS)
    assert shipped is not None, f"no {record_path(DEFAULT_WEIGHTS)}"
    assert shipped.weights_sha256 == file_sha256(DEFAULT_WEIGHTS)
    assert shipped.images == 200 and REFERENCE_RUNTIME in shipped.accuracy
