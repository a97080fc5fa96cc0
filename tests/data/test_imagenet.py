"""Streaming ImageNet pipelines: geometry, class checks, skipped files, tf.data vs Pillow."""

import math
import shutil
import warnings

import numpy as np
import pytest

from keras_lrn.data import imagenet as im
from keras_lrn.data.normalization import IMAGENET_STD
from tests.data._data_helpers import HAS_TF, needs_pil, needs_tf

pytestmark = needs_pil
PIPELINES = [pytest.param("tf", marks=needs_tf), "numpy"]


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    """5 classes x 4 train + 2 val JPEGs of random sizes, plus one corrupt train file."""
    root = tmp_path_factory.mktemp("imagenet")
    return im.write_synthetic_imagefolder(root, classes=5, train_per_class=4, val_per_class=2,
                                          corrupt=1, seed=3)


def _batches(ds):
    if hasattr(ds, "element_spec"):
        return [(np.asarray(x), np.asarray(y)) for x, y in ds]
    return [ds[i] for i in range(len(ds))]


def _torchvision_params(height, width, u_scale, u_log_ratio, u_offset, scale=(0.08, 1.0),
                        ratio=(3 / 4, 4 / 3)):  # fmt: skip
    """torchvision `RandomResizedCrop.get_params`, one image, as a plain loop on given draws."""
    area = height * width
    for attempt in range(10):
        target_area = area * u_scale[attempt]
        aspect = math.exp(u_log_ratio[attempt])
        w = int(round(math.sqrt(target_area * aspect)))
        h = int(round(math.sqrt(target_area / aspect)))
        if 0 < w <= width and 0 < h <= height:
            i = int(u_offset[0] * (height - h + 1))
            j = int(u_offset[1] * (width - w + 1))
            return i, j, h, w
    in_ratio = width / height
    if in_ratio < min(ratio):
        w, h = width, int(round(width / min(ratio)))
    elif in_ratio > max(ratio):
        h, w = height, int(round(height * max(ratio)))
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


def test_random_resized_crop_params_follow_torchvision():
    rng = np.random.default_rng(0)
    n = 400
    # Ordinary shapes, and extreme strips where all 10 attempts fail (the fallback).
    heights = np.concatenate([rng.integers(20, 600, n - 40), np.full(20, 3), np.full(20, 900)])
    widths = np.concatenate([rng.integers(20, 600, n - 40), np.full(20, 900), np.full(20, 4)])
    u_scale = rng.uniform(0.08, 1.0, (n, 10))
    u_log_ratio = rng.uniform(math.log(3 / 4), math.log(4 / 3), (n, 10))
    u_offset = rng.random((n, 2))
    expected = np.array([_torchvision_params(int(h), int(w), s, r, o) for h, w, s, r, o in
                         zip(heights, widths, u_scale, u_log_ratio, u_offset)])  # fmt: skip
    got = np.stack(im.random_resized_crop_params(heights, widths, u_scale, u_log_ratio,
                                                 u_offset), axis=1)  # fmt: skip
    np.testing.assert_array_equal(got, expected)
    fallback = np.array([all(not (0 < round(math.sqrt(h * w * s * math.exp(r))) <= w and
                                  0 < round(math.sqrt(h * w * s / math.exp(r))) <= h)
                             for s, r in zip(ss, rr))
                         for h, w, ss, rr in zip(heights, widths, u_scale, u_log_ratio)])  # fmt: skip
    assert fallback[-40:].all() and not fallback[:-40].all()
    if HAS_TF:
        import tensorflow as tf

        some = np.r_[0:40, n - 20 : n]  # eager TF is slow per call: a subset, fallbacks included
        got_tf = np.array([[int(v) for v in im._tf_rrc_params(tf, heights[i], widths[i],
                                                               u_scale[i], u_log_ratio[i],
                                                               u_offset[i])] for i in some])
        np.testing.assert_array_equal(got_tf, expected[some])


def test_resize_and_center_crop_geometry_follow_torchvision():
    # Resize(256) of 500x375 (w x h): short side 256, long int(256 * 500 / 375) = 341.
    assert im.resize_shorter_size(375, 500, 256) == (256, 341)
    assert im.resize_shorter_size(500, 375, 256) == (341, 256)
    assert im.center_crop_offsets(256, 341, 224) == (16, 58)  # round(32/2), round(117/2)=58
    assert im.default_resize_size(224) == 256 and im.default_resize_size(32) == 37


def test_class_order_and_mismatched_classes(tmp_path, tree):
    train, val = im.find_imagefolder(tree)
    assert train.class_names == tuple(f"class_{c:03d}" for c in range(5))
    assert len(train) == 21 and len(val) == 10
    assert np.bincount(val.labels).tolist() == [2] * 5
    # `validation/` is accepted; a class missing from it is an error naming it
    root = tmp_path / "t"
    shutil.copytree(tree, root)
    (root / "val").rename(root / "validation")
    shutil.rmtree(root / "validation" / "class_003")
    with pytest.raises(ValueError, match=r"in train but not in validation: \[class_003\]"):
        im.find_imagefolder(root)
    shutil.copytree(root / "validation" / "class_004", root / "validation" / "zebra")
    with pytest.raises(ValueError, match=r"class_003.*in validation but not in train: \[zebra\]"):
        im.find_imagefolder(root)
    shutil.rmtree(root / "validation")
    with pytest.raises(ValueError, match="val/ or validation/"):
        im.find_imagefolder(root)


@pytest.mark.parametrize("pipeline", PIPELINES)
def test_corrupt_file_is_skipped_and_counted(tree, pipeline):
    train, _ = im.find_imagefolder(tree)
    corrupt = [p for p in train.paths if "corrupt" in p]
    ds = im.make_imagenet_dataset(train, batch_size=8, image_size=16, pipeline=pipeline,
                                  drop_remainder=False)  # fmt: skip
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        batches = _batches(ds)
    labels = np.concatenate([y for _, y in batches])
    # Every decodable image once (the corrupt file sits in class 0's folder).
    expected = np.delete(train.labels, train.paths.index(corrupt[0]))
    assert sorted(labels.tolist()) == sorted(expected.tolist())  # every decodable image once
    assert im.skipped_files(ds) == corrupt
    if pipeline == "numpy":  # Pillow's error is caught per image, with a warning naming the file
        assert any(corrupt[0] in str(w.message) for w in caught)
        short = np.array([8, 8, 5]) - [len(y) for _, y in batches]
        assert sorted(short.tolist()) == [0, 0, 1]  # that batch is one image short
    else:  # ignore_errors: the next image takes its place, batches stay full
        assert [len(y) for _, y in batches] == [8, 8, 4]
    for x, _ in batches:
        assert x.shape[1:] == (16, 16, 3) and x.dtype == np.float32


@pytest.mark.parametrize("pipeline", PIPELINES)
def test_per_epoch_shuffle_is_deterministic_and_last_batch(tree, pipeline):
    train, val = im.find_imagefolder(tree)
    clean = train.subset([i for i, p in enumerate(train.paths) if "corrupt" not in p])

    def epoch_labels(epoch, seed=0):
        ds = im.make_imagenet_dataset(clean, batch_size=8, image_size=16, seed=seed,
                                      pipeline=pipeline)  # fmt: skip
        from keras_lrn.data import set_epoch

        set_epoch(ds, epoch)
        return [y.tolist() for _, y in _batches(ds)]

    first = epoch_labels(3)
    assert [len(b) for b in first] == [8, 8]  # training drops the last partial batch (20 = 8+8+4)
    assert first == epoch_labels(3)
    assert first != epoch_labels(4) or first != epoch_labels(3, seed=1)
    vds = im.make_imagenet_dataset(val, batch_size=4, training=False, image_size=16,
                                   pipeline=pipeline)  # fmt: skip
    vb = _batches(vds)
    assert [len(y) for _, y in vb] == [4, 4, 2]  # validation keeps it, in file order
    assert np.concatenate([y for _, y in vb]).tolist() == val.labels.tolist()


@needs_tf
def test_validation_images_agree_between_tf_and_pillow(tree):
    """Same files, same geometry; decoders and resizers are different implementations.

    Compared: labels exactly; pixels (back in 0..255 units) to within 1.01 grey
    levels, because Pillow rounds its bilinear resize to uint8 while TF does not
    (the JPEG decode itself is identical with the accurate DCT). One image is
    also checked against a direct Pillow resize + crop.
    """
    from PIL import Image

    _, val = im.find_imagefolder(tree)
    out = {}
    for pipeline in ("tf", "numpy"):
        ds = im.make_imagenet_dataset(val, batch_size=4, training=False, image_size=24,
                                      resize_size=28, pipeline=pipeline)  # fmt: skip
        b = _batches(ds)
        out[pipeline] = (np.concatenate([x for x, _ in b]), np.concatenate([y for _, y in b]))
    np.testing.assert_array_equal(out["tf"][1], out["numpy"][1])
    assert out["tf"][0].shape == out["numpy"][0].shape == (10, 24, 24, 3)
    std = np.asarray(IMAGENET_STD, np.float32) * 255.0
    diff = np.abs(out["tf"][0] - out["numpy"][0]) * std
    assert diff.max() <= 1.01 and diff.mean() < 0.5
    with Image.open(val.paths[0]) as img:
        img = img.convert("RGB")
    w, h = img.size
    nh, nw = (28, int(28 * w / h)) if h <= w else (int(28 * h / w), 28)
    ref = np.asarray(img.resize((nw, nh), Image.BILINEAR)).astype(np.float32)
    top, left = int(round((nh - 24) / 2)), int(round((nw - 24) / 2))
    ref = ref[top : top + 24, left : left + 24]
    pixels = out["numpy"][0][0] * std + np.asarray([0.485, 0.456, 0.406]) * 255.0
    np.testing.assert_allclose(pixels, ref, atol=1e-3)


@needs_tf
def test_tfds_source_skips_and_counts(tree):
    """The TFDS branch, fed by a stand-in builder (no prepared imagenet2012 here)."""
    import tensorflow as tf

    train, _ = im.find_imagefolder(tree)

    class Builder:
        def as_dataset(self, split, shuffle_files, read_config, decoders):
            data = [open(p, "rb").read() for p in train.paths]
            return tf.data.Dataset.from_tensor_slices({"image": data, "label": train.labels})

    files = im.ImageFiles((), np.zeros(0, np.int64), train.class_names, tfds_builder=Builder(),
                          tfds_split="train", tfds_size=len(train))  # fmt: skip
    ds = im.make_imagenet_dataset(files, batch_size=4, image_size=16, drop_remainder=False)
    labels = np.concatenate([y for _, y in _batches(ds)])
    assert len(labels) == 20
    assert im.skipped_files(ds) == ["<1 undecodable TFDS examples>"]


def test_tfds_without_a_prepared_copy_is_a_value_error(tmp_path):
    pytest.importorskip("tensorflow_datasets")
    with pytest.raises(ValueError, match="imagenet2012"):
        im.load_imagenet(tmp_path, source="tfds")


def test_bad_arguments(tree):
    train, _ = im.find_imagefolder(tree)
    with pytest.raises(ValueError, match="augment"):
        im.make_imagenet_dataset(train, augment="cifar", pipeline="numpy")
    with pytest.raises(ValueError, match="normalizer"):
        im.make_imagenet_dataset(train, normalizer="per_pixel_mean", pipeline="numpy")
    with pytest.raises(ValueError, match="resize_size"):
        im.make_imagenet_dataset(train, image_size=32, resize_size=16, pipeline="numpy")
    with pytest.raises(ValueError, match="source"):
        im.load_imagenet(tree, source="keras")
