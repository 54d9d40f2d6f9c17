"""Where the data engine keeps its caches: ``$DDP_CACHE_DIR``, else ``.cache/`` in the checkout.

Nothing here is ever committed (``.cache/`` is git-ignored); every cache can be rebuilt.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from model.paths import CHECKOUT


def cache_dir() -> Path:
    """The project cache directory (created on first use)."""
    path = Path(os.environ.get("DDP_CACHE_DIR", CHECKOUT / ".cache"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def keyed_cache_path(folder: str, stem: str, *keys: bytes) -> Path:
    """``<cache>/<folder>/<stem>_<digest>.npz``, the digest (16 hex digits of SHA-256) taken
    over ``keys``: a cache file whose inputs changed is never read."""
    digest = hashlib.sha256(b"".join(keys)).hexdigest()[:16]
    return cache_dir() / folder / f"{stem}_{digest}.npz"
