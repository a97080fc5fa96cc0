"""Saving and exporting models without ever clobbering a good file.

Every write goes to a temporary sibling first and is moved into place only when
it is complete; an existing file or folder is replaced only then, so a failed
save or export leaves the previous artifact intact.

Example:
```python
keras_lrn.export.export(model, "exported/resnet56", format="saved_model")
keras_lrn.export.export(model, "resnet56.keras", format="keras")
```
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import zipfile

import keras

FORMATS = ("saved_model", "keras", "onnx")


@contextlib.contextmanager
def atomic_path(path, is_dir=False):
    """Yield a temporary path next to `path`; move it onto `path` only on success."""
    path = os.path.abspath(os.fspath(path))
    parent = os.path.dirname(path)
    os.makedirs(parent, exist_ok=True)
    tmp_root = tempfile.mkdtemp(prefix=f".{os.path.basename(path)}.", dir=parent)
    tmp = os.path.join(tmp_root, os.path.basename(path))
    try:
        yield tmp
        if not os.path.exists(tmp):
            raise RuntimeError(f"Nothing was written to {tmp}")
        if is_dir and os.path.isdir(path):
            old = os.path.join(tmp_root, "previous")
            os.replace(path, old)  # both on the same file system
            os.replace(tmp, path)
        else:
            os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp_root, ignore_errors=True)


def save_model(model, path):
    """`model.save(path)` (a `.keras` file), atomically."""
    path = os.fspath(path)
    if not path.endswith(".keras"):
        raise ValueError(f"`path` must end in '.keras'. Received: path={path!r}")
    with atomic_path(path) as tmp:
        model.save(tmp)
    return path


def inference_network(model):
    """The single-output network of `model` (drops training-only heads)."""
    if hasattr(model, "inference_model"):
        return model.inference_model()
    return model


def export(model, path, format="saved_model", verbose=False):
    """Export `model`'s inference network to `path`, atomically.

    Args:
        model: a `keras.Model`. Models with training-only outputs (side heads)
            export their `inference_model()`.
        path: str. Target file (`.keras`, `.onnx`) or folder (SavedModel).
        format: str. `"saved_model"` (TensorFlow SavedModel through
            `model.export`; needs TensorFlow installed, also under the JAX
            backend), `"keras"` or `"onnx"` (needs the `onnx` extra). Defaults
            to `"saved_model"`.
        verbose: bool. Passed to `model.export`.

    Returns:
        The path written.
    """
    if format not in FORMATS:
        raise ValueError(f"`format` must be one of {', '.join(map(repr, FORMATS))}. "
                         f"Received: format={format!r}")
    net = inference_network(model)
    path = os.fspath(path)
    if format == "keras":
        return save_model(net, path)
    if format == "saved_model":
        try:
            import tensorflow  # noqa: F401
        except ImportError as e:
            raise ImportError(
                "Exporting a SavedModel needs TensorFlow installed (also under the JAX backend): "
                "pip install 'keras_lrn[tensorflow]'. A '.keras' file needs nothing more: "
                "use format='keras'."
            ) from e
        with atomic_path(path, is_dir=True) as tmp:
            net.export(tmp, format="tf_saved_model", verbose=verbose)
        return path
    with atomic_path(path) as tmp:
        net.export(tmp, format="onnx", verbose=verbose)
    return path


def load_model(path):
    """Load a `.keras` model, with a clear `ValueError` when `path` is not one."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise ValueError(f"No such model file: {path!r}")
    if os.path.isdir(path) or not zipfile.is_zipfile(path):
        raise ValueError(
            f"{path!r} is not a Keras model file: expected a '.keras' archive written by "
            "model.save() or keras_lrn's training CLI."
        )
    import keras_lrn.models  # noqa: F401  (registers every serializable class)

    try:
        return keras.saving.load_model(path)
    except Exception as e:  # noqa: BLE001
        raise ValueError(f"Could not load a Keras model from {path!r}: {e}") from e
