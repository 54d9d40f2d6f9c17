"""The data caches: files written whole, by many writers at once (data workers fill the same
cache when it is first built)."""

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from model.data.cache import save_npz


@pytest.mark.parametrize("compressed", [False, True])
def test_writers_of_the_same_cache_file_at_once_all_succeed(tmp_path, compressed):
    path = tmp_path / "charts" / "atlas.npz"
    big = np.arange(2_000_000, dtype=np.int32)  # long enough for the writes to overlap

    def write(i: int) -> None:
        save_npz(path, compressed=compressed, values=big + i, writer=np.array(i))

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(write, range(16)))  # re-raises any writer's error
    with np.load(path) as data:
        np.testing.assert_array_equal(data["values"], big + int(data["writer"]))
    assert [p.name for p in path.parent.iterdir()] == ["atlas.npz"]  # no temporary left


class _Unconvertible:
    def __array__(self, *args, **kwargs):
        raise RuntimeError("cannot be an array")


def test_a_failed_write_leaves_no_file(tmp_path):
    path = tmp_path / "cache.npz"
    with pytest.raises(RuntimeError, match="cannot be an array"):
        save_npz(path, values=np.zeros(3), bad=_Unconvertible())  # type: ignore[arg-type]
    assert list(tmp_path.iterdir()) == []
