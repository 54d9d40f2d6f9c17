"""The DDP inference service (FastAPI). Built under issue 6; until then ``ddp predict`` is the
way to run the model."""
