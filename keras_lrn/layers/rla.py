"""Recurrent layer aggregation (RLA-Net): the hidden-state pieces.

RLA-Net carries a small hidden state `h` (k = `rla_channels` channels, 32 in the
paper) along the depth of a network:

* `h` starts as zeros at the stem-output resolution (`RLAInitialState`);
* every block reads `concat([x, h])` (x channels first) and returns its output
  `x` and a feature `y` to aggregate;
* a down-sampling block average-pools `h` 2x2/2 (VALID) *after* it consumed `h`
  at its input resolution (`rla_pool`);
* then `h = recurrent_conv(tanh(BN_i(h + conv_out(y))))` (`rla_update`): the
  1x1 `conv_out` (C -> k, no bias) and the 3x3 `recurrent_conv` (k -> k, no
  bias, stride 1, padding 1) are *shared*: the same layer instance is called by
  every block of a stage (ResNet) or, for the recurrent conv, by every block of
  the network (MobileNetV2); `BN_i` belongs to the block;
* at the end `concat([x, act(BN(h))])` (`rla_join`; ReLU for ResNets, ReLU6 for
  MobileNetV2).

The sharing is plain Keras layer reuse in the functional graph (as
`keras_lrn.layers.filter_basis` shares its bases): the weights are tracked and
counted once, their gradient is summed over the calls, and `.keras` save/load
keeps them shared without custom serialisation.

**What `y` is (the in-place aliasing of the reference code).** The paper
aggregates the residual-branch output. The released PyTorch `RLA_Bottleneck`
binds `y = out` and then runs `out += identity` and an in-place ReLU on the same
tensor, so the `y` it aggregates is the *block output* `ReLU(F + shortcut)`
(measured: same storage, equal values, with and without ECA). The released
checkpoints and the README numbers were therefore obtained with "aggregate the
block output" (what ablation v3 does explicitly); `resnet_rla_us.py` uses a
non-inplace add and really aggregates the branch. A functional port aggregates
the branch unless told otherwise, hence `keras_lrn.models.RLAResNet`'s
`aggregate="output"` (the code, the default) / `"branch"` (the paper's text).
The MobileNetV2 variants add the residual out of place: their `y` is the branch.

Reference:
- Zhao, Fang and Li, "Recurrence along Depth: Deep Convolutional Neural Networks
  with Recurrent Layer Aggregation", NeurIPS 2021 (fangyanwen1106/RLANet).
"""

from __future__ import annotations

import math

import keras
from keras import ops

from keras_lrn.layers.fast_conv import FastBatchNormalization, FastDepthwiseConv2D

RECURRENT_KINDS = ("dense", "depthwise")
JOIN_ACTIVATIONS = ("relu", "relu6")
AGGREGATE_MODES = ("output", "branch")


def check_rla_channels(value, arg="rla_channels"):
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"`{arg}` must be a positive integer. Received: {arg}={value!r}")
    return value


def check_aggregate(value):
    if value not in AGGREGATE_MODES:
        raise ValueError(f"`aggregate` must be one of {', '.join(map(repr, AGGREGATE_MODES))}. "
                         f"Received: aggregate={value!r}")
    return value


def _he_fan_out():
    # PyTorch kaiming_normal_(mode="fan_out", nonlinearity="relu"): N(0, 2 / (k*k*out)).
    return keras.initializers.VarianceScaling(2.0, mode="fan_out",
                                              distribution="untruncated_normal")


def depthwise_he_fan_out(channels, kernel_size=3):
    """`kaiming_normal_(fan_out)` of a PyTorch depthwise weight `(C, 1, k, k)`.

    PyTorch's fan_out is `C * k * k` (groups are ignored); Keras' VarianceScaling on
    the `(k, k, C, 1)` depthwise kernel would use `k * k`, so the std is given here.
    """
    return keras.initializers.RandomNormal(stddev=math.sqrt(2.0 / (kernel_size ** 2 * channels)))


@keras.saving.register_keras_serializable(package="keras_lrn")
class RLAInitialState(keras.layers.Layer):
    """The initial RLA hidden state: zeros with the input's batch and spatial size.

    Args:
        channels: int. Channels k of the hidden state.

    Example:
    ```python
    h = RLAInitialState(32)(keras.ops.ones((2, 56, 56, 64)))   # zeros (2, 56, 56, 32)
    ```

    Reference:
    - Zhao et al., "Recurrence along Depth", NeurIPS 2021.
    """

    def __init__(self, channels, **kwargs):
        super().__init__(**kwargs)
        self.channels = check_rla_channels(channels, "channels")

    def call(self, inputs):
        shape = ops.shape(inputs)
        return ops.zeros((shape[0], shape[1], shape[2], self.channels), dtype=self.compute_dtype)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:3]) + (self.channels,)

    def get_config(self):
        config = super().get_config()
        config.update(channels=self.channels)
        return config


def rla_conv_out(rla_channels, name, kernel_initializer=None, dtype=None):
    """The shared 1x1 `conv_out` (C -> k, no bias); call it from every block that shares it.

    Args:
        rla_channels: int. k.
        name: str. Layer name.
        kernel_initializer: Defaults to PyTorch's `kaiming_normal_(fan_out)`.
        dtype: dtype policy.
    """
    check_rla_channels(rla_channels)
    return keras.layers.Conv2D(rla_channels, 1, use_bias=False,
                               kernel_initializer=kernel_initializer or _he_fan_out(),
                               name=name, dtype=dtype)


def rla_recurrent_conv(rla_channels, name, recurrent="dense", kernel_initializer=None,
                       dtype=None):
    """The shared 3x3 recurrent conv (k -> k, stride 1, padding 1, no bias).

    Args:
        rla_channels: int. k.
        name: str. Layer name.
        recurrent: "dense" (a full 3x3 conv, k*k*9 weights) or "depthwise"
            (groups = k, k*9 weights; dsRLA-MobileNetV2). Defaults to "dense".
        kernel_initializer: Defaults to PyTorch's `kaiming_normal_(fan_out)`.
        dtype: dtype policy.
    """
    check_rla_channels(rla_channels)
    if recurrent not in RECURRENT_KINDS:
        raise ValueError(f"`recurrent` must be one of {', '.join(map(repr, RECURRENT_KINDS))}. "
                         f"Received: recurrent={recurrent!r}")
    if recurrent == "depthwise":
        return FastDepthwiseConv2D(
            3, strides=1, padding=1, use_bias=False,
            kernel_initializer=kernel_initializer or depthwise_he_fan_out(rla_channels),
            name=name, dtype=dtype)
    return keras.layers.Conv2D(rla_channels, 3, padding="same", use_bias=False,
                               kernel_initializer=kernel_initializer or _he_fan_out(),
                               name=name, dtype=dtype)


def rla_concat(x, h, name, dtype=None):
    """`concat([x, h])` on channels (x first, as the reference)."""
    return keras.layers.Concatenate(axis=-1, name=name, dtype=dtype)([x, h])


def rla_pool(h, name, dtype=None):
    """2x2/2 VALID average pooling of `h` (a down-sampling block, after `h` was consumed).

    Raises a `ValueError` if `h`'s static spatial size is odd: the block's strided
    conv would then produce `ceil(size / 2)` and the pooled `h` `floor(size / 2)`
    (the reference fails the same way on such input sizes).
    """
    for size in h.shape[1:3]:
        if size is not None and size % 2:
            raise ValueError(
                "RLA pools the hidden state 2x2 on every down-sampling block, so the feature "
                f"maps entering them must have even sizes. Received a {h.shape[1]}x{h.shape[2]} "
                "map: use an input size divisible by the network's total stride (e.g. 32, 64, "
                "224).")
    return keras.layers.AveragePooling2D(2, strides=2, padding="valid", name=name,
                                         dtype=dtype)(h)


def rla_update(h, y, conv_out, recurrent_conv, name, dtype=None):
    """`h = recurrent_conv(tanh(BN(h + conv_out(y))))`; the BN `name` is the block's own.

    Args:
        h: Keras tensor, the hidden state (at `y`'s resolution).
        y: Keras tensor, the feature the block aggregates.
        conv_out: the shared 1x1 conv (see `rla_conv_out`).
        recurrent_conv: the shared 3x3 conv (see `rla_recurrent_conv`).
        name: str. Name of the block's BN; `{name}_add`, `{name}_tanh` for the rest.
        dtype: dtype policy.

    Returns:
        The new hidden state.
    """
    h = keras.layers.Add(name=f"{name}_add", dtype=dtype)([h, conv_out(y)])
    h = FastBatchNormalization(momentum=0.9, epsilon=1e-5, name=name, dtype=dtype)(h)
    h = keras.layers.Activation("tanh", name=f"{name}_tanh", dtype=dtype)(h)
    return recurrent_conv(h)


def rla_join(x, h, bn_name, activation="relu", name=None, dtype=None):
    """The end of an RLA network: `concat([x, act(BN(h))])`.

    Args:
        x: Keras tensor, the last block output.
        h: Keras tensor, the hidden state.
        bn_name: str. Name of the final BN on `h`.
        activation: "relu" (RLA-ResNet) or "relu6" (RLA-MobileNetV2). Defaults to "relu".
        name: str. Name of the concat. Defaults to `f"{bn_name}_concat"`.
        dtype: dtype policy.
    """
    if activation not in JOIN_ACTIVATIONS:
        raise ValueError(f"`activation` must be one of "
                         f"{', '.join(map(repr, JOIN_ACTIVATIONS))}. "
                         f"Received: activation={activation!r}")
    h = FastBatchNormalization(momentum=0.9, epsilon=1e-5, name=bn_name, dtype=dtype)(h)
    h = keras.layers.ReLU(6.0 if activation == "relu6" else None, name=f"{bn_name}_relu",
                          dtype=dtype)(h)
    return rla_concat(x, h, name or f"{bn_name}_concat", dtype)
