"""Moving parameters between PyTorch state dicts and Strata tensors.

PyTorch is imported when a function runs, not when this module is imported, so the package works (and its
tests run) where PyTorch is not installed. Tensor names are the state dict's keys (``0.weight``, ``0.bias``,
… for an ``nn.Sequential``) and shapes are PyTorch's own (``nn.Linear.weight`` is (out, in)): federate such a
model as ``--model custom`` with the arrays ``state_dict_to_arrays`` gives for its initial state.

Only floating-point entries are parameters: integer buffers such as BatchNorm's ``num_batches_tracked``
stay local (``arrays_to_state_dict`` takes them from ``like``).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Optional

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    import torch as _torch

__all__ = ["arrays_to_state_dict", "state_dict_to_arrays"]


def state_dict_to_arrays(state_dict: Mapping[str, _torch.Tensor]) -> dict[str, np.ndarray]:
    """The floating-point tensors of ``state_dict`` as float32 C-order NumPy arrays, in its order
    (detached and copied to the CPU: the arrays share no memory with the model)."""
    import torch

    arrays: dict[str, np.ndarray] = {}
    for name, tensor in state_dict.items():
        if not tensor.is_floating_point():
            continue
        # float32 before .numpy(): NumPy has no bfloat16.
        values = tensor.detach().to(device="cpu", dtype=torch.float32).numpy()
        arrays[name] = np.array(values, dtype=np.float32, order="C", copy=True)
    return arrays


def arrays_to_state_dict(
    arrays: Mapping[str, npt.ArrayLike], like: Optional[Mapping[str, _torch.Tensor]] = None
) -> OrderedDict[str, _torch.Tensor]:
    """A state dict for ``model.load_state_dict`` from ``arrays``.

    With ``like`` (usually ``model.state_dict()``): its keys in its order, each array converted to the
    dtype and device of ``like``'s tensor and checked to have its shape; ``like``'s non-floating entries are
    copied. Raises KeyError for a floating-point entry with no array and ValueError for an array ``like``
    does not have or one of another shape. Without ``like``: float32 CPU tensors in the arrays' order.
    """
    import torch

    def tensor(values: npt.ArrayLike) -> torch.Tensor:
        return torch.from_numpy(np.array(values, dtype=np.float32, order="C", copy=True))

    if like is None:
        return OrderedDict((name, tensor(values)) for name, values in arrays.items())
    unknown = [name for name in arrays if name not in like]
    if unknown:
        raise ValueError(f"the model has no tensor {', '.join(map(repr, unknown))}")
    result: OrderedDict[str, Any] = OrderedDict()
    for name, reference in like.items():
        if name not in arrays:
            if reference.is_floating_point():
                raise KeyError(f"no array for the model's tensor {name!r}")
            result[name] = reference.detach().clone()
            continue
        value = tensor(arrays[name])
        if tuple(value.shape) != tuple(reference.shape):
            raise ValueError(f"array {name!r} has shape {tuple(value.shape)}, the model's {tuple(reference.shape)}")
        result[name] = value.to(device=reference.device, dtype=reference.dtype)
    return result
