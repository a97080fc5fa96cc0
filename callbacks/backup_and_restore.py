"""`BackupAndRestore`: Keras' fault-tolerance callback plus callback state and atomic writes."""

from __future__ import annotations

import json
import os
import shutil
import warnings

import keras


def _is_remote(path):
    return "://" in str(path)  # gs://, s3://, hdfs://, ... (keras' file_utils.is_remote_path)


def _file_utils():
    # Only for remote paths (gfile), as the parent class does.
    from keras.src.utils import file_utils

    return file_utils


def _fsync_dir(path):
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - platform dependent
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover - platform dependent
        pass
    finally:
        os.close(fd)


def _fsync_file(path):
    with open(path, "rb+") as f:
        os.fsync(f.fileno())


def _atomic_write_text(path, text):
    """Write `text` to `path` so that a crash leaves either the old or the new file."""
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _atomic_copy(src, dst):
    tmp = f"{dst}.tmp"
    shutil.copyfile(src, tmp)
    _fsync_file(tmp)
    os.replace(tmp, dst)


@keras.saving.register_keras_serializable(package="keras_lrn")
class BackupAndRestore(keras.callbacks.BackupAndRestore):
    """`keras.callbacks.BackupAndRestore` that also saves callback state, atomically.

    Like the Keras callback it saves the model's weights (optimizer state
    included) and the epoch number into `backup_dir` at the end of each epoch
    (or every `save_freq` batches) and restores them at the start of the next
    `fit`, which then resumes at the saved epoch. In addition:

    * **Callback state.** It writes `callback_state.json` with the
      `get_state()` of each callback in `stateful_callbacks` (keyed by class
      name and position, e.g. `"AdaptiveLRSetter_0"`) whenever it saves the
      weights, and calls their `set_state()` in `on_train_begin` before the
      training resumes. This is how `AdaptiveLRSetter` keeps its schedule,
      trigger epoch and history across an interruption.
    * **Atomic files.** Keras writes `latest.weights.h5` in place, so a process
      killed mid-write destroys the only backup (with `double_checkpoint=True`
      the `.bkp` copy survives, but only `OSError`s on loading fall back to it,
      and a truncated `training_metadata.json` is a `JSONDecodeError`). Here the
      weights, the metadata and the callback state are each written to a
      temporary file, flushed to disk and renamed over the previous file
      (`os.replace`), so each file is always either the previous or the new
      complete version; the `.bkp` copies of `double_checkpoint` are made the
      same way. The metadata is renamed last. Remote paths (`gs://`, ...) keep
      Keras' non-atomic writes.

    Put this callback **after** the callbacks whose state it saves (and after
    `DiscardedLayerCounter`) in the `callbacks` list: Keras runs `on_epoch_end`
    in list order, and the state must include the epoch's last decision. It
    warns if a saved state says its callback has not finished the epoch yet.

    Args:
        backup_dir: str. Directory for the backup files (used only by this
            callback; deleted at the end of training if `delete_checkpoint`).
        stateful_callbacks: iterable of callbacks having `get_state()` (a
            JSON-serialisable dict) and `set_state(state)`. Defaults to `()`.
        **kwargs: `keras.callbacks.BackupAndRestore` arguments: `save_freq`,
            `double_checkpoint`, `delete_checkpoint`.

    Example:
    ```python
    counter = keras_lrn.callbacks.DiscardedLayerCounter()
    lr = keras_lrn.callbacks.AdaptiveLRSetter(preset="cifar")
    backup = keras_lrn.callbacks.BackupAndRestore("/tmp/run/backup", stateful_callbacks=[lr])
    model.fit(ds, epochs=1000, callbacks=[counter, lr, backup])  # interrupted...
    model.fit(ds, epochs=1000, callbacks=[counter, lr, backup])  # ...resumes
    ```

    Reference:
    - `keras.callbacks.BackupAndRestore` (Keras 3.15).
    """

    CALLBACK_STATE_FILE = "callback_state.json"

    def __init__(self, backup_dir, stateful_callbacks=(), **kwargs):
        super().__init__(backup_dir, **kwargs)
        if stateful_callbacks is None:
            stateful_callbacks = ()
        callbacks = list(stateful_callbacks)
        for cb in callbacks:
            if not (
                callable(getattr(cb, "get_state", None))
                and callable(getattr(cb, "set_state", None))
            ):
                raise ValueError(
                    "Every entry of `stateful_callbacks` must have `get_state()` and "
                    f"`set_state(state)` methods. Received: {cb!r}"
                )
        self.stateful_callbacks = callbacks
        self._callback_state_path = os.path.join(backup_dir, self.CALLBACK_STATE_FILE)
        self._prev_callback_state_path = f"{self._callback_state_path}.bkp"
        self._order_warned = False

    # ----------------------------------------------------------- state
    def _state_keys(self):
        return [f"{type(cb).__name__}_{i}" for i, cb in enumerate(self.stateful_callbacks)]

    def _collect_state(self):
        states = {}
        for key, cb in zip(self._state_keys(), self.stateful_callbacks):
            state = cb.get_state()
            done = state.get("epoch") if isinstance(state, dict) else None
            if (
                self.save_freq == "epoch"
                and isinstance(done, int)
                and done < self._current_epoch
                and not self._order_warned
            ):
                self._order_warned = True
                warnings.warn(
                    f"BackupAndRestore saved the state of {key} before its on_epoch_end ran "
                    f"(state epoch {done}, backup epoch {self._current_epoch}); put "
                    "BackupAndRestore after it in the callbacks list.",
                    stacklevel=3,
                )
            states[key] = state
        payload = {
            "epoch": self._current_epoch,
            "batch": self._last_batch_seen,
            "callbacks": states,
        }
        try:
            return json.dumps(payload)
        except (TypeError, ValueError) as e:
            raise ValueError(
                f"The states of `stateful_callbacks` must be JSON-serialisable. Received: {states!r}"
            ) from e

    def _restore_callback_state(self, metadata_epoch):
        if not self.stateful_callbacks:
            return
        if not self._exists(self._callback_state_path):
            warnings.warn(
                f"BackupAndRestore found no {self.CALLBACK_STATE_FILE} in {self.backup_dir}; "
                "the callbacks' state is not restored.",
                stacklevel=3,
            )
            return
        payload = json.loads(self._read_text(self._callback_state_path))
        if payload.get("epoch") != metadata_epoch:
            warnings.warn(
                f"{self.CALLBACK_STATE_FILE} is from epoch {payload.get('epoch')} but the weights "
                f"metadata from epoch {metadata_epoch} (the process was stopped between the two "
                "writes); restoring it anyway.",
                stacklevel=3,
            )
        states = payload.get("callbacks", {})
        for key, cb in zip(self._state_keys(), self.stateful_callbacks):
            if key in states:
                cb.set_state(states[key])
            else:
                warnings.warn(
                    f"BackupAndRestore has no saved state for {key} (saved: {sorted(states)}).",
                    stacklevel=3,
                )

    # ----------------------------------------------------------- files
    def _remote(self):
        return _is_remote(self.backup_dir)

    def _exists(self, path):
        return _file_utils().exists(path) if self._remote() else os.path.exists(path)

    def _read_text(self, path):
        if self._remote():
            with _file_utils().File(path, "r") as f:
                return f.read()
        with open(path, encoding="utf-8") as f:
            return f.read()

    def _save_model(self):
        state_text = self._collect_state()  # first: a failing get_state writes nothing
        if self._remote():
            super()._save_model()
            with _file_utils().File(self._callback_state_path, "w") as f:
                f.write(state_text)
            return
        os.makedirs(self.backup_dir, exist_ok=True)
        if self.double_checkpoint:
            for cur, prev in (
                (self._weights_path, self._prev_weights_path),
                (self._callback_state_path, self._prev_callback_state_path),
                (self._training_metadata_path, self._prev_training_metadata_path),
            ):
                if os.path.exists(cur):
                    _atomic_copy(cur, prev)
        # `save_weights` wants a name ending in ".weights.h5".
        tmp_weights = os.path.join(self.backup_dir, "latest.tmp.weights.h5")
        self.model.save_weights(filepath=tmp_weights, overwrite=True)
        _fsync_file(tmp_weights)
        os.replace(tmp_weights, self._weights_path)
        _atomic_write_text(self._callback_state_path, state_text)
        metadata = {"epoch": self._current_epoch, "batch": self._last_batch_seen}
        _atomic_write_text(self._training_metadata_path, json.dumps(metadata))
        _fsync_dir(self.backup_dir)

    def _load_model(self):
        super()._load_model()
        if self._exists(self._training_metadata_path):
            metadata = json.loads(self._read_text(self._training_metadata_path))
            self._current_epoch = int(metadata["epoch"])
            self._restore_callback_state(metadata["epoch"])

    def _fall_back_to_previous(self):
        """Replace the current backup files by the `.bkp` ones (double checkpoint)."""
        copy = _file_utils().copy if self._remote() else _atomic_copy
        for cur, prev in (
            (self._weights_path, self._prev_weights_path),
            (self._training_metadata_path, self._prev_training_metadata_path),
            (self._callback_state_path, self._prev_callback_state_path),
        ):
            if self._exists(prev):
                copy(prev, cur)
            elif self._exists(cur) and cur != self._weights_path:
                if self._remote():
                    _file_utils().remove(cur)
                else:
                    os.remove(cur)

    def on_train_begin(self, logs=None):
        self._order_warned = False
        try:
            self._load_model()
        except (OSError, json.JSONDecodeError):
            # The current backup is unreadable: try the previous one.
            if not self._exists(self._prev_weights_path):
                raise
            self._fall_back_to_previous()
            self._load_model()

    def get_config(self):
        return {
            "backup_dir": self.backup_dir,
            "save_freq": self.save_freq,
            "double_checkpoint": self.double_checkpoint,
            "delete_checkpoint": self.delete_checkpoint,
        }
