"""The real-photo manifest (``model/data/photos.json``): its rules and its missing-photo message."""

from __future__ import annotations

import dataclasses

import pytest

from model.data.photos import (
    Manifest,
    PhotoEntry,
    Source,
    _validate,
    load_manifest,
    missing_photos_message,
)


def _absent(photo_id: str, package: str) -> PhotoEntry:
    return PhotoEntry(
        id=photo_id,
        source=Source(kind="pypi", package=package, version="1.0", path="x/a.jpg", module=package),
        licence="CC0",
        licence_source="test",
        may_commit=False,
        width=10,
        height=10,
        sha256="0" * 64,
    )


def test_the_shipped_manifest_keeps_evaluation_and_training_photos_apart() -> None:
    manifest = load_manifest()
    assert manifest.photos and manifest.training_pool
    evaluation = {e.sha256 for e in manifest.photos}
    assert evaluation.isdisjoint(e.sha256 for e in manifest.training_pool)
    assert not any(e.persons for e in manifest.training_pool)


def test_a_training_photo_that_is_also_an_evaluation_photo_is_refused() -> None:
    photo = _absent("a", "pkg_a")
    manifest = Manifest("t", photos=(photo,), training_pool=(dataclasses.replace(photo, id="b"),))
    with pytest.raises(ValueError, match="also an evaluation photo"):
        _validate(manifest)


def test_missing_photos_are_named_with_the_command_that_installs_them() -> None:
    entries = [_absent("one", "no_such_pkg_one"), _absent("two", "no_such_pkg_two")]
    message = missing_photos_message(entries)
    assert message is not None
    assert message.startswith("2 of 2 photos missing (one, two)")
    assert "pip install 'no_such_pkg_one==1.0' 'no_such_pkg_two==1.0'" in message


def test_no_message_when_nothing_is_asked_for() -> None:
    assert missing_photos_message([]) is None
