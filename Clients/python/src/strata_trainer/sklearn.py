"""Moving parameters between scikit-learn estimators and Strata tensors.

Multilayer perceptrons (``MLPClassifier``, ``MLPRegressor``): tensors ``layer1.weight``, ``layer1.bias``, …,
``layer<L>.weight`` (shape (inputs, outputs), as ``coefs_``) and ``layer<L>.bias`` (``intercepts_``) — the
names and layout of Strata's built-in ``mlp`` model. One difference: for **two classes** scikit-learn's
``MLPClassifier`` has **one** logistic output unit (the last weight is (hidden, 1)), where the built-in mlp
has two softmax outputs; so a binary scikit-learn MLP federates as ``--model custom`` with the shapes
``initial_mlp_arrays`` gives. With three or more classes the layouts are the same.

Linear models (``SGDClassifier``, ``LogisticRegression``, ``SGDRegressor``, and others with ``coef_`` and
``intercept_``): tensors ``weight`` (features, outputs) = ``coef_.T`` and ``bias`` (outputs) = ``intercept_``,
the layout of the built-in softmax (``weight`` [features, outputs] row-major, ``bias`` [outputs]). A
**binary** classifier has one row in ``coef_``: ``weight`` is (features, 1) and ``bias`` (1), the logit of
``classes_[1]`` against ``classes_[0]``. Strata's two-class softmax has two columns; its probabilities equal
the binary model's for weight ``[0 | w]`` and bias ``[0, b]``, but that map is not invertible, so a binary
scikit-learn linear model also federates as ``--model custom`` with (features, 1) and (1). A regression has
``outputs`` = 1 (``coef_`` of shape (features,)).

Setting arrays works on an unfitted estimator too: it is first initialised (``partial_fit`` on a couple of
zero rows when it has one, or by setting the fitted attributes), then the arrays overwrite its parameters.
The optimiser state an MLP keeps between ``partial_fit`` calls (learning rate, momentum, Adam moments)
belongs to the old parameters and is dropped, so the next ``partial_fit`` starts a fresh one with the
estimator's current ``learning_rate_init``.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any, Optional

import numpy as np
import numpy.typing as npt

__all__ = [
    "initial_mlp_arrays",
    "linear_arrays",
    "mlp_arrays",
    "mlp_output_units",
    "set_linear_arrays",
    "set_mlp_arrays",
]


# ---------------------------------------------------------------------------------------------------------
# Multilayer perceptrons


def mlp_output_units(classes: int) -> int:
    """How many output units scikit-learn's MLPClassifier has for ``classes`` classes (1 for two)."""
    if classes < 2:
        raise ValueError(f"a classifier needs at least 2 classes, not {classes}")
    return 1 if classes == 2 else classes


def mlp_arrays(estimator: Any) -> dict[str, np.ndarray]:
    """A fitted MLP's parameters as float32 tensors ``layer<i>.weight`` (in, out) and ``layer<i>.bias`` (out)."""
    if not hasattr(estimator, "coefs_"):
        raise ValueError(f"{type(estimator).__name__} is not fitted: it has no coefs_ yet")
    arrays: dict[str, np.ndarray] = {}
    for index, (weight, bias) in enumerate(zip(estimator.coefs_, estimator.intercepts_), start=1):
        arrays[f"layer{index}.weight"] = np.array(weight, dtype=np.float32, order="C")
        arrays[f"layer{index}.bias"] = np.array(bias, dtype=np.float32, order="C")
    return arrays


def set_mlp_arrays(
    estimator: Any, arrays: Mapping[str, npt.ArrayLike], *, classes: Optional[Sequence[Any]] = None
) -> None:
    """Overwrite an MLP's parameters with ``arrays`` (names and shapes as ``mlp_arrays`` gives them).

    An unfitted estimator is initialised first; its ``hidden_layer_sizes`` must match the arrays. For an
    unfitted classifier ``classes`` defaults to 0 … c−1, c read from the output layer (1 unit: 2 classes).
    """
    weights, biases = _mlp_layers(arrays)
    units = [weights[0].shape[0]] + [w.shape[1] for w in weights]
    if not hasattr(estimator, "coefs_"):
        _initialise_mlp(estimator, units, classes)
    expected = [(w.shape, b.shape) for w, b in zip(estimator.coefs_, estimator.intercepts_)]
    given = [(w.shape, b.shape) for w, b in zip(weights, biases)]
    if expected != given:
        raise ValueError(f"{type(estimator).__name__} has layers {expected}; the arrays have {given}")
    dtype = estimator.coefs_[0].dtype
    estimator.coefs_ = [np.array(w, dtype=dtype, order="C") for w in weights]
    estimator.intercepts_ = [np.array(b, dtype=dtype, order="C") for b in biases]
    if hasattr(estimator, "_optimizer"):
        del estimator._optimizer  # its state (and learning rate) belongs to the old parameters


def initial_mlp_arrays(
    features: int, classes: int, hidden: Sequence[int], seed: int = 0
) -> dict[str, np.ndarray]:
    """Starting parameters of an MLPClassifier with the given widths, as ``mlp_arrays`` names and shapes them.

    Glorot-uniform weights and biases, like scikit-learn's own initialisation (bound √(6 / (in + out)),
    √(2 / (in + out)) for the logistic output of two classes), drawn from ``seed``. The output layer has
    ``mlp_output_units(classes)`` units.
    """
    if features < 1 or any(width < 1 for width in hidden):
        raise ValueError(f"features ({features}) and hidden widths ({list(hidden)}) must be at least 1")
    outputs = mlp_output_units(classes)
    units = [features, *hidden, outputs]
    rng = np.random.default_rng(seed)
    arrays: dict[str, np.ndarray] = {}
    for index, (fan_in, fan_out) in enumerate(zip(units[:-1], units[1:]), start=1):
        factor = 2.0 if index == len(units) - 1 and outputs == 1 else 6.0
        bound = np.sqrt(factor / (fan_in + fan_out))
        arrays[f"layer{index}.weight"] = rng.uniform(-bound, bound, (fan_in, fan_out)).astype(np.float32)
        arrays[f"layer{index}.bias"] = rng.uniform(-bound, bound, fan_out).astype(np.float32)
    return arrays


def _mlp_layers(arrays: Mapping[str, npt.ArrayLike]) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The weights and biases of ``layer1`` … ``layerL`` in order, checked to chain."""
    count = len(arrays) // 2
    names = [f"layer{i}.{part}" for i in range(1, count + 1) for part in ("weight", "bias")]
    if count == 0 or len(arrays) % 2 or set(arrays) != set(names):
        raise ValueError(f"MLP arrays are layer1.weight, layer1.bias, … in pairs; got {list(arrays)}")
    weights = [np.asarray(arrays[f"layer{i}.weight"]) for i in range(1, count + 1)]
    biases = [np.asarray(arrays[f"layer{i}.bias"]) for i in range(1, count + 1)]
    for i, (weight, bias) in enumerate(zip(weights, biases), start=1):
        if weight.ndim != 2 or bias.shape != weight.shape[1:]:
            raise ValueError(f"layer{i}: weight {weight.shape} and bias {bias.shape} do not fit together")
        if i > 1 and weights[i - 2].shape[1] != weight.shape[0]:
            raise ValueError(f"layer{i}.weight {weight.shape} does not follow layer{i - 1}'s {weights[i - 2].shape[1]} units")
    return weights, biases


def _initialise_mlp(estimator: Any, units: list[int], classes: Optional[Sequence[Any]]) -> None:
    """Give an unfitted MLP its attributes with a partial_fit on zero rows (the values are overwritten)."""
    hidden = estimator.hidden_layer_sizes
    hidden = list(hidden) if hasattr(hidden, "__iter__") else [hidden]
    if hidden != units[1:-1]:
        raise ValueError(f"{type(estimator).__name__} has hidden_layer_sizes {hidden}; the arrays have {units[1:-1]}")
    features, outputs = units[0], units[-1]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # e.g. "batch_size larger than sample size": these rows do not matter
        if _is_classifier(estimator):
            labels = np.asarray(classes) if classes is not None else np.arange(2 if outputs == 1 else outputs)
            if mlp_output_units(len(labels)) != outputs:
                raise ValueError(f"{len(labels)} classes need {mlp_output_units(len(labels))} output units, the arrays have {outputs}")
            estimator.partial_fit(np.zeros((len(labels), features)), labels, classes=labels)
        else:
            targets = np.zeros((2, outputs)) if outputs > 1 else np.zeros(2)
            estimator.partial_fit(np.zeros((2, features)), targets)


# ---------------------------------------------------------------------------------------------------------
# Linear models


def linear_arrays(estimator: Any) -> dict[str, np.ndarray]:
    """A fitted linear model's ``weight`` (features, outputs) = coef_ᵀ and ``bias`` (outputs), float32."""
    if getattr(estimator, "coef_", None) is None:
        raise ValueError(f"{type(estimator).__name__} is not fitted: it has no coef_ yet")
    coef = np.atleast_2d(np.asarray(estimator.coef_))
    intercept = np.broadcast_to(np.asarray(estimator.intercept_, dtype=np.float64), (coef.shape[0],))
    return {
        "weight": np.array(coef.T, dtype=np.float32, order="C"),
        "bias": np.array(intercept, dtype=np.float32, order="C"),
    }


def set_linear_arrays(
    estimator: Any, arrays: Mapping[str, npt.ArrayLike], *, classes: Optional[Sequence[Any]] = None
) -> None:
    """Overwrite a linear model's ``coef_`` and ``intercept_`` with ``weight`` and ``bias``.

    An unfitted estimator is initialised first: ``partial_fit`` on zero rows when it has one (SGD models),
    else its fitted attributes are set (``LogisticRegression``; its ``fit`` with ``warm_start=True`` then
    starts from them). For an unfitted classifier ``classes`` defaults to 0 … c−1, c read from the outputs
    (1 output: 2 classes).
    """
    if set(arrays) != {"weight", "bias"}:
        raise ValueError(f"linear arrays are weight and bias; got {list(arrays)}")
    weight, bias = np.asarray(arrays["weight"]), np.asarray(arrays["bias"])
    if weight.ndim != 2 or bias.shape != weight.shape[1:]:
        raise ValueError(f"weight {weight.shape} and bias {bias.shape} do not fit together")
    features, outputs = weight.shape
    if getattr(estimator, "coef_", None) is None:
        _initialise_linear(estimator, features, outputs, classes)
    coef_shape = np.shape(estimator.coef_)
    if np.atleast_2d(np.zeros(coef_shape)).T.shape != weight.shape:
        raise ValueError(f"{type(estimator).__name__} has coef_ {coef_shape}; weight {weight.shape} does not match")
    dtype = np.asarray(estimator.coef_).dtype if np.asarray(estimator.coef_).dtype.kind == "f" else np.float64
    estimator.coef_ = np.array(weight.T.reshape(coef_shape), dtype=dtype, order="C")
    estimator.intercept_ = np.array(bias, dtype=dtype, order="C")
    if getattr(estimator, "average", False):
        # Averaged SGD keeps its running parameters apart; restart both from the new values.
        estimator._standard_coef = estimator.coef_
        estimator._standard_intercept = estimator.intercept_
        estimator._average_coef = estimator.coef_.copy()
        estimator._average_intercept = estimator.intercept_.copy()


def _initialise_linear(estimator: Any, features: int, outputs: int, classes: Optional[Sequence[Any]]) -> None:
    zeros = np.zeros((2, features))
    if _is_classifier(estimator):
        labels = np.asarray(classes) if classes is not None else np.arange(2 if outputs == 1 else outputs)
        if (1 if len(labels) == 2 else len(labels)) != outputs:
            raise ValueError(f"{len(labels)} classes need {1 if len(labels) == 2 else len(labels)} outputs, the arrays have {outputs}")
        if hasattr(estimator, "partial_fit"):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the zero rows only give the estimator its attributes
                estimator.partial_fit(np.zeros((len(labels), features)), labels, classes=labels)
        else:
            estimator.classes_ = labels
            estimator.n_features_in_ = features
            estimator.coef_ = np.zeros((outputs, features))
            estimator.intercept_ = np.zeros(outputs)
    else:
        if outputs != 1 and hasattr(estimator, "partial_fit"):
            raise ValueError(f"{type(estimator).__name__} has one output; the arrays have {outputs}")
        if hasattr(estimator, "partial_fit"):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                estimator.partial_fit(zeros, np.zeros(2))
        else:
            estimator.n_features_in_ = features
            estimator.coef_ = np.zeros(features) if outputs == 1 else np.zeros((outputs, features))
            estimator.intercept_ = np.zeros(outputs)


def _is_classifier(estimator: Any) -> bool:
    from sklearn.base import is_classifier

    return bool(is_classifier(estimator))
