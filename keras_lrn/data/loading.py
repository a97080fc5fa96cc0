"""Load the supported data sets as numpy arrays, from local copies when offline.

Only numpy and the standard library are imported at module level. Pillow (to
decode images), tensorflow_datasets, scipy (SVHN `.mat` files) and
`keras.datasets` are used lazily, and only by the layouts that need them.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import pickle
import socket
import tarfile
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from keras_lrn.data.datasets import _check_name, get_info, synthetic

SOURCES = ("auto", "local", "tfds", "keras", "synthetic")
SPLITS = ("train", "test")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".ppm", ".pgm", ".tif", ".tiff")
ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar")
_CACHE_VERSION = 1
# Sizes of the arrays `source="synthetic"` returns (train, test), per class at least 2 and 1.
_SYNTHETIC_SIZES = (1024, 256)
# Where `keras.datasets` downloads from, for the reachability check.
_KERAS_HOSTS = {
    "cifar10": ("www.cs.toronto.edu", 443),
    "cifar100": ("www.cs.toronto.edu", 443),
    "fashion_mnist": ("storage.googleapis.com", 443),
}
_CIFAR_PICKLE_DIRS = {"cifar10": "cifar-10-batches-py", "cifar100": "cifar-100-python"}
_IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_SVHN_MAT = {"train": "train_32x32.mat", "test": "test_32x32.mat"}


def _layouts_help(name):
    info = get_info(name)
    lines = [
        f"(a) packed parts: DIR/{name}-train-*.tar.gz and DIR/{name}-test-*.tar.gz (also .tgz/.tar)"
        " whose members are <split>/<class>/<image>, plus an optional DIR/classes.txt"
        " (one class name per line, in label order), like /work/shared/datasets/cifar10",
        "(b) an ImageFolder tree: DIR/train/<class>/*.png|jpg and DIR/test/<class>/*.png|jpg"
        " (class order: DIR/classes.txt, else the official names, else sorted folder names)",
        f"(c) a TFDS data_dir holding a prepared DIR/{info.tfds_name}/<version>/"
        " (read with tfds.load(..., download=False); needs tensorflow_datasets)",
    ]
    if name in _CIFAR_PICKLE_DIRS:
        lines.append(
            f"(d) the extracted python pickles of keras.datasets: DIR/{_CIFAR_PICKLE_DIRS[name]}/"
            " (or DIR itself)"
        )
    if name == "fashion_mnist":
        lines.append(
            "(e) the MNIST idx files: DIR/train-images-idx3-ubyte[.gz], train-labels-idx1-ubyte[.gz],"
            " t10k-images-idx3-ubyte[.gz], t10k-labels-idx1-ubyte[.gz]"
        )
    if name == "svhn":
        lines.append(
            "(f) the SVHN .mat files: DIR/train_32x32.mat, DIR/test_32x32.mat (needs scipy)"
        )
    return "Accepted data_dir layouts:\n  " + "\n  ".join(lines)


# --------------------------------------------------------------------------- public entry


def load(name, data_dir=None, source="auto", cache_dir=None):
    """Load a data set as numpy arrays.

    With `source="auto"` and a `data_dir`, the layout of `data_dir` is detected
    (see `source="local"`). With no `data_dir`, `"auto"` tries in turn:
    `$KERAS_LRN_DATA_DIR/<name>`, a prepared TFDS copy in the default TFDS
    data dir (`$TFDS_DATA_DIR` or `~/tensorflow_datasets`, `download=False`),
    an already extracted `keras.datasets` download in `$KERAS_HOME/datasets`,
    and `keras.datasets` itself only if its server answers within 3 s.
    Offline with no local copy it raises a `ValueError` at once that lists
    the accepted layouts; it never waits on a download.

    Images decoded from files (layouts a and b) are cached as one `.npz` under
    `cache_dir`, keyed by the data_dir path and the names, sizes and
    modification times of its files, so a changed directory is decoded anew.

    Args:
        name: str. One of `"cifar10"`, `"cifar100"`, `"fashion_mnist"`, `"svhn"`.
        data_dir: str or path. A local copy (see the layouts below), or `None`.
            Defaults to `None`.
        source: str. `"auto"`; `"local"` (data_dir required; layouts (a) packed
            `.tar.gz` parts with `<split>/<class>/<image>` members and optional
            `classes.txt`, (b) ImageFolder `DIR/<train|test>/<class>/*.png|jpg`,
            (c) a TFDS data_dir, (d) extracted CIFAR python pickles,
            (e) Fashion-MNIST idx files, (f) SVHN `.mat` files); `"tfds"`
            (`tfds.load(..., data_dir=data_dir, download=False)`); `"keras"`
            (`keras.datasets`, may download); `"synthetic"` (random learnable
            images from `synthetic()`, 1,024 train and 256 test). Defaults to `"auto"`.
        cache_dir: str or path. Where decoded arrays are cached. Defaults to
            `$KERAS_LRN_CACHE` or `~/.cache/keras_lrn`.

    Returns:
        `((x_train, y_train), (x_test, y_test))`: uint8 images of shape
        `(N,) + get_info(name).image_shape` and int64 labels of shape `(N,)`.

    Example:
    ```python
    (x_train, y_train), (x_test, y_test) = keras_lrn.data.load(
        "cifar10", data_dir="/work/shared/datasets/cifar10"
    )
    x_train.shape  # (50000, 32, 32, 3)
    ```
    """
    _check_name(name)
    if source not in SOURCES:
        raise ValueError(f"`source` must be one of {list(SOURCES)}. Received: source={source!r}")
    if source == "synthetic":
        n_train = max(_SYNTHETIC_SIZES[0], 2 * get_info(name).num_classes)
        n_test = max(_SYNTHETIC_SIZES[1], get_info(name).num_classes)
        return (
            synthetic(name, n_train, seed=0, split="train"),
            synthetic(name, n_test, seed=0, split="test"),
        )
    if source == "tfds":
        return _validate(name, data_dir, _load_tfds(name, data_dir))
    if source == "keras":
        return _validate(name, "keras.datasets", _load_keras(name))
    if data_dir is not None:
        return _load_local(name, data_dir, cache_dir)
    if source == "local":
        raise ValueError(
            "`source='local'` needs a `data_dir`. Received: data_dir=None. " + _layouts_help(name)
        )
    return _load_auto(name, cache_dir)


def _load_auto(name, cache_dir):
    env_root = os.environ.get("KERAS_LRN_DATA_DIR")
    if env_root and (Path(env_root).expanduser() / name).is_dir():
        return _load_local(name, Path(env_root).expanduser() / name, cache_dir)
    info = get_info(name)
    tfds_root = _default_tfds_dir()
    if _find_tfds_prepared(tfds_root, info.tfds_name) and _tfds_importable():
        return _validate(name, tfds_root, _load_tfds(name, tfds_root))
    for keras_dir in _keras_cache_dirs(name):
        if _detect_layout(name, keras_dir) is not None:
            return _load_local(name, keras_dir, cache_dir)
    if name in _KERAS_HOSTS and _network_available(*_KERAS_HOSTS[name]):
        return _validate(name, "keras.datasets", _load_keras(name))
    raise ValueError(
        f"Could not find the {name!r} data set: no local copy was found (data_dir=None, "
        f"$KERAS_LRN_DATA_DIR/{name}, a prepared TFDS copy under {str(tfds_root)!r}, the "
        "keras.datasets cache) and "
        + (
            "the download server is unreachable. "
            if name in _KERAS_HOSTS
            else "keras.datasets has no copy of it. "
        )
        + "Pass a local copy with `data_dir=DIR` (CLI: `--data-dir DIR`), or use "
        "`source='synthetic'` for a smoke run. " + _layouts_help(name)
    )


# --------------------------------------------------------------------------- environment checks


def _network_available(host, port=443, timeout=3.0):
    """Whether a TCP connection to `host:port` opens within `timeout` seconds.

    Name resolution is not covered by socket timeouts, so the attempt runs in a
    daemon thread and is abandoned after `timeout`.
    """
    result = []

    def attempt():
        try:
            with socket.create_connection((host, port), timeout=timeout):
                result.append(True)
        except OSError:
            result.append(False)

    thread = threading.Thread(target=attempt, daemon=True)
    thread.start()
    thread.join(timeout)
    return bool(result and result[0])


def _tfds_importable():
    import importlib.util

    try:
        return importlib.util.find_spec("tensorflow_datasets") is not None
    except (ImportError, ValueError):
        return False


def _default_tfds_dir():
    return Path(os.environ.get("TFDS_DATA_DIR") or Path.home() / "tensorflow_datasets").expanduser()


def _find_tfds_prepared(root, tfds_name):
    """Whether `root/<tfds_name>/<version>/dataset_info.json` exists (no import)."""
    base = Path(root) / tfds_name
    if not base.is_dir():
        return False
    return any(p.is_file() for p in base.glob("*/dataset_info.json"))


def _keras_cache_dirs(name):
    homes = []
    if os.environ.get("KERAS_HOME"):
        homes.append(Path(os.environ["KERAS_HOME"]).expanduser())
    else:
        homes += [Path.home() / ".keras", Path("/tmp/.keras")]
    sub = {
        "cifar10": "cifar-10-batches-py-target",
        "cifar100": "cifar-100-python-target",
        "fashion_mnist": "fashion-mnist",
    }.get(name)
    if sub is None:
        return []
    return [h / "datasets" / sub for h in homes if (h / "datasets" / sub).is_dir()]


def _default_cache_dir():
    return Path(
        os.environ.get("KERAS_LRN_CACHE") or Path.home() / ".cache" / "keras_lrn"
    ).expanduser()


# --------------------------------------------------------------------------- local layouts


def _archives(data_dir, name=None):
    found = []
    for path in sorted(Path(data_dir).iterdir()):
        if path.is_file() and path.name.endswith(ARCHIVE_SUFFIXES):
            found.append(path)
    return found


def _detect_layout(name, data_dir):
    """Return the layout name of `data_dir`, or `None` if none matches."""
    d = Path(data_dir)
    if not d.is_dir():
        return None
    info = get_info(name)
    if any(
        a.name.startswith(f"{name}-train-") or a.name.startswith(f"{name}-test-")
        for a in _archives(d)
    ):
        return "packed"
    if (d / "train").is_dir() or (d / "test").is_dir():
        return "imagefolder"
    if name in _CIFAR_PICKLE_DIRS:
        if (d / _CIFAR_PICKLE_DIRS[name]).is_dir() or (d / "batches.meta").is_file():
            return "pickle"
        if name == "cifar100" and (d / "meta").is_file() and (d / "train").is_file():
            return "pickle"
    if name == "fashion_mnist" and _idx_path(d, _IDX_FILES["train"][0]) is not None:
        return "idx"
    if name == "svhn" and (d / _SVHN_MAT["train"]).is_file():
        return "mat"
    if _find_tfds_prepared(d, info.tfds_name) or (
        d.name == info.tfds_name and any(d.glob("*/dataset_info.json"))
    ):
        return "tfds"
    if any(a.name.endswith(ARCHIVE_SUFFIXES) for a in _archives(d)):
        return "packed"
    return None


def _load_local(name, data_dir, cache_dir):
    d = Path(data_dir).expanduser()
    if not d.is_dir():
        raise ValueError(
            f"`data_dir` must be an existing directory. Received: data_dir={str(data_dir)!r}. "
            + _layouts_help(name)
        )
    layout = _detect_layout(name, d)
    if layout is None:
        raise ValueError(
            f"data_dir={str(data_dir)!r} holds no {name!r} data in a known layout. "
            + _layouts_help(name)
        )
    if layout == "tfds":
        root = d if _find_tfds_prepared(d, get_info(name).tfds_name) else d.parent
        return _validate(name, data_dir, _load_tfds(name, root))
    if layout == "pickle":
        return _validate(name, data_dir, _load_cifar_pickles(name, d))
    if layout == "idx":
        return _validate(name, data_dir, _load_idx(d))
    if layout == "mat":
        return _validate(name, data_dir, _load_svhn_mat(d, data_dir))
    # Decoded layouts: cached.
    files = _layout_files(name, d, layout)
    cache_path = _cache_path(name, d, layout, files, cache_dir)
    cached = _read_cache(cache_path)
    if cached is not None:
        return cached
    if layout == "packed":
        arrays = _load_packed(name, d, data_dir)
    else:
        arrays = _load_imagefolder(name, d, data_dir)
    arrays = _validate(name, data_dir, arrays)
    _write_cache(cache_path, arrays)
    return arrays


def _layout_files(name, d, layout):
    if layout == "packed":
        files = _archives(d)
    else:
        files = sorted(
            p for split in SPLITS if (d / split).is_dir() for p in (d / split).rglob("*")
        )
    if (d / "classes.txt").is_file():
        files.append(d / "classes.txt")
    return files


# --------------------------------------------------------------------------- cache


def _cache_path(name, d, layout, files, cache_dir):
    root = Path(cache_dir).expanduser() if cache_dir is not None else _default_cache_dir()
    where = hashlib.sha1(str(d.resolve()).encode()).hexdigest()[:10]
    h = hashlib.sha1(f"v{_CACHE_VERSION}|{name}|{layout}".encode())
    for f in files:
        st = f.stat()
        h.update(f"|{f.relative_to(d)}|{st.st_size}|{st.st_mtime_ns}".encode())
    return root / f"{name}-{layout}-{where}-{h.hexdigest()[:16]}.npz"


def _read_cache(path):
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            return (z["x_train"], z["y_train"]), (z["x_test"], z["y_test"])
    except Exception as e:  # a truncated or foreign file: decode again
        warnings.warn(f"Ignoring unreadable cache file {str(path)!r}: {e}", stacklevel=3)
        return None


def _write_cache(path, arrays):
    (x_train, y_train), (x_test, y_test) = arrays
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.{threading.get_ident()}.tmp.npz")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(tmp, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
        os.replace(tmp, path)
        # Drop stale entries of the same directory (a changed data_dir).
        prefix = path.name.rsplit("-", 1)[0] + "-"
        for old in path.parent.glob(prefix + "*.npz"):
            if old != path:
                old.unlink(missing_ok=True)
    except OSError as e:
        warnings.warn(f"Could not write the cache {str(path)!r}: {e}", stacklevel=3)
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass


# --------------------------------------------------------------------------- decoding


def _decode_image(data, mode):
    """Decode encoded image bytes to a uint8 array of shape (H, W, C)."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as img:
        arr = np.asarray(img.convert(mode))
    return arr[..., None] if arr.ndim == 2 else arr


def _require_pil(data_dir):
    try:
        import PIL  # noqa: F401
    except ImportError as e:
        raise ImportError(
            f"Decoding the images in data_dir={str(data_dir)!r} needs Pillow: "
            "`pip install pillow` (or `keras_lrn[data]`)."
        ) from e


def _image_mode(name):
    return "L" if get_info(name).image_shape[-1] == 1 else "RGB"


def _read_class_file(name, d, data_dir):
    path = d / "classes.txt"
    if not path.is_file():
        return None
    names = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    n = get_info(name).num_classes
    if len(names) != n or len(set(names)) != n:
        raise ValueError(
            f"data_dir={str(data_dir)!r}: classes.txt must list the {n} distinct class names of "
            f"{name!r}, one per line, in label order; found {len(names)} lines."
        )
    return names


def _class_order(name, found, class_file):
    """Class names in label order: classes.txt, the official names, or sorted folder names."""
    if class_file is not None:
        return class_file
    official = get_info(name).class_names
    if set(found) == set(official):
        return list(official)
    if all(c.isdigit() for c in found):
        return sorted(found, key=int)
    return sorted(found)


def _check_classes(name, data_dir, by_split, class_file):
    """Map class names to labels and check every split has every class."""
    n = get_info(name).num_classes
    for split in SPLITS:
        if not by_split.get(split):
            raise ValueError(
                f"data_dir={str(data_dir)!r}: the {split!r} split is empty; expected "
                f"{split}/<class>/<image> entries for the {n} classes of {name!r}. "
                + _layouts_help(name)
            )
    found = sorted(by_split["train"])
    order = _class_order(name, found, class_file)
    if len(order) != n:
        raise ValueError(
            f"data_dir={str(data_dir)!r}: expected {n} classes for {name!r} but the train split "
            f"has {len(found)} class folders: {found[:12]}{' ...' if len(found) > 12 else ''}"
        )
    index = {c: i for i, c in enumerate(order)}
    for split in SPLITS:
        unknown = sorted(set(by_split[split]) - set(index))
        if unknown:
            raise ValueError(
                f"data_dir={str(data_dir)!r}: the {split!r} split has classes that are not in "
                f"{'classes.txt' if class_file else 'the train split'}: {unknown[:12]}"
            )
        missing = [c for c in order if c not in by_split[split]]
        if missing:
            raise ValueError(
                f"data_dir={str(data_dir)!r}: the {split!r} split has no images of class(es) "
                f"{missing[:12]}; expected every one of the {n} classes of {name!r} in both splits."
            )
    return index


def _stack(name, data_dir, images, where):
    shape = tuple(get_info(name).image_shape)
    for img, src in zip(images, where):
        if img.shape != shape:
            raise ValueError(
                f"data_dir={str(data_dir)!r}: expected {name!r} images of shape {shape}, but "
                f"{src} decodes to shape {img.shape}."
            )
    return np.stack(images) if images else np.zeros((0,) + shape, np.uint8)


def _read_archive(path, mode):
    """Decode every image member of one archive: list of (split, class, member, array)."""
    out = []
    with tarfile.open(path, "r:*") as tar:
        for member in tar:
            if not member.isfile() or not member.name.lower().endswith(IMAGE_SUFFIXES):
                continue
            parts = member.name.strip("/").split("/")
            if len(parts) < 3:
                out.append((None, None, member.name, None))
                continue
            data = tar.extractfile(member).read()
            out.append((parts[-3], parts[-2], member.name, _decode_image(data, mode)))
    return out


def _load_packed(name, d, data_dir):
    _require_pil(data_dir)
    archives = [
        a
        for a in _archives(d)
        if a.name.startswith(f"{name}-train-") or a.name.startswith(f"{name}-test-")
    ] or _archives(d)
    mode = _image_mode(name)
    workers = max(1, min(len(archives), os.cpu_count() or 1))
    try:
        if workers > 1:
            with ThreadPoolExecutor(workers) as pool:
                results = list(pool.map(lambda a: _read_archive(a, mode), archives))
        else:
            results = [_read_archive(a, mode) for a in archives]
    except (tarfile.TarError, OSError, EOFError) as e:
        raise ValueError(
            f"data_dir={str(data_dir)!r}: could not read the archives: {e}. " + _layouts_help(name)
        ) from e
    by_split = {s: {} for s in SPLITS}
    items = {s: [] for s in SPLITS}
    for archive, entries in zip(archives, results):
        for split, cls, member, img in entries:
            if split not in SPLITS:
                raise ValueError(
                    f"data_dir={str(data_dir)!r}: member {member!r} of {archive.name!r} is not "
                    "<split>/<class>/<image> with split 'train' or 'test'. " + _layouts_help(name)
                )
            by_split[split][cls] = by_split[split].get(cls, 0) + 1
            items[split].append((cls, f"{archive.name}:{member}", img))
    index = _check_classes(name, data_dir, by_split, _read_class_file(name, d, data_dir))
    return tuple(
        (
            _stack(name, data_dir, [it[2] for it in items[s]], [it[1] for it in items[s]]),
            np.array([index[it[0]] for it in items[s]], dtype=np.int64),
        )
        for s in SPLITS
    )


def _load_imagefolder(name, d, data_dir):
    by_split = {s: {} for s in SPLITS}
    files = {s: [] for s in SPLITS}
    for split in SPLITS:
        root = d / split
        if not root.is_dir():
            continue
        for cls_dir in sorted(p for p in root.iterdir() if p.is_dir()):
            imgs = sorted(
                p for p in cls_dir.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
            )
            if imgs:
                by_split[split][cls_dir.name] = len(imgs)
                files[split] += [(cls_dir.name, p) for p in imgs]
    index = _check_classes(name, data_dir, by_split, _read_class_file(name, d, data_dir))
    _require_pil(data_dir)
    mode = _image_mode(name)
    out = []
    for split in SPLITS:
        images = [_decode_image(p.read_bytes(), mode) for _, p in files[split]]
        x = _stack(name, data_dir, images, [str(p.relative_to(d)) for _, p in files[split]])
        y = np.array([index[c] for c, _ in files[split]], dtype=np.int64)
        out.append((x, y))
    return tuple(out)


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickler for the CIFAR batches: plain containers and numpy arrays only.

    The batches hold dicts of bytes/str keys, lists, ints and uint8 arrays.
    `find_class` refuses every global except what rebuilds an ndarray
    (`_reconstruct`, `ndarray`, a `dtype` that refuses object dtypes) and a
    latin-1-only `_codecs.encode` (how Python 3 writes bytes at protocol 2), so
    no code can run.
    """

    def find_class(self, module, name):
        if (module, name) in (
            ("numpy.core.multiarray", "_reconstruct"),
            ("numpy._core.multiarray", "_reconstruct"),
        ):
            try:
                from numpy._core.multiarray import _reconstruct
            except ImportError:  # numpy < 2
                from numpy.core.multiarray import _reconstruct
            return _reconstruct
        if (module, name) == ("numpy", "ndarray"):
            return np.ndarray
        if (module, name) == ("numpy", "dtype"):
            return _safe_dtype
        if (module, name) == ("_codecs", "encode"):  # bytes in protocol-2 pickles from Python 3
            return _latin1_encode
        raise pickle.UnpicklingError(f"refusing to load the global {module}.{name}")


def _latin1_encode(text, encoding="latin1"):
    if encoding not in ("latin1", "latin-1") or not isinstance(text, str):
        raise pickle.UnpicklingError("refusing a non-latin1 _codecs.encode")
    return text.encode("latin1")


def _safe_dtype(*args, **kwargs):
    dt = np.dtype(*args, **kwargs)
    if dt.hasobject:
        raise pickle.UnpicklingError("refusing an object dtype")
    return dt


def _load_pickle(path, data_dir):
    try:
        with open(path, "rb") as f:
            obj = _RestrictedUnpickler(f, encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as e:
        raise ValueError(
            f"data_dir={str(data_dir)!r}: {path.name} is not a plain CIFAR batch: {e}"
        ) from e
    if not isinstance(obj, dict):
        raise ValueError(f"data_dir={str(data_dir)!r}: {path.name} does not hold a dict.")
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in obj.items()}


def _load_cifar_pickles(name, d):
    sub = d / _CIFAR_PICKLE_DIRS[name]
    root = sub if sub.is_dir() else d
    if name == "cifar10":
        groups = {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}
        label_key = "labels"
    else:
        groups = {"train": ["train"], "test": ["test"]}
        label_key = "fine_labels"
    out = []
    for split in SPLITS:
        xs, ys = [], []
        for fname in groups[split]:
            path = root / fname
            if not path.is_file():
                raise ValueError(
                    f"data_dir={str(d)!r}: missing {fname} in {str(root)!r}; expected the "
                    f"extracted {_CIFAR_PICKLE_DIRS[name]} folder of keras.datasets/the CIFAR site."
                )
            batch = _load_pickle(path, d)
            if "data" not in batch or label_key not in batch:
                raise ValueError(
                    f"data_dir={str(d)!r}: {fname} has no 'data'/'{label_key}' entries."
                )
            data = np.asarray(batch["data"], dtype=np.uint8)
            xs.append(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
            ys.append(np.asarray(batch[label_key], dtype=np.int64).reshape(-1))
        out.append((np.ascontiguousarray(np.concatenate(xs)), np.concatenate(ys)))
    return tuple(out)


def _idx_path(d, stem):
    for candidate in (d / stem, d / (stem + ".gz")):
        if candidate.is_file():
            return candidate
    return None


def _read_idx(path):
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 8:
        raise ValueError(f"{path.name} is not an unsigned-byte idx file")
    ndim = data[3]
    dims = np.frombuffer(data, dtype=">u4", count=ndim, offset=4).astype(np.int64)
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(tuple(dims))


def _load_idx(d):
    out = []
    for split in SPLITS:
        paths = [_idx_path(d, stem) for stem in _IDX_FILES[split]]
        if None in paths:
            raise ValueError(
                f"data_dir={str(d)!r}: missing {' or '.join(_IDX_FILES[split])}[.gz]; expected "
                "the four Fashion-MNIST idx files."
            )
        try:
            x, y = (_read_idx(p) for p in paths)
        except (OSError, ValueError, EOFError) as e:
            raise ValueError(f"data_dir={str(d)!r}: {e}") from e
        out.append((x[..., None].copy() if x.ndim == 3 else x.copy(), y.astype(np.int64)))
    return tuple(out)


def _load_svhn_mat(d, data_dir):
    try:
        from scipy.io import loadmat
    except ImportError as e:
        raise ImportError(
            f"Reading the SVHN .mat files in data_dir={str(data_dir)!r} needs scipy."
        ) from e
    out = []
    for split in SPLITS:
        path = d / _SVHN_MAT[split]
        if not path.is_file():
            raise ValueError(f"data_dir={str(data_dir)!r}: missing {_SVHN_MAT[split]}.")
        mat = loadmat(path)
        x = np.ascontiguousarray(np.transpose(mat["X"], (3, 0, 1, 2))).astype(np.uint8)
        y = mat["y"].reshape(-1).astype(np.int64) % 10  # the digit 0 is stored as 10
        out.append((x, y))
    return tuple(out)


# --------------------------------------------------------------------------- tfds and keras


def _load_tfds(name, data_dir):
    try:
        import tensorflow_datasets as tfds
    except ImportError as e:
        raise ValueError(
            f"Reading {name!r} with TensorFlow Datasets (data_dir={str(data_dir)!r}) needs "
            "tensorflow and tensorflow_datasets (`pip install keras_lrn[data,tensorflow]`), "
            "which are not importable here. " + _layouts_help(name)
        ) from e
    info = get_info(name)
    try:
        splits = tfds.load(
            info.tfds_name,
            split=list(SPLITS),
            data_dir=None if data_dir is None else str(data_dir),
            download=False,
            as_supervised=True,
            batch_size=-1,
        )
        arrays = tfds.as_numpy(splits)
    except Exception as e:  # tfds raises AssertionError/DatasetNotFoundError/...
        raise ValueError(
            f"Could not read a prepared TFDS {info.tfds_name!r} from data_dir={str(data_dir)!r} "
            f"(download=False): {type(e).__name__}: {e}. Expected "
            f"DIR/{info.tfds_name}/<version>/ made by `tfds.builder(...).download_and_prepare()` "
            "on a machine with internet. " + _layouts_help(name)
        ) from e
    return tuple((np.asarray(x, dtype=np.uint8), np.asarray(y, dtype=np.int64)) for x, y in arrays)


def _load_keras(name):
    import keras

    loaders = {
        "cifar10": lambda: keras.datasets.cifar10.load_data(),
        "cifar100": lambda: keras.datasets.cifar100.load_data(label_mode="fine"),
        "fashion_mnist": lambda: keras.datasets.fashion_mnist.load_data(),
    }
    if name not in loaders:
        raise ValueError(
            f"keras.datasets has no {name!r}; use source='tfds' or a data_dir. "
            + _layouts_help(name)
        )
    try:
        (x_train, y_train), (x_test, y_test) = loaders[name]()
    except Exception as e:
        raise ValueError(
            f"keras.datasets could not load {name!r}: {type(e).__name__}: {e}. Pass a local copy "
            "with `data_dir=DIR` (CLI: `--data-dir DIR`). " + _layouts_help(name)
        ) from e

    def fix(x, y):
        x = np.asarray(x, dtype=np.uint8)
        return (x[..., None] if x.ndim == 3 else x), np.asarray(y, dtype=np.int64).reshape(-1)

    return fix(x_train, y_train), fix(x_test, y_test)


# --------------------------------------------------------------------------- validation


def _validate(name, data_dir, arrays):
    info = get_info(name)
    shape = tuple(info.image_shape)
    out = []
    for split, (x, y) in zip(SPLITS, arrays):
        x = np.asarray(x)
        y = np.asarray(y).reshape(-1).astype(np.int64)
        where = f"data_dir={str(data_dir)!r}"
        if len(x) == 0:
            raise ValueError(f"{where}: the {split!r} split of {name!r} is empty.")
        if x.ndim == 3 and shape[-1] == 1:
            x = x[..., None]
        if tuple(x.shape[1:]) != shape:
            raise ValueError(
                f"{where}: expected {name!r} {split} images of shape {shape}, found "
                f"{tuple(x.shape[1:])}."
            )
        if x.dtype != np.uint8:
            raise ValueError(f"{where}: expected uint8 images, found dtype {x.dtype}.")
        if len(y) != len(x):
            raise ValueError(f"{where}: {split} has {len(x)} images but {len(y)} labels.")
        if y.min() < 0 or y.max() >= info.num_classes:
            raise ValueError(
                f"{where}: {split} labels must be in [0, {info.num_classes}) for {name!r}; "
                f"found range [{y.min()}, {y.max()}]."
            )
        missing = np.setdiff1d(np.arange(info.num_classes), y)
        if len(missing):
            raise ValueError(
                f"{where}: the {split!r} split has no examples of class(es) "
                f"{missing[:12].tolist()}; expected all {info.num_classes} classes of {name!r}."
            )
        out.append((x, y))
    return tuple(out)
