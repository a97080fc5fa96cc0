"""`ScaledLoss`: a loss multiplied by a weight held in a variable (a schedulable loss weight)."""

from __future__ import annotations

import math
import numbers

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_lrn")
class ScaledLoss(keras.losses.Loss):
    """Wrap a loss and multiply it by a weight that a callback may change.

    Keras 3.15 keeps `compile(loss_weights=...)` as Python numbers inside the
    compiled loss (`CompileLoss`), so they cannot be scheduled; a
    `keras.Variable` there is read dynamically on TensorFlow but is a
    trace-time constant on JAX and makes `model.save()` fail on JAX (the
    compile config cannot serialise it). `ScaledLoss` puts the weight inside
    the loss instead: `weight` is a non-trainable float32 `keras.Variable`
    and the loss returns `weight * loss(y_true, y_pred, sample_weight)`, the
    wrapped loss keeping its own reduction. It serialises with the current
    weight as a float.

    On TensorFlow a new weight takes effect at the next step. On JAX the
    compiled train/test steps must be retraced after a change
    (`model.make_train_function(force=True)`, `make_test_function(force=True)`),
    which `SideSupervision` does at the epoch boundary where it changes the
    weight.

    Note that the per-output loss that Keras logs for this output
    (e.g. `side_logits_loss`) is then the *weighted* loss.

    Args:
        loss: a `keras.losses.Loss` instance (or the name of a loss class,
            e.g. `"SparseCategoricalCrossentropy"`).
        weight: float >= 0 or a float32 `keras.Variable` to share. Defaults
            to 0.1 (epsilon-ResNet's side-loss weight).
        name: str. Defaults to `"scaled_<loss name>"`.

    Example:
    ```python
    ce = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    side = keras_lrn.callbacks.ScaledLoss(ce, weight=0.1)
    model.compile(optimizer, loss={"logits": ce, "side_logits": side})
    side.weight.assign(0.05)  # takes effect at the next step (retrace on JAX)
    ```

    Reference:
    - Yu, Yu and Ramalingam, "Learning Strict Identity Mappings in Deep
      Residual Networks", CVPR 2018 (arXiv:1804.01661): side loss weight 0.1.
    """

    def __init__(self, loss, weight=0.1, name=None, **kwargs):
        kwargs.pop("reduction", None)
        kwargs.pop("dtype", None)
        if isinstance(loss, str):
            loss = keras.losses.get(loss)
        if not isinstance(loss, keras.losses.Loss):
            raise ValueError(
                "`loss` must be a `keras.losses.Loss` instance (e.g. "
                "`keras.losses.SparseCategoricalCrossentropy(from_logits=True)`). "
                f"Received: loss={loss!r}"
            )
        super().__init__(name=name or f"scaled_{loss.name}", reduction="none", **kwargs)
        self.loss = loss
        if isinstance(weight, keras.Variable):
            self.weight = weight
        else:
            if (
                isinstance(weight, bool)
                or not isinstance(weight, numbers.Real)
                or not math.isfinite(weight)
                or weight < 0
            ):
                raise ValueError(
                    f"`weight` must be a finite number >= 0 or a keras.Variable. "
                    f"Received: weight={weight!r}"
                )
            self.weight = keras.Variable(
                float(weight), dtype="float32", trainable=False, name="loss_weight"
            )

    def __call__(self, y_true, y_pred, sample_weight=None):
        value = self.loss(y_true, y_pred, sample_weight)
        return ops.multiply(value, ops.cast(self.weight, value.dtype))

    def call(self, y_true, y_pred):  # pragma: no cover - __call__ is overridden
        return self.loss.call(y_true, y_pred) * ops.cast(self.weight, "float32")

    def get_config(self):
        return {
            "loss": keras.saving.serialize_keras_object(self.loss),
            "weight": float(ops.convert_to_numpy(self.weight)),
            "name": self.name,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["loss"] = keras.saving.deserialize_keras_object(config["loss"])
        return cls(**config)
