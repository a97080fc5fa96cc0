"""Streaming ImageNet-style input pipelines over image files (too big for memory).

Sources:
- an ImageFolder tree `DIR/train/<class>/*` and `DIR/val/<class>/*` (or
  `DIR/validation/<class>/*`); labels are the positions of the class folder
  names in the sorted list of `DIR/train`'s class folders, and both splits must
  have the same classes;
- a prepared TensorFlow Datasets `imagenet2012` in `DIR/imagenet2012/<version>/`
  (`tfds.builder("imagenet2012", data_dir=DIR)`, never downloading; needs
  tensorflow and tensorflow_datasets; tf.data only). Its records cannot be
  read in random order: files are shuffled by TFDS (`shuffle_seed=seed`), then
  examples are permuted within consecutive blocks of 4,096 from `(seed, epoch)`.

Transforms (in pixel units, then the ImageNet mean/std normalisation):
- training (`augment="imagenet"`): `RandomResizedCrop(image_size, scale=(0.08, 1),
  ratio=(3/4, 4/3))` with torchvision's algorithm (10 attempts, then the
  centre-crop fallback), bilinear antialiased resize, horizontal flip with p=0.5;
- validation (`training=False` or `augment="none"`): resize the shorter side to
  `resize_size` (bilinear, antialiased; `image_size * 256 / 224` by default),
  centre crop `image_size`.

Two implementations, chosen like `make_dataset`'s: tf.data (parallel
`tf.io.decode_*`, JPEGs decoded only inside the crop window with
`decode_and_crop_jpeg`, `AUTOTUNE`, prefetch; the fast path, usable under any
backend when TensorFlow is installed) and a `keras.utils.PyDataset` decoding
with Pillow in `workers` threads (or processes), for machines without TensorFlow.
Both resize with antialiased bilinear filters but round differently (Pillow
works in uint8), so their pixels agree to about one grey level, not exactly.

A file that cannot be decoded is skipped, not fatal, and counted:
`skipped_files(ds)` lists the distinct files that failed so far. The numpy
pipeline catches Pillow's error per image, warns naming the file, and serves
that batch one image short. tf.data cannot catch an error inside its graph:
there the decode is followed by `ignore_errors()`, and a sequential step after
it that sees the position of every surviving image in the (deterministically
ordered) pass records the positions that went missing, so the count is exact
for every position up to the newest image decoded (a sentinel at the end of
each pass flushes the tail). The skipped image's place is taken by the next
image, so batches stay full; the number of batches per pass is then not
known in advance (unknown cardinality: Keras may warn once that the input
"ran out of data" at the end of such a pass).
"""

from __future__ import annotations

import dataclasses
import math
import os
import tempfile
import threading
import warnings
import weakref
from pathlib import Path

import numpy as np

from keras_lrn.data.datasets import DatasetInfo, _check_seed
from keras_lrn.data.loading import IMAGE_SUFFIXES
from keras_lrn.data.normalization import get_normalizer
from keras_lrn.data.pipeline import EpochBatches, _pack_targets, _resolve_pipeline

IMAGE_SIZE = 224
RESIZE_SIZE = 256
IMAGENET_AUGMENTS = ("imagenet", "none")
IMAGENET_SOURCES = ("auto", "local", "tfds")
VAL_DIRS = ("val", "validation")
SCALE = (0.08, 1.0)
RATIO = (3.0 / 4.0, 4.0 / 3.0)
ATTEMPTS = 10
TFDS_NAME = "imagenet2012"
_TAG_SHUFFLE, _TAG_IMAGE = 0, 2
_DCT = "INTEGER_ACCURATE"
_TFDS_BLOCK = 4096  # examples shuffled together per block (TFDS sources)


@dataclasses.dataclass(frozen=True)
class ImageFiles:
    """One split of an image-file data set: what the streaming pipelines read.

    Args:
        paths: tuple of str. Image files (ImageFolder), empty for TFDS.
        labels: int64 array of the labels of `paths`.
        class_names: tuple of str. Class names in label order.
        root: str. Where the split lives.
        tfds_builder: the `tfds` builder of a TFDS split, else None.
        tfds_split: str. The TFDS split name (`"train"`, `"validation"`).
        tfds_size: int. Number of examples of a TFDS split.
    """

    paths: tuple
    labels: np.ndarray
    class_names: tuple
    root: str = ""
    tfds_builder: object = None
    tfds_split: str = ""
    tfds_size: int = 0

    def __len__(self):
        return self.tfds_size if self.tfds_builder is not None else len(self.paths)

    def subset(self, indices):
        """The files at `indices` (an ImageFolder split only)."""
        if self.tfds_builder is not None:
            raise ValueError("`indices` can only select files of an ImageFolder split; a TFDS "
                             f"split cannot be subset by index. Received: indices for the "
                             f"TFDS split {self.tfds_split!r}")
        idx = np.asarray(indices, dtype=np.int64)
        return dataclasses.replace(
            self, paths=tuple(self.paths[i] for i in idx), labels=self.labels[idx]
        )


def _list_class_dirs(split_dir):
    return sorted(e.name for e in os.scandir(split_dir) if e.is_dir() and not e.name.startswith("."))


def _list_images(class_dir):
    return sorted(
        e.path
        for e in os.scandir(class_dir)
        if e.is_file() and not e.name.startswith(".") and e.name.lower().endswith(IMAGE_SUFFIXES)
    )


def _read_split(split_dir, class_names):
    paths, labels = [], []
    for label, name in enumerate(class_names):
        files = _list_images(os.path.join(split_dir, name))
        paths += files
        labels += [label] * len(files)
    return tuple(paths), np.asarray(labels, dtype=np.int64)


def _imagefolder_help():
    return (
        "Expected an ImageFolder tree DIR/train/<class>/<image> and DIR/val/<class>/<image> "
        "(or DIR/validation/...), one folder per class with the same class folders in both "
        f"splits, or a prepared TFDS DIR/{TFDS_NAME}/<version>/ (--data-source tfds)."
    )


def find_imagefolder(data_dir):
    """Read an ImageFolder tree into `(train, val)` `ImageFiles`.

    Class order is the sorted list of `DIR/train`'s class folders; a class that
    is in one split but not in the other is a `ValueError` listing the classes.

    Args:
        data_dir: str or path. Holds `train/` and `val/` (or `validation/`).

    Returns:
        `(train, val)`: two `ImageFiles`.

    Example:
    ```python
    train, val = keras_lrn.data.imagenet.find_imagefolder("/data/imagenet")
    len(train.class_names)  # 1000
    ```
    """
    d = Path(data_dir).expanduser()
    if not (d / "train").is_dir():
        raise ValueError(
            f"`data_dir` must hold a train/ folder. Received: data_dir={str(data_dir)!r}. "
            + _imagefolder_help()
        )
    val_dir = next((d / v for v in VAL_DIRS if (d / v).is_dir()), None)
    if val_dir is None:
        raise ValueError(
            f"`data_dir` must hold a val/ or validation/ folder. Received: "
            f"data_dir={str(data_dir)!r}. " + _imagefolder_help()
        )
    train_classes = [c for c in _list_class_dirs(d / "train") if _list_images(d / "train" / c)]
    val_classes = [c for c in _list_class_dirs(val_dir) if _list_images(val_dir / c)]
    if not train_classes:
        raise ValueError(
            f"data_dir={str(data_dir)!r}: train/ has no class folder with images. "
            + _imagefolder_help()
        )
    only_train = sorted(set(train_classes) - set(val_classes))
    only_val = sorted(set(val_classes) - set(train_classes))
    if only_train or only_val:
        parts = []
        if only_train:
            parts.append(f"in train but not in {val_dir.name}: {_names(only_train)}")
        if only_val:
            parts.append(f"in {val_dir.name} but not in train: {_names(only_val)}")
        raise ValueError(
            f"data_dir={str(data_dir)!r}: the splits must have the same classes (folders with "
            f"images); classes {'; '.join(parts)}."
        )
    classes = tuple(train_classes)
    out = []
    for split_dir in (d / "train", val_dir):
        paths, labels = _read_split(split_dir, classes)
        out.append(ImageFiles(paths, labels, classes, root=str(split_dir)))
    return tuple(out)


def _names(names, limit=20):
    shown = ", ".join(names[:limit])
    return f"[{shown}{', ...' if len(names) > limit else ''}] ({len(names)})"


def find_tfds(data_dir):
    """Open a prepared TFDS `imagenet2012` under `data_dir` (never downloads).

    Returns:
        `(train, val)`: two `ImageFiles` backed by the TFDS builder.
    """
    try:
        import tensorflow_datasets as tfds
    except ImportError as e:
        raise ValueError(
            f"Reading a TFDS {TFDS_NAME!r} (data_dir={str(data_dir)!r}) needs tensorflow and "
            "tensorflow_datasets, which are not importable here; use an ImageFolder tree. "
            + _imagefolder_help()
        ) from e
    try:
        builder = tfds.builder(TFDS_NAME, data_dir=None if data_dir is None else str(data_dir))
        splits = builder.info.splits
        sizes = {s: splits[s].num_examples for s in ("train", "validation")}
    except Exception as e:  # tfds raises AssertionError/KeyError/DatasetNotFoundError/...
        raise ValueError(
            f"Could not open a prepared TFDS {TFDS_NAME!r} in data_dir={str(data_dir)!r} "
            f"(no download is attempted): {type(e).__name__}: {e}. " + _imagefolder_help()
        ) from e
    if not all(sizes.values()):
        raise ValueError(
            f"data_dir={str(data_dir)!r}: the TFDS {TFDS_NAME!r} there is not prepared "
            f"(split sizes {sizes}). " + _imagefolder_help()
        )
    names = tuple(builder.info.features["label"].names)
    empty = np.zeros((0,), np.int64)
    return tuple(
        ImageFiles((), empty, names, root=str(data_dir), tfds_builder=builder, tfds_split=s,
                   tfds_size=int(sizes[s]))
        for s in ("train", "validation")
    )  # fmt: skip


def load_imagenet(data_dir, source="auto"):
    """Find the train and validation files of an ImageNet-style data set.

    Args:
        data_dir: str or path. An ImageFolder tree or a TFDS data_dir.
        source: str. `"auto"` (ImageFolder if `DIR/train` exists, else TFDS),
            `"local"` (ImageFolder) or `"tfds"`. Defaults to `"auto"`.

    Returns:
        `(train, val)`: two `ImageFiles`.

    Example:
    ```python
    train, val = keras_lrn.data.imagenet.load_imagenet("/data/imagenet")
    ```
    """
    if source not in IMAGENET_SOURCES:
        raise ValueError(
            f"`source` must be one of {list(IMAGENET_SOURCES)} for ImageNet. "
            f"Received: source={source!r}"
        )
    if data_dir is None:
        raise ValueError(
            "ImageNet needs `data_dir` (CLI: --data-dir DIR). Received: data_dir=None. "
            + _imagefolder_help()
        )
    d = Path(data_dir).expanduser()
    if not d.is_dir():
        raise ValueError(
            f"`data_dir` must be an existing directory. Received: data_dir={str(data_dir)!r}"
        )
    if source == "tfds" or (source == "auto" and not (d / "train").is_dir()
                            and (d / TFDS_NAME).is_dir()):  # fmt: skip
        return find_tfds(d)
    return find_imagefolder(d)


def dataset_info(train, image_size=IMAGE_SIZE):
    """A `DatasetInfo` for a streaming split: its classes and the crop size."""
    return DatasetInfo(
        name="imagenet",
        num_classes=len(train.class_names),
        image_shape=(int(image_size), int(image_size), 3),
        train_size=len(train),
        test_size=0,
        class_names=tuple(train.class_names),
        tfds_name=TFDS_NAME,
    )


def default_resize_size(image_size):
    """The validation resize of a crop size: `round(image_size * 256 / 224)` (256 for 224)."""
    return int(round(image_size * RESIZE_SIZE / IMAGE_SIZE))


# --------------------------------------------------------------------------- geometry


def random_resized_crop_params(height, width, u_scale, u_log_ratio, u_offset,
                               scale=SCALE, ratio=RATIO):  # fmt: skip
    """torchvision's `RandomResizedCrop.get_params` on given uniform draws, vectorised.

    For each image: up to 10 attempts draw an area fraction in `scale` and a
    log-uniform aspect ratio in `ratio`; `w = round(sqrt(area * r))`,
    `h = round(sqrt(area / r))` (half to even, like Python's `round`); the first
    attempt with `0 < w <= width` and `0 < h <= height` wins, its offsets
    uniform in `[0, height - h]`, `[0, width - w]`. Without one, the centre
    crop of the whole image clamped to the ratio range is used.

    Args:
        height, width: int arrays `(B,)` of image sizes.
        u_scale: array `(B, A)` of area fractions, uniform in `scale`.
        u_log_ratio: array `(B, A)` of log aspect ratios, uniform in `log(ratio)`.
        u_offset: array `(B, 2)` uniform in `[0, 1)` (row and column offset).

    Returns:
        int64 arrays `(top, left, h, w)`, each `(B,)`.
    """
    height = np.asarray(height, np.int64)[:, None]
    width = np.asarray(width, np.int64)[:, None]
    area = (height * width).astype(np.float64) * u_scale
    aspect = np.exp(u_log_ratio)
    w = np.round(np.sqrt(area * aspect)).astype(np.int64)
    h = np.round(np.sqrt(area / aspect)).astype(np.int64)
    ok = (w > 0) & (w <= width) & (h > 0) & (h <= height)
    first = np.argmax(ok, axis=1)
    rows = np.arange(len(first))
    found = ok[rows, first]
    height, width = height[:, 0], width[:, 0]
    h_try, w_try = h[rows, first], w[rows, first]
    top_try = np.floor(u_offset[:, 0] * (height - h_try + 1)).astype(np.int64)
    left_try = np.floor(u_offset[:, 1] * (width - w_try + 1)).astype(np.int64)
    in_ratio = width / height
    w_fb = np.where(in_ratio < ratio[0], width,
                    np.where(in_ratio > ratio[1], np.round(height * ratio[1]), width))
    h_fb = np.where(in_ratio < ratio[0], np.round(width / ratio[0]), height)
    w_fb, h_fb = w_fb.astype(np.int64), h_fb.astype(np.int64)
    top_fb, left_fb = (height - h_fb) // 2, (width - w_fb) // 2
    return (np.where(found, top_try, top_fb), np.where(found, left_try, left_fb),
            np.where(found, h_try, h_fb), np.where(found, w_try, w_fb))  # fmt: skip


def _tf_rrc_params(tf, height, width, u_scale, u_log_ratio, u_offset, scale=SCALE, ratio=RATIO):
    """TF version of `random_resized_crop_params` for one image (`u_*` of shape `(A,)`)."""
    height = tf.cast(height, tf.int64)
    width = tf.cast(width, tf.int64)
    hf, wf = tf.cast(height, tf.float64), tf.cast(width, tf.float64)
    area = hf * wf * tf.cast(u_scale, tf.float64)
    aspect = tf.exp(tf.cast(u_log_ratio, tf.float64))
    w = tf.cast(tf.round(tf.sqrt(area * aspect)), tf.int64)
    h = tf.cast(tf.round(tf.sqrt(area / aspect)), tf.int64)
    ok = (w > 0) & (w <= width) & (h > 0) & (h <= height)
    first = tf.argmax(tf.cast(ok, tf.int32), output_type=tf.int64)
    found = tf.gather(ok, first)
    h_try, w_try = tf.gather(h, first), tf.gather(w, first)
    u = tf.cast(u_offset, tf.float64)
    top_try = tf.cast(tf.floor(u[0] * tf.cast(height - h_try + 1, tf.float64)), tf.int64)
    left_try = tf.cast(tf.floor(u[1] * tf.cast(width - w_try + 1, tf.float64)), tf.int64)
    in_ratio = wf / hf
    w_fb = tf.where(in_ratio < ratio[0], width,
                    tf.where(in_ratio > ratio[1], tf.cast(tf.round(hf * ratio[1]), tf.int64),
                             width))  # fmt: skip
    h_fb = tf.where(in_ratio < ratio[0], tf.cast(tf.round(wf / ratio[0]), tf.int64), height)
    top_fb, left_fb = (height - h_fb) // 2, (width - w_fb) // 2
    return (tf.where(found, top_try, top_fb), tf.where(found, left_try, left_fb),
            tf.where(found, h_try, h_fb), tf.where(found, w_try, w_fb))  # fmt: skip


def resize_shorter_size(height, width, size):
    """torchvision's `Resize(size)` output `(h, w)`: shorter side `size`, longer side truncated."""
    if height <= width:
        return size, int(size * width / height)
    return int(size * height / width), size


def center_crop_offsets(height, width, size):
    """torchvision's `CenterCrop` offsets `(top, left)`: `round((dim - size) / 2)`."""
    return int(round((height - size) / 2.0)), int(round((width - size) / 2.0))


# --------------------------------------------------------------------------- skipped files


class _SkipLog:
    """Distinct paths of files that failed to decode, shared by threads and processes.

    Each failure is appended as one line to a small file in a private temporary
    folder (one `write` with `O_APPEND`: atomic for short lines), so worker
    processes of a `PyDataset` report to the parent too.
    """

    def __init__(self):
        self._dir = tempfile.mkdtemp(prefix="keras_lrn_skipped_")
        self.path = os.path.join(self._dir, "skipped.txt")
        self._finalizer = weakref.finalize(self, _remove_dir, self._dir)

    def add(self, path, error):
        line = (str(path).replace("\n", " ") + "\n").encode()
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, line)
        finally:
            os.close(fd)
        warnings.warn(
            f"Skipping an image that cannot be decoded: {path} ({type(error).__name__}: {error})",
            stacklevel=3,
        )

    def paths(self):
        try:
            with open(self.path) as f:
                return sorted({line.rstrip("\n") for line in f if line.strip()})
        except FileNotFoundError:
            return []


def _remove_dir(path):
    import shutil

    shutil.rmtree(path, ignore_errors=True)


class _TFSkipTracker:
    """Finds the files a tf.data pass dropped with `ignore_errors` (see the module doc).

    Every element carries `(pass id, position in the pass)`. A sequential step
    after the decode records the newest surviving position; a jump from `p` to
    `q > p + 1` marks the files at positions `p + 1 .. q - 1` of this pass's
    order as failed. Elements of an older pass (an abandoned iterator) are ignored.
    """

    def __init__(self, tf, n, paths):
        self.paths_ = paths
        self.n = n
        self.pass_id = tf.Variable(0, dtype=tf.int64, trainable=False)
        self.last = tf.Variable(-1, dtype=tf.int64, trainable=False)
        self.order = tf.Variable(tf.zeros([n], tf.int64), trainable=False)
        self.failed = tf.Variable(tf.zeros([max(n, 1)], tf.int32), trainable=False)
        self.count = tf.Variable(0, dtype=tf.int64, trainable=False)  # sources without paths

    def start_pass(self, tf, order):
        with tf.control_dependencies([self.order.assign(order), self.last.assign(-1)]):
            return self.pass_id.assign_add(1)

    def mark(self, tf, pass_id, pos):
        def gap():
            ops = [self.count.assign_add(pos - self.last - 1)]
            if self.n:
                missing = self.order[self.last + 1 : pos]
                ones = tf.ones_like(missing, dtype=tf.int32)
                ops.append(self.failed.scatter_nd_update(missing[:, None], ones))
            with tf.control_dependencies(ops):
                return tf.constant(True)

        def update():
            jumped = tf.cond(pos > self.last + 1, gap, lambda: tf.constant(False))
            with tf.control_dependencies([jumped]):
                return self.last.assign(pos)

        return tf.cond(tf.equal(pass_id, self.pass_id), update, lambda: tf.identity(self.last))

    def skipped(self):
        if self.paths_:
            return sorted(self.paths_[i] for i in np.flatnonzero(self.failed.numpy()))
        return [f"<{int(self.count.numpy())} undecodable TFDS examples>"] if int(
            self.count.numpy()) else []  # fmt: skip


def skipped_files(dataset):
    """The distinct files a `make_imagenet_dataset` pipeline could not decode so far.

    tf.data: exact for every position of a pass up to the newest image decoded
    (so after a full pass, for the whole pass). For a TFDS source (no file
    names) one entry tells the count of failed decodes over all passes.

    Example:
    ```python
    model.fit(ds, epochs=1); print(len(skipped_files(ds)), "files skipped")
    ```
    """
    tracker = getattr(dataset, "_keras_lrn_skipped", None)
    if tracker is None:
        raise ValueError(
            "`dataset` must come from `make_imagenet_dataset`. "
            f"Received: dataset={type(dataset).__name__}"
        )
    return tracker.skipped() if isinstance(tracker, _TFSkipTracker) else tracker.paths()


# --------------------------------------------------------------------------- numpy / Pillow


def _pil_load(path, training, image_size, resize_size, u_scale, u_log_ratio, u_offset, flip):
    """Decode one file with Pillow and apply the train or validation transform (uint8)."""
    from PIL import Image

    with Image.open(path) as img:
        img = img.convert("RGB")
    width, height = img.size
    if training:
        top, left, h, w = (int(v[0]) for v in random_resized_crop_params(
            [height], [width], u_scale[None], u_log_ratio[None], u_offset[None]))  # fmt: skip
        out = img.resize((image_size, image_size), Image.BILINEAR,
                         box=(left, top, left + w, top + h))  # fmt: skip
        arr = np.asarray(out)
        return arr[:, ::-1] if flip else arr
    nh, nw = resize_shorter_size(height, width, resize_size)
    arr = np.asarray(img.resize((nw, nh), Image.BILINEAR))
    top, left = center_crop_offsets(nh, nw, image_size)
    return arr[top : top + image_size, left : left + image_size]


def _pil_errors():
    from PIL import Image

    return (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError)


class _EpochHolder:
    """Lets `keras_lrn.data.set_epoch`/`EpochSync` set the epoch of a `PyDataset`."""

    def __init__(self, dataset):
        self._dataset = weakref.ref(dataset)

    def assign(self, epoch):
        self._dataset().set_epoch(epoch)


class ImageFileDataset(EpochBatches):
    """Numpy/Pillow streaming pipeline over image files (no TensorFlow needed).

    Batch `index` of epoch `e` holds the files at positions
    `[index * batch_size, (index + 1) * batch_size)` of the permutation drawn
    from `(seed, e)`, transformed with randomness drawn from
    `(seed, e, index)`, so its content does not depend on which thread or
    process serves it. A file Pillow cannot decode is left out of its batch
    (which is then one image short), with a warning naming it, and recorded for
    `skipped_files`. `on_epoch_end` advances the epoch once every batch of the
    epoch was served (set it with `set_epoch` / `EpochSync` otherwise).

    Use `make_imagenet_dataset(..., pipeline="numpy")` rather than building it
    directly. Args as `make_imagenet_dataset`; `**kwargs` are `PyDataset`'s
    `workers`, `use_multiprocessing`, `max_queue_size`.
    """

    def __init__(self, files, batch_size, training, image_size, resize_size, normalizer, seed,
                 shuffle, drop_remainder, targets, initial_epoch=0, **kwargs):  # fmt: skip
        super().__init__(**kwargs)
        self.paths = tuple(files.paths)
        self.labels = np.asarray(files.labels, np.int64)
        self.batch_size = batch_size
        self.training = training
        self.image_size = image_size
        self.resize_size = resize_size
        self.seed = seed
        self.shuffle = shuffle
        self.drop_remainder = drop_remainder
        self.targets = targets
        self.epoch = initial_epoch
        self._scale, self._offset = normalizer.affine()
        self._served = set()
        self._lock = threading.Lock()
        self._order_epoch, self._order = None, None
        self._keras_lrn_skipped = _SkipLog()
        self._keras_lrn_epoch = _EpochHolder(self)

    def __getstate__(self):  # worker processes: no lock, the skip log is shared by its path
        state = self.__dict__.copy()
        del state["_lock"], state["_keras_lrn_epoch"]
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._lock = threading.Lock()
        self._keras_lrn_epoch = _EpochHolder(self)

    def _num_examples(self):
        return len(self.paths)

    def _indices(self, index, epoch):
        start = index * self.batch_size
        stop = min(start + self.batch_size, len(self.paths))
        if not self.shuffle:
            return np.arange(start, stop)
        with self._lock:
            if self._order_epoch != epoch:
                rng = np.random.default_rng([self.seed, epoch, _TAG_SHUFFLE])
                self._order_epoch, self._order = epoch, rng.permutation(len(self.paths))
            order = self._order
        return order[start:stop]

    def __getitem__(self, index):
        if index < 0 or index >= self.num_batches:
            raise IndexError(f"batch index {index} out of range [0, {self.num_batches})")
        with self._lock:
            epoch = self.epoch
            self._served.add(index)
        idx = self._indices(index, epoch)
        b = len(idx)
        rng = np.random.default_rng([self.seed, epoch, _TAG_IMAGE, index])
        u_scale = rng.uniform(*SCALE, size=(b, ATTEMPTS))
        u_log_ratio = rng.uniform(math.log(RATIO[0]), math.log(RATIO[1]), size=(b, ATTEMPTS))
        u_offset = rng.random((b, 2))
        flips = rng.random(b) < 0.5
        errors = _pil_errors()
        images, keep = [], []
        for k, i in enumerate(idx):
            try:
                img = _pil_load(self.paths[i], self.training, self.image_size, self.resize_size,
                                u_scale[k], u_log_ratio[k], u_offset[k], flips[k])  # fmt: skip
            except errors as e:
                self._keras_lrn_skipped.add(self.paths[i], e)
                continue
            images.append(img)
            keep.append(i)
        if not images:
            raise ValueError(
                f"No image of batch {index} could be decoded ({b} files, e.g. "
                f"{self.paths[idx[0]]!r}); see the warnings above. The data set looks broken."
            )
        x = np.stack(images).astype(np.float32) * self._scale + self._offset
        return x, _pack_targets(self.labels[np.asarray(keep)], self.targets)


# --------------------------------------------------------------------------- tf.data


def _tf_decode_train(tf, data, seed, image_size):
    seeds = tf.random.experimental.stateless_split(seed, 4)
    u_scale = tf.random.stateless_uniform([ATTEMPTS], seeds[0], SCALE[0], SCALE[1], tf.float64)
    u_log_ratio = tf.random.stateless_uniform(
        [ATTEMPTS], seeds[1], math.log(RATIO[0]), math.log(RATIO[1]), tf.float64
    )
    u_offset = tf.random.stateless_uniform([2], seeds[2], dtype=tf.float64)
    flip = tf.random.stateless_uniform([], seeds[3]) < 0.5

    def window(height, width):
        top, left, h, w = _tf_rrc_params(tf, height, width, u_scale, u_log_ratio, u_offset)
        return tf.cast(tf.stack([top, left, h, w]), tf.int32)

    def jpeg():
        shape = tf.image.extract_jpeg_shape(data)
        return tf.image.decode_and_crop_jpeg(data, window(shape[0], shape[1]), channels=3,
                                             dct_method=_DCT)

    def other():
        img = tf.io.decode_image(data, channels=3, expand_animations=False)
        shape = tf.shape(img)
        top, left, h, w = tf.unstack(window(shape[0], shape[1]))
        return img[top : top + h, left : left + w]

    crop = tf.cond(tf.io.is_jpeg(data), jpeg, other)
    img = tf.image.resize(crop, [image_size, image_size], method="bilinear", antialias=True)
    return tf.cond(flip, lambda: tf.reverse(img, [1]), lambda: img)


def _tf_decode_full(tf, data):
    # JPEGs with the accurate integer DCT, as Pillow (libjpeg's default): the
    # faster default of TF shifts pixels by about one grey level.
    return tf.cond(
        tf.io.is_jpeg(data),
        lambda: tf.io.decode_jpeg(data, channels=3, dct_method=_DCT),
        lambda: tf.io.decode_image(data, channels=3, expand_animations=False),
    )


def _tf_decode_val(tf, data, image_size, resize_size):
    img = _tf_decode_full(tf, data)
    shape = tf.shape(img, out_type=tf.int64)
    height, width = shape[0], shape[1]
    size = tf.constant(resize_size, tf.int64)
    # torchvision Resize(size): the longer side is int(size * long / short) (truncated).
    nh = tf.where(height <= width, size, size * height // width)
    nw = tf.where(height <= width, size * width // height, size)
    img = tf.image.resize(img, tf.cast(tf.stack([nh, nw]), tf.int32), method="bilinear",
                          antialias=True)
    top = tf.cast(tf.round(tf.cast(nh - image_size, tf.float64) / 2.0), tf.int64)
    left = tf.cast(tf.round(tf.cast(nw - image_size, tf.float64) / 2.0), tf.int64)
    return img[top : top + image_size, left : left + image_size]


def _make_tf_imagenet(files, batch_size, training, image_size, resize_size, norm, seed, shuffle,
                      drop_remainder, targets, initial_epoch):  # fmt: skip
    import tensorflow as tf

    scale, offset = (tf.constant(a, tf.float32) for a in norm.affine())
    n = len(files)
    is_tfds = files.tfds_builder is not None
    tracker = _TFSkipTracker(tf, 0 if is_tfds else n, () if is_tfds else tuple(files.paths))
    random = shuffle or training
    epoch_var = tf.Variable(initial_epoch, dtype=tf.int64, trainable=False) if random else None
    seed_t = tf.constant(seed, tf.int64)

    if is_tfds:
        import tensorflow_datasets as tfds

        read_config = tfds.ReadConfig(shuffle_seed=seed, try_autocache=False)
        raw = files.tfds_builder.as_dataset(
            split=files.tfds_split, shuffle_files=shuffle, read_config=read_config,
            decoders={"image": tfds.decode.SkipDecoding()},
        )  # fmt: skip
        raw = raw.map(lambda ex: (ex["image"], tf.cast(ex["label"], tf.int64)))

        def pass_of(epoch):
            pid = tracker.start_pass(tf, tf.zeros([0], tf.int64))
            ds = raw
            if shuffle:  # files come shuffled by TFDS; then a stateless shuffle within blocks
                key = tf.random.experimental.stateless_fold_in(tf.stack([seed_t, epoch]),
                                                               _TAG_SHUFFLE)

                def permute(block, el):
                    perm = tf.random.experimental.stateless_shuffle(
                        tf.range(tf.shape(el[1])[0]),
                        seed=tf.random.experimental.stateless_fold_in(key, block))
                    return tf.gather(el[0], perm), tf.gather(el[1], perm)

                ds = ds.batch(_TFDS_BLOCK).enumerate().map(permute).unbatch()
            ds = ds.enumerate().map(lambda pos, el: (epoch, pid, pos, el[0], el[1]))
            end = tf.data.Dataset.from_tensors(
                (epoch, pid, tf.constant(n, tf.int64), tf.constant(b""), tf.constant(-1, tf.int64))
            )
            return ds.concatenate(end)

        def read(el):
            return el[3]
    else:
        paths = tf.constant(list(files.paths) + [""])
        labels = tf.constant(np.append(files.labels, -1).astype(np.int64))

        def pass_of(epoch):
            if shuffle:
                order = tf.random.experimental.stateless_shuffle(
                    tf.range(n, dtype=tf.int64), seed=tf.stack([seed_t, epoch])
                )
            else:
                order = tf.range(n, dtype=tf.int64)
            pid = tracker.start_pass(tf, order)
            idx = tf.concat([order, tf.constant([n], tf.int64)], 0)  # position n: the end sentinel
            ds = tf.data.Dataset.from_tensor_slices(idx).enumerate()
            return ds.map(lambda pos, i: (epoch, pid, pos, tf.gather(paths, i),
                                          tf.gather(labels, i)))  # fmt: skip

        def read(el):
            return tf.cond(el[4] >= 0, lambda: tf.io.read_file(el[3]), lambda: tf.constant(b""))

    if epoch_var is not None:
        epochs = tf.data.Dataset.range(1).map(lambda _: epoch_var.assign_add(1) - 1)
    else:
        epochs = tf.data.Dataset.from_tensors(tf.constant(0, tf.int64))
    ds = epochs.flat_map(pass_of)

    def load(*el):
        epoch, pid, pos, _, label = el
        data = read(el)
        if training:
            image_seed = tf.random.experimental.stateless_fold_in(
                tf.random.experimental.stateless_fold_in(tf.stack([seed_t, epoch]), _TAG_IMAGE),
                pos,
            )
            decode = lambda: _tf_decode_train(tf, data, image_seed, image_size)  # noqa: E731
        else:
            decode = lambda: _tf_decode_val(tf, data, image_size, resize_size)  # noqa: E731
        blank = lambda: tf.zeros([image_size, image_size, 3], tf.float32)  # noqa: E731
        img = tf.cond(label >= 0, decode, blank)
        img.set_shape([image_size, image_size, 3])
        return img, label, pid, pos

    def mark(img, label, pid, pos):
        with tf.control_dependencies([tracker.mark(tf, pid, pos)]):
            return tf.identity(img), label

    ds = ds.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    ds = ds.ignore_errors().map(mark).filter(lambda img, label: label >= 0)
    ds = ds.batch(batch_size, drop_remainder)

    def finish(x, y):
        return x * scale + offset, _pack_targets(y, targets)

    ds = ds.map(finish, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    ds = ds.prefetch(tf.data.AUTOTUNE)
    ds._keras_lrn_epoch = epoch_var
    ds._keras_lrn_skipped = tracker
    return ds


def make_imagenet_dataset(
    files,
    batch_size=256,
    training=True,
    image_size=IMAGE_SIZE,
    resize_size=None,
    augment="imagenet",
    normalizer="imagenet",
    seed=0,
    shuffle=None,
    drop_remainder=None,
    targets=None,
    pipeline="auto",
    initial_epoch=0,
    workers=1,
    use_multiprocessing=False,
):
    """Build a streaming, batched ImageNet pipeline over image files for `fit`/`evaluate`.

    Training (`training=True` and `augment="imagenet"`): RandomResizedCrop +
    flip; otherwise the validation transform (shorter side to `resize_size`,
    centre crop). Then `normalizer` (a fixed-statistics kind: the default
    `"imagenet"` mean/std, or `"scale"`/`"none"`). Each pass (epoch) is
    shuffled and augmented from `(seed, epoch)`. Undecodable files are skipped
    and counted (see the module docstring and `skipped_files`).

    Args:
        files: `ImageFiles` (from `load_imagenet` / `find_imagefolder`).
        batch_size: int. Defaults to `256`.
        training: bool. Augment and, by default, shuffle. Defaults to `True`.
        image_size: int. Output side (the crop). Defaults to `224`.
        resize_size: int or None. Validation resize of the shorter side;
            `None` means `round(image_size * 256 / 224)`. Defaults to `None`.
        augment: str. `"imagenet"` or `"none"` (the validation transform).
            Defaults to `"imagenet"`.
        normalizer: `Normalizer`, kind string or config dict with fixed
            statistics (`"imagenet"`, `"scale"`, `"none"`, or `"channel"` with
            `mean`/`std`). Defaults to `"imagenet"`.
        seed: int. Defaults to `0`.
        shuffle: bool or None. `None` means `training`. Defaults to `None`.
        drop_remainder: bool or None. Drop the last partial batch; `None`
            means `training` (dropped in training, kept for validation).
            Defaults to `None`.
        targets: tuple of str or None. Yield `{name: y}` labels for
            multi-output models. Defaults to `None`.
        pipeline: str. `"tf"`, `"numpy"` or `"auto"` (see `make_dataset`).
            Defaults to `"auto"`.
        initial_epoch: int. Epoch number of the first pass. Defaults to `0`.
        workers: int. Numpy pipeline: `PyDataset` workers. Defaults to `1`.
        use_multiprocessing: bool. Numpy pipeline: processes instead of
            threads. Defaults to `False`.

    Returns:
        A `tf.data.Dataset` or an `ImageFileDataset` (`PyDataset`) of
        `(float32 images (B, S, S, 3), int64 labels)`.

    Example:
    ```python
    train, val = keras_lrn.data.imagenet.load_imagenet("/data/imagenet")
    train_ds = make_imagenet_dataset(train, batch_size=256)
    val_ds = make_imagenet_dataset(val, batch_size=256, training=False)
    model.fit(train_ds, validation_data=val_ds, epochs=90)
    ```
    """
    if pipeline == "auto" and isinstance(files, ImageFiles) and files.tfds_builder is not None:
        pipeline = "tf"  # TFDS is read with tf.data under any backend
    kind = _resolve_pipeline(pipeline)
    if not isinstance(files, ImageFiles):
        raise ValueError(
            f"`files` must be an `ImageFiles` (from `load_imagenet`). Received: files={files!r}"
        )
    if len(files) == 0:
        raise ValueError("`files` must hold at least one image. Received: an empty split.")
    for name, value in (("batch_size", batch_size), ("image_size", image_size),
                        ("workers", workers)):  # fmt: skip
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"`{name}` must be a positive int. Received: {name}={value!r}")
    resize_size = default_resize_size(image_size) if resize_size is None else resize_size
    if (isinstance(resize_size, bool) or not isinstance(resize_size, (int, np.integer))
            or resize_size < image_size):  # fmt: skip
        raise ValueError(
            f"`resize_size` must be an int >= image_size ({image_size}). "
            f"Received: resize_size={resize_size!r}"
        )
    if augment not in IMAGENET_AUGMENTS:
        raise ValueError(
            f"`augment` must be one of {list(IMAGENET_AUGMENTS)} for the streaming ImageNet "
            f"pipeline. Received: augment={augment!r}"
        )
    norm = get_normalizer(normalizer)
    if not norm.fitted or norm.kind == "per_pixel_mean":
        raise ValueError(
            "`normalizer` must have fixed statistics for a streaming pipeline ('imagenet', "
            "'scale', 'none', or 'channel' with mean and std). "
            f"Received: normalizer={normalizer!r}"
        )
    seed = _check_seed(seed)
    if isinstance(initial_epoch, bool) or not isinstance(initial_epoch, (int, np.integer)) or (
            initial_epoch < 0):  # fmt: skip
        raise ValueError(
            f"`initial_epoch` must be a non-negative int. Received: initial_epoch={initial_epoch!r}"
        )
    if targets is not None:
        if isinstance(targets, str) or not targets or not all(isinstance(t, str) for t in targets):
            raise ValueError(
                "`targets` must be None or a non-empty tuple of output names. "
                f"Received: targets={targets!r}"
            )
        targets = tuple(targets)
    augmenting = bool(training) and augment == "imagenet"
    shuffle = bool(training) if shuffle is None else bool(shuffle)
    drop_remainder = bool(training) if drop_remainder is None else bool(drop_remainder)
    if drop_remainder and len(files) < batch_size:
        raise ValueError(
            f"`drop_remainder=True` with batch_size={batch_size} > {len(files)} images leaves "
            "no batch."
        )
    if kind == "numpy":
        if files.tfds_builder is not None:
            raise ValueError(
                "A TFDS source needs the tf.data pipeline (`pipeline='tf'`); the numpy "
                "pipeline reads ImageFolder trees. Received: pipeline='numpy'"
            )
        return ImageFileDataset(
            files, int(batch_size), augmenting, int(image_size), int(resize_size), norm, seed,
            shuffle, drop_remainder, targets, int(initial_epoch), workers=int(workers),
            use_multiprocessing=bool(use_multiprocessing),
        )  # fmt: skip
    return _make_tf_imagenet(
        files, int(batch_size), augmenting, int(image_size), int(resize_size), norm, seed,
        shuffle, drop_remainder, targets, int(initial_epoch),
    )  # fmt: skip


# --------------------------------------------------------------------------- synthetic tree


def write_synthetic_imagefolder(root, classes=5, train_per_class=4, val_per_class=2,
                                size_range=(24, 64), corrupt=0, seed=0, quality=90):  # fmt: skip
    """Write a tiny ImageFolder tree of random JPEGs (smoke runs, tests, benchmarks).

    Each class has a random colour; an image is that colour plus noise, of a
    random size in `size_range` (each side), so a model can learn a little.
    `corrupt` extra files named `corrupt_<k>.JPEG` with bytes that are not an
    image go into `train/<first class>/`.

    Args:
        root: str or path. Created if missing.
        classes: int. Number of classes (folders `class_000`, ...). Defaults to `5`.
        train_per_class: int. Defaults to `4`.
        val_per_class: int. Defaults to `2`.
        size_range: `(min, max)` side lengths in pixels. Defaults to `(24, 64)`.
        corrupt: int. Number of undecodable files added. Defaults to `0`.
        seed: int. Defaults to `0`.
        quality: int. JPEG quality. Defaults to `90`.

    Returns:
        The root `Path`.

    Example:
    ```python
    root = write_synthetic_imagefolder("/tmp/tiny_imagenet", classes=5)
    train, val = find_imagefolder(root)
    ```
    """
    from PIL import Image

    root = Path(root)
    rng = np.random.default_rng(seed)
    colours = rng.integers(0, 256, size=(classes, 3))
    for split, per_class in (("train", train_per_class), ("val", val_per_class)):
        for c in range(classes):
            d = root / split / f"class_{c:03d}"
            d.mkdir(parents=True, exist_ok=True)
            for k in range(per_class):
                h, w = rng.integers(size_range[0], size_range[1] + 1, size=2)
                noise = rng.normal(0, 40, size=(h, w, 3))
                img = np.clip(colours[c] + noise, 0, 255).astype(np.uint8)
                Image.fromarray(img).save(d / f"{split}_{c:03d}_{k:04d}.JPEG", quality=quality)
    for k in range(corrupt):
        (root / "train" / "class_000" / f"corrupt_{k}.JPEG").write_bytes(
            b"this is not an image" * (k + 1)
        )
    return root


__all__ = [
    "IMAGE_SIZE",
    "ImageFileDataset",
    "ImageFiles",
    "center_crop_offsets",
    "dataset_info",
    "default_resize_size",
    "find_imagefolder",
    "find_tfds",
    "load_imagenet",
    "make_imagenet_dataset",
    "random_resized_crop_params",
    "resize_shorter_size",
    "skipped_files",
    "write_synthetic_imagefolder",
]
