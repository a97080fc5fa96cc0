import gzip
import os
import pickle
import sys
import time
import types

import numpy as np
import pytest
from _data_helpers import (
    CIFAR10_CLASSES,
    REPO,
    needs_pil,
    tiny_split,
    write_imagefolder,
    write_packed,
)

from keras_lrn import data
from keras_lrn.data import loading


def _tiny_cifar(per_train=2, per_test=1, classes=CIFAR10_CLASSES, shape=(32, 32, 3)):
    return {
        "train": tiny_split(classes, per_train, shape, seed=1),
        "test": tiny_split(classes, per_test, shape, seed=2),
    }


def _assert_same(arrays, splits):
    for (x, y), split in zip(arrays, ("train", "test")):
        x_ref, y_ref = splits[split]
        assert x.dtype == np.uint8 and y.dtype == np.int64
        # Compare as multisets of (label, image): the loader's order is its own.
        got = sorted((int(label), img.tobytes()) for img, label in zip(x, y))
        ref = sorted((int(label), img.tobytes()) for img, label in zip(x_ref, y_ref))
        assert got == ref


# --------------------------------------------------------------------------- packed parts


@needs_pil
def test_packed_parts_and_cache(tmp_path, monkeypatch):
    # classes.txt order differs from sorted order: it must decide the labels.
    classes = CIFAR10_CLASSES[::-1]
    splits = _tiny_cifar(classes=classes)
    d = write_packed(tmp_path / "packed", "cifar10", classes, splits, parts=2)
    cache = tmp_path / "cache"
    arrays = data.load("cifar10", data_dir=d, cache_dir=cache)
    _assert_same(arrays, splits)
    assert len(list(cache.glob("*.npz"))) == 1

    # A second load reads the cache and decodes nothing.
    def boom(*args, **kwargs):
        raise AssertionError("decoded again")

    monkeypatch.setattr(loading, "_decode_image", boom)
    again = data.load("cifar10", data_dir=str(d), source="local", cache_dir=cache)
    for (x1, y1), (x2, y2) in zip(arrays, again):
        np.testing.assert_array_equal(x1, x2)
        np.testing.assert_array_equal(y1, y2)

    # A changed directory is decoded anew (and the stale entry replaced).
    monkeypatch.undo()
    calls = []
    real = loading._decode_image
    monkeypatch.setattr(loading, "_decode_image", lambda *a: calls.append(1) or real(*a))
    splits["test"] = tiny_split(classes, 2, seed=5)
    write_packed(d, "cifar10", classes, {"test": splits["test"]}, parts=2)
    os.utime(d / "cifar10-test-0.tar.gz", ns=(1, 1))  # another size and mtime anyway
    arrays = data.load("cifar10", data_dir=d, cache_dir=cache)
    assert len(calls) == 20 + 20
    _assert_same(arrays, splits)
    assert len(list(cache.glob("*.npz"))) == 1


@needs_pil
def test_packed_without_classes_txt(tmp_path):
    splits = _tiny_cifar()
    d = write_packed(tmp_path, "cifar10", CIFAR10_CLASSES, splits, class_file=False)
    _assert_same(data.load("cifar10", data_dir=d, cache_dir=tmp_path / "c"), splits)


@needs_pil
def test_packed_wrong_shape(tmp_path):
    splits = _tiny_cifar(shape=(16, 16, 3))
    d = write_packed(tmp_path / "d", "cifar10", CIFAR10_CLASSES, splits)
    with pytest.raises(
        ValueError, match=r"data_dir=.*expected 'cifar10' images of shape \(32, 32, 3\)"
    ):
        data.load("cifar10", data_dir=d, cache_dir=tmp_path / "c")


@needs_pil
def test_packed_bad_member_path(tmp_path):
    import io
    import tarfile

    from _data_helpers import png_bytes

    d = tmp_path / "d"
    d.mkdir()
    with tarfile.open(d / "cifar10-train-0.tar.gz", "w:gz") as tar:
        payload = png_bytes(np.zeros((32, 32, 3), np.uint8))
        info = tarfile.TarInfo("valid/cat/0.png")
        info.size = len(payload)
        tar.addfile(info, io.BytesIO(payload))
    with pytest.raises(ValueError, match=r"data_dir=.*<split>/<class>/<image>"):
        data.load("cifar10", data_dir=d, cache_dir=tmp_path / "c")


@needs_pil
def test_packed_bad_classes_txt(tmp_path):
    d = write_packed(tmp_path / "d", "cifar10", CIFAR10_CLASSES, _tiny_cifar())
    (d / "classes.txt").write_text("cat\ndog\n")
    with pytest.raises(ValueError, match=r"data_dir=.*classes.txt must list the 10"):
        data.load("cifar10", data_dir=d, cache_dir=tmp_path / "c")


# --------------------------------------------------------------------------- ImageFolder


@needs_pil
def test_imagefolder_official_order(tmp_path):
    # No classes.txt, folder names = the official names in another order: the
    # labels follow the official order, not the folder or writing order.
    shuffled = CIFAR10_CLASSES[3:] + CIFAR10_CLASSES[:3]
    splits = _tiny_cifar(classes=shuffled)
    d = write_imagefolder(tmp_path / "c10", shuffled, splits)
    relabel = np.array([CIFAR10_CLASSES.index(c) for c in shuffled])
    ref = {s: (x, relabel[y]) for s, (x, y) in splits.items()}
    _assert_same(data.load("cifar10", data_dir=d, cache_dir=tmp_path / "c"), ref)


@needs_pil
def test_imagefolder_grayscale_with_classes_txt(tmp_path):
    # "T-shirt/top" cannot be a folder name: classes.txt gives the order instead.
    names = [n.replace("/", "_") for n in data.get_info("fashion_mnist").class_names]
    splits = {
        "train": tiny_split(names, 2, (28, 28, 1), seed=1),
        "test": tiny_split(names, 1, (28, 28, 1), seed=2),
    }
    d = write_imagefolder(tmp_path / "f", names, splits, class_file=True)
    arrays = data.load("fashion_mnist", data_dir=d, cache_dir=tmp_path / "c")
    assert arrays[0][0].shape == (20, 28, 28, 1)
    _assert_same(arrays, splits)


@needs_pil
def test_imagefolder_sorted_and_numeric_names(tmp_path):
    names = [str(i) for i in range(10)]
    splits = _tiny_cifar(classes=names)
    d = write_imagefolder(tmp_path / "svhn", names, splits)
    _assert_same(data.load("svhn", data_dir=d, cache_dir=tmp_path / "c"), splits)
    # Unknown names and no classes.txt: sorted folder names.
    names = [f"class_{c}" for c in "jihgfedcba"]
    splits = _tiny_cifar(classes=names)
    d = write_imagefolder(tmp_path / "other", names, splits)
    relabel = np.array([sorted(names).index(n) for n in names])
    ref = {s: (x, relabel[y]) for s, (x, y) in splits.items()}
    _assert_same(data.load("cifar10", data_dir=d, cache_dir=tmp_path / "c"), ref)


@needs_pil
def test_imagefolder_class_missing_in_test(tmp_path):
    splits = _tiny_cifar()
    x, y = splits["test"]
    splits["test"] = (x[y != 4], y[y != 4])
    d = write_imagefolder(tmp_path / "d", CIFAR10_CLASSES, splits)
    with pytest.raises(ValueError, match=r"data_dir=.*'test' split has no images of class.*deer"):
        data.load("cifar10", data_dir=d, cache_dir=tmp_path / "c")


@needs_pil
def test_imagefolder_empty_split_and_wrong_class_count(tmp_path):
    splits = _tiny_cifar()
    d = write_imagefolder(tmp_path / "d", CIFAR10_CLASSES, {"train": splits["train"]})
    with pytest.raises(ValueError, match=r"data_dir=.*'test' split is empty"):
        data.load("cifar10", data_dir=d, cache_dir=tmp_path / "c")
    d = write_imagefolder(
        tmp_path / "e", CIFAR10_CLASSES[:3], _tiny_cifar(classes=CIFAR10_CLASSES[:3])
    )
    with pytest.raises(ValueError, match=r"data_dir=.*expected 10 classes"):
        data.load("cifar10", data_dir=d, cache_dir=tmp_path / "c")


def test_no_layout(tmp_path):
    (tmp_path / "readme.txt").write_text("nothing here")
    with pytest.raises(
        ValueError, match=r"(?s)data_dir=.*no 'cifar10' data in a known layout.*ImageFolder"
    ):
        data.load("cifar10", data_dir=tmp_path)
    with pytest.raises(ValueError, match=r"data_dir.*existing directory"):
        data.load("cifar10", data_dir=tmp_path / "missing")


# --------------------------------------------------------------------------- pickles and idx


def _write_cifar_pickles(root, labels_test=None, protocol=2):
    d = root / "cifar-10-batches-py"
    d.mkdir(parents=True)
    rng = np.random.default_rng(0)
    xs = {}
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for fname in names:
        x = rng.integers(0, 256, size=(10, 3072), dtype=np.uint8)
        labels = list(range(10)) if fname != "test_batch" or labels_test is None else labels_test
        with open(d / fname, "wb") as f:
            pickle.dump({b"batch_label": b"x", b"labels": labels, b"data": x}, f, protocol=protocol)
        xs[fname] = x
    (d / "batches.meta").write_bytes(pickle.dumps({b"label_names": [b"a"]}, protocol=2))
    return d, xs


def test_cifar_pickles(tmp_path):
    d, xs = _write_cifar_pickles(tmp_path)
    (x_train, y_train), (x_test, y_test) = data.load("cifar10", data_dir=tmp_path)
    assert x_train.shape == (50, 32, 32, 3) and x_test.shape == (10, 32, 32, 3)
    np.testing.assert_array_equal(y_test, np.arange(10))
    # Channel-planar rows become HWC images.
    np.testing.assert_array_equal(
        x_test[3, :, :, 1], xs["test_batch"][3, 1024:2048].reshape(32, 32)
    )
    # The pickle folder itself works too.
    assert data.load("cifar10", data_dir=d)[1][0].shape == (10, 32, 32, 3)


def test_cifar_pickles_labels_out_of_range(tmp_path):
    _write_cifar_pickles(tmp_path, labels_test=list(range(1, 11)))
    with pytest.raises(ValueError, match=r"data_dir=.*labels must be in \[0, 10\)"):
        data.load("cifar10", data_dir=tmp_path)


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_cifar_pickles_refuse_code(tmp_path):
    d, _ = _write_cifar_pickles(tmp_path)
    (d / "test_batch").write_bytes(pickle.dumps({b"data": _Evil(), b"labels": [0]}))
    with pytest.raises(ValueError, match=r"data_dir=.*refusing to load the global"):
        data.load("cifar10", data_dir=tmp_path)


def test_fashion_mnist_idx(tmp_path):
    rng = np.random.default_rng(0)
    ref = {}
    for prefix, n in (("train", 20), ("t10k", 10)):
        x = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        y = (np.arange(n) % 10).astype(np.uint8)
        header = bytes([0, 0, 8, 3]) + np.array([n, 28, 28], ">u4").tobytes()
        with gzip.open(tmp_path / f"{prefix}-images-idx3-ubyte.gz", "wb") as f:
            f.write(header + x.tobytes())
        (tmp_path / f"{prefix}-labels-idx1-ubyte").write_bytes(
            bytes([0, 0, 8, 1]) + np.array([n], ">u4").tobytes() + y.tobytes()
        )
        ref[prefix] = (x, y)
    (x_train, y_train), (x_test, y_test) = data.load("fashion_mnist", data_dir=tmp_path)
    assert x_train.shape == (20, 28, 28, 1) and y_test.dtype == np.int64
    np.testing.assert_array_equal(x_test[..., 0], ref["t10k"][0])


# --------------------------------------------------------------------------- sources


def test_bad_source_and_name():
    with pytest.raises(ValueError, match="source.*'auto', 'local', 'tfds', 'keras', 'synthetic'"):
        data.load("cifar10", source="web")
    with pytest.raises(ValueError, match="name.*cifar10"):
        data.load("imagenet")
    with pytest.raises(ValueError, match="needs a `data_dir`"):
        data.load("cifar10", source="local")
    with pytest.raises(ValueError, match="keras.datasets has no 'svhn'"):
        data.load("svhn", source="keras")


def test_synthetic_source():
    (x, y), (xt, yt) = data.load("cifar100", source="synthetic")
    assert x.shape[1:] == (32, 32, 3) and set(y) == set(range(100)) and set(yt) == set(range(100))


def test_offline_auto_fails_fast(isolated_env):
    start = time.perf_counter()
    with pytest.raises(ValueError) as err:
        data.load("cifar10")
    assert time.perf_counter() - start < 5
    msg = str(err.value)
    for part in ("data_dir=", "--data-dir", "unreachable", "ImageFolder", "packed parts", "TFDS"):
        assert part in msg
    with pytest.raises(ValueError, match="keras.datasets has no copy"):
        data.load("svhn")


def test_network_check_is_bounded():
    start = time.perf_counter()
    assert loading._network_available("127.0.0.1", 9, timeout=1.0) is False
    assert time.perf_counter() - start < 2


@needs_pil
def test_auto_uses_env_data_dir(isolated_env, monkeypatch):
    splits = _tiny_cifar()
    write_packed(isolated_env / "root" / "cifar10", "cifar10", CIFAR10_CLASSES, splits)
    monkeypatch.setenv("KERAS_LRN_DATA_DIR", str(isolated_env / "root"))
    _assert_same(data.load("cifar10"), splits)


def test_auto_uses_keras_cache(isolated_env, monkeypatch):
    keras_home = isolated_env / "keras_home"
    _write_cifar_pickles(keras_home / "datasets" / "cifar-10-batches-py-target")
    monkeypatch.setenv("KERAS_HOME", str(keras_home))
    assert data.load("cifar10")[0][0].shape == (50, 32, 32, 3)


def _fake_tfds(monkeypatch, calls, n=10, shape=(32, 32, 3)):
    fake = types.ModuleType("tensorflow_datasets")

    def load(name, **kwargs):
        calls.append((name, kwargs))
        x = np.zeros((n,) + shape, np.uint8)
        return [(x, np.arange(n) % 10), (x[:n], np.arange(n) % 10)]

    fake.load = load
    fake.as_numpy = lambda t: t
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", fake)
    monkeypatch.setattr(loading, "_tfds_importable", lambda: True)


def test_tfds_source_and_layout(tmp_path, monkeypatch, isolated_env):
    calls = []
    _fake_tfds(monkeypatch, calls)
    data.load("svhn", source="tfds", data_dir=tmp_path)
    name, kwargs = calls[-1]
    assert name == "svhn_cropped" and kwargs["download"] is False
    assert kwargs["data_dir"] == str(tmp_path) and kwargs["split"] == ["train", "test"]
    # A TFDS data_dir is detected by its prepared <name>/<version>/dataset_info.json.
    prepared = tmp_path / "tfds" / "cifar10" / "3.0.2"
    prepared.mkdir(parents=True)
    (prepared / "dataset_info.json").write_text("{}")
    data.load("cifar10", data_dir=tmp_path / "tfds")
    assert calls[-1][0] == "cifar10" and calls[-1][1]["data_dir"] == str(tmp_path / "tfds")
    data.load("cifar10", data_dir=tmp_path / "tfds" / "cifar10")  # the dataset folder itself
    assert calls[-1][1]["data_dir"] == str(tmp_path / "tfds")
    # ... and "auto" finds a prepared copy in the default TFDS dir.
    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path / "tfds"))
    data.load("cifar10")
    assert calls[-1][1]["data_dir"] == str(tmp_path / "tfds")


def test_tfds_wrong_shape(tmp_path, monkeypatch):
    _fake_tfds(monkeypatch, [], shape=(28, 28, 1))
    with pytest.raises(ValueError, match=r"data_dir=.*expected 'cifar10' train images of shape"):
        data.load("cifar10", source="tfds", data_dir=tmp_path)


# --------------------------------------------------------------------------- real data

CIFAR10_DIR = REPO.parent / "shared" / "datasets" / "cifar10"


@needs_pil
@pytest.mark.skipif(not CIFAR10_DIR.is_dir(), reason=f"{CIFAR10_DIR} not present")
def test_real_cifar10():
    # Uses the default cache ($KERAS_LRN_CACHE or ~/.cache/keras_lrn): about 13 s to
    # decode the first time, well under a second afterwards.
    (x_train, y_train), (x_test, y_test) = data.load("cifar10", data_dir=CIFAR10_DIR)
    assert x_train.shape == (50_000, 32, 32, 3) and x_test.shape == (10_000, 32, 32, 3)
    np.testing.assert_array_equal(np.bincount(y_test), np.full(10, 1000))
    np.testing.assert_array_equal(np.bincount(y_train), np.full(10, 5000))
    mean = x_test.reshape(-1, 3).mean(0) / 255
    np.testing.assert_allclose(mean, (0.4941, 0.4851, 0.4504), atol=2e-3)
