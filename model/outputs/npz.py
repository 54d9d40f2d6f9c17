"""The dense-pose NPZ: one layout for a video and for an image (an image is a clip of one
frame), its writer and its reader. numpy only, so a client reads results without torch.

T frames of H × W pixels, P persons over all frames (the table in docs/outputs.md):

* ``parts`` (T, H, W) uint8: chart I, 0 = background; persons merged, best score on top;
* ``u``, ``v`` (T, H, W) float16: U, V in [0, 1] rounded to the nearest float16 (error at most
  2⁻¹² ≈ 2.4e-4); 0 where I = 0;
* ``instances`` (T, H, W) uint16: k where the instance mask of the frame's k-th person (from 1)
  owns the pixel (best score on top), 0 = nobody;
* ``person_frame`` (P,) int32: each person's frame; a frame's persons are consecutive, best
  score first;
* ``person_instance`` (P,) uint16: its value k in ``instances[person_frame]``;
* ``person_track_id`` (P,) int32: in a video its track id (from 1, never reused), in an image
  ``person_instance``;
* ``person_box_xyxy`` (P, 4) float32, its box in pixels; ``person_score`` (P,) float32.

A video's NPZ adds ``fps`` () float64 and ``smoothed`` () bool. Person i's mask is
``instances[person_frame[i]] == person_instance[i]``. The maps do not grow with the number of
persons: 1 + 2 + 2 + 2 = 7 bytes per pixel and frame once loaded.
"""

from __future__ import annotations

import io
import tempfile
import zipfile
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, BinaryIO

import numpy as np

MAP_DTYPES: dict[str, np.dtype] = {
    "parts": np.dtype(np.uint8),
    "u": np.dtype(np.float16),
    "v": np.dtype(np.float16),
    "instances": np.dtype(np.uint16),
}
"""The per-frame maps, each (T, H, W)."""
PERSON_DTYPES: dict[str, np.dtype] = {
    "person_frame": np.dtype(np.int32),
    "person_instance": np.dtype(np.uint16),
    "person_track_id": np.dtype(np.int32),
    "person_box_xyxy": np.dtype(np.float32),
    "person_score": np.dtype(np.float32),
}
"""The person table, each (P,) but ``person_box_xyxy`` (P, 4)."""
MAX_PERSONS_PER_FRAME = int(np.iinfo(np.uint16).max)
_SPOOL_BYTES = 16 * 1024 * 1024
_LENGTH_BYTES = 8


@dataclass(frozen=True)
class FrameArrays:
    """One frame of N persons on H × W pixels, in the NPZ layout.

    Attributes:
        parts: (H, W) uint8, chart I, 0 = background.
        u, v: (H, W) float16 in [0, 1], 0 where I = 0.
        instances: (H, W) uint16, i + 1 where person i's instance mask owns the pixel, 0 = nobody.
        boxes_xyxy: (N, 4) float32, in pixels.
        scores: (N,) float32, best first.
        track_ids: (N,) int32.
    """

    parts: np.ndarray
    u: np.ndarray
    v: np.ndarray
    instances: np.ndarray
    boxes_xyxy: np.ndarray
    scores: np.ndarray
    track_ids: np.ndarray

    def __post_init__(self) -> None:
        size = self.parts.shape
        for name, dtype in MAP_DTYPES.items():
            array = getattr(self, name)
            if array.dtype != dtype or array.shape != size or array.ndim != 2:
                raise ValueError(
                    f"{name}: expected (H, W) {dtype} like parts {size}, "
                    f"got {array.shape} {array.dtype}"
                )
        persons = len(self.scores)
        table = {"boxes_xyxy": (persons, 4), "scores": (persons,), "track_ids": (persons,)}
        for name, shape in table.items():
            if getattr(self, name).shape != shape:
                raise ValueError(f"{name}: expected shape {shape}, got {getattr(self, name).shape}")
        if persons > MAX_PERSONS_PER_FRAME:
            raise ValueError(f"at most {MAX_PERSONS_PER_FRAME} persons per frame, got {persons}")
        if self.instances.size and int(self.instances.max()) > persons:
            raise ValueError(
                f"instances holds {int(self.instances.max())} but the frame has {persons} persons"
            )


class NpzWriter:
    """The NPZ of frames of one size, written frame by frame: ``append`` each frame, then
    ``finish`` into a file or buffer (or ``discard``).

    Each map is compressed frame by frame into its own spooled temporary file (memory up to
    16 MiB, then an unnamed file in ``spool_dir``); ``finish`` streams them into the archive,
    so a whole clip is never in memory and its frame count need not be known in advance.
    """

    def __init__(self, *, height: int, width: int, spool_dir: Path | None = None) -> None:
        self.height, self.width = height, width
        self.frames = 0
        spool_in = None if spool_dir is None else str(spool_dir)
        self._spools: dict[str, IO[bytes]] = {
            # closed by discard (finish calls it): they outlive any one call
            name: tempfile.SpooledTemporaryFile(max_size=_SPOOL_BYTES, dir=spool_in)  # noqa: SIM115
            for name in MAP_DTYPES
        }
        self._persons: dict[str, list[np.ndarray]] = {name: [] for name in PERSON_DTYPES}

    def append(self, frame: FrameArrays) -> None:
        if frame.parts.shape != (self.height, self.width):
            raise ValueError(
                f"frame {self.frames} is {frame.parts.shape[1]}x{frame.parts.shape[0]}, "
                f"the others {self.width}x{self.height}"
            )
        for name in MAP_DTYPES:
            chunk = zlib.compress(np.ascontiguousarray(getattr(frame, name)).tobytes(), 1)
            self._spools[name].write(len(chunk).to_bytes(_LENGTH_BYTES, "little") + chunk)
        persons = len(frame.scores)
        rows = {
            "person_frame": np.full(persons, self.frames),
            "person_instance": np.arange(1, persons + 1),
            "person_track_id": frame.track_ids,
            "person_box_xyxy": frame.boxes_xyxy,
            "person_score": frame.scores,
        }
        for name, rows_of_frame in rows.items():
            self._persons[name].append(rows_of_frame.astype(PERSON_DTYPES[name]))
        self.frames += 1

    def finish(self, target: BinaryIO, extra: Mapping[str, np.ndarray] | None = None) -> None:
        """Write the archive (maps, person table, then ``extra``) to ``target``; release the
        spools."""
        try:
            with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED, compresslevel=6) as archive:
                for name, dtype in MAP_DTYPES.items():
                    header = {
                        "descr": np.lib.format.dtype_to_descr(dtype),
                        "fortran_order": False,
                        "shape": (self.frames, self.height, self.width),
                    }
                    with archive.open(f"{name}.npy", "w", force_zip64=True) as member:
                        np.lib.format.write_array_header_2_0(member, header)
                        for chunk in _chunks(self._spools[name]):
                            member.write(chunk)
                table = {
                    name: np.concatenate(rows) if rows else np.zeros(0, PERSON_DTYPES[name])
                    for name, rows in self._persons.items()
                }
                table["person_box_xyxy"] = table["person_box_xyxy"].reshape(-1, 4)
                for name, array in {**table, **(extra or {})}.items():
                    with archive.open(f"{name}.npy", "w", force_zip64=True) as member:
                        np.lib.format.write_array(member, np.asarray(array), allow_pickle=False)
        finally:
            self.discard()

    def discard(self) -> None:
        """Release the spools without writing anything."""
        for spool in self._spools.values():
            spool.close()


def _chunks(spool: IO[bytes]) -> Iterator[bytes]:
    """The decompressed frames of one spool, in order."""
    spool.seek(0)
    while header := spool.read(_LENGTH_BYTES):
        yield zlib.decompress(spool.read(int.from_bytes(header, "little")))


def frame_npz_bytes(frame: FrameArrays) -> bytes:
    """The NPZ of one image: a clip of one frame."""
    height, width = frame.parts.shape
    writer = NpzWriter(height=height, width=width)
    writer.append(frame)
    buffer = io.BytesIO()
    writer.finish(buffer)
    return buffer.getvalue()


def read_npz(source: bytes | str | Path) -> dict[str, np.ndarray]:
    """An NPZ of this layout (bytes or a path) -> array name -> array, never unpickling.

    Raises:
        ValueError: not an NPZ, or a key of the layout missing or of another dtype or shape.
    """
    try:
        with np.load(io.BytesIO(source) if isinstance(source, bytes) else source) as loaded:
            arrays = {name: loaded[name] for name in loaded.files}
    except (OSError, ValueError, EOFError, TypeError, zipfile.BadZipFile) as error:
        # TypeError: a single .npy array, which is no context manager
        raise ValueError(f"not a readable NPZ archive: {error}") from error
    missing = [name for name in (*MAP_DTYPES, *PERSON_DTYPES) if name not in arrays]
    if missing:
        raise ValueError(f"not a dense-pose NPZ: no {', '.join(missing)}")
    frames = arrays["parts"].shape
    if len(frames) != 3:
        raise ValueError(f"parts: expected (T, H, W), got shape {frames}")
    persons = arrays["person_score"].shape[:1]
    expected = {name: (dtype, frames) for name, dtype in MAP_DTYPES.items()}
    expected |= {name: (dtype, persons) for name, dtype in PERSON_DTYPES.items()}
    expected["person_box_xyxy"] = (PERSON_DTYPES["person_box_xyxy"], (*persons, 4))
    for name, (dtype, shape) in expected.items():
        array = arrays[name]
        if array.dtype != dtype or array.shape != shape:
            raise ValueError(
                f"{name}: expected {dtype} of shape {shape}, got {array.dtype} {array.shape}"
            )
    return arrays
