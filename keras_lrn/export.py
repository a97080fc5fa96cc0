"""Saving and exporting models without ever clobbering a good file.

Every write goes to a temporary sibling first and is moved into place only when
it is complete; an existing file or folder is replaced only then, so a failed
save or export leaves the previous artifact intact.

Formats (`export(model, path, format=...)`):

* `"saved_model"`: a TensorFlow SavedModel folder (`model.export`), from either
  backend; needs TensorFlow installed, also under JAX (Keras converts JAX
  functions with `jax2tf`). Reload it with `tf.saved_model.load(path).serve(x)`
  (any backend) or `keras.layers.TFSMLayer(path)` (TensorFlow backend).
* `"keras"`: a `.keras` file (`model.save`); needs nothing more, and a file saved
  under one backend loads under the other.
* `"onnx"`: an `.onnx` file through `tf2onnx` (`pip install 'keras_lrn[onnx]'`).
  Under TensorFlow it converts the live model. Under JAX the model is saved to
  a temporary `.keras` file and converted by a TensorFlow-backend subprocess
  (needs TensorFlow installed too); where `jax2onnx` is installed, Keras's own
  JAX route is used instead.

Without `format` the path decides: `*.keras` -> `"keras"`, `*.onnx` ->
`"onnx"`, anything else -> a SavedModel folder.

Example:
```python
keras_lrn.export.export(model, "exported/resnet56")            # SavedModel folder
keras_lrn.export.export(model, "resnet56.keras")                # .keras file
keras_lrn.export.export(model, "resnet56.onnx", format="onnx")  # tf2onnx
```
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile

import keras

ONNX_TIMEOUT_S = 1800  # the JAX route converts in a TF subprocess
FORMATS = ("saved_model", "keras", "onnx")


@contextlib.contextmanager
def atomic_path(path, is_dir=False):
    """Yield a temporary path next to `path`; move it onto `path` only on success.

    The temporary path lies in a hidden sibling folder (same file system, so the
    final move is a rename). If the body raises, or writes nothing, `path` is left
    as it was. Replacing an existing folder renames it aside first and restores it
    if the new one cannot be moved in.
    """
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
            try:
                os.replace(tmp, path)
            except BaseException:
                os.replace(old, path)
                raise
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


def infer_format(path):
    """The export format a path implies: `.keras`, `.onnx`, else a SavedModel folder."""
    path = os.fspath(path)
    if path.endswith(".keras"):
        return "keras"
    if path.endswith(".onnx"):
        return "onnx"
    return "saved_model"


def export(model, path, format=None, verbose=False):
    """Export `model`'s inference network to `path`, atomically.

    Args:
        model: a `keras.Model`. Models with training-only outputs (side heads)
            export their `inference_model()`.
        path: str. Target file (`.keras`, `.onnx`) or folder (SavedModel).
        format: str. `"saved_model"` (TensorFlow SavedModel through
            `model.export`; needs TensorFlow installed, also under the JAX
            backend), `"keras"` or `"onnx"` (needs the `onnx` extra, and
            TensorFlow). Defaults to `None`: inferred from `path`
            (`infer_format`).
        verbose: bool. Passed to `model.export`.

    Returns:
        The path written.

    Example:
    ```python
    keras_lrn.export.export(model, "exported/resnet56")
    loaded = tf.saved_model.load("exported/resnet56")
    logits = loaded.serve(images)
    ```
    """
    path = os.fspath(path)
    if format is None:
        format = infer_format(path)
    if format not in FORMATS:
        raise ValueError(f"`format` must be one of {', '.join(map(repr, FORMATS))}. "
                         f"Received: format={format!r}")
    net = inference_network(model)
    if format == "keras":
        return save_model(net, path)
    if format == "saved_model":
        _require("tensorflow", "Exporting a SavedModel needs TensorFlow installed (also under "
                 "the JAX backend): pip install 'keras_lrn[tensorflow]'. A '.keras' file needs "
                 "nothing more: use format='keras'.")
        with atomic_path(path, is_dir=True) as tmp:
            net.export(tmp, format="tf_saved_model", verbose=verbose)
        return path
    with atomic_path(path) as tmp:
        _export_onnx(net, tmp, verbose)
    return path


def _require(module, message):
    if importlib.util.find_spec(module) is None:
        raise ImportError(message)


def _input_signature(net):
    # Functional models know their inputs; passing them lets a model that was
    # built but never called export (Keras's ONNX route insists on a call).
    inputs = getattr(net, "inputs", None)
    if not inputs:
        return None
    return [inputs[0]] if len(inputs) == 1 else [list(inputs)]


def _export_onnx(net, path, verbose):
    backend = keras.backend.backend()
    if backend == "jax" and importlib.util.find_spec("jax2onnx") is None:
        return _export_onnx_via_tensorflow(net, path)
    if backend == "tensorflow":
        _require("tf2onnx", "ONNX export needs tf2onnx and onnx: pip install 'keras_lrn[onnx]'.")
    net.export(path, format="onnx", verbose=verbose, input_signature=_input_signature(net))


def _export_onnx_via_tensorflow(net, path):
    """JAX backend: save `.keras`, convert it with tf2onnx in a TensorFlow-backend process."""
    for module in ("tensorflow", "tf2onnx", "onnx"):
        _require(module, "ONNX export under the JAX backend runs tf2onnx in a TensorFlow-backend "
                 "subprocess and needs TensorFlow, tf2onnx and onnx installed: pip install "
                 "'keras_lrn[tensorflow,onnx]' (or jax2onnx for Keras's own JAX route). "
                 "Without them, save a '.keras' file (format='keras') and export it where "
                 f"TensorFlow is installed. Missing: {module}.")
    with tempfile.TemporaryDirectory() as tmp:
        saved = os.path.join(tmp, "model.keras")
        net.save(saved)
        env = dict(os.environ, KERAS_BACKEND="tensorflow")
        env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        code = ("import sys, keras_lrn.export as e; "
                "e._export_onnx(e.load_model(sys.argv[1]), sys.argv[2], False)")
        try:
            result = subprocess.run([sys.executable, "-c", code, saved, path], env=env,
                                    capture_output=True, text=True, timeout=ONNX_TIMEOUT_S)
        except subprocess.TimeoutExpired as e:
            raise RuntimeError(f"ONNX export in the TensorFlow-backend subprocess did not "
                               f"finish in {ONNX_TIMEOUT_S} s.") from e
    if result.returncode != 0 or not os.path.exists(path):
        raise RuntimeError("ONNX export in the TensorFlow-backend subprocess failed:\n"
                           + result.stderr[-4000:])


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
