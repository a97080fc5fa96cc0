"""Input normalisation as an affine map `z = x * scale + offset`, fitted in numpy."""

from __future__ import annotations

import json

import numpy as np

NORMALIZE_KINDS = ("none", "scale", "per_pixel_mean", "channel", "imagenet")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_CHUNK = 4096  # images per chunk when fitting, to bound float64 temporaries


class Normalizer:
    """Normalise images given in pixel units (uint8 or float in `[0, 255]`).

    Kinds:
    - `"none"`: `z = x` (as float32).
    - `"scale"`: `z = x / 255`.
    - `"per_pixel_mean"`: `z = (x - mean_image) / 128`, `mean_image` being the
      per-pixel mean of the training set in pixel units (epsilon-ResNet's recipe).
    - `"channel"`: `z = (x / 255 - mean_c) / std_c`, with per-channel `mean`
      and `std` in `[0, 1]` units, given or fitted (population std over all
      pixels of the training set).
    - `"imagenet"`: `"channel"` with the ImageNet statistics
      `mean=(0.485, 0.456, 0.406)`, `std=(0.229, 0.224, 0.225)`.

    Every kind is the affine map `z = x * scale + offset` (`affine()`), which the
    tf.data pipeline applies with TF ops; calling the object applies it in numpy.

    Args:
        kind: str. One of `"none"`, `"scale"`, `"per_pixel_mean"`, `"channel"`,
            `"imagenet"`.
        mean: array-like or None. `"per_pixel_mean"`: the mean image
            `(H, W, C)` in pixel units; `"channel"`: per-channel means in
            `[0, 1]` units. `None` means "fit it". Defaults to `None`.
        std: array-like or None. `"channel"` only: per-channel standard
            deviations in `[0, 1]` units. Defaults to `None`.

    Example:
    ```python
    norm = keras_lrn.data.Normalizer("channel").fit(x_train)
    z = norm(x_train[:128])          # float32
    norm.save("norm.npz"); norm2 = keras_lrn.data.Normalizer.load("norm.npz")
    ```
    """

    def __init__(self, kind="scale", mean=None, std=None):
        if kind not in NORMALIZE_KINDS:
            raise ValueError(
                f"`kind` must be one of {list(NORMALIZE_KINDS)}. Received: kind={kind!r}"
            )
        if kind in ("none", "scale", "imagenet") and (mean is not None or std is not None):
            raise ValueError(
                f"Normalizer(kind={kind!r}) takes no `mean`/`std`; they are only for "
                "'per_pixel_mean' (mean) and 'channel' (mean and std). "
                f"Received: mean={mean!r}, std={std!r}"
            )
        if kind == "per_pixel_mean" and std is not None:
            raise ValueError(
                "Normalizer(kind='per_pixel_mean') divides by 128 and takes no `std`. "
                f"Received: std={std!r}"
            )
        if kind == "channel" and (mean is None) != (std is None):
            raise ValueError(
                "Normalizer(kind='channel') needs both `mean` and `std`, or neither (to fit them). "
                f"Received: mean={mean!r}, std={std!r}"
            )
        self.kind = kind
        self.mean = None if mean is None else np.asarray(mean, dtype=np.float32)
        self.std = None if std is None else np.asarray(std, dtype=np.float32)
        if kind == "imagenet":
            self.mean = np.asarray(IMAGENET_MEAN, np.float32)
            self.std = np.asarray(IMAGENET_STD, np.float32)
        if self.std is not None and np.any(self.std <= 0):
            raise ValueError(f"`std` must be positive. Received: std={std!r}")
        if kind == "channel" and self.mean is not None and self.mean.shape != self.std.shape:
            raise ValueError(
                "`mean` and `std` must have the same shape. "
                f"Received: mean.shape={self.mean.shape}, std.shape={self.std.shape}"
            )

    @property
    def fitted(self):
        """Whether the normaliser has everything it needs to be applied."""
        return self.kind in ("none", "scale", "imagenet") or self.mean is not None

    def fit(self, x):
        """Compute the statistics the kind needs from training images; returns `self`.

        A no-op for `"none"`, `"scale"`, `"imagenet"` and for statistics given
        to the constructor.

        Args:
            x: array. Training images `(N, H, W, C)` in pixel units.

        Returns:
            `self`.

        Example:
        ```python
        norm = Normalizer("per_pixel_mean").fit(x_train)
        norm.mean.shape  # (32, 32, 3)
        ```
        """
        if self.fitted:
            return self
        x = np.asarray(x)
        if x.ndim != 4 or len(x) == 0:
            raise ValueError(
                f"`x` must be a non-empty batch of images (N, H, W, C). Received: x.shape={x.shape}"
            )
        total = np.zeros(x.shape[1:], np.float64)
        sq = np.zeros(x.shape[-1], np.float64)
        for i in range(0, len(x), _CHUNK):
            chunk = x[i : i + _CHUNK].astype(np.float64)
            total += chunk.sum(axis=0)
            if self.kind == "channel":
                sq += np.square(chunk / 255.0).sum(axis=(0, 1, 2))
        mean_image = total / len(x)
        if self.kind == "per_pixel_mean":
            self.mean = mean_image.astype(np.float32)
        else:
            count = len(x) * x.shape[1] * x.shape[2]
            mean_c = mean_image.mean(axis=(0, 1)) / 255.0
            var_c = np.maximum(sq / count - np.square(mean_c), 0.0)
            self.mean = mean_c.astype(np.float32)
            self.std = np.sqrt(np.maximum(var_c, 1e-12)).astype(np.float32)
        return self

    def affine(self):
        """Return `(scale, offset)` float32 arrays with `z = x * scale + offset`.

        Example:
        ```python
        scale, offset = Normalizer("scale").affine()  # 1/255, 0
        ```
        """
        if not self.fitted:
            raise ValueError(
                f"Normalizer(kind={self.kind!r}) must be fitted first: call `.fit(x_train)` or "
                "pass `mean`" + ("/`std`" if self.kind == "channel" else "") + "."
            )
        if self.kind == "none":
            return np.float32(1.0), np.float32(0.0)
        if self.kind == "scale":
            return np.float32(1.0 / 255.0), np.float32(0.0)
        if self.kind == "per_pixel_mean":
            return np.float32(1.0 / 128.0), (-self.mean / np.float32(128.0)).astype(np.float32)
        std = self.std.astype(np.float64)
        scale = (1.0 / (255.0 * std)).astype(np.float32)
        offset = (-self.mean.astype(np.float64) / std).astype(np.float32)
        return scale, offset

    def __call__(self, x):
        """Apply the normalisation: numpy in, float32 numpy out.

        Backend tensors (e.g. inside a model) are handled with `keras.ops`.
        """
        scale, offset = self.affine()
        if isinstance(x, np.ndarray) or np.isscalar(x) or isinstance(x, (list, tuple)):
            x = np.asarray(x, dtype=np.float32)
            if self.kind == "none":
                return x
            return x * scale + offset
        from keras import ops

        return ops.add(ops.multiply(ops.cast(x, "float32"), scale), offset)

    def get_config(self):
        """Return a JSON-able dict (arrays as nested lists) for `from_config`."""
        given = self.kind in ("per_pixel_mean", "channel")
        return {
            "kind": self.kind,
            "mean": self.mean.tolist() if given and self.mean is not None else None,
            "std": self.std.tolist() if given and self.std is not None else None,
        }

    @classmethod
    def from_config(cls, config):
        """Rebuild a normaliser from `get_config()` output."""
        return cls(**config)

    def save(self, path):
        """Save to a `.npz` file (no pickles), to reload with `Normalizer.load`."""
        arrays = {"kind": np.array(self.kind)}
        config = self.get_config()
        for key in ("mean", "std"):
            if config[key] is not None:
                arrays[key] = getattr(self, key)
        np.savez(path, **arrays)

    @classmethod
    def load(cls, path):
        """Load a normaliser saved with `save`."""
        with np.load(path, allow_pickle=False) as z:
            kind = str(z["kind"])
            mean = z["mean"] if "mean" in z.files else None
            std = z["std"] if "std" in z.files else None
        return cls(kind, mean=mean, std=std)

    def __repr__(self):
        return f"Normalizer({json.dumps(self.kind)}, fitted={self.fitted})"


def get_normalizer(normalizer):
    """Coerce `None`, a kind string, a config dict or a `Normalizer` to a `Normalizer`."""
    if normalizer is None:
        return Normalizer("none")
    if isinstance(normalizer, Normalizer):
        return normalizer
    if isinstance(normalizer, str):
        return Normalizer(normalizer)
    if isinstance(normalizer, dict):
        return Normalizer.from_config(normalizer)
    raise ValueError(
        "`normalizer` must be a Normalizer, None or one of "
        f"{list(NORMALIZE_KINDS)}. Received: normalizer={normalizer!r}"
    )
