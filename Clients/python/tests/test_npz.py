"""save_initial_model writes what the coordinator's --initial-model reads: a stored (uncompressed) ZIP of
little-endian float32 C-order .npy members, in order."""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from strata_trainer import load_model, save_initial_model


def test_writes_float32_arrays_in_order_uncompressed(tmp_path: Path) -> None:
    arrays: dict[str, Any] = {
        "z": np.arange(6, dtype=np.float64).reshape(2, 3).T,  # Fortran-ordered float64
        "file": np.array([1, 2], dtype=np.int32),  # a name numpy.savez itself would choke on
        "allow_pickle": np.float32(0.5),
        "layer1.weight": np.ones((2, 2), np.float32),
    }
    path = tmp_path / "model.npz"
    save_initial_model(path, arrays)
    with zipfile.ZipFile(path) as archive:
        infos = archive.infolist()
        assert [i.filename for i in infos] == ["z.npy", "file.npy", "allow_pickle.npy", "layer1.weight.npy"]
        assert all(i.compress_type == zipfile.ZIP_STORED for i in infos)
        header = archive.read("z.npy")[:128].decode("latin-1")
        assert "'descr': '<f4'" in header and "'fortran_order': False" in header and "'shape': (3, 2)" in header
    loaded = load_model(path)
    assert list(loaded) == list(arrays)
    for name, value in arrays.items():
        assert loaded[name].dtype == np.float32 and loaded[name].shape == np.shape(value)
        np.testing.assert_array_equal(loaded[name], value)


def test_path_is_used_as_given(tmp_path: Path) -> None:
    save_initial_model(tmp_path / "model", {"w": np.ones(1)})
    assert (tmp_path / "model").exists() and not (tmp_path / "model.npz").exists()
    assert list(tmp_path.iterdir()) == [tmp_path / "model"]  # no temporary file left


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ({}, "at least one"),
        ({"w": np.array([np.nan])}, "NaN or infinite"),
        ({"w": np.array([1e300])}, "NaN or infinite"),
        ({"w": np.array(["x"])}, "not real numbers"),
        ({"": np.ones(1)}, "non-empty"),
    ],
)
def test_refuses_what_the_coordinator_would(tmp_path: Path, arrays: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        save_initial_model(tmp_path / "m.npz", arrays)
    assert not list(tmp_path.iterdir())
