"""The DDP inference service (FastAPI): ``create_app`` builds it, ``ddp serve`` runs it.

| module | job |
|---|---|
| ``settings`` | ``DDP_*`` environment settings |
| ``app`` | app factory and lifespan |
| ``state`` | model loading in the background, readiness, shutdown, per-request inference |
| ``inference`` | loading/warming the model, model identity, selecting persons |
| ``batching`` | the queue and the batcher |
| ``uploads``, ``decoding`` | reading uploads within limits; image validation and decoding |
| ``responses`` | JSON / NPZ / PNG answers and content negotiation |
| ``metrics``, ``middleware`` | Prometheus metrics and the per-request timer |
| ``errors`` | JSON errors |
| ``routes/`` | one router per resource |
| ``client`` | a small Python client |
"""
