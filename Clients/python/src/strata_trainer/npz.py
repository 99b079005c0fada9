"""Writing a model's starting parameters for ``strata-coordinator --model custom --initial-model FILE.npz``."""

from __future__ import annotations

import io
import os
import zipfile
from collections.abc import Mapping
from typing import Union

import numpy as np
import numpy.typing as npt

__all__ = ["load_model", "save_initial_model"]

PathLike = Union[str, "os.PathLike[str]"]


def save_initial_model(path: PathLike, arrays: Mapping[str, npt.ArrayLike]) -> None:
    """Write ``arrays`` to ``path`` as an uncompressed ``.npz`` of float32 C-order arrays, in order.

    The same file ``numpy.savez(path, **arrays)`` writes (the coordinator reads the members in archive
    order, so the order of ``arrays`` is the model's manifest order), built member by member so that a tensor
    may be called anything, even ``file``. The path is used as given (no ``.npz`` appended). Raises
    ValueError for an empty model, an empty name, a non-numeric array and a NaN or infinite value.
    """
    if not arrays:
        raise ValueError("a model needs at least one tensor")
    members: list[tuple[str, bytes]] = []
    for name, value in arrays.items():
        if not isinstance(name, str) or not name:
            raise ValueError(f"tensor name {name!r} is not a non-empty string")
        array = np.asarray(value)
        if array.dtype.kind not in "biuf":
            raise ValueError(f"tensor {name!r} has dtype {array.dtype}, not real numbers")
        with np.errstate(over="ignore", invalid="ignore"):
            array = np.asarray(array, dtype="<f4", order="C")
        if not np.isfinite(array).all():
            raise ValueError(f"tensor {name!r} holds a NaN or infinite value (as float32)")
        buffer = io.BytesIO()
        np.lib.format.write_array(buffer, array, allow_pickle=False)
        members.append((name + ".npy", buffer.getvalue()))
    # Written whole to a temporary file first: a coordinator never reads half a model.
    temporary = f"{os.fspath(path)}.tmp-{os.getpid()}"
    try:
        with zipfile.ZipFile(temporary, "w", compression=zipfile.ZIP_STORED) as archive:
            for member, data in members:
                archive.writestr(zipfile.ZipInfo(member, date_time=(1980, 1, 1, 0, 0, 0)), data)
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)


def load_model(path: PathLike) -> dict[str, np.ndarray]:
    """The arrays of an ``.npz`` model, in archive order (the inverse of save_initial_model)."""
    with np.load(path, allow_pickle=False) as archive:
        return {name: np.asarray(archive[name]) for name in archive.files}
