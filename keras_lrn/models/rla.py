"""RLA-Net: ResNets and MobileNetV2s with recurrent layer aggregation.

Ports of fangyanwen1106/RLANet `models/resnet_rla.py` (`RLA_ResNet`),
`models/mobilenetv2_rla.py` / `mobilenetv2_dsrla.py` and the MobileNetV2
baseline `models/mobilenetv2.py` (spec §2.1-2.4); the plain ResNet baselines are
`keras_lrn.models.imagenet_resnet`. The hidden-state pieces (shared `conv_out` and
recurrent conv, per-block BN, tanh, pooling, final join) are in
`keras_lrn.layers.rla`, which also documents the reference's in-place aliasing
(`aggregate="output"`).

`RLACifarResNet` is ours (not in the paper): a CIFAR-size RLA-ResNet for the
library's parameter-efficiency comparison with the CIFAR ResNets.

Layer names are the reference's PyTorch module paths with "." written as "__"
(`stages__1__0__conv2`, `stage_bns__1__0`, `conv_outs__1`, `recurrent_convs__1`).
"""

from __future__ import annotations

import keras

from keras_lrn.layers.eca import ECA
from keras_lrn.layers.fast_conv import FastDepthwiseConv2D
from keras_lrn.layers.rla import (
    RECURRENT_KINDS,
    RLAInitialState,
    check_aggregate,
    check_rla_channels,
    depthwise_he_fan_out,
    rla_concat,
    rla_conv_out,
    rla_join,
    rla_pool,
    rla_recurrent_conv,
    rla_update,
)
from keras_lrn.layers.shortcut import ZeroPadShortcut
from keras_lrn.models import base
from keras_lrn.models.imagenet_resnet import (
    PAPER_ECA,
    PAPER_RESNET,
    STAGE_BLOCKS,
    STAGE_PLANES,
    ImageNetResNet,
    bottleneck_branch,
    check_depth,
    check_eca,
    residual_out,
    shortcut,
    stem,
)
from keras_lrn.models.registry import register_model
from keras_lrn.models.resnet import cifar_depth_to_blocks, conv3x3
from keras_lrn.recipes import CIFAR_RESNET, RLA_MOBILENETV2_IMAGENET, RLA_RESNET_IMAGENET

PAPER = ("Zhao, Fang and Li, Recurrence along Depth: Deep Convolutional Neural Networks with "
         "Recurrent Layer Aggregation, NeurIPS 2021")
PAPER_MOBILENETV2 = "Sandler et al., MobileNetV2, CVPR 2018"

#: (t, c, n, s) rows of the ImageNet MobileNetV2.
MOBILENETV2_SETTING = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
                       (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))


def _check_bool(value, arg):
    if not isinstance(value, bool):
        raise ValueError(f"`{arg}` must be True or False. Received: {arg}={value!r}")
    return value


# ------------------------------------------------------------------------- RLA-ResNet
def rla_bottleneck(x, h, planes, strides, name, eca_k=None, aggregate="output",
                   zero_init_last_bn=True, dtype=None):
    """One `RLA_Bottleneck`: returns `(out, y, h)`; `h` pooled if the block down-samples.

    `y` is the block output `ReLU(F + shortcut)` for `aggregate="output"` (the
    reference code, through its in-place aliasing) or the branch output `F` (after
    bn3 [and ECA]) for `aggregate="branch"` (the paper's text).
    """
    xh = rla_concat(x, h, f"{name}__concat", dtype)
    y = bottleneck_branch(xh, planes, strides, name, eca_k=eca_k,
                          zero_init_last_bn=zero_init_last_bn, dtype=dtype)
    identity = shortcut(x, planes, strides, name, dtype)
    if strides != 1:
        h = rla_pool(h, f"{name}__averagePooling", dtype)
    out = residual_out(y, identity, name, dtype)
    return out, (out if aggregate == "output" else y), h


@keras.saving.register_keras_serializable(package="keras_lrn")
class RLAResNet(base.FunctionalModel):
    """RLA-ResNet-50/101/152 (optionally RLA-ECANet) for ImageNet.

    The torchvision ResNet (stride on the 3x3) with a k-channel hidden state:
    every bottleneck reads `concat([x, h])` (conv1 is 1x1 from C + k), and after
    each block `h = recurrent_conv_s(tanh(BN_block(h + conv_out_s(y))))` with one
    `conv_out_s` (1x1, 4*planes -> k) and one `recurrent_conv_s` (3x3, k -> k) per
    stage, shared by its blocks; `h` is average-pooled 2x2 on the first block of
    stages 2-4. At the end `concat([x, ReLU(BN(h))])` -> global average pooling ->
    Linear(2048 + k -> classes). bn3.gamma = 0 at init (so `h` stays 0 at init
    with `aggregate="branch"`), kaiming_normal_(fan_out) convs, PyTorch default
    Linear init, BN momentum 0.9 / epsilon 1e-5, PyTorch padding.

    Args:
        depth: int. 50, 101 or 152. Defaults to 50.
        eca: bool or 4 odd ints. ECA after bn3, kernel sizes per stage (`True`:
            (5, 5, 5, 7), as `rla_resnet*_eca`). Defaults to False.
        rla_channels: int. k, the hidden state's channels. Defaults to 32.
        aggregate: "output" (the block output `ReLU(F + shortcut)`: what the
            released code computes, through in-place aliasing) or "branch" (the
            residual branch `F`: the paper's text). Defaults to "output".
        zero_init_last_bn: bool. Defaults to True.
        include_top: bool. Defaults to True.
        weights: str or None. Path of a Keras weights file to load.
        input_tensor: optional Keras tensor to use as the image input.
        input_shape: tuple. Defaults to (224, 224, 3); sizes must be multiples of 32
            (the hidden state is pooled 2x2 with the feature maps).
        pooling: None, "avg" or "max" when `include_top=False` (applied to the
            concat of x and the final h).
        classes: int. Defaults to 1000.
        classifier_activation: None (logits, the default) or an activation name.
        name, dtype: as usual.

    Example:
    ```python
    model = keras_lrn.models.RLAResNet(50)   # 25,870,696 trainable parameters
    ```

    Reference:
    - Zhao, Fang and Li, "Recurrence along Depth: Deep Convolutional Neural Networks
      with Recurrent Layer Aggregation", NeurIPS 2021.
    """

    def __init__(self, depth=50, eca=False, rla_channels=32, aggregate="output",
                 zero_init_last_bn=True, include_top=True, weights=None, input_tensor=None,
                 input_shape=None, pooling=None, classes=1000, classifier_activation=None,
                 name=None, dtype=None, **kwargs):
        check_depth(depth)
        k_sizes = check_eca(eca)
        check_rla_channels(rla_channels)
        check_aggregate(aggregate)
        _check_bool(zero_init_last_bn, "zero_init_last_bn")
        base.check_head_args(include_top, pooling, classes, weights)
        inputs = base.make_inputs(input_shape, input_tensor, (224, 224, 3))
        x = stem(inputs, dtype)
        h = RLAInitialState(rla_channels, name="h0", dtype=dtype)(x)
        for s, (planes, blocks) in enumerate(zip(STAGE_PLANES, STAGE_BLOCKS[depth])):
            conv_out = rla_conv_out(rla_channels, f"conv_outs__{s}", dtype=dtype)
            recurrent = rla_recurrent_conv(rla_channels, f"recurrent_convs__{s}", dtype=dtype)
            for b in range(blocks):
                strides = 2 if s > 0 and b == 0 else 1
                x, y, h = rla_bottleneck(
                    x, h, planes, strides, f"stages__{s}__{b}",
                    eca_k=None if k_sizes is None else k_sizes[s], aggregate=aggregate,
                    zero_init_last_bn=zero_init_last_bn, dtype=dtype)
                h = rla_update(h, y, conv_out, recurrent, f"stage_bns__{s}__{b}", dtype)
        x = rla_join(x, h, "bn2", "relu", dtype=dtype)
        outputs = base.apply_head(x, include_top=include_top, pooling=pooling, classes=classes,
                                  classifier_activation=classifier_activation, dtype=dtype)
        with base.deep_graph(2 * sum(STAGE_BLOCKS[depth])):
            super().__init__(inputs=inputs, outputs=outputs,
                             name=name or f"rla_resnet{depth}{'_eca' if k_sizes else ''}",
                             dtype=dtype, **kwargs)
        self._store_config(depth=depth, eca=list(k_sizes) if k_sizes else False,
                           rla_channels=rla_channels, aggregate=aggregate,
                           zero_init_last_bn=zero_init_last_bn, include_top=include_top,
                           weights=None, input_tensor=None,
                           input_shape=tuple(inputs.shape[1:]), pooling=pooling, classes=classes,
                           classifier_activation=classifier_activation, dtype=dtype)
        self.load_weights_file(weights)


# ------------------------------------------------------------------- MobileNetV2s
def make_divisible(v, divisor=8, min_value=None):
    """torchvision's `_make_divisible`: round to a multiple of `divisor`, never < 90 %."""
    min_value = divisor if min_value is None else min_value
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


def _check_width(width_mult):
    if isinstance(width_mult, bool) or not isinstance(width_mult, (int, float)) or not (
            width_mult > 0):
        raise ValueError(f"`width_mult` must be a positive number. Received: "
                         f"width_mult={width_mult!r}")
    return width_mult


def _check_dropout(dropout):
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not (
            0 <= dropout < 1):
        raise ValueError(f"`dropout` must be in [0, 1). Received: dropout={dropout!r}")
    return dropout


def _pw(x, filters, name, dtype):
    return keras.layers.Conv2D(filters, 1, use_bias=False,
                               kernel_initializer=base.he_normal_fan_out(), name=name,
                               dtype=dtype)(x)


def _conv_bn_relu6(x, filters, name, kernel_size=1, strides=1, depthwise=False, dtype=None):
    """torchvision `ConvBNReLU`: `{name}__0` conv, `{name}__1` BN, `{name}__2` ReLU6."""
    if depthwise:
        x = FastDepthwiseConv2D(3, strides=strides, padding=1, use_bias=False,
                                kernel_initializer=depthwise_he_fan_out(x.shape[-1]),
                                name=f"{name}__0", dtype=dtype)(x)
    elif kernel_size == 1:
        x = _pw(x, filters, f"{name}__0", dtype)
    else:
        x = keras.layers.ZeroPadding2D(kernel_size // 2, name=f"{name}__pad", dtype=dtype)(x)
        x = keras.layers.Conv2D(filters, kernel_size, strides=strides, padding="valid",
                                use_bias=False, kernel_initializer=base.he_normal_fan_out(),
                                name=f"{name}__0", dtype=dtype)(x)
    x = base.batch_norm(f"{name}__1", dtype)(x)
    return keras.layers.ReLU(6.0, name=f"{name}__2", dtype=dtype)(x)


def eca_kernel_for(c):
    """The MobileNetV2s' ECA kernel: 1 for rows with c < 96, else 3 (table c, not width)."""
    return 1 if c < 96 else 3


def _mobilenet_head(x, *, include_top, pooling, classes, classifier_activation, dropout,
                    dtype):
    if not include_top:
        return base.apply_head(x, include_top=False, pooling=pooling, classes=classes,
                               classifier_activation=None, dtype=dtype)
    x = keras.layers.GlobalAveragePooling2D(name="avg_pool", dtype=dtype)(x)
    if dropout:
        x = keras.layers.Dropout(dropout, name="classifier__0", dtype=dtype)(x)
    x = keras.layers.Dense(classes, kernel_initializer=keras.initializers.RandomNormal(
        stddev=0.01), bias_initializer="zeros", name="classifier__1", dtype=dtype)(x)
    if classifier_activation is not None:
        x = keras.layers.Activation(classifier_activation, name="activation",
                                    dtype="float32")(x)
    return x


@keras.saving.register_keras_serializable(package="keras_lrn")
class RLAMobileNetV2(base.FunctionalModel):
    """RLA-MobileNetV2 (dense recurrent conv) and dsRLA-MobileNetV2 (depthwise).

    torchvision's MobileNetV2 with a k-channel hidden state `h` (starting as zeros
    at the 112x112 stem output). In every inverted residual block `h` is
    concatenated to the *expanded* tensor, so the 3x3 depthwise conv runs over
    hidden + k channels (h gets its own depthwise filters) and the linear 1x1
    projection reads hidden + k channels; then BN [-> ECA] gives `y` (the branch:
    the residual add is out of place here), `h` is pooled 2x2 on stride-2 blocks,
    and `h = recurrent(tanh(BN_block(h + conv_out_row(y))))`. `conv_out` is one per
    row of the setting table; the recurrent conv is **one for the whole network**
    (the reference builds its list as `[conv] * 5`, the same module 5 times).
    `concat([x, ReLU6(BN(h))])` enters the last 1x1 conv (320 + k -> 1280).
    Init: kaiming_normal_(fan_out) convs, N(0, 0.01) Linear, no zero-gamma.

    Args:
        recurrent: "depthwise" (dsRLA, groups = k: the README's "RLA-MobileNetV2")
            or "dense" (`rla_mobilenetv2`). Defaults to "depthwise".
        eca: bool. ECA after the projection BN (k = 1 for c < 96, else 3).
            Defaults to False.
        rla_channels: int. k. Defaults to 32.
        width_mult: float. Width multiplier (channels rounded to multiples of 8).
            Defaults to 1.0.
        include_top: bool. 1280-channel head conv -> GAP -> Dropout -> Linear.
            Defaults to True.
        weights: str or None. Path of a Keras weights file to load.
        input_tensor: optional Keras tensor to use as the image input.
        input_shape: tuple. Defaults to (224, 224, 3).
        pooling: None, "avg" or "max" when `include_top=False`.
        classes: int. Defaults to 1000.
        classifier_activation: None (logits, the default) or an activation name.
        dropout: float. Defaults to 0.2.
        name, dtype: as usual.

    Example:
    ```python
    model = keras_lrn.models.RLAMobileNetV2("depthwise")   # 3,624,168 trainable parameters
    ```

    Reference:
    - Zhao, Fang and Li, "Recurrence along Depth", NeurIPS 2021.
    - Sandler et al., "MobileNetV2: Inverted Residuals and Linear Bottlenecks", CVPR 2018.
    """

    def __init__(self, recurrent="depthwise", eca=False, rla_channels=32, width_mult=1.0,
                 include_top=True, weights=None, input_tensor=None, input_shape=None,
                 pooling=None, classes=1000, classifier_activation=None, dropout=0.2,
                 name=None, dtype=None, **kwargs):
        if recurrent not in RECURRENT_KINDS:
            raise ValueError(f"`recurrent` must be one of "
                             f"{', '.join(map(repr, RECURRENT_KINDS))}. "
                             f"Received: recurrent={recurrent!r}")
        _check_bool(eca, "eca")
        check_rla_channels(rla_channels)
        _check_width(width_mult)
        _check_dropout(dropout)
        base.check_head_args(include_top, pooling, classes, weights)
        k = rla_channels
        inputs = base.make_inputs(input_shape, input_tensor, (224, 224, 3))
        inp = make_divisible(32 * width_mult)
        x = _conv_bn_relu6(inputs, inp, "conv1", kernel_size=3, strides=2, dtype=dtype)
        h = RLAInitialState(k, name="h0", dtype=dtype)(x)
        rec_name = "recurrent_dsconvs__0" if recurrent == "depthwise" else "recurrent_convs__0"
        rec = rla_recurrent_conv(k, rec_name, recurrent=recurrent, dtype=dtype)
        for j, (t, c, n, s) in enumerate(MOBILENETV2_SETTING):
            oup = make_divisible(c * width_mult)
            conv_out = rla_conv_out(k, f"conv_outs__{j}", dtype=dtype)
            for i in range(n):
                stride = s if i == 0 else 1
                p = f"stages__{j}__{i}"
                e = x
                if t != 1:
                    e = _conv_bn_relu6(e, int(round(inp * t)), f"{p}__conv1x1", dtype=dtype)
                e = rla_concat(e, h, f"{p}__concat", dtype)
                y = _conv_bn_relu6(e, None, f"{p}__conv__0", strides=stride, depthwise=True,
                                   dtype=dtype)
                y = _pw(y, oup, f"{p}__conv__1", dtype)
                y = base.batch_norm(f"{p}__conv__2", dtype)(y)
                if eca:
                    y = ECA(eca_kernel_for(c), name=f"{p}__conv__3", dtype=dtype)(y)
                out = y
                if stride == 1 and inp == oup:
                    out = keras.layers.Add(name=f"{p}__add", dtype=dtype)([x, y])
                if stride != 1:
                    h = rla_pool(h, f"{p}__averagePooling", dtype)
                h = rla_update(h, y, conv_out, rec, f"stage_bns__{j}__{i}", dtype)
                x, inp = out, oup
        x = rla_join(x, h, "bn2", "relu6", dtype=dtype)
        last = make_divisible(1280 * max(1.0, width_mult))
        x = _conv_bn_relu6(x, last, "conv2", dtype=dtype)
        outputs = _mobilenet_head(x, include_top=include_top, pooling=pooling, classes=classes,
                                  classifier_activation=classifier_activation, dropout=dropout,
                                  dtype=dtype)
        prefix = "dsrla" if recurrent == "depthwise" else "rla"
        super().__init__(inputs=inputs, outputs=outputs,
                         name=name or f"{prefix}_mobilenetv2{'_eca' if eca else ''}",
                         dtype=dtype, **kwargs)
        self._store_config(recurrent=recurrent, eca=eca, rla_channels=rla_channels,
                           width_mult=width_mult, include_top=include_top, weights=None,
                           input_tensor=None, input_shape=tuple(inputs.shape[1:]),
                           pooling=pooling, classes=classes,
                           classifier_activation=classifier_activation, dropout=dropout,
                           dtype=dtype)
        self.load_weights_file(weights)


@keras.saving.register_keras_serializable(package="keras_lrn")
class ImageNetMobileNetV2(base.FunctionalModel):
    """MobileNetV2 for ImageNet (torchvision layout), the baseline of RLA-MobileNetV2.

    fangyanwen1106/RLANet `models/mobilenetv2.py` (`mobilenet_v2`, optionally
    `mobilenetv2_eca`): 3x3/2 stem (32), inverted residual blocks (t, c, n, s) =
    (1,16,1,1), (6,24,2,2), (6,32,3,2), (6,64,4,2), (6,96,3,1), (6,160,3,2),
    (6,320,1,1), 1x1 conv to 1280, GAP, Dropout(0.2), Linear. Init:
    kaiming_normal_(fan_out) convs, N(0, 0.01) Linear. Layer names are torchvision's
    (`features__3__conv__1__0`).

    Args:
        eca: bool. ECA after the projection BN (k = 1 for c < 96, else 3).
            Defaults to False.
        width_mult: float. Width multiplier (channels rounded to multiples of 8).
            Defaults to 1.0.
        include_top: bool. 1280-channel head conv -> GAP -> Dropout -> Linear.
            Defaults to True.
        weights: str or None. Path of a Keras weights file to load.
        input_tensor: optional Keras tensor to use as the image input.
        input_shape: tuple. Defaults to (224, 224, 3).
        pooling: None, "avg" or "max" when `include_top=False`.
        classes: int. Defaults to 1000.
        classifier_activation: None (logits, the default) or an activation name.
        dropout: float. Defaults to 0.2.
        name, dtype: as usual.

    Example:
    ```python
    model = keras_lrn.models.ImageNetMobileNetV2()   # 3,504,872 trainable parameters
    ```

    Reference:
    - Sandler et al., "MobileNetV2: Inverted Residuals and Linear Bottlenecks", CVPR 2018.
    """

    def __init__(self, eca=False, width_mult=1.0, include_top=True, weights=None,
                 input_tensor=None, input_shape=None, pooling=None, classes=1000,
                 classifier_activation=None, dropout=0.2, name=None, dtype=None, **kwargs):
        _check_bool(eca, "eca")
        _check_width(width_mult)
        _check_dropout(dropout)
        base.check_head_args(include_top, pooling, classes, weights)
        inputs = base.make_inputs(input_shape, input_tensor, (224, 224, 3))
        inp = make_divisible(32 * width_mult)
        x = _conv_bn_relu6(inputs, inp, "features__0", kernel_size=3, strides=2, dtype=dtype)
        f = 1
        for t, c, n, s in MOBILENETV2_SETTING:
            oup = make_divisible(c * width_mult)
            for i in range(n):
                stride = s if i == 0 else 1
                p = f"features__{f}__conv"
                y, m = x, 0
                if t != 1:
                    y = _conv_bn_relu6(y, int(round(inp * t)), f"{p}__0", dtype=dtype)
                    m = 1
                y = _conv_bn_relu6(y, None, f"{p}__{m}", strides=stride, depthwise=True,
                                   dtype=dtype)
                y = _pw(y, oup, f"{p}__{m + 1}", dtype)
                y = base.batch_norm(f"{p}__{m + 2}", dtype)(y)
                if eca:
                    y = ECA(eca_kernel_for(c), name=f"{p}__{m + 3}", dtype=dtype)(y)
                if stride == 1 and inp == oup:
                    y = keras.layers.Add(name=f"features__{f}__add", dtype=dtype)([x, y])
                x, inp = y, oup
                f += 1
        last = make_divisible(1280 * max(1.0, width_mult))
        x = _conv_bn_relu6(x, last, f"features__{f}", dtype=dtype)
        outputs = _mobilenet_head(x, include_top=include_top, pooling=pooling, classes=classes,
                                  classifier_activation=classifier_activation, dropout=dropout,
                                  dtype=dtype)
        super().__init__(inputs=inputs, outputs=outputs,
                         name=name or f"mobilenet_v2{'_eca' if eca else ''}", dtype=dtype,
                         **kwargs)
        self._store_config(eca=eca, width_mult=width_mult, include_top=include_top,
                           weights=None, input_tensor=None, input_shape=tuple(inputs.shape[1:]),
                           pooling=pooling, classes=classes,
                           classifier_activation=classifier_activation, dropout=dropout,
                           dtype=dtype)
        self.load_weights_file(weights)


def mobilenetv2_bn_channels(rla_channels=0, eca=False):
    """BN channels of the (RLA-)MobileNetV2s at width 1: stem 32; per block the expand BN
    (hidden, if t != 1), the depthwise BN (hidden + k), the projection BN (out) and, with
    RLA, the block's BN on h (k); 1280 for the head conv; + k for the final BN on h."""
    del eca  # ECA has no BN
    k = rla_channels
    total, inp = 32, 32
    for t, c, n, _ in MOBILENETV2_SETTING:
        for _ in range(n):
            hidden = inp * t
            total += (hidden if t != 1 else 0) + hidden + k + c + k
            inp = c
    return total + 1280 + k


# ------------------------------------------------------------- CIFAR RLA-ResNet (ours)
@keras.saving.register_keras_serializable(package="keras_lrn")
class RLACifarResNet(base.FunctionalModel):
    """A CIFAR-size RLA-ResNet (ours, not in the paper): RLA on the 6n+2 CIFAR ResNets.

    `keras_lrn.models.CifarResNet` (3x3 stem 16, BasicBlocks of 16/32/64 channels,
    option-A shortcuts, ReLU after the add) with RLA-ResNet's hidden state: each
    block's conv1 reads `concat([x, h])` (3x3 from C + k), `h` is pooled 2x2 on the
    first block of stages 2 and 3, and after each block
    `h = recurrent_conv_s(tanh(BN_block(h + conv_out_s(y))))` with one 1x1 `conv_out_s`
    (C -> k) and one 3x3 `recurrent_conv_s` (k -> k) per stage; the head is
    `concat([x, ReLU(BN(h))])` -> GAP -> Linear(64 + k -> classes). bn2.gamma = 0 at
    init (the zero-gamma of RLA-ResNet's last BN), kaiming_normal_(fan_out) convs.

    Trainable parameters: the CIFAR ResNet's plus, with k = `rla_channels` and n
    blocks per stage, 9*k*112*n (the k extra input channels of every conv1),
    2*k*(3n + 1) (BNs on h), 112*k + 27*k*k (conv_outs, recurrent convs) and
    k*classes (the wider Linear); see `rla_cifar_param_count`. RLA-ResNet-32 (k=16):
    554,170 vs ResNet-32's 464,154; RLA-ResNet-56: 1,007,930 vs 853,018.

    Args:
        depth: int. 6n+2. Defaults to 32.
        rla_channels: int. k. Defaults to 16.
        aggregate: "output" or "branch", as `RLAResNet`. Defaults to "output".
        include_top, weights, input_tensor, pooling, classifier_activation, name,
        dtype: as `CifarResNet`.
        input_shape: tuple. Defaults to (32, 32, 3); sizes must be multiples of 4.
        classes: int. Defaults to 10.

    Example:
    ```python
    model = keras_lrn.models.RLACifarResNet(32)   # 554,170 trainable parameters
    ```

    Reference:
    - Zhao, Fang and Li, "Recurrence along Depth", NeurIPS 2021 (the RLA module).
    - He et al., "Deep Residual Learning for Image Recognition", CVPR 2016.
    """

    def __init__(self, depth=32, rla_channels=16, aggregate="output", include_top=True,
                 weights=None, input_tensor=None, input_shape=None, pooling=None, classes=10,
                 classifier_activation=None, name=None, dtype=None, **kwargs):
        n = cifar_depth_to_blocks(depth)
        check_rla_channels(rla_channels)
        check_aggregate(aggregate)
        base.check_head_args(include_top, pooling, classes, weights)
        inputs = base.make_inputs(input_shape, input_tensor, (32, 32, 3))
        k = rla_channels
        x = conv3x3(inputs, 16, 1, "conv1", dtype)
        x = base.batch_norm("bn1", dtype)(x)
        x = keras.layers.ReLU(name="relu", dtype=dtype)(x)
        h = RLAInitialState(k, name="h0", dtype=dtype)(x)
        for s, planes in enumerate((16, 32, 64)):
            conv_out = rla_conv_out(k, f"conv_outs__{s}", dtype=dtype)
            recurrent = rla_recurrent_conv(k, f"recurrent_convs__{s}", dtype=dtype)
            for b in range(n):
                strides = 2 if s > 0 and b == 0 else 1
                p = f"stages__{s}__{b}"
                xh = rla_concat(x, h, f"{p}__concat", dtype)
                y = conv3x3(xh, planes, strides, f"{p}__conv1", dtype)
                y = base.batch_norm(f"{p}__bn1", dtype)(y)
                y = keras.layers.ReLU(name=f"{p}__relu1", dtype=dtype)(y)
                y = conv3x3(y, planes, 1, f"{p}__conv2", dtype)
                y = base.batch_norm(f"{p}__bn2", dtype, gamma_initializer="zeros")(y)
                identity = x
                if strides != 1 or x.shape[-1] != planes:
                    identity = ZeroPadShortcut(planes, strides=strides, pool="subsample",
                                               name=f"{p}__shortcut", dtype=dtype)(x)
                if strides != 1:
                    h = rla_pool(h, f"{p}__averagePooling", dtype)
                out = residual_out(y, identity, p, dtype)
                h = rla_update(h, out if aggregate == "output" else y, conv_out, recurrent,
                               f"stage_bns__{s}__{b}", dtype)
                x = out
        x = rla_join(x, h, "bn2", "relu", dtype=dtype)
        outputs = base.apply_head(x, include_top=include_top, pooling=pooling, classes=classes,
                                  classifier_activation=classifier_activation, dtype=dtype)
        with base.deep_graph(6 * n):
            super().__init__(inputs=inputs, outputs=outputs, name=name or f"rla_resnet{depth}",
                             dtype=dtype, **kwargs)
        self._store_config(depth=depth, rla_channels=rla_channels, aggregate=aggregate,
                           include_top=include_top, weights=None, input_tensor=None,
                           input_shape=tuple(inputs.shape[1:]), pooling=pooling, classes=classes,
                           classifier_activation=classifier_activation, dtype=dtype)
        self.load_weights_file(weights)


def rla_cifar_param_count(n, k, classes=10):
    """Trainable parameters of `RLACifarResNet(6n+2, k)`, counted by hand.

    stem 3*9*16 + 2*16; per block with input C_in and planes P: conv1 9*(C_in + k)*P,
    conv2 9*P*P, two BNs 4P, the block's BN on h 2k; per stage conv_out P*k and
    recurrent conv 9*k*k; final BN on h 2k; Linear (64 + k)*classes + classes.
    """
    total = 3 * 9 * 16 + 2 * 16
    prev = 16
    for planes in (16, 32, 64):
        for b in range(n):
            cin = prev if b == 0 else planes
            total += 9 * (cin + k) * planes + 9 * planes * planes + 4 * planes + 2 * k
        total += planes * k + 9 * k * k
        prev = planes
    return total + 2 * k + (64 + k) * classes + classes


# ------------------------------------------------------------------ registry (spec §2.4)
# Trainable parameters: `sum(p.numel())` of the reference models (deduplicated; spec
# §2.4). BN statistics: 2 x the BN channels (`bottleneck_bn_channels`,
# `mobilenetv2_bn_channels`). MACs: conv + linear (ECA's Conv1d included, k*C), the
# FlopCounterMode convention, measured with `keras_lrn.profile`; they equal the spec's
# exact conv+linear counts where it gives them (RLA-ResNet-50 4,454,648,064,
# RLA-ResNet-101 8,334,055,680, dsRLA-MobileNetV2 352,505,728) and round to its FCM
# GMACs otherwise (tests/models/test_rla.py).
_RLA_NOTES = ("Aggregates the block output ReLU(F + shortcut), as the released code does "
              "through in-place aliasing (aggregate='output'; the paper's text: 'branch'). "
              "README figures are in binary units: profile(model, convention='thop_readme')"
              ".binary_units().")
_IMAGENET_ENTRIES = (
    # name, builder, config, params, non-trainable, MACs, paper, recipe, notes
    ("resnet50_imagenet", ImageNetResNet, {"depth": 50}, 25_557_032, 53_120, 4_089_184_256,
     PAPER_RESNET, RLA_RESNET_IMAGENET,
     "torchvision layout (stride on the 3x3), bn3.gamma = 0 at init; RLA-Net's `resnet50`."),
    ("resnet50_eca_imagenet", ImageNetResNet, {"depth": 50, "eca": True}, 25_557_118, 53_120,
     4_089_272_064, PAPER_ECA, RLA_RESNET_IMAGENET,
     "RLA-Net's `resnet50_eca`: ECA k = (5, 5, 5, 7) per stage after bn3."),
    ("resnet101_imagenet", ImageNetResNet, {"depth": 101}, 44_549_160, 105_344, 7_801_405_440,
     PAPER_RESNET, RLA_RESNET_IMAGENET, "RLA-Net's `resnet101`."),
    ("resnet152_imagenet", ImageNetResNet, {"depth": 152}, 60_192_808, 151_424,
     11_513_626_624, PAPER_RESNET, RLA_RESNET_IMAGENET, "RLA-Net's `resnet152`."),
    ("rla_resnet50", RLAResNet, {"depth": 50}, 25_870_696, 54_208, 4_454_648_064, PAPER,
     RLA_RESNET_IMAGENET, _RLA_NOTES + " README: 24.67M / 4.17G; top-1/top-5 err 22.83/6.58."),
    ("rla_resnet50_eca", RLAResNet, {"depth": 50, "eca": True}, 25_870_782, 54_208,
     4_454_735_872, PAPER, RLA_RESNET_IMAGENET,
     _RLA_NOTES + " README (RLA-ECANet50): 24.67M / 4.18G; 22.15/6.11."),
    ("rla_resnet101", RLAResNet, {"depth": 101}, 45_003_176, 107_520, 8_334_055_680, PAPER,
     RLA_RESNET_IMAGENET, _RLA_NOTES + " README: 42.92M / 7.79G; 21.48/5.80."),
    ("rla_resnet101_eca", RLAResNet, {"depth": 101, "eca": True}, 45_003_347, 107_520,
     8_334_230_528, PAPER, RLA_RESNET_IMAGENET,
     _RLA_NOTES + " README (RLA-ECANet101): 42.92M / 7.80G; 21.00/5.51."),
    ("rla_resnet152", RLAResNet, {"depth": 152}, 60_770_792, 154_688, 12_267_251_968, PAPER,
     RLA_RESNET_IMAGENET, _RLA_NOTES),
    ("rla_resnet152_eca", RLAResNet, {"depth": 152, "eca": True}, 60_771_048, 154_688,
     12_267_503_616, PAPER, RLA_RESNET_IMAGENET, _RLA_NOTES),
    ("mobilenetv2_imagenet", ImageNetMobileNetV2, {}, 3_504_872, 34_112, 300_774_272,
     PAPER_MOBILENETV2, RLA_MOBILENETV2_IMAGENET,
     "torchvision MobileNetV2 (RLA-Net's `mobilenet_v2`); not Net_RL2's "
     "`mobilenetv2_netrl2_imagenet`."),
    ("rla_mobilenetv2", RLAMobileNetV2, {"recurrent": "dense"}, 3_633_096, 36_352,
     555_492_736, PAPER, RLA_MOBILENETV2_IMAGENET,
     "One dense 3x3 recurrent conv for the whole network (the reference repeats one module; "
     "3,669,960 if counted without deduplication)."),
    ("rla_mobilenetv2_eca", RLAMobileNetV2, {"recurrent": "dense", "eca": True}, 3_633_127,
     36_352, 555_496_416, PAPER, RLA_MOBILENETV2_IMAGENET, "ECA k = 1 for c < 96, else 3."),
    ("dsrla_mobilenetv2", RLAMobileNetV2, {"recurrent": "depthwise"}, 3_624_168, 36_352,
     352_505_728, PAPER, RLA_MOBILENETV2_IMAGENET,
     "The README's 'RLA-MobileNetV2' (checkpoints dsrla_mobilenetv2_k32): one depthwise 3x3 "
     "recurrent conv for the whole network. README: 3.46M / 351.8M; 27.62/9.18."),
    ("dsrla_mobilenetv2_eca", RLAMobileNetV2, {"recurrent": "depthwise", "eca": True},
     3_624_199, 36_352, 352_509_408, PAPER, RLA_MOBILENETV2_IMAGENET,
     "README (RLA-ECA-MobileNetV2): 3.46M / 352.4M; 27.07/8.89."),
)
#: Entries built by the default (not `-m slow`) registry tests.
_FAST = ("dsrla_mobilenetv2",)

for (_name, _builder, _config, _params, _nt, _macs, _paper, _recipe,
     _notes) in _IMAGENET_ENTRIES:
    register_model(_name, _builder, _config, family="rla", paper=_paper, params=_params,
                   non_trainable=_nt, macs=_macs, recipe=_recipe, notes=_notes,
                   slow=_name not in _FAST)

# Ours (no reference count): the analytic `rla_cifar_param_count`; BN statistics
# 2 x (stem 16 + per block 2P + k + final k).
for _depth in (32, 56):
    _n = (_depth - 2) // 6
    register_model(
        f"rla_resnet{_depth}_cifar10", RLACifarResNet, {"depth": _depth, "rla_channels": 16},
        family="rla", paper=PAPER + " (RLA module); CIFAR-size RLA-ResNet is keras_lrn's",
        params=rla_cifar_param_count(_n, 16),
        non_trainable=2 * (16 + _n * 2 * (16 + 32 + 64) + 3 * _n * 16 + 16),
        recipe=CIFAR_RESNET,
        notes=f"Not in the paper: RLA (k=16) on the CIFAR ResNet-{_depth} (option-A "
              f"shortcuts), for the parameter-efficiency comparison with `resnet{_depth}`; "
              "trained with the CIFAR ResNets' recipe.",
    )
