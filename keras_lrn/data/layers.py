"""Augmentation layers that run in tf.data (either backend), in models and without TF.

Both subclass Keras' internal `DataLayer` (keras `<3.16`, see
`spec/dependencies.md` §2b): inside a `tf.data` pipeline they switch to TF ops
whatever the Keras backend; elsewhere they use the active backend's ops.
"""

from __future__ import annotations

import keras
from keras.src.layers.preprocessing.data_layer import DataLayer
from keras.src.random.seed_generator import SeedGenerator


def _check_positive_int(value, arg, allow_zero=False):
    low = 0 if allow_zero else 1
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        kind = "non-negative" if allow_zero else "positive"
        raise ValueError(f"`{arg}` must be a {kind} int. Received: {arg}={value!r}")


@keras.saving.register_keras_serializable(package="keras_lrn")
class RandomPadCrop(DataLayer):
    """Zero-pad images and crop a random window of the original size.

    Each image gets its own offset, uniform in `[0, 2 * padding]` on each
    axis, so the output is a shifted copy of the image with zeros shifted in:
    the standard CIFAR "pad 4, random crop 32" augmentation. Inactive (identity)
    when `training=False`.

    Args:
        padding: int. Zeros added on every side before cropping. Defaults to `4`.
        seed: int or None. Seed of the random offsets. Defaults to `None`.
        **kwargs: Base layer keyword arguments, such as `name` and `dtype`.

    Example:
    ```python
    layer = keras_lrn.data.RandomPadCrop(padding=4, seed=0)
    y = layer(np.zeros((8, 32, 32, 3), "float32"))  # (8, 32, 32, 3)
    ds = tf_dataset.map(lambda x, y: (layer(x), y))  # also under the JAX backend
    ```
    """

    def __init__(self, padding=4, seed=None, **kwargs):
        super().__init__(**kwargs)
        _check_positive_int(padding, "padding", allow_zero=True)
        self.padding = padding
        self.seed = seed
        self.generator = SeedGenerator(seed)
        self.supports_jit = True

    def call(self, inputs, training=True):
        if not training or self.padding == 0:
            return inputs
        bk = self.backend
        unbatched = len(inputs.shape) == 3
        x = bk.numpy.expand_dims(inputs, 0) if unbatched else inputs
        h, w, c = int(x.shape[1]), int(x.shape[2]), int(x.shape[3])
        p = self.padding
        hp, wp = h + 2 * p, w + 2 * p
        b = bk.core.shape(x)[0]
        seed = self._get_seed_generator(bk._backend)
        offsets = bk.random.randint((b, 2), 0, 2 * p + 1, dtype="int32", seed=seed)
        xp = bk.numpy.pad(x, [[0, 0], [p, p], [p, p], [0, 0]])
        flat = bk.numpy.reshape(xp, (-1, c))
        rows = offsets[:, 0:1] + bk.numpy.arange(h, dtype="int32")[None, :]  # (B, H)
        cols = offsets[:, 1:2] + bk.numpy.arange(w, dtype="int32")[None, :]  # (B, W)
        base = bk.numpy.arange(b, dtype="int32") * (hp * wp)
        index = base[:, None, None] + rows[:, :, None] * wp + cols[:, None, :]  # (B, H, W)
        out = bk.numpy.take(flat, bk.numpy.reshape(index, (-1,)), axis=0)
        out = bk.numpy.reshape(out, (-1, h, w, c))
        return out[0] if unbatched else out

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update({"padding": self.padding, "seed": self.seed})
        return config


@keras.saving.register_keras_serializable(package="keras_lrn")
class Cutout(DataLayer):
    """Zero a `size x size` square of each image at a uniformly random centre.

    The square covers rows `[cy - size // 2, cy - size // 2 + size)` and the
    same columns around `cx`, clipped at the borders; `(cy, cx)` is a uniform
    random pixel. Apply it after normalisation so the square is zero in the
    normalised space (DeVries & Taylor, as in SWRN). Identity when
    `training=False`.

    Args:
        size: int. Side of the square. Defaults to `16`.
        seed: int or None. Seed of the random centres. Defaults to `None`.
        **kwargs: Base layer keyword arguments, such as `name` and `dtype`.

    Example:
    ```python
    y = keras_lrn.data.Cutout(16, seed=0)(np.ones((4, 32, 32, 3), "float32"))
    ```

    Reference:
    - DeVries & Taylor, "Improved Regularization of Convolutional Neural
      Networks with Cutout", 2017.
    """

    def __init__(self, size=16, seed=None, **kwargs):
        super().__init__(**kwargs)
        _check_positive_int(size, "size")
        self.size = size
        self.seed = seed
        self.generator = SeedGenerator(seed)
        self.supports_jit = True

    def call(self, inputs, training=True):
        if not training:
            return inputs
        bk = self.backend
        unbatched = len(inputs.shape) == 3
        x = bk.numpy.expand_dims(inputs, 0) if unbatched else inputs
        h, w = int(x.shape[1]), int(x.shape[2])
        b = bk.core.shape(x)[0]
        seed = self._get_seed_generator(bk._backend)
        centres = bk.random.uniform((b, 2), 0.0, 1.0, seed=seed)
        cy = bk.cast(bk.numpy.floor(centres[:, 0] * h), "int32") - self.size // 2
        cx = bk.cast(bk.numpy.floor(centres[:, 1] * w), "int32") - self.size // 2
        ar_h = bk.numpy.arange(h, dtype="int32")[None, :]
        ar_w = bk.numpy.arange(w, dtype="int32")[None, :]
        rows = bk.numpy.logical_and(ar_h >= cy[:, None], ar_h < cy[:, None] + self.size)
        cols = bk.numpy.logical_and(ar_w >= cx[:, None], ar_w < cx[:, None] + self.size)
        inside = bk.numpy.logical_and(rows[:, :, None], cols[:, None, :])[..., None]
        out = bk.numpy.where(inside, bk.numpy.zeros_like(x), x)
        return out[0] if unbatched else out

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update({"size": self.size, "seed": self.seed})
        return config
