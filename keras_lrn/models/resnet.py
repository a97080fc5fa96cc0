"""CIFAR ResNets (He et al. 2016): the baseline every paper here compares against.

Depth 6n+2: a 3x3 stem of 16 channels, three stages of n BasicBlocks with
16/32/64 channels at strides 1/2/2, global average pooling and a dense layer.
BasicBlock = conv3x3-BN-ReLU-conv3x3-BN, plus the shortcut, then ReLU. The
shortcut is the parameter-free option A (stride-2 subsampling + symmetric zero
channels), exactly as the Net_RL2 reference code builds its plain ResNets.
Convolutions pad like PyTorch (`padding=1`, symmetric, also at stride 2).
"""

from __future__ import annotations

import keras

from keras_lrn.layers import ZeroPadShortcut
from keras_lrn.models import base
from keras_lrn.models.registry import register_model
from keras_lrn.recipes import CIFAR_RESNET

PAPER = "He et al., Deep Residual Learning for Image Recognition, CVPR 2016"


def conv3x3(x, filters, strides, name, dtype=None):
    """3x3 conv, no bias, PyTorch padding=1 (explicit symmetric pad when strided)."""
    if strides == 1:
        padding = "same"
    else:
        x = keras.layers.ZeroPadding2D(1, name=f"{name}_pad", dtype=dtype)(x)
        padding = "valid"
    return keras.layers.Conv2D(
        filters, 3, strides=strides, padding=padding, use_bias=False,
        kernel_initializer=base.he_normal_fan_out(), name=name, dtype=dtype,
    )(x)


def basic_block(x, filters, strides, name, dtype=None):
    """Post-activation BasicBlock with an option-A shortcut; returns the block output."""
    in_channels = x.shape[-1]
    y = conv3x3(x, filters, strides, f"{name}_conv1", dtype)
    y = base.batch_norm(f"{name}_bn1", dtype)(y)
    y = keras.layers.ReLU(name=f"{name}_relu1", dtype=dtype)(y)
    y = conv3x3(y, filters, 1, f"{name}_conv2", dtype)
    y = base.batch_norm(f"{name}_bn2", dtype)(y)
    shortcut = x
    if strides != 1 or in_channels != filters:
        shortcut = ZeroPadShortcut(filters, strides=strides, pool="subsample",
                                   name=f"{name}_shortcut", dtype=dtype)(x)
    y = keras.layers.Add(name=f"{name}_add", dtype=dtype)([y, shortcut])
    return keras.layers.ReLU(name=f"{name}_out", dtype=dtype)(y)


def cifar_depth_to_blocks(depth, offset=2, arg="depth"):
    """n for depth = 6n + offset; `ValueError` naming `arg` otherwise."""
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 6 + offset or (
        depth - offset
    ) % 6:
        raise ValueError(
            f"`{arg}` must be 6n+{offset} with n >= 1 (e.g. {6 + offset}, {18 + offset}, "
            f"{30 + offset}, {54 + offset}, {108 + offset}). Received: {arg}={depth!r}"
        )
    return (depth - offset) // 6


@keras.saving.register_keras_serializable(package="keras_lrn")
class CifarResNet(base.FunctionalModel):
    """CIFAR ResNet of depth 6n+2 (ResNet-20/32/44/56/110/1202).

    Args:
        depth: int. 6n+2. Defaults to 56.
        include_top: bool. Add the pooling + dense classifier. Defaults to True.
        weights: str or None. Path of a weights file to load. Defaults to None.
        input_tensor: optional Keras tensor to use as the image input.
        input_shape: tuple. Image shape. Defaults to (32, 32, 3).
        pooling: None, "avg" or "max": pooling when `include_top=False`.
        classes: int. Number of classes. Defaults to 10.
        classifier_activation: None (logits, the default) or an activation name.
        width: tuple of 3 ints. Channels per stage. Defaults to (16, 32, 64).
        name: str. Model name.

    Example:
    ```python
    model = keras_lrn.models.CifarResNet(depth=32)   # 464,154 trainable parameters
    ```

    Reference:
    - He et al., "Deep Residual Learning for Image Recognition", CVPR 2016.
    """

    def __init__(self, depth=56, include_top=True, weights=None, input_tensor=None,
                 input_shape=None, pooling=None, classes=10, classifier_activation=None,
                 width=(16, 32, 64), name=None, dtype=None, **kwargs):
        n = cifar_depth_to_blocks(depth)
        base.check_head_args(include_top, pooling, classes, weights)
        width = tuple(width)
        if len(width) != 3:
            raise ValueError(f"`width` must have 3 entries. Received: width={width!r}")
        for w in width:
            base.check_positive_int(w, "width")
        inputs = base.make_inputs(input_shape, input_tensor, (32, 32, 3))
        x = conv3x3(inputs, width[0], 1, "stem_conv", dtype)
        x = base.batch_norm("stem_bn", dtype)(x)
        x = keras.layers.ReLU(name="stem_relu", dtype=dtype)(x)
        for stage, filters in enumerate(width):
            for block in range(n):
                strides = 2 if stage > 0 and block == 0 else 1
                x = basic_block(x, filters, strides, f"stage{stage + 1}_block{block + 1}", dtype)
        outputs = base.apply_head(x, include_top=include_top, pooling=pooling, classes=classes,
                                  classifier_activation=classifier_activation, dtype=dtype)
        with base.deep_graph(3 * n):
            super().__init__(inputs=inputs, outputs=outputs, name=name or f"resnet{depth}",
                             dtype=dtype, **kwargs)
        self._store_config(depth=depth, include_top=include_top, weights=None,
                           input_tensor=None, input_shape=tuple(inputs.shape[1:]),
                           pooling=pooling, classes=classes,
                           classifier_activation=classifier_activation, width=width,
                           dtype=dtype)
        self.load_weights_file(weights)


# Trainable parameters of the plain ResNets, from the Net_RL2 code (spec §2.4:
# ResNet32 464,154; ResNet56 853,018) and by the same count for the others:
# per stage s with c channels: 2 convs of 9*c*c (the first of stages 2/3 has
# 9*c/2*c) + 2 BN of 2c; stem 3*9*16 + 32; head 64*10 + 10.
def _resnet_params(n, classes=10):
    total = 3 * 9 * 16 + 2 * 16  # stem conv + BN
    prev = 16
    for c in (16, 32, 64):
        for b in range(n):
            cin = prev if b == 0 else c
            total += 9 * cin * c + 9 * c * c + 4 * c
        prev = c
    return total + 64 * classes + classes


# MACs measured on the reference with FlopCounterMode (spec §2.4).
_SPEC_MACS = {32: 68_862_592, 56: 125_485_696}

for _depth in (20, 32, 44, 56, 110, 1202):
    _n = (_depth - 2) // 6
    register_model(
        f"resnet{_depth}",
        CifarResNet,
        {"depth": _depth},
        family="resnet",
        paper=PAPER,
        params=_resnet_params(_n),
        non_trainable=2 * (16 + 2 * _n * (16 + 32 + 64)),
        macs=_SPEC_MACS.get(_depth),
        recipe=CIFAR_RESNET,
        slow=_depth >= 1202,
    )
