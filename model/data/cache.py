"""Where the data engine keeps its caches: ``$DDP_CACHE_DIR``, else ``.cache/`` in the checkout.

Nothing here is ever committed (``.cache/`` is git-ignored); every cache can be rebuilt.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # numpy only when a file is written: `ddp --help` reads defaults from here
    import numpy as np

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


def save_npz(path: Path, *, compressed: bool = False, **arrays: np.ndarray) -> None:
    """Write ``arrays`` to ``path`` atomically: into a temporary file of its own in the same
    folder, then renamed, so that processes filling the same cache at once (data workers)
    never read a partial file nor rename one another's."""
    import numpy as np
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".npz")
    try:
        named: dict[str, Any] = dict(arrays)  # numpy's stubs type **kwds with allow_pickle's bool
        with os.fdopen(fd, "wb") as file:
            if compressed:
                np.savez_compressed(file, **named)
            else:
                np.savez(file, **named)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
