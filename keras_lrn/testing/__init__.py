"""Shared test helpers (keras-hub `run_layer_test` / `run_model_test` style)."""

from __future__ import annotations

import os
import tempfile

import keras
import numpy as np


def count_params(weights):
    """Number of scalars in `weights`, each variable counted once (shared ones too)."""
    seen = {}
    for w in weights:
        seen[id(w)] = int(np.prod(w.shape))
    return sum(seen.values())


def trainable_params(model):
    return count_params(model.trainable_weights)


def non_trainable_params(model):
    return count_params(model.non_trainable_weights)


def random_images(shape, seed=0, low=0.0, high=1.0):
    rng = np.random.default_rng(seed)
    return rng.uniform(low, high, size=shape).astype("float32")


def assert_config_round_trip(obj):
    """`config -> from_config -> config` gives the same config."""
    config = obj.get_config()
    clone = obj.__class__.from_config(config)
    assert clone.get_config() == config, (clone.get_config(), config)
    return clone


def to_numpy(x):
    if isinstance(x, dict):
        return {k: to_numpy(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [to_numpy(v) for v in x]
    return np.asarray(keras.ops.convert_to_numpy(x))


def assert_allclose_nested(a, b, atol=1e-6, rtol=1e-6):
    if isinstance(a, dict):
        assert set(a) == set(b)
        for k in a:
            assert_allclose_nested(a[k], b[k], atol, rtol)
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            assert_allclose_nested(x, y, atol, rtol)
    else:
        np.testing.assert_allclose(a, b, atol=atol, rtol=rtol)


def save_and_reload(model, directory=None):
    """Save `model` to `.keras` and load it back (custom objects from the registry)."""
    directory = directory or tempfile.mkdtemp()
    path = os.path.join(directory, "model.keras")
    model.save(path)
    return keras.saving.load_model(path)


def run_model_test(model, x, atol=1e-6, check_class=True):
    """Predict, `.keras` round trip with identical outputs and the same class and config."""
    expected = to_numpy(model(x, training=False))
    reloaded = save_and_reload(model)
    if check_class:
        assert type(reloaded) is type(model), (type(reloaded), type(model))
    got = to_numpy(reloaded(x, training=False))
    assert_allclose_nested(got, expected, atol=atol, rtol=atol)
    assert count_params(reloaded.weights) == count_params(model.weights)
    return reloaded
