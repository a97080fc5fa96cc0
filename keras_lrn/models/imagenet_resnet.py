"""ImageNet ResNet-50/101/152 (torchvision layout), the baselines of RLA-Net.

The RLA-Net code's `models/resnet.py` (fangyanwen1106/RLANet), which is
torchvision's ResNet ("v1.5": the stride of a down-sampling bottleneck is on its
3x3 conv) with an optional ECA module after `bn3`:

* stem: 7x7/2 conv (64, padding 3), BN, ReLU, 3x3/2 max-pool (padding 1);
* 4 stages of bottlenecks with 64/128/256/512 planes (x4 out), strides 1/2/2/2:
  1x1 -> BN-ReLU -> 3x3 (stride) -> BN-ReLU -> 1x1 -> BN [-> ECA], plus the
  shortcut (identity, or 1x1 conv (stride) + BN on the first block of a stage),
  then ReLU;
* global average pooling, Linear(2048 -> classes).

Init: kaiming_normal_(fan_out) convs, BN gamma 1 / beta 0 except **bn3.gamma = 0**
(`zero_init_last_bn=True` in the reference), PyTorch default Linear init.
Padding is PyTorch's (explicit `ZeroPadding2D` + VALID for the strided convs and
the max-pool, so shapes and values match PyTorch at every input size; zero
padding of the max-pool equals PyTorch's -inf padding because its input is
post-ReLU). BN momentum 0.9 / epsilon 1e-5. Layer names are the PyTorch module
paths with "." written as "__" (`layer2__0__downsample__0`); the classifier is
`predictions` (`fc` in PyTorch).
"""

from __future__ import annotations

import keras

from keras_lrn.layers.eca import ECA
from keras_lrn.models import base

PAPER_RESNET = "He et al., Deep Residual Learning for Image Recognition, CVPR 2016"
PAPER_ECA = ("Wang et al., ECA-Net: Efficient Channel Attention for Deep Convolutional Neural "
             "Networks, CVPR 2020")

STAGE_BLOCKS = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3), 152: (3, 8, 36, 3)}
STAGE_PLANES = (64, 128, 256, 512)
#: ECA kernel sizes per stage of `resnet*_eca` / `rla_resnet*_eca`.
ECA_K_SIZES = (5, 5, 5, 7)


def check_depth(depth):
    if isinstance(depth, bool) or depth not in STAGE_BLOCKS:
        raise ValueError(f"`depth` must be one of 50, 101, 152. Received: depth={depth!r}")
    return depth


def check_eca(eca):
    """`eca`: False/None (no ECA), True (kernel sizes (5, 5, 5, 7)) or 4 odd ints."""
    if eca is None or eca is False:
        return None
    if eca is True:
        return ECA_K_SIZES
    try:
        sizes = tuple(eca)
    except TypeError:
        sizes = ()
    if len(sizes) != 4 or any(isinstance(k, bool) or not isinstance(k, int) or k < 1 or k % 2 == 0
                              for k in sizes):
        raise ValueError("`eca` must be a bool or 4 positive odd kernel sizes (one per stage). "
                         f"Received: eca={eca!r}")
    return sizes


def conv(x, filters, kernel_size, strides, name, dtype=None):
    """Conv2D, no bias, PyTorch padding `kernel_size // 2`, kaiming_normal_(fan_out)."""
    pad = kernel_size // 2
    if strides == 1 and kernel_size > 1:
        padding = "same"
    elif pad:
        x = keras.layers.ZeroPadding2D(pad, name=f"{name}_pad", dtype=dtype)(x)
        padding = "valid"
    else:
        padding = "valid"
    return keras.layers.Conv2D(filters, kernel_size, strides=strides, padding=padding,
                               use_bias=False, kernel_initializer=base.he_normal_fan_out(),
                               name=name, dtype=dtype)(x)


def stem(x, dtype=None):
    """7x7/2 conv 64 (pad 3), BN, ReLU, 3x3/2 max-pool (pad 1)."""
    x = conv(x, 64, 7, 2, "conv1", dtype)
    x = base.batch_norm("bn1", dtype)(x)
    x = keras.layers.ReLU(name="relu", dtype=dtype)(x)
    x = keras.layers.ZeroPadding2D(1, name="maxpool_pad", dtype=dtype)(x)
    return keras.layers.MaxPooling2D(3, strides=2, padding="valid", name="maxpool",
                                     dtype=dtype)(x)


def bottleneck_branch(x, planes, strides, name, eca_k=None, zero_init_last_bn=True,
                      dtype=None):
    """conv1 1x1 -> BN-ReLU -> conv2 3x3 (stride) -> BN-ReLU -> conv3 1x1 -> bn3 [-> ECA]."""
    y = conv(x, planes, 1, 1, f"{name}__conv1", dtype)
    y = base.batch_norm(f"{name}__bn1", dtype)(y)
    y = keras.layers.ReLU(name=f"{name}__relu1", dtype=dtype)(y)
    y = conv(y, planes, 3, strides, f"{name}__conv2", dtype)
    y = base.batch_norm(f"{name}__bn2", dtype)(y)
    y = keras.layers.ReLU(name=f"{name}__relu2", dtype=dtype)(y)
    y = conv(y, 4 * planes, 1, 1, f"{name}__conv3", dtype)
    y = base.batch_norm(f"{name}__bn3", dtype,
                        gamma_initializer="zeros" if zero_init_last_bn else "ones")(y)
    if eca_k is not None:
        y = ECA(eca_k, name=f"{name}__eca", dtype=dtype)(y)
    return y


def shortcut(x, planes, strides, name, dtype=None):
    """Identity, or 1x1 conv (stride) + BN when the shape changes (`downsample`)."""
    if strides == 1 and x.shape[-1] == 4 * planes:
        return x
    s = conv(x, 4 * planes, 1, strides, f"{name}__downsample__0", dtype)
    return base.batch_norm(f"{name}__downsample__1", dtype)(s)


def residual_out(y, identity, name, dtype=None):
    y = keras.layers.Add(name=f"{name}__add", dtype=dtype)([y, identity])
    return keras.layers.ReLU(name=f"{name}__relu", dtype=dtype)(y)


@keras.saving.register_keras_serializable(package="keras_lrn")
class ImageNetResNet(base.FunctionalModel):
    """ResNet-50/101/152 for ImageNet (torchvision layout), optionally with ECA.

    The plain baselines of RLA-Net (`resnet50`, `resnet50_eca`, `resnet101`,
    `resnet152` of fangyanwen1106/RLANet `models/resnet.py`); see the module
    docstring for the exact layout and initialisation.

    Args:
        depth: int. 50, 101 or 152. Defaults to 50.
        eca: bool or 4 odd ints. ECA after `bn3` with these kernel sizes per stage
            (`True`: (5, 5, 5, 7), as `resnet*_eca`). Defaults to False.
        zero_init_last_bn: bool. bn3.gamma = 0 at init (the reference does). Defaults
            to True.
        include_top: bool. Global average pooling + Linear. Defaults to True.
        weights: str or None. Path of a Keras weights file to load.
        input_tensor: optional Keras tensor to use as the image input.
        input_shape: tuple. Defaults to (224, 224, 3).
        pooling: None, "avg" or "max" when `include_top=False`.
        classes: int. Defaults to 1000.
        classifier_activation: None (logits, the default) or an activation name.
        name, dtype: as usual.

    Example:
    ```python
    model = keras_lrn.models.ImageNetResNet(50)   # 25,557,032 trainable parameters
    ```

    Reference:
    - He et al., "Deep Residual Learning for Image Recognition", CVPR 2016.
    - Wang et al., "ECA-Net", CVPR 2020 (the `eca` option).
    """

    def __init__(self, depth=50, eca=False, zero_init_last_bn=True, include_top=True,
                 weights=None, input_tensor=None, input_shape=None, pooling=None, classes=1000,
                 classifier_activation=None, name=None, dtype=None, **kwargs):
        check_depth(depth)
        k_sizes = check_eca(eca)
        base.check_head_args(include_top, pooling, classes, weights)
        inputs = base.make_inputs(input_shape, input_tensor, (224, 224, 3))
        x = stem(inputs, dtype)
        for s, (planes, blocks) in enumerate(zip(STAGE_PLANES, STAGE_BLOCKS[depth])):
            for b in range(blocks):
                strides = 2 if s > 0 and b == 0 else 1
                p = f"layer{s + 1}__{b}"
                y = bottleneck_branch(x, planes, strides, p,
                                      eca_k=None if k_sizes is None else k_sizes[s],
                                      zero_init_last_bn=zero_init_last_bn, dtype=dtype)
                x = residual_out(y, shortcut(x, planes, strides, p, dtype), p, dtype)
        outputs = base.apply_head(x, include_top=include_top, pooling=pooling, classes=classes,
                                  classifier_activation=classifier_activation, dtype=dtype)
        with base.deep_graph(sum(STAGE_BLOCKS[depth])):
            super().__init__(inputs=inputs, outputs=outputs,
                             name=name or f"resnet{depth}{'_eca' if k_sizes else ''}",
                             dtype=dtype, **kwargs)
        self._store_config(depth=depth, eca=list(k_sizes) if k_sizes else False,
                           zero_init_last_bn=zero_init_last_bn, include_top=include_top,
                           weights=None, input_tensor=None,
                           input_shape=tuple(inputs.shape[1:]), pooling=pooling, classes=classes,
                           classifier_activation=classifier_activation, dtype=dtype)
        self.load_weights_file(weights)


def ResNet50(**kwargs):
    """`ImageNetResNet(depth=50, **kwargs)` (25,557,032 trainable parameters)."""
    return ImageNetResNet(depth=50, **kwargs)


def ResNet101(**kwargs):
    """`ImageNetResNet(depth=101, **kwargs)` (44,549,160 trainable parameters)."""
    return ImageNetResNet(depth=101, **kwargs)


def ResNet152(**kwargs):
    """`ImageNetResNet(depth=152, **kwargs)` (60,192,808 trainable parameters)."""
    return ImageNetResNet(depth=152, **kwargs)


def bottleneck_bn_channels(stage_blocks, rla_channels=0):
    """BN channels of a (RLA-)ResNet: stem 64; per block planes, planes, 4 planes (+ k for
    RLA's per-block BN on h); 4 planes per stage for the downsample BN; + k for the final
    BN on h. Trainable BN = non-trainable BN statistics = 2 x this."""
    total = 64
    for planes, blocks in zip(STAGE_PLANES, stage_blocks):
        total += blocks * (6 * planes + rla_channels) + 4 * planes
    return total + (rla_channels if rla_channels else 0)
