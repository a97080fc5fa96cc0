"""Vectorised batch augmentation, in numpy and in TensorFlow ops.

Each function works on a whole batch `(B, H, W, C)` at once (no Python loop
over images). The numpy and TF versions implement the same transforms with the
same conventions but different random streams.

Augmentations (pixel space, before normalisation):
- `"none"`.
- `"cifar"`: zero-pad 4, random `H x W` crop, horizontal flip with p=0.5.
- `"lrunet"`: `"cifar"` plus a random rotation, angle uniform in [-10, 10]
  degrees about the image centre, bilinear, zero fill (the flip is drawn with
  the crop; rotation and flip commute in distribution).
- `"svhn"`: pad-4 crop, brightness `x + U(-10, 10)` (pixel units), contrast
  `(x - m) * U(0.8, 1.2) + m` (`m` the per-image, per-channel mean), clipped to
  [0, 255]; no flip (digits are not mirror-symmetric).
- `"mnist"`: pad-4 crop and flip at the native size (28x28 stays 28x28).

Post-augmentations (after normalisation):
- `"none"`.
- `"cutout16"` (or `"cutout<N>"`): zero an N x N square centred at a uniformly
  random pixel, clipped at the borders (DeVries & Taylor's cutout as used by SWRN).
"""

from __future__ import annotations

import re

import numpy as np

AUGMENTS = ("none", "cifar", "lrunet", "svhn", "mnist")
POST_AUGMENTS = ("none", "cutout16", "cutout<N>")

_SPECS = {
    "none": dict(pad=0, flip=False, rotate=0.0, color=False),
    "cifar": dict(pad=4, flip=True, rotate=0.0, color=False),
    "lrunet": dict(pad=4, flip=True, rotate=10.0, color=False),
    "svhn": dict(pad=4, flip=False, rotate=0.0, color=True),
    "mnist": dict(pad=4, flip=True, rotate=0.0, color=False),
}
BRIGHTNESS = 10.0
CONTRAST = (0.8, 1.2)


def augment_spec(augment):
    """Return the dict of transforms an augmentation name stands for."""
    if augment is None:
        augment = "none"
    if augment not in _SPECS:
        raise ValueError(
            f"`augment` must be one of {list(AUGMENTS)}. Received: augment={augment!r}"
        )
    return dict(_SPECS[augment])


def cutout_size(post_augment):
    """Return the cutout size of a post-augmentation name (0 for `"none"`)."""
    if post_augment in (None, "none"):
        return 0
    m = re.fullmatch(r"cutout(\d+)", str(post_augment))
    if not m or int(m.group(1)) < 1:
        raise ValueError(
            f"`post_augment` must be one of {list(POST_AUGMENTS)}. "
            f"Received: post_augment={post_augment!r}"
        )
    return int(m.group(1))


# --------------------------------------------------------------------------- numpy


def pad_crop_flip(x, padding, flip, rng):
    """Zero-pad by `padding`, crop a random window of the input size, maybe flip.

    Args:
        x: array `(B, H, W, C)` of any dtype (kept).
        padding: int. Pad width on every side; the crop offset is uniform in
            `[0, 2 * padding]` on each axis.
        flip: bool. Also flip each image horizontally with probability 0.5.
        rng: `np.random.Generator`.

    Returns:
        Array of the same shape and dtype.
    """
    b, h, w, _ = x.shape
    p = int(padding)
    xp = np.pad(x, ((0, 0), (p, p), (p, p), (0, 0))) if p else x
    oy = rng.integers(0, 2 * p + 1, size=b)
    ox = rng.integers(0, 2 * p + 1, size=b)
    rows = oy[:, None] + np.arange(h)
    cols = ox[:, None] + np.arange(w)
    if flip:
        flipped = rng.random(b) < 0.5
        cols = np.where(flipped[:, None], cols[:, ::-1], cols)
    return xp[np.arange(b)[:, None, None], rows[:, :, None], cols[:, None, :]]


def rotate(x, angles):
    """Rotate each image by its angle (radians) about the centre; bilinear, zero fill.

    Output pixel `(i, j)` samples the input at
    `(sin a * (j - cx) + cos a * (i - cy) + cy, cos a * (j - cx) - sin a * (i - cy) + cx)`,
    the same map as the TF version (`ImageProjectiveTransformV3`).
    """
    x = np.asarray(x, dtype=np.float32)
    b, h, w, c = x.shape
    cy, cx = (h - 1) / 2.0, (w - 1) / 2.0
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    cos = np.cos(angles).astype(np.float32)[:, None, None]
    sin = np.sin(angles).astype(np.float32)[:, None, None]
    xs = cos * (xx - cx) - sin * (yy - cy) + cx
    ys = sin * (xx - cx) + cos * (yy - cy) + cy
    x0 = np.floor(xs)
    y0 = np.floor(ys)
    wx = (xs - x0)[..., None]
    wy = (ys - y0)[..., None]
    # One zero border; indices clipped into it read zeros outside the image.
    flat = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0))).reshape(-1, c)
    base = (np.arange(b) * (h + 2) * (w + 2))[:, None, None]
    ix0 = np.clip(x0 + 1, 0, w + 1).astype(np.int64)
    ix1 = np.clip(x0 + 2, 0, w + 1).astype(np.int64)
    iy0 = np.clip(y0 + 1, 0, h + 1).astype(np.int64) * (w + 2) + base
    iy1 = np.clip(y0 + 2, 0, h + 1).astype(np.int64) * (w + 2) + base
    top = flat[iy0 + ix0] * (1 - wx) + flat[iy0 + ix1] * wx
    bottom = flat[iy1 + ix0] * (1 - wx) + flat[iy1 + ix1] * wx
    return top * (1 - wy) + bottom * wy


def color_jitter(x, rng):
    """SVHN brightness (+-10 pixel units) then contrast (0.8-1.2), clipped to [0, 255]."""
    x = np.asarray(x, dtype=np.float32)
    b = x.shape[0]
    x = x + rng.uniform(-BRIGHTNESS, BRIGHTNESS, size=(b, 1, 1, 1)).astype(np.float32)
    mean = x.mean(axis=(1, 2), keepdims=True)
    factor = rng.uniform(*CONTRAST, size=(b, 1, 1, 1)).astype(np.float32)
    return np.clip((x - mean) * factor + mean, 0.0, 255.0)


def augment_batch(x, augment, rng):
    """Apply a named augmentation to a numpy batch in pixel units.

    Args:
        x: array `(B, H, W, C)`, uint8 or float in [0, 255].
        augment: str. One of `"none"`, `"cifar"`, `"lrunet"`, `"svhn"`, `"mnist"`.
        rng: `np.random.Generator`.

    Returns:
        The augmented batch (uint8 kept where no interpolation is needed,
        float32 otherwise).

    Example:
    ```python
    out = augment_batch(x_uint8, "cifar", np.random.default_rng(0))
    ```
    """
    spec = augment_spec(augment)
    if spec["pad"] or spec["flip"]:
        x = pad_crop_flip(x, spec["pad"], spec["flip"], rng)
    if spec["rotate"]:
        limit = np.deg2rad(spec["rotate"])
        x = rotate(x, rng.uniform(-limit, limit, size=x.shape[0]))
    if spec["color"]:
        x = color_jitter(x, rng)
    return x


def cutout(x, size, rng):
    """Zero a `size x size` square per image, centred at a uniform random pixel.

    The square covers rows `[cy - size // 2, cy - size // 2 + size)` (and the
    same for columns) clipped to the image. Works in place on float arrays and
    returns `x`.
    """
    b, h, w, _ = x.shape
    y0 = rng.integers(0, h, size=b) - size // 2
    x0 = rng.integers(0, w, size=b) - size // 2
    rows = (np.arange(h) >= y0[:, None]) & (np.arange(h) < y0[:, None] + size)
    cols = (np.arange(w) >= x0[:, None]) & (np.arange(w) < x0[:, None] + size)
    x[rows[:, :, None] & cols[:, None, :]] = 0
    return x


# --------------------------------------------------------------------------- TensorFlow


def _tf():
    import tensorflow as tf

    return tf


def tf_pad_crop_flip(x, padding, flip, seed):
    """TF version of `pad_crop_flip`; `seed` is a stateless seed `(2,)`."""
    tf = _tf()
    seeds = tf.random.experimental.stateless_split(seed, 3)
    b = tf.shape(x)[0]
    h, w = int(x.shape[1]), int(x.shape[2])
    p = int(padding)
    xp = tf.pad(x, [[0, 0], [p, p], [p, p], [0, 0]]) if p else x
    oy = tf.random.stateless_uniform([b], seeds[0], minval=0, maxval=2 * p + 1, dtype=tf.int32)
    ox = tf.random.stateless_uniform([b], seeds[1], minval=0, maxval=2 * p + 1, dtype=tf.int32)
    rows = oy[:, None] + tf.range(h)[None, :]
    cols = ox[:, None] + tf.range(w)[None, :]
    if flip:
        flipped = tf.random.stateless_uniform([b], seeds[2]) < 0.5
        cols = tf.where(flipped[:, None], tf.reverse(cols, [1]), cols)
    x = tf.gather(xp, rows, axis=1, batch_dims=1)
    return tf.gather(x, cols, axis=2, batch_dims=1)


def tf_rotate(x, angles):
    """TF version of `rotate` (same coordinate map), via `ImageProjectiveTransformV3`."""
    tf = _tf()
    x = tf.cast(x, tf.float32)
    h, w = int(x.shape[1]), int(x.shape[2])
    cy, cx = (h - 1) / 2.0, (w - 1) / 2.0
    cos, sin = tf.cos(angles), tf.sin(angles)
    zeros = tf.zeros_like(cos)
    transforms = tf.stack(
        [cos, -sin, cx - cos * cx + sin * cy, sin, cos, cy - sin * cx - cos * cy, zeros, zeros],
        axis=1,
    )
    return tf.raw_ops.ImageProjectiveTransformV3(
        images=x,
        transforms=tf.cast(transforms, tf.float32),
        output_shape=tf.constant([h, w], tf.int32),
        fill_value=tf.constant(0.0, tf.float32),
        interpolation="BILINEAR",
        fill_mode="CONSTANT",
    )


def tf_color_jitter(x, seed):
    """TF version of `color_jitter`."""
    tf = _tf()
    seeds = tf.random.experimental.stateless_split(seed, 2)
    x = tf.cast(x, tf.float32)
    b = tf.shape(x)[0]
    x = x + tf.random.stateless_uniform([b, 1, 1, 1], seeds[0], -BRIGHTNESS, BRIGHTNESS)
    mean = tf.reduce_mean(x, axis=[1, 2], keepdims=True)
    factor = tf.random.stateless_uniform([b, 1, 1, 1], seeds[1], CONTRAST[0], CONTRAST[1])
    return tf.clip_by_value((x - mean) * factor + mean, 0.0, 255.0)


def tf_augment_batch(x, augment, seed):
    """TF version of `augment_batch`; `seed` is a stateless seed `(2,)`."""
    tf = _tf()
    spec = augment_spec(augment)
    seeds = tf.random.experimental.stateless_split(seed, 3)
    if spec["pad"] or spec["flip"]:
        x = tf_pad_crop_flip(x, spec["pad"], spec["flip"], seeds[0])
    if spec["rotate"]:
        limit = float(np.deg2rad(spec["rotate"]))
        angles = tf.random.stateless_uniform([tf.shape(x)[0]], seeds[1], -limit, limit)
        x = tf_rotate(x, angles)
    if spec["color"]:
        x = tf_color_jitter(x, seeds[2])
    return x


def tf_cutout(x, size, seed):
    """TF version of `cutout`."""
    tf = _tf()
    seeds = tf.random.experimental.stateless_split(seed, 2)
    b = tf.shape(x)[0]
    h, w = int(x.shape[1]), int(x.shape[2])
    y0 = tf.random.stateless_uniform([b], seeds[0], 0, h, dtype=tf.int32) - size // 2
    x0 = tf.random.stateless_uniform([b], seeds[1], 0, w, dtype=tf.int32) - size // 2
    ar_h, ar_w = tf.range(h)[None, :], tf.range(w)[None, :]
    rows = (ar_h >= y0[:, None]) & (ar_h < y0[:, None] + size)
    cols = (ar_w >= x0[:, None]) & (ar_w < x0[:, None] + size)
    keep = tf.cast(~(rows[:, :, None] & cols[:, None, :]), x.dtype)
    return x * keep[..., None]
