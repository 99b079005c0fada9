"""strata_trainer.sklearn: get → set → get round trips, setting on unfitted estimators, and the shapes of
initial_mlp_arrays equal what set/get produce."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression, SGDClassifier, SGDRegressor
from sklearn.neural_network import MLPClassifier, MLPRegressor

from strata_trainer.sklearn import (
    initial_mlp_arrays,
    linear_arrays,
    mlp_arrays,
    mlp_output_units,
    set_linear_arrays,
    set_mlp_arrays,
)

# The fits here are deliberately short.
pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


def assert_same(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> None:
    assert [(n, v.shape) for n, v in a.items()] == [(n, v.shape) for n, v in b.items()]
    for name in a:
        assert b[name].dtype == np.float32
        np.testing.assert_array_equal(a[name], b[name])


def relu_mlp_logits(arrays: dict[str, np.ndarray], x: np.ndarray) -> np.ndarray:
    """The network by hand: ReLU hidden layers, linear output."""
    layers = len(arrays) // 2
    a = x
    for i in range(1, layers + 1):
        a = a @ arrays[f"layer{i}.weight"].astype(np.float64) + arrays[f"layer{i}.bias"]
        if i < layers:
            a = np.maximum(a, 0)
    return a


@pytest.mark.parametrize("classes", [2, 3, 5])
def test_mlp_classifier_round_trip_after_fit(rng: np.random.Generator, classes: int) -> None:
    x, y = rng.normal(size=(60, 4)), rng.integers(0, classes, 60)
    fitted = MLPClassifier(hidden_layer_sizes=(7, 3), max_iter=5, random_state=0).fit(x, y)
    arrays = mlp_arrays(fitted)
    assert [(n, a.shape) for n, a in arrays.items()] == [
        ("layer1.weight", (4, 7)), ("layer1.bias", (7,)), ("layer2.weight", (7, 3)), ("layer2.bias", (3,)),
        ("layer3.weight", (3, mlp_output_units(classes))), ("layer3.bias", (mlp_output_units(classes),)),
    ]
    other = MLPClassifier(hidden_layer_sizes=(7, 3), max_iter=5, random_state=1).fit(x, y)
    set_mlp_arrays(other, arrays)
    assert_same(arrays, mlp_arrays(other))
    np.testing.assert_allclose(other.predict_proba(x), fitted.predict_proba(x), atol=1e-5)


@pytest.mark.parametrize("classes", [2, 4])
def test_set_mlp_arrays_on_an_unfitted_classifier(rng: np.random.Generator, classes: int) -> None:
    arrays = initial_mlp_arrays(3, classes, [6], seed=5)
    estimator = MLPClassifier(hidden_layer_sizes=(6,))
    set_mlp_arrays(estimator, arrays)
    assert_same(arrays, mlp_arrays(estimator))
    assert list(estimator.classes_) == list(range(classes))
    x = rng.normal(size=(10, 3))
    logits = relu_mlp_logits(arrays, x)
    if classes == 2:
        expected = 1 / (1 + np.exp(-logits[:, 0]))
        np.testing.assert_allclose(estimator.predict_proba(x)[:, 1], expected, rtol=1e-5)
    else:
        expected = np.exp(logits - logits.max(axis=1, keepdims=True))
        np.testing.assert_allclose(estimator.predict_proba(x), expected / expected.sum(axis=1, keepdims=True), rtol=1e-5)
    # and it trains on from there, on rows that lack a class
    estimator.partial_fit(x, np.zeros(10, dtype=int))
    assert not np.array_equal(mlp_arrays(estimator)["layer1.weight"], arrays["layer1.weight"])


def test_set_mlp_arrays_with_text_classes() -> None:
    estimator = MLPClassifier(hidden_layer_sizes=(4,))
    set_mlp_arrays(estimator, initial_mlp_arrays(2, 3, [4]), classes=["cat", "dog", "eel"])
    assert list(estimator.classes_) == ["cat", "dog", "eel"]
    assert estimator.predict(np.zeros((1, 2)))[0] in {"cat", "dog", "eel"}


def test_set_mlp_arrays_drops_the_optimiser_so_a_new_learning_rate_applies(rng: np.random.Generator) -> None:
    x, y = rng.normal(size=(30, 2)), rng.integers(0, 2, 30)
    start = initial_mlp_arrays(2, 2, [4], seed=1)

    def one_pass(learning_rate: float, estimator: MLPClassifier) -> np.ndarray:
        estimator.learning_rate_init = learning_rate
        set_mlp_arrays(estimator, start)
        estimator.partial_fit(x, y)
        return mlp_arrays(estimator)["layer1.weight"] - start["layer1.weight"]

    estimator = MLPClassifier(hidden_layer_sizes=(4,), solver="sgd", momentum=0, batch_size=30, shuffle=False)
    small = one_pass(0.01, estimator)
    large = one_pass(0.1, estimator)  # same estimator: a kept optimiser would still step with 0.01
    np.testing.assert_allclose(large, 10 * small, rtol=1e-4, atol=1e-7)


def test_mlp_regressor_round_trip_unfitted_and_fitted(rng: np.random.Generator) -> None:
    arrays = {
        "layer1.weight": rng.normal(size=(3, 5)).astype(np.float32), "layer1.bias": np.zeros(5, np.float32),
        "layer2.weight": rng.normal(size=(5, 2)).astype(np.float32), "layer2.bias": np.ones(2, np.float32),
    }
    estimator = MLPRegressor(hidden_layer_sizes=(5,))
    set_mlp_arrays(estimator, arrays)
    assert_same(arrays, mlp_arrays(estimator))
    x = rng.normal(size=(4, 3))
    np.testing.assert_allclose(estimator.predict(x), relu_mlp_logits(arrays, x), rtol=1e-5)


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ({"layer1.weight": np.ones((2, 3))}, "in pairs"),
        ({"layer1.weight": np.ones((2, 3)), "layer2.bias": np.ones(3)}, "in pairs"),
        ({"layer1.weight": np.ones((2, 3)), "layer1.bias": np.ones(4)}, "do not fit together"),
        ({"layer1.weight": np.ones((2, 3)), "layer1.bias": np.ones(3), "layer2.weight": np.ones((4, 1)), "layer2.bias": np.ones(1)},
         "does not follow"),
        ({"layer1.weight": np.ones((2, 9)), "layer1.bias": np.ones(9), "layer2.weight": np.ones((9, 1)), "layer2.bias": np.ones(1)},
         "hidden_layer_sizes"),
    ],
)
def test_set_mlp_arrays_refuses_mismatches(arrays: dict[str, np.ndarray], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        set_mlp_arrays(MLPClassifier(hidden_layer_sizes=(3,)), arrays)


def test_set_mlp_arrays_refuses_other_shapes_on_a_fitted_estimator(rng: np.random.Generator) -> None:
    fitted = MLPClassifier(hidden_layer_sizes=(3,), max_iter=2).fit(rng.normal(size=(20, 2)), rng.integers(0, 3, 20))
    with pytest.raises(ValueError, match="has layers"):
        set_mlp_arrays(fitted, initial_mlp_arrays(2, 2, [3]))


def test_initial_mlp_arrays_are_seeded_glorot() -> None:
    a, b, c = initial_mlp_arrays(2, 2, [16, 16], seed=1), initial_mlp_arrays(2, 2, [16, 16], seed=1), initial_mlp_arrays(2, 2, [16, 16], seed=2)
    assert_same(a, b)
    assert not np.array_equal(a["layer1.weight"], c["layer1.weight"])
    assert np.abs(a["layer1.weight"]).max() <= np.sqrt(6 / 18)
    assert np.abs(a["layer3.weight"]).max() <= np.sqrt(2 / 17)  # logistic output of two classes
    assert a["layer1.weight"].std() > 0.1
    with pytest.raises(ValueError):
        initial_mlp_arrays(2, 1, [4])
    with pytest.raises(ValueError):
        initial_mlp_arrays(2, 3, [0])


# --- linear models -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "classes"),
    [
        (lambda: SGDClassifier(loss="log_loss", max_iter=5, tol=None, random_state=0), 2),
        (lambda: SGDClassifier(loss="log_loss", max_iter=5, tol=None, random_state=0), 3),
        (lambda: SGDClassifier(max_iter=5, tol=None, average=True, random_state=0), 2),
        (lambda: LogisticRegression(max_iter=50), 2),
        (lambda: LogisticRegression(max_iter=50), 4),
    ],
)
def test_linear_classifier_round_trips(rng: np.random.Generator, make, classes: int) -> None:  # type: ignore[no-untyped-def]
    x, y = rng.normal(size=(50, 3)), rng.integers(0, classes, 50)
    fitted = make().fit(x, y)
    arrays = linear_arrays(fitted)
    outputs = 1 if classes == 2 else classes
    assert [(n, a.shape) for n, a in arrays.items()] == [("weight", (3, outputs)), ("bias", (outputs,))]
    np.testing.assert_allclose(arrays["weight"], fitted.coef_.T, rtol=1e-6)
    np.testing.assert_allclose(fitted.decision_function(x).reshape(50, -1), x @ arrays["weight"] + arrays["bias"], rtol=1e-4, atol=1e-4)

    # onto an unfitted estimator of the same kind
    fresh = make()
    set_linear_arrays(fresh, arrays)
    assert_same(arrays, linear_arrays(fresh))
    assert list(fresh.classes_) == list(range(classes))
    np.testing.assert_array_equal(fresh.predict(x), fitted.predict(x))
    # and it keeps training from there
    if hasattr(fresh, "partial_fit"):
        fresh.partial_fit(x, y)
    else:
        fresh.set_params(warm_start=True).fit(x, y)
    assert linear_arrays(fresh)["weight"].shape == (3, outputs)


def test_sgd_regressor_round_trip(rng: np.random.Generator) -> None:
    x = rng.normal(size=(40, 3))
    fitted = SGDRegressor(max_iter=20, tol=None, random_state=0).fit(x, x @ [1.0, -2.0, 0.5] + 3)
    arrays = linear_arrays(fitted)
    assert [(n, a.shape) for n, a in arrays.items()] == [("weight", (3, 1)), ("bias", (1,))]
    fresh = SGDRegressor()
    set_linear_arrays(fresh, arrays)
    assert fresh.coef_.shape == (3,) and fresh.intercept_.shape == (1,)
    assert_same(arrays, linear_arrays(fresh))
    np.testing.assert_allclose(fresh.predict(x), fitted.predict(x), rtol=1e-5)


def test_set_linear_arrays_refuses_mismatches(rng: np.random.Generator) -> None:
    with pytest.raises(ValueError, match="weight and bias"):
        set_linear_arrays(SGDClassifier(), {"weight": np.ones((2, 1))})
    with pytest.raises(ValueError, match="do not fit together"):
        set_linear_arrays(SGDClassifier(), {"weight": np.ones((2, 3)), "bias": np.ones(2)})
    fitted = LogisticRegression().fit(rng.normal(size=(20, 2)), rng.integers(0, 2, 20))
    with pytest.raises(ValueError, match="does not match"):
        set_linear_arrays(fitted, {"weight": np.ones((3, 1)), "bias": np.ones(1)})
    with pytest.raises(ValueError, match="not fitted"):
        linear_arrays(SGDClassifier())
    with pytest.raises(ValueError, match="not fitted"):
        mlp_arrays(MLPClassifier())
