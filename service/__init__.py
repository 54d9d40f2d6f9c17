"""The DDP inference service (FastAPI): ``create_app`` builds it, ``ddp serve`` runs it.

| module | job |
|---|---|
| ``settings`` | ``DDP_*`` environment settings |
| ``app``, ``server`` | app factory and lifespan; running it under uvicorn |
| ``state`` | model loading in the background, readiness, shutdown, per-request inference |
| ``loading`` | loading and warming up the model; its identity (``ModelInfo``) |
| ``batching`` | the queue, the batcher, and the batching policy |
| ``uploads``, ``decoding`` | reading uploads within limits; image validation and decoding |
| ``video_uploads``, ``video_jobs`` | receiving and checking a clip; the background video jobs |
| ``jobs`` | the video jobs' queue, records, results directory, workers and sweeper |
| ``formats`` | the registry of answer formats (JSON / NPZ / PNG), content negotiation |
| ``schemas`` | the JSON answer's models, filled from a ``DensePoseResult`` |
| ``metrics``, ``middleware`` | Prometheus metrics and the per-request timer |
| ``errors`` | JSON errors |
| ``routes/``, ``deps`` | one router per resource; their dependencies |
| ``client``, ``testing`` | a small Python client; helpers of the tests and benchmarks |
| ``cli/`` | the ``ddp`` command |
"""
