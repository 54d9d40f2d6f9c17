"""A compressed ``.npz`` whose large arrays arrive one frame at a time.

Each per-frame array is appended, compressed, to a temporary file beside the output; ``close``
writes the NPZ (a zip of ``.npy`` members, readable by ``np.load(allow_pickle=False)``),
streaming every member from its temporary file, so neither the writer nor the reader of the
frames ever holds a whole clip in memory. The frame count need not be known in advance.
"""

from __future__ import annotations

import struct
import zipfile
import zlib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import BinaryIO

import numpy as np

_LENGTH = struct.Struct("<Q")


class FrameArrayWriter:
    """``append`` per-frame arrays (each name with a fixed dtype and shape), ``close`` with the
    small arrays; the NPZ then holds every per-frame array stacked to (T, *shape).

    Args:
        path: the ``.npz`` to write.
        frame_arrays: name -> (dtype, shape of one frame's array).
    """

    def __init__(
        self, path: Path, frame_arrays: Mapping[str, tuple[np.dtype, tuple[int, ...]]]
    ) -> None:
        self.path = path
        self.frames = 0
        self._layout = {name: (np.dtype(d), tuple(s)) for name, (d, s) in frame_arrays.items()}
        self._parts = {name: path.with_name(f".{path.name}.{name}.part") for name in frame_arrays}
        self._files: dict[str, BinaryIO] = {n: p.open("wb") for n, p in self._parts.items()}

    def append(self, arrays: Mapping[str, np.ndarray]) -> None:
        """One frame: an array of the declared dtype and shape for every declared name."""
        if set(arrays) != set(self._layout):
            raise ValueError(f"need arrays {sorted(self._layout)}, got {sorted(arrays)}")
        for name, array in arrays.items():
            dtype, shape = self._layout[name]
            if array.dtype != dtype or array.shape != shape:
                raise ValueError(
                    f"{name}: expected {dtype} {shape}, got {array.dtype} {array.shape}"
                )
            chunk = zlib.compress(np.ascontiguousarray(array).tobytes(), 1)
            self._files[name].write(_LENGTH.pack(len(chunk)) + chunk)
        self.frames += 1

    def close(self, extra: Mapping[str, np.ndarray]) -> Path:
        """Write the NPZ: the stacked per-frame arrays plus ``extra``; remove the temporaries."""
        for file in self._files.values():
            file.close()
        try:
            with zipfile.ZipFile(self.path, "w", zipfile.ZIP_DEFLATED, compresslevel=6) as archive:
                for name, (dtype, shape) in self._layout.items():
                    header = {
                        "descr": np.lib.format.dtype_to_descr(dtype),
                        "fortran_order": False,
                        "shape": (self.frames, *shape),
                    }
                    with archive.open(f"{name}.npy", "w", force_zip64=True) as member:
                        np.lib.format.write_array_header_2_0(member, header)
                        for chunk in _chunks(self._parts[name]):
                            member.write(chunk)
                for name, array in extra.items():
                    with archive.open(f"{name}.npy", "w", force_zip64=True) as member:
                        np.lib.format.write_array(member, np.asarray(array), allow_pickle=False)
        finally:
            self.discard_parts()
        return self.path

    def discard_parts(self) -> None:
        """Remove the temporary files (after ``close``, or when giving up)."""
        for file in self._files.values():
            file.close()
        for part in self._parts.values():
            part.unlink(missing_ok=True)


def _chunks(path: Path) -> Iterator[bytes]:
    """The decompressed frames of one temporary file, in order."""
    with path.open("rb") as file:
        while header := file.read(_LENGTH.size):
            (length,) = _LENGTH.unpack(header)
            yield zlib.decompress(file.read(length))
