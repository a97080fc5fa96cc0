import os
import tempfile

import keras
import numpy as np
import pytest
from _data_helpers import HAS_TF, needs_tf

from keras_lrn import data
from keras_lrn.data import augment as aug


def _images(n=32, shape=(32, 32, 3), seed=0):
    # Values 1..255: a zero can only come from padding or cutout.
    return np.random.default_rng(seed).integers(1, 256, size=(n,) + shape, dtype=np.uint8)


def _find_window(out, img, padding):
    """Return (oy, ox, flipped) such that out is that window of the padded img."""
    h, w = img.shape[:2]
    padded = np.pad(img, ((padding, padding), (padding, padding), (0, 0)))
    for oy in range(2 * padding + 1):
        for ox in range(2 * padding + 1):
            window = padded[oy : oy + h, ox : ox + w]
            if np.array_equal(out, window):
                return oy, ox, False
            if np.array_equal(out, window[:, ::-1]):
                return oy, ox, True
    raise AssertionError("output is not a (flipped) window of the padded image")


def _windows(out, x, padding):
    return [_find_window(np.asarray(o), i, padding) for o, i in zip(out, x)]


def test_pad_crop_flip_numpy():
    x = _images(64)
    out = aug.pad_crop_flip(x, 4, True, np.random.default_rng(0))
    assert out.shape == x.shape and out.dtype == np.uint8
    found = _windows(out, x, 4)
    assert len({(oy, ox) for oy, ox, _ in found}) > 10  # offsets vary
    flips = [f for _, _, f in found]
    assert any(flips) and not all(flips)
    out = aug.pad_crop_flip(x, 4, False, np.random.default_rng(1))
    # Without flip the window matches unflipped (a symmetric image would be ambiguous).
    assert not any(f for _, _, f in _windows(out, x, 4))


def test_mnist_keeps_native_size():
    x = _images(8, (28, 28, 1))
    out = aug.augment_batch(x, "mnist", np.random.default_rng(0))
    assert out.shape == (8, 28, 28, 1)
    _windows(out, x, 4)


def test_rotate_numpy():
    x = _images(4).astype(np.float32)
    np.testing.assert_array_equal(aug.rotate(x, np.zeros(4)), x)
    # A quarter turn about the centre of a square image permutes pixels exactly.
    quarter = aug.rotate(x, np.full(4, np.pi / 2))
    matches = [np.allclose(quarter, np.rot90(x, k, axes=(1, 2)), atol=1e-3) for k in (1, 3)]
    assert any(matches)
    small = aug.rotate(x, np.full(4, np.deg2rad(10)))
    assert small.dtype == np.float32 and (small[:, 0, 0] == 0).all()  # corners filled with 0
    assert np.abs(small[:, 12:20, 12:20] - x[:, 12:20, 12:20]).mean() < np.abs(x - x.mean()).mean()


def test_svhn_color_no_flip():
    x = np.tile(np.arange(32, dtype=np.uint8)[None, None, :, None] * 4 + 50, (16, 32, 1, 3))
    out = aug.augment_batch(x, "svhn", np.random.default_rng(0))
    assert out.dtype == np.float32 and out.min() >= 0 and out.max() <= 255
    # Horizontal gradient increasing left to right: never mirrored.
    inner = out[:, :, 8:24, 0]
    assert (np.diff(inner, axis=-1) >= 0).all()


def _check_cutout(z, size):
    """Every image has exactly one zero rectangle: the clipped size x size square."""
    h, w = z.shape[1:3]
    for img in np.asarray(z):
        zero = (img == 0).all(-1)
        assert not ((img == 0).any(-1) & ~zero).any()  # all channels or none
        rows, cols = np.flatnonzero(zero.any(1)), np.flatnonzero(zero.any(0))
        assert len(rows) and len(cols)
        assert zero.sum() == len(rows) * len(cols)  # a full rectangle
        assert rows[-1] - rows[0] + 1 == len(rows) and cols[-1] - cols[0] + 1 == len(cols)
        for idx, n in ((rows, h), (cols, w)):
            assert size // 2 <= len(idx) <= size
            if len(idx) < size:  # clipped: touches a border
                assert idx[0] == 0 or idx[-1] == n - 1


def test_cutout_numpy():
    norm = data.Normalizer("channel", mean=[0.50001] * 3, std=[0.25] * 3)
    z = norm(_images(64))
    assert (z != 0).all()
    _check_cutout(aug.cutout(z.copy(), 16, np.random.default_rng(0)), 16)
    _check_cutout(aug.cutout(z.copy(), 5, np.random.default_rng(0)), 5)


def test_bad_names():
    with pytest.raises(ValueError, match="augment.*'none', 'cifar', 'lrunet', 'svhn', 'mnist'"):
        aug.augment_spec("autoaugment")
    with pytest.raises(ValueError, match="post_augment.*'none', 'cutout16'"):
        aug.cutout_size("mixup")
    assert aug.cutout_size("cutout8") == 8 and aug.cutout_size("none") == 0


# --------------------------------------------------------------------------- TF versions


@needs_tf
def test_tf_versions_match_conventions():
    import tensorflow as tf

    x = _images(64)
    out = aug.tf_pad_crop_flip(tf.constant(x), 4, True, tf.constant([1, 2], tf.int64)).numpy()
    flips = [f for _, _, f in _windows(out, x, 4)]
    assert any(flips) and not all(flips)
    xf = x[:4].astype(np.float32)
    angles = np.array([0.1, -0.17, 0.0, 0.05], np.float32)
    np.testing.assert_allclose(
        aug.tf_rotate(tf.constant(xf), tf.constant(angles)).numpy(),
        aug.rotate(xf, angles),
        atol=0.01,
    )
    z = data.Normalizer("channel", mean=[0.50001] * 3, std=[0.25] * 3)(x)
    _check_cutout(aug.tf_cutout(tf.constant(z), 16, tf.constant([3, 4], tf.int64)).numpy(), 16)
    out = aug.tf_augment_batch(tf.constant(x), "svhn", tf.constant([5, 6], tf.int64)).numpy()
    assert out.min() >= 0 and out.max() <= 255


# --------------------------------------------------------------------------- layers


def test_random_pad_crop_layer():
    x = _images(16).astype(np.float32)
    layer = data.RandomPadCrop(padding=4, seed=1)
    out = keras.ops.convert_to_numpy(layer(x))
    found = _windows(out, x, 4)
    assert not any(f for _, _, f in found) and len({w[:2] for w in found}) > 3
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(layer(x, training=False)), x)
    assert keras.ops.convert_to_numpy(layer(x[0])).shape == (32, 32, 3)
    config = layer.get_config()
    assert config["padding"] == 4 and config["seed"] == 1
    assert data.RandomPadCrop.from_config(config).get_config() == config
    with pytest.raises(ValueError, match="padding"):
        data.RandomPadCrop(padding=-1)


def test_cutout_layer():
    x = data.Normalizer("channel", mean=[0.50001] * 3, std=[0.25] * 3)(_images(16))
    layer = data.Cutout(size=16, seed=2)
    _check_cutout(keras.ops.convert_to_numpy(layer(x)), 16)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(layer(x, training=False)), x)
    config = layer.get_config()
    assert data.Cutout.from_config(config).get_config() == config
    with pytest.raises(ValueError, match="size"):
        data.Cutout(size=0)


def test_layers_in_model_save_load():
    x = _images(8).astype(np.float32)
    inputs = keras.Input((32, 32, 3))
    h = data.Cutout(8, seed=0)(data.RandomPadCrop(4, seed=0)(inputs))
    outputs = keras.layers.Dense(3)(keras.layers.GlobalAveragePooling2D()(h))
    model = keras.Model(inputs, outputs)
    model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, np.arange(8) % 3, epochs=1, batch_size=4, verbose=0)
    path = os.path.join(tempfile.mkdtemp(), "m.keras")
    model.save(path)
    again = keras.saving.load_model(path)
    assert [type(layer).__name__ for layer in again.layers[1:3]] == ["RandomPadCrop", "Cutout"]
    np.testing.assert_allclose(again.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)


@pytest.mark.skipif(not HAS_TF, reason="tensorflow is not installed")
def test_layers_in_tf_data():
    import tensorflow as tf

    x = _images(8).astype(np.float32)
    pad_crop, cut = data.RandomPadCrop(4, seed=3), data.Cutout(16, seed=3)
    ds = tf.data.Dataset.from_tensor_slices(x).batch(4).map(lambda b: pad_crop(b))
    out = np.concatenate([b.numpy() for b in ds])
    _windows(out, x, 4)
    z = data.Normalizer("channel", mean=[0.50001] * 3, std=[0.25] * 3)(x.astype(np.uint8))
    ds = tf.data.Dataset.from_tensor_slices(z).batch(4).map(lambda b: cut(b))
    _check_cutout(np.concatenate([b.numpy() for b in ds]), 16)
