"""strata_trainer.torch: imports without PyTorch; converts state dicts both ways where PyTorch is installed."""

from __future__ import annotations

import numpy as np
import pytest


def test_module_imports_without_torch() -> None:
    import strata_trainer.torch as helpers

    assert callable(helpers.state_dict_to_arrays) and callable(helpers.arrays_to_state_dict)


def test_state_dict_round_trip() -> None:
    torch = pytest.importorskip("torch")
    from strata_trainer.torch import arrays_to_state_dict, state_dict_to_arrays

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4), torch.nn.Linear(4, 2)).double()
    state = model.state_dict()
    arrays = state_dict_to_arrays(state)
    assert "1.num_batches_tracked" not in arrays  # integer buffers stay local
    assert list(arrays) == [k for k in state if state[k].is_floating_point()]
    assert all(a.dtype == np.float32 and a.flags.c_contiguous for a in arrays.values())
    arrays["0.weight"][0, 0] = 42.0  # a copy: the model is untouched
    assert float(state["0.weight"][0, 0]) != 42.0
    restored = arrays_to_state_dict(arrays, like=state)
    assert list(restored) == list(state)
    assert restored["0.weight"].dtype == torch.float64 and float(restored["0.weight"][0, 0]) == 42.0
    model.load_state_dict(restored)
    with pytest.raises(ValueError, match="shape"):
        arrays_to_state_dict({**arrays, "0.bias": np.zeros(5)}, like=state)
    with pytest.raises(KeyError):
        arrays_to_state_dict({k: v for k, v in arrays.items() if k != "0.bias"}, like=state)
    with pytest.raises(ValueError, match="no tensor"):
        arrays_to_state_dict({**arrays, "extra": np.zeros(1)}, like=state)
    plain = arrays_to_state_dict({"w": np.ones((2, 2))})
    assert plain["w"].dtype == torch.float32
