"""Helpers of the data tests: tiny on-disk data sets (PNG, so pixels round-trip exactly)."""

import importlib.util
import io
import tarfile
from pathlib import Path

import numpy as np
import pytest

HAS_TF = importlib.util.find_spec("tensorflow") is not None
HAS_PIL = importlib.util.find_spec("PIL") is not None
needs_tf = pytest.mark.skipif(not HAS_TF, reason="tensorflow is not installed")
needs_pil = pytest.mark.skipif(not HAS_PIL, reason="Pillow is not installed")

REPO = Path(__file__).resolve().parents[2]
CIFAR10_CLASSES = [
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
]  # fmt: skip


def tiny_split(classes, per_class, shape=(32, 32, 3), seed=0):
    """Random uint8 images with labels `0..len(classes)-1`, `per_class` of each."""
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(len(classes)), per_class)
    x = rng.integers(0, 256, size=(len(y),) + tuple(shape), dtype=np.uint8)
    return x, y


def png_bytes(img):
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(img[..., 0] if img.shape[-1] == 1 else img).save(buf, format="PNG")
    return buf.getvalue()


def write_packed(root, name, classes, splits, parts=1, class_file=True):
    """Write `<name>-<split>-<i>.tar.gz` with `<split>/<class>/<NNNN>.png` members."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    for split, (x, y) in splits.items():
        chunks = np.array_split(np.arange(len(x)), parts)
        for i, idx in enumerate(chunks):
            with tarfile.open(root / f"{name}-{split}-{i}.tar.gz", "w:gz") as tar:
                for j in idx:
                    data = png_bytes(x[j])
                    info = tarfile.TarInfo(f"{split}/{classes[y[j]]}/{j:04d}.png")
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
    if class_file:
        (root / "classes.txt").write_text("\n".join(classes) + "\n")
    return root


def write_imagefolder(root, classes, splits, class_file=False):
    """Write `<root>/<split>/<class>/<NNNN>.png`."""
    root = Path(root)
    for split, (x, y) in splits.items():
        for j in range(len(x)):
            d = root / split / classes[y[j]]
            d.mkdir(parents=True, exist_ok=True)
            (d / f"{j:04d}.png").write_bytes(png_bytes(x[j]))
    if class_file:
        (root / "classes.txt").write_text("\n".join(classes) + "\n")
    return root
