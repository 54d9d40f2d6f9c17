"""``ddp worker``: runs video jobs from the service's queue with its own copy of the model,
until SIGTERM or SIGINT (then its running jobs go back to the queue). The queue, the jobs
root and the network come from the ``DDP_*`` settings, as for ``ddp serve`` (docs/jobs.md)."""

from __future__ import annotations

import argparse
import logging
import signal
import threading
from types import FrameType

from service.cli.network import resolve_device
from service.jobs.backend import jobs_root, open_backend
from service.jobs.worker import JobLimits, VideoWorker, WorkerModel
from service.loading import check_weights, load_predictor, warm_up
from service.settings import Settings

logger = logging.getLogger("ddp.worker")


def run_worker(args: argparse.Namespace) -> int:
    if args.device is not None:
        resolve_device(args.device)  # a device that is not there: exit 2 before loading
    overrides = {
        "weights": args.weights,
        "untrained_config": args.untrained,
        "device": args.device,
        "runtime": args.runtime,
    }
    settings = Settings(**{k: v for k, v in overrides.items() if v is not None})
    try:
        check_weights(settings)
    except FileNotFoundError as error:
        raise SystemExit(f"error: {error}") from None
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    stopping = threading.Event()

    def stop(signum: int, frame: FrameType | None) -> None:
        stopping.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, stop)
    predictor, info = load_predictor(settings)
    if settings.warmup:
        warm_up(predictor)
    backend = open_backend(settings)
    model = WorkerModel(predictor)
    worker = VideoWorker(
        backend,
        JobLimits.of(settings),
        threads=settings.video_max_running,
        model=lambda: model,
    )
    worker.start()
    queue = settings.video_queue_url or f"SQLite in {jobs_root(settings)}"
    logger.info("ready: %s on %s, jobs from %s", info.model_id, info.device, queue)
    while not stopping.wait(1.0):
        pass
    logger.info("stopping: running jobs go back to the queue")
    worker.stop(timeout_s=settings.drain_timeout_s)
    backend.close()
    return 0
