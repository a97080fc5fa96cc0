"""`SideSupervision`: the side head's validation error and a schedule for its loss weight."""

from __future__ import annotations

import math
import numbers
import warnings

import keras
import numpy as np
from keras_lrn.callbacks._utils import check_schedule, piecewise_value, print_msg, to_float
from keras_lrn.callbacks.scaled_loss import ScaledLoss

#: Loss weight of the side head in the reference (CIFAR, SVHN and ImageNet).
DEFAULT_SIDE_LOSS_WEIGHT = 0.1

_ACCURACY_SUFFIXES = ("accuracy", "acc", "sparse_categorical_accuracy", "categorical_accuracy")


@keras.saving.register_keras_serializable(package="keras_lrn")
class SideSupervision(keras.callbacks.Callback):
    """Report the side head's validation error and schedule its loss weight.

    epsilon-ResNet trains with an auxiliary classifier (the "side output")
    in the middle of the network, loss weight 0.1, and its reference reported
    that head's validation error with an extra inference runner. This
    callback does both for a model whose outputs are a dict with a
    `side_output` entry (e.g. `EpsilonResNet(side_output=True)`:
    `{"logits", "side_logits"}`).

    **Validation error.** At each epoch end it writes `logs["val_side_error"]`.
    If Keras already computed an accuracy for the side output
    (`compile(metrics={"side_logits": ["accuracy"]})` with validation data
    in `fit`, i.e. `val_side_logits_accuracy`), it reports `1 - accuracy`;
    otherwise it predicts the side output on `validation_data` itself
    (argmax of the side logits against integer or one-hot labels).

    **Loss weight.** Keras 3.15 stores `compile(loss_weights=...)` as Python
    numbers in the compiled loss, so they cannot be scheduled (a
    `keras.Variable` there is a trace-time constant on JAX and breaks
    `model.save()` on JAX). Instead, compile the side output with the loss
    returned by `wrap_loss(loss)`: a `ScaledLoss` that multiplies the loss by
    this callback's `loss_weight` variable (leave its entry out of
    `loss_weights`, or give it 1.0). At each epoch begin the callback sets
    the variable from `loss_weight_schedule`; TensorFlow reads it at every
    step, and on JAX the callback retraces the compiled train/test steps
    whenever the value changes (one recompilation per change). A
    `ScaledLoss` the model was compiled with for `side_output` is adopted
    even if it was not made by `wrap_loss`. With a plain float weight in
    `compile(loss_weights=...)` the default constant schedule is fine, and a
    schedule has no effect (the callback warns). The weight in effect is
    logged as `logs["side_loss_weight"]`; note that Keras' per-output
    `side_logits_loss` is then the weighted loss.

    Place it before `CSVLogger`/`TensorBoard` in the `callbacks` list.

    Args:
        validation_data: a tuple `(x, y)` of arrays (y an array or a dict
            with the `side_output` or `"logits"` key; integer or one-hot
            labels), or a re-iterable of `(x, y)` batches (a
            `tf.data.Dataset`, a `keras.utils.PyDataset`, a list). Only
            needed when Keras does not compute a side accuracy. Defaults to
            None.
        side_output: str. The key of the side head's output. Defaults to
            `"side_logits"`.
        loss_weight_schedule: list of `(epoch, weight)` pairs (tensorpack
            indexing: from the 0-based epoch `e` on; before the first entry
            the weight is left alone), or a callable `epoch -> weight` (None
            for "unchanged"). Defaults to None: no schedule, the weight stays
            at its initial 0.1 (the reference's constant) or at the weight of
            the `ScaledLoss` the model was compiled with.
        verbose: int. 0: quiet, 1: print weight changes. Defaults to 0.
        batch_size: int. Batch size for predicting on array
            `validation_data`. Defaults to 256.

    Example:
    ```python
    side = keras_lrn.callbacks.SideSupervision(
        validation_data=(x_val, y_val), loss_weight_schedule=[(0, 0.1), (300, 0.0)]
    )
    ce = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    model.compile(
        keras.optimizers.SGD(0.1, momentum=0.9),
        loss={"logits": ce, "side_logits": side.wrap_loss(ce)},
    )
    model.fit(ds, epochs=1000, callbacks=[side, keras.callbacks.CSVLogger("log.csv")])
    ```

    Reference:
    - Yu, Yu and Ramalingam, "Learning Strict Identity Mappings in Deep
      Residual Networks", CVPR 2018 (arXiv:1804.01661); `side_output` in the
      authors' `cifarEpsilonResnet.py`.
    """

    def __init__(
        self,
        validation_data=None,
        side_output="side_logits",
        loss_weight_schedule=None,
        verbose=0,
        batch_size=256,
    ):
        super().__init__()
        if not isinstance(side_output, str) or not side_output:
            raise ValueError(
                f"`side_output` must be a non-empty str. Received: side_output={side_output!r}"
            )
        if loss_weight_schedule is None or callable(loss_weight_schedule):
            self._schedule = None
        else:
            self._schedule = check_schedule(loss_weight_schedule, "loss_weight_schedule")
        if isinstance(verbose, bool) or not isinstance(verbose, int) or verbose < 0:
            raise ValueError(f"`verbose` must be an int >= 0. Received: verbose={verbose!r}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(
                f"`batch_size` must be an int >= 1. Received: batch_size={batch_size!r}"
            )
        if isinstance(validation_data, tuple):
            if len(validation_data) not in (2, 3):
                raise ValueError(
                    "`validation_data` as a tuple must be (x, y) or (x, y, sample_weight). "
                    f"Received a tuple of length {len(validation_data)}"
                )
        self.validation_data = validation_data
        self.side_output = side_output
        self.loss_weight_schedule = loss_weight_schedule
        self.verbose = verbose
        self.batch_size = batch_size
        initial = self.weight_at(0)
        self.loss_weight = keras.Variable(
            DEFAULT_SIDE_LOSS_WEIGHT if initial is None else initial,
            dtype="float32",
            trainable=False,
            name="side_loss_weight",
        )
        self._wired = False
        self._static_weight = None
        self._warned = set()

    # ------------------------------------------------------------- weight
    def weight_at(self, epoch):
        """The scheduled side-loss weight of (0-based) `epoch`, or None for "unchanged"."""
        if self.loss_weight_schedule is None:
            return None
        if self._schedule is not None:
            return piecewise_value(self._schedule, epoch)
        value = self.loss_weight_schedule(epoch)
        if value is None:
            return None
        if (
            isinstance(value, bool)
            or not isinstance(value, numbers.Real)
            or not math.isfinite(value)
            or value < 0
        ):
            raise ValueError(
                "`loss_weight_schedule` must return a finite number >= 0 (or None). "
                f"Received: {value!r} at epoch {epoch}"
            )
        return float(value)

    def wrap_loss(self, loss):
        """`ScaledLoss(loss, weight=self.loss_weight)`: the side loss to `compile` with."""
        return ScaledLoss(loss, weight=self.loss_weight)

    def _compiled_side_loss(self):
        """The compiled loss and loss weight of `side_output` (reads Keras' compile state)."""
        compile_loss = getattr(self.model, "_compile_loss", None)
        user_loss = getattr(compile_loss, "_user_loss", None)
        user_weights = getattr(compile_loss, "_user_loss_weights", None)
        loss = weight = None
        if isinstance(user_loss, dict):
            loss = user_loss.get(self.side_output)
        if isinstance(user_weights, dict):
            weight = user_weights.get(self.side_output)
        return loss, weight

    def _warn_once(self, key, message):
        if key not in self._warned:
            self._warned.add(key)
            warnings.warn(message, stacklevel=3)

    def on_train_begin(self, logs=None):
        self._warned = set()
        loss, weight = self._compiled_side_loss()
        self._wired = False
        self._static_weight = None
        if isinstance(loss, ScaledLoss):
            # Adopt the weight variable the model was compiled with (the same
            # variable when the loss came from `wrap_loss`).
            self.loss_weight = loss.weight
            self._wired = True
        elif isinstance(weight, numbers.Real):
            self._static_weight = float(weight)
        elif loss is not None and weight is None:
            self._static_weight = 1.0
        if not self._wired and self.loss_weight_schedule is not None:
            self._warn_once(
                "wiring",
                f"SideSupervision: the model was not compiled with a ScaledLoss for "
                f"`{self.side_output}`, so `loss_weight_schedule` has no effect. Compile with "
                f"`loss={{..., '{self.side_output}': callback.wrap_loss(loss)}}`.",
            )

    def on_epoch_begin(self, epoch, logs=None):
        value = self.weight_at(epoch)
        if value is None:
            return
        current = to_float(self.loss_weight)
        if np.float32(value) == np.float32(current):
            return
        self.loss_weight.assign(value)
        if self._wired and keras.backend.backend() == "jax":
            # JAX compiled the weight into the step functions as a constant.
            model = self.model
            if getattr(model, "train_function", None) is not None:
                model.make_train_function(force=True)
            if getattr(model, "test_function", None) is not None:
                model.make_test_function(force=True)
        if self.verbose > 0:
            print_msg(
                f"\nEpoch {epoch + 1}: SideSupervision setting the side-loss weight to {value:g}."
            )

    # ------------------------------------------------------------- error
    def _keras_side_accuracy(self, logs):
        for suffix in _ACCURACY_SUFFIXES:
            key = f"val_{self.side_output}_{suffix}"
            if key in logs:
                return float(logs[key])
        return None

    def _batches(self):
        data = self.validation_data
        if isinstance(data, tuple):
            x, y = data[0], data[1]
            n = len(keras.tree.flatten(x)[0])
            for i in range(0, n, self.batch_size):

                def take(a, sl=slice(i, i + self.batch_size)):
                    return a[sl]

                yield keras.tree.map_structure(take, x), keras.tree.map_structure(take, y)
        elif hasattr(data, "__getitem__") and hasattr(data, "__len__"):
            for i in range(len(data)):  # keras.utils.PyDataset
                batch = data[i]
                yield batch[0], batch[1]
        else:
            for batch in data:  # tf.data.Dataset or another re-iterable
                yield batch[0], batch[1]

    def _labels(self, y):
        if isinstance(y, dict):
            if self.side_output in y:
                y = y[self.side_output]
            elif "logits" in y:
                y = y["logits"]
            else:
                y = next(iter(y.values()))
        y = np.asarray(y)
        if y.ndim >= 2 and y.shape[-1] > 1:
            return np.argmax(y, axis=-1).reshape(-1)
        return y.reshape(-1).astype("int64")

    def evaluate_side_error(self):
        """Top-1 error of the side output on `validation_data` (inference mode)."""
        wrong = total = 0
        for x, y in self._batches():
            pred = self.model.predict_on_batch(x)
            if not isinstance(pred, dict) or self.side_output not in pred:
                self._warn_once(
                    "no_side",
                    f"SideSupervision: the model has no output `{self.side_output}`; "
                    "`val_side_error` is not logged.",
                )
                return None
            side = np.asarray(pred[self.side_output])
            labels = self._labels(y)
            wrong += int(np.sum(np.argmax(side, axis=-1).reshape(-1) != labels))
            total += labels.shape[0]
        return wrong / total if total else None

    def on_epoch_end(self, epoch, logs=None):
        if logs is None:
            logs = {}
        if self._wired:
            logs["side_loss_weight"] = to_float(self.loss_weight)
        elif self._static_weight is not None:
            logs["side_loss_weight"] = self._static_weight
        accuracy = self._keras_side_accuracy(logs)
        if accuracy is not None:
            logs["val_side_error"] = 1.0 - accuracy
        elif self.validation_data is not None:
            error = self.evaluate_side_error()
            if error is not None:
                logs["val_side_error"] = error
        else:
            self._warn_once(
                "no_val",
                f"SideSupervision: no `val_{self.side_output}_accuracy` in the logs and no "
                "`validation_data`; `val_side_error` is not logged.",
            )

    def get_config(self):
        schedule = self.loss_weight_schedule
        if self._schedule is not None:
            schedule = [list(ev) for ev in self._schedule]
        return {
            "side_output": self.side_output,
            "loss_weight_schedule": schedule,
            "verbose": self.verbose,
            "batch_size": self.batch_size,
        }
