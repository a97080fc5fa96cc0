"""Data set metadata, synthetic stand-ins and the train/validation split."""

from __future__ import annotations

import dataclasses

import numpy as np

CIFAR10_CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer",
    "dog", "frog", "horse", "ship", "truck",
)  # fmt: skip

# The fine labels of CIFAR-100 in label order (the official `meta` file; alphabetical).
CIFAR100_CLASSES = (
    "apple", "aquarium_fish", "baby", "bear", "beaver", "bed", "bee", "beetle", "bicycle",
    "bottle", "bowl", "boy", "bridge", "bus", "butterfly", "camel", "can", "castle",
    "caterpillar", "cattle", "chair", "chimpanzee", "clock", "cloud", "cockroach", "couch",
    "crab", "crocodile", "cup", "dinosaur", "dolphin", "elephant", "flatfish", "forest", "fox",
    "girl", "hamster", "house", "kangaroo", "keyboard", "lamp", "lawn_mower", "leopard", "lion",
    "lizard", "lobster", "man", "maple_tree", "motorcycle", "mountain", "mouse", "mushroom",
    "oak_tree", "orange", "orchid", "otter", "palm_tree", "pear", "pickup_truck", "pine_tree",
    "plain", "plate", "poppy", "porcupine", "possum", "rabbit", "raccoon", "ray", "road",
    "rocket", "rose", "sea", "seal", "shark", "shrew", "skunk", "skyscraper", "snail", "snake",
    "spider", "squirrel", "streetcar", "sunflower", "sweet_pepper", "table", "tank",
    "telephone", "television", "tiger", "tractor", "train", "trout", "tulip", "turtle",
    "wardrobe", "whale", "willow_tree", "wolf", "woman", "worm",
)  # fmt: skip

FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip

SVHN_CLASSES = tuple(str(i) for i in range(10))


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """Static description of a supported image-classification data set.

    Args:
        name: str. The name `load` and `get_info` accept, e.g. `"cifar10"`.
        num_classes: int. Number of labels; labels are `0 .. num_classes - 1`.
        image_shape: tuple. `(height, width, channels)` of one training image.
        train_size: int. Number of training images in the full data set.
        test_size: int. Number of test images in the full data set.
        class_names: tuple of str. Class names in label order.
        tfds_name: str. The TensorFlow Datasets builder name.

    Example:
    ```python
    info = keras_lrn.data.get_info("fashion_mnist")
    info.image_shape  # (28, 28, 1)
    ```
    """

    name: str
    num_classes: int
    image_shape: tuple
    train_size: int
    test_size: int
    class_names: tuple
    tfds_name: str = ""


_INFOS = {
    "cifar10": DatasetInfo("cifar10", 10, (32, 32, 3), 50_000, 10_000, CIFAR10_CLASSES, "cifar10"),
    "cifar100": DatasetInfo(
        "cifar100", 100, (32, 32, 3), 50_000, 10_000, CIFAR100_CLASSES, "cifar100"
    ),
    "fashion_mnist": DatasetInfo(
        "fashion_mnist", 10, (28, 28, 1), 60_000, 10_000, FASHION_MNIST_CLASSES, "fashion_mnist"
    ),
    # The cropped-digit format; `extra` (531,131 images) is not part of `train`.
    "svhn": DatasetInfo("svhn", 10, (32, 32, 3), 73_257, 26_032, SVHN_CLASSES, "svhn_cropped"),
}

DATASET_NAMES = tuple(_INFOS)


def _check_name(name):
    if name not in _INFOS:
        raise ValueError(
            f"Unknown data set. `name` must be one of {list(DATASET_NAMES)}. Received: name={name!r}"
        )
    return name


def get_info(name):
    """Return the `DatasetInfo` of a supported data set.

    Args:
        name: str. One of `"cifar10"`, `"cifar100"`, `"fashion_mnist"`, `"svhn"`.

    Returns:
        A frozen `DatasetInfo`.

    Example:
    ```python
    info = keras_lrn.data.get_info("cifar10")
    info.num_classes, info.image_shape  # (10, (32, 32, 3))
    ```
    """
    return _INFOS[_check_name(name)]


def list_datasets():
    """Return the names `load` and `get_info` accept, as a tuple of str.

    Example:
    ```python
    keras_lrn.data.list_datasets()  # ('cifar10', 'cifar100', 'fashion_mnist', 'svhn')
    ```
    """
    return DATASET_NAMES


def _check_seed(seed, arg="seed"):
    if seed is None:
        return int(np.random.SeedSequence().entropy % (2**31))
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"`{arg}` must be a non-negative int or None. Received: {arg}={seed!r}")
    return int(seed)


def synthetic(name, num_examples=64, seed=0, split="train"):
    """Make a small, learnable stand-in for a data set, without any files.

    Each class has a fixed random template (the same for both splits); an image
    is half its class template and half uniform noise, so a model can fit the
    data a little, which makes loss curves in smoke tests meaningful.

    Args:
        name: str. Data set whose `image_shape` and `num_classes` to copy.
        num_examples: int. Number of images. Defaults to `64`.
        seed: int. Seed of the noise; `split` changes the stream too. Defaults to `0`.
        split: str. `"train"` or `"test"`. Defaults to `"train"`.

    Returns:
        `(x, y)`: `x` uint8 of shape `(num_examples,) + image_shape`, `y` int64
        labels cycling `0, 1, ..., num_classes - 1, 0, ...`.

    Example:
    ```python
    x, y = keras_lrn.data.synthetic("cifar10", num_examples=20)
    x.shape, y[:12]  # (20, 32, 32, 3), [0 1 2 3 4 5 6 7 8 9 0 1]
    ```
    """
    info = get_info(name)
    if isinstance(num_examples, bool) or not isinstance(num_examples, (int, np.integer)):
        raise ValueError(
            f"`num_examples` must be a non-negative int. Received: num_examples={num_examples!r}"
        )
    if num_examples < 0:
        raise ValueError(
            f"`num_examples` must be a non-negative int. Received: num_examples={num_examples!r}"
        )
    if split not in ("train", "test"):
        raise ValueError(f"`split` must be one of 'train', 'test'. Received: split={split!r}")
    seed = _check_seed(seed)
    templates = np.random.default_rng([7, info.num_classes, *info.image_shape]).integers(
        0, 256, size=(info.num_classes,) + tuple(info.image_shape), dtype=np.uint16
    )
    rng = np.random.default_rng([seed, 0 if split == "train" else 1])
    y = np.arange(num_examples, dtype=np.int64) % info.num_classes
    noise = rng.integers(0, 256, size=(num_examples,) + tuple(info.image_shape), dtype=np.uint16)
    x = ((templates[y] + noise) // 2).astype(np.uint8)
    return x, y


def train_val_split(x, y, val_fraction=0.1, seed=0):
    """Split arrays into a training and a validation part, stratified by label.

    Each class contributes its share of the validation set (largest-remainder
    rounding, so the total is exactly `round(val_fraction * len(x))`); which
    examples go to validation is a seeded random choice inside each class. Both
    parts keep the original order of `x` (shuffle them in the input pipeline).

    Args:
        x: array. Examples, first axis the example axis.
        y: array. Integer labels of shape `(len(x),)`.
        val_fraction: float. Fraction for validation, in `[0, 1)`. `0` gives an
            empty validation part. Defaults to `0.1`.
        seed: int. Seed of the random choice. Defaults to `0`.

    Returns:
        `((x_train, y_train), (x_val, y_val))`.

    Example:
    ```python
    x, y = keras_lrn.data.synthetic("cifar10", num_examples=100)
    (x_tr, y_tr), (x_val, y_val) = keras_lrn.data.train_val_split(x, y, 0.1)
    len(x_val), np.bincount(y_val)  # 10, [1 1 1 1 1 1 1 1 1 1]
    ```
    """
    x = np.asarray(x)
    y = np.asarray(y)
    if isinstance(val_fraction, bool) or not isinstance(val_fraction, (int, float, np.floating)):
        raise ValueError(
            f"`val_fraction` must be a float in [0, 1). Received: val_fraction={val_fraction!r}"
        )
    if not 0.0 <= float(val_fraction) < 1.0:
        raise ValueError(
            f"`val_fraction` must be a float in [0, 1). Received: val_fraction={val_fraction!r}"
        )
    if y.ndim != 1 or len(x) != len(y):
        raise ValueError(
            "`x` and `y` must have the same length and `y` must be 1-D. "
            f"Received: x.shape={x.shape}, y.shape={y.shape}"
        )
    seed = _check_seed(seed)
    n = len(y)
    n_val = int(round(float(val_fraction) * n))
    if n_val == 0:
        return (x, y), (x[:0], y[:0])
    classes, inverse, counts = np.unique(y, return_inverse=True, return_counts=True)
    share = counts * (n_val / n)
    take = np.floor(share).astype(np.int64)
    short = n_val - int(take.sum())
    if short > 0:  # largest remainder first; ties broken by class order
        order = np.argsort(-(share - take), kind="stable")
        take[order[:short]] += 1
    rng = np.random.default_rng([seed, 1])
    is_val = np.zeros(n, dtype=bool)
    for k in range(len(classes)):
        idx = np.flatnonzero(inverse == k)
        if take[k]:
            is_val[rng.choice(idx, size=int(take[k]), replace=False)] = True
    return (x[~is_val], y[~is_val]), (x[is_val], y[is_val])
