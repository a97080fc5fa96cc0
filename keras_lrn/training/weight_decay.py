"""Coupled L2 weight decay with per-variable exemptions.

`apply_weight_decay(model, 5e-4, exclude=[r"gamma$", r"beta$"])` attaches an
L2 regulariser to every trainable variable whose path matches none of the
patterns. The penalty is `weight_decay / 2 * sum(w**2)` so that its gradient is
`weight_decay * w`: PyTorch SGD's `weight_decay`, tensorpack's `wd * ½‖W‖²`. It
is part of `model.losses`, hence of the loss that `model.fit` minimises (coupled
with momentum, as the reference codes did), on every backend.
"""

from __future__ import annotations

import re

import keras


@keras.saving.register_keras_serializable(package="keras_lrn")
class CoupledL2(keras.regularizers.Regularizer):
    """`weight_decay / 2 * sum(w**2)`, computed in float32."""

    def __init__(self, weight_decay):
        if weight_decay < 0:
            raise ValueError(f"`weight_decay` must be >= 0. Received: weight_decay={weight_decay}")
        self.weight_decay = float(weight_decay)

    def __call__(self, x):
        x = keras.ops.cast(x, "float32")
        return 0.5 * self.weight_decay * keras.ops.sum(keras.ops.square(x))

    def get_config(self):
        return {"weight_decay": self.weight_decay}


def decayed_variables(model, exclude=()):
    """The trainable variables (each once) whose path matches none of `exclude`."""
    patterns = [re.compile(p) for p in exclude]
    seen, out = set(), []
    for v in model.trainable_variables:
        if id(v) in seen:
            continue
        seen.add(id(v))
        if not any(p.search(v.path) for p in patterns):
            out.append(v)
    return out


def apply_weight_decay(model, weight_decay, exclude=()):
    """Attach coupled L2 to `model`'s variables; returns the decayed variables.

    Variables matched by `exclude` (regular expressions on `variable.path`) get
    no decay and any earlier regulariser is removed from them.
    """
    if weight_decay is None or weight_decay < 0:
        raise ValueError(f"`weight_decay` must be >= 0. Received: weight_decay={weight_decay!r}")
    for p in exclude:
        try:
            re.compile(p)
        except re.error as e:
            raise ValueError(f"`weight_decay_exclude` has a bad pattern {p!r}: {e}") from e
    decayed = decayed_variables(model, exclude)
    ids = {id(v) for v in decayed}
    reg = CoupledL2(weight_decay) if weight_decay > 0 else None
    for v in model.trainable_variables:
        v.regularizer = reg if id(v) in ids else None
    return decayed
