import numpy as np
import pytest

from keras_lrn import data


@pytest.mark.parametrize(
    "name,classes,shape,train,test",
    [
        ("cifar10", 10, (32, 32, 3), 50_000, 10_000),
        ("cifar100", 100, (32, 32, 3), 50_000, 10_000),
        ("fashion_mnist", 10, (28, 28, 1), 60_000, 10_000),
        ("svhn", 10, (32, 32, 3), 73_257, 26_032),
    ],
)
def test_get_info(name, classes, shape, train, test):
    info = data.get_info(name)
    assert isinstance(info, data.DatasetInfo)
    assert (info.name, info.num_classes, info.image_shape) == (name, classes, shape)
    assert (info.train_size, info.test_size) == (train, test)
    assert len(info.class_names) == len(set(info.class_names)) == classes
    assert name in data.list_datasets()


def test_get_info_unknown_name():
    with pytest.raises(
        ValueError, match="cifar10.*cifar100.*fashion_mnist.*svhn.*Received: name='mnist'"
    ):
        data.get_info("mnist")


def test_class_order():
    assert data.get_info("cifar10").class_names[:3] == ("airplane", "automobile", "bird")
    assert data.get_info("cifar100").class_names[-1] == "worm"
    assert data.get_info("svhn").tfds_name == "svhn_cropped"


@pytest.mark.parametrize("name", data.DATASET_NAMES)
def test_synthetic(name):
    info = data.get_info(name)
    n = info.num_classes + 5
    x, y = data.synthetic(name, num_examples=n, seed=3)
    assert x.shape == (n,) + info.image_shape and x.dtype == np.uint8
    assert y.dtype == np.int64
    np.testing.assert_array_equal(y, np.arange(n) % info.num_classes)


def test_synthetic_seeded():
    a, _ = data.synthetic("cifar10", 16, seed=1)
    b, _ = data.synthetic("cifar10", 16, seed=1)
    c, _ = data.synthetic("cifar10", 16, seed=2)
    t, _ = data.synthetic("cifar10", 16, seed=1, split="test")
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c) and not np.array_equal(a, t)
    # Learnable: images of one class are closer to each other than to other classes.
    x, y = data.synthetic("cifar10", 200)
    means = np.stack([x[y == k].mean(0) for k in range(10)]).reshape(10, -1)
    d = np.linalg.norm(x[:10].reshape(10, -1)[:, None] - means[None], axis=-1)
    np.testing.assert_array_equal(d.argmin(1), y[:10])


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(num_examples=-1), "num_examples"),
        (dict(split="val"), "split.*'train', 'test'"),
        (dict(seed=-3), "seed"),
    ],
)
def test_synthetic_bad_args(kwargs, match):
    with pytest.raises(ValueError, match=match):
        data.synthetic("cifar10", **kwargs)


def test_train_val_split_stratified():
    x, y = data.synthetic("cifar10", 1000)
    (x_tr, y_tr), (x_val, y_val) = data.train_val_split(x, y, val_fraction=0.1, seed=0)
    assert len(x_val) == 100 and len(x_tr) == 900
    np.testing.assert_array_equal(np.bincount(y_val), np.full(10, 10))
    # Disjoint and complete: every image of x appears exactly once.
    allx = np.concatenate([x_tr, x_val]).reshape(1000, -1)
    assert len(np.unique(allx, axis=0)) == 1000
    # Seeded.
    (_, _), (x_val2, _) = data.train_val_split(x, y, 0.1, seed=0)
    (_, _), (x_val3, _) = data.train_val_split(x, y, 0.1, seed=1)
    np.testing.assert_array_equal(x_val, x_val2)
    assert not np.array_equal(x_val, x_val3)


def test_train_val_split_rounding_and_zero():
    y = np.array([0] * 7 + [1] * 5 + [2] * 3)
    x = np.arange(len(y))
    (_, _), (_, y_val) = data.train_val_split(x, y, val_fraction=0.3)
    assert len(y_val) == round(0.3 * 15)
    (x_tr, _), (x_val, y_val) = data.train_val_split(x, y, val_fraction=0.0)
    assert len(x_tr) == 15 and x_val.shape == (0,) and y_val.shape == (0,)


@pytest.mark.parametrize("frac", [1.0, -0.1, 1.5, "0.1"])
def test_train_val_split_bad_fraction(frac):
    with pytest.raises(ValueError, match=r"val_fraction.*\[0, 1\)"):
        data.train_val_split(np.zeros((10, 2)), np.zeros(10, int), val_fraction=frac)


def test_train_val_split_length_mismatch():
    with pytest.raises(ValueError, match="same length"):
        data.train_val_split(np.zeros((10, 2)), np.zeros(9, int))
