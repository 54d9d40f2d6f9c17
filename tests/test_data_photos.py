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


SHIPPED_POOL = (
    "mate_aqua", "mate_ladybird", "mate_yellowflower", "mate_garden", "mate_blinds", "mate_dune",
    "mate_freshflower", "mate_greenmeadow", "mate_raindrops", "mate_storm", "mate_twowings",
    "mate_wood", "plasma_bythewater", "plasma_coldripple", "plasma_darkesthour",
    "plasma_fallenleaf", "plasma_grey", "plasma_kite", "plasma_onestandsout", "plasma_path",
    "plasma_summer_1am",
)  # fmt: skip
"""The photos the shipped network's world-engine stages were rendered on, in pool order."""


def test_the_training_pool_only_grows_at_its_end() -> None:
    from model.training.settings import DataSettings

    pool = load_manifest().training_pool
    default = DataSettings().background_photos
    assert tuple(e.id for e in pool[:default]) == SHIPPED_POOL
    assert len(pool) > default


def test_a_world_set_is_named_by_its_photo_count_and_the_count_is_checked(tmp_path) -> None:
    from model.training.settings import DataSettings

    pool = len(load_manifest().training_pool)
    settings = DataSettings(data_root=tmp_path, background_photos=pool)
    world = settings.directory("train", 8, 0, "world")
    assert world.name == f"train-world-seed0-n8-photos{pool}-384x512"
    assert settings.directory("heldout", 8, 1, "plain").name == "heldout-plain-seed1-n8-384x512"
    assert settings.photo_count() == pool
    for count in (0, pool + 1):
        with pytest.raises(ValueError, match=f"must be in 1..{pool}"):
            dataclasses.replace(settings, background_photos=count).photo_count()
