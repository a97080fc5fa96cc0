import json

import keras
import numpy as np
import pytest

from keras_lrn import data
from keras_lrn.data import Normalizer


@pytest.fixture(scope="module")
def images():
    x, _ = data.synthetic("cifar10", 200, seed=4)
    return x


def _direct(kind, x_train, x):
    """Reference formulas in float64, straight from the definitions."""
    xt, x = x_train.astype(np.float64), x.astype(np.float64)
    if kind == "none":
        return x
    if kind == "scale":
        return x / 255
    if kind == "per_pixel_mean":
        return (x - xt.mean(axis=0)) / 128
    if kind == "channel":
        mean = (xt / 255).mean(axis=(0, 1, 2))
        std = (xt / 255).std(axis=(0, 1, 2))
        return (x / 255 - mean) / std
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    return (x / 255 - mean) / std


@pytest.mark.parametrize("kind", data.NORMALIZE_KINDS)
def test_math_matches_numpy(kind, images):
    norm = Normalizer(kind).fit(images[:150])
    for batch in (images[150:], images[150:].astype(np.float32)):
        z = norm(batch)
        assert z.dtype == np.float32 and z.shape == batch.shape
        np.testing.assert_allclose(z, _direct(kind, images[:150], batch), rtol=1e-5, atol=1e-5)


def test_fit_statistics(images):
    norm = Normalizer("per_pixel_mean").fit(images)
    assert norm.mean.shape == (32, 32, 3)
    np.testing.assert_allclose(norm.mean, images.mean(0), rtol=1e-6)
    norm = Normalizer("channel").fit(images)
    np.testing.assert_allclose(norm.mean, images.mean((0, 1, 2)) / 255, rtol=1e-6)
    np.testing.assert_allclose(norm.std, (images / 255).std((0, 1, 2)), rtol=1e-5)
    assert Normalizer("scale").fit(images) is not None


def test_channel_given_stats_and_fit_noop(images):
    norm = Normalizer("channel", mean=[0.5, 0.5, 0.5], std=[0.25, 0.5, 1.0])
    assert norm.fit(images) is norm
    np.testing.assert_allclose(norm.mean, [0.5] * 3)
    z = norm(np.full((1, 2, 2, 3), 255, np.uint8))
    np.testing.assert_allclose(z[0, 0, 0], [2.0, 1.0, 0.5], rtol=1e-6)


def test_unfitted_and_bad_args():
    with pytest.raises(ValueError, match="must be fitted"):
        Normalizer("per_pixel_mean")(np.zeros((1, 4, 4, 3)))
    with pytest.raises(
        ValueError, match="kind.*'none', 'scale', 'per_pixel_mean', 'channel', 'imagenet'"
    ):
        Normalizer("zscore")
    with pytest.raises(ValueError, match="both `mean` and `std`"):
        Normalizer("channel", mean=[0.5, 0.5, 0.5])
    with pytest.raises(ValueError, match="takes no `mean`"):
        Normalizer("scale", mean=[0.5])
    with pytest.raises(ValueError, match="positive"):
        Normalizer("channel", mean=[0.5], std=[0.0])


@pytest.mark.parametrize("kind", data.NORMALIZE_KINDS)
def test_config_round_trip(kind, images, tmp_path):
    norm = Normalizer(kind).fit(images)
    config = json.loads(json.dumps(norm.get_config()))
    again = Normalizer.from_config(config)
    assert again.get_config() == norm.get_config()
    np.testing.assert_array_equal(again(images[:4]), norm(images[:4]))
    path = tmp_path / "norm.npz"
    norm.save(path)
    loaded = Normalizer.load(path)
    assert loaded.kind == kind
    np.testing.assert_array_equal(loaded(images[:4]), norm(images[:4]))


def test_backend_tensor_input(images):
    norm = Normalizer("imagenet")
    z = norm(keras.ops.convert_to_tensor(images[:2]))
    np.testing.assert_allclose(keras.ops.convert_to_numpy(z), norm(images[:2]), rtol=1e-6)
