"""Where the project's files are: the checkout, the shipped weights, the caches' root.

Every other module takes these paths from here (one home for each default path).
"""

from __future__ import annotations

from pathlib import Path

CHECKOUT = Path(__file__).resolve().parent.parent
"""The source checkout (the folder that holds ``model/``, ``weights/``, ``benchmarks/``)."""

DEFAULT_WEIGHTS = CHECKOUT / "weights" / "ddp_default.safetensors"
"""The shipped network (``weights/MODEL_CARD.md``), served and used when none is named."""
