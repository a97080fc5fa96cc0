"""MobileNet (v1) and MobileNetV2 as okankop/CNN-layer-reuse adapted them to CIFAR.

Ports of `models/mobilenet.py` and `models/mobilenetv2.py` (spec §1.1): a
stride-1 3x3 stem, strides reduced for 32x32 inputs, no stem max-pool, global
average pooling, Dropout(0.2) and a linear classifier. Layer names are the
PyTorch module paths with "." written as "__" (`features__3__conv1`), which is
how `keras_lrn.models.load_reference_checkpoint` maps the published weights.
Depthwise and 1x1 convolutions use `keras_lrn.layers.FastDepthwiseConv2D` /
`GroupedPointwiseConv2D` (per-backend fast formulations, standard Keras
kernel layouts).
"""

from __future__ import annotations

import math

import keras

from keras_lrn.layers.fast_conv import (
    FastDepthwiseConv2D,
    GroupedPointwiseConv2D,
    torch_default_conv_init,
)
from keras_lrn.models import base
from keras_lrn.models.checkpoints import load_weights_argument
from keras_lrn.models.registry import register_model
from keras_lrn.recipes import LRUNET_CIFAR10, LRUNET_CIFAR100, LRUNET_FASHION_MNIST

PAPER_V1 = ("Howard et al., MobileNets, 2017; CIFAR adaptation of okankop/CNN-layer-reuse "
            "(Köpüklü et al., ICASSP 2019)")
PAPER_V2 = ("Sandler et al., MobileNetV2, CVPR 2018; CIFAR adaptation of "
            "okankop/CNN-layer-reuse (Köpüklü et al., ICASSP 2019)")

MOBILENET_CFG = ((64, 1, 2), (128, 2, 2), (256, 2, 1), (512, 6, 2), (1024, 2, 1))
MOBILENETV2_CFG = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 1), (6, 96, 3, 1),
                   (6, 160, 3, 2), (6, 320, 1, 1))


def check_width(width_mult):
    if isinstance(width_mult, bool) or not isinstance(width_mult, (int, float)) or not (
            width_mult > 0) or not math.isfinite(width_mult):
        raise ValueError(f"`width_mult` must be a positive number. Received: "
                         f"width_mult={width_mult!r}")
    return width_mult


def mobilenet_channels(w):
    """(stem, features.6 out, last) channels of MobileNet(width_mult=w)."""
    return (int(32 * w), int(512 * w), int(1024 * w))


def mobilenetv2_channels(w):
    """(stem, last block out, head conv) channels of MobileNetV2(width_mult=w)."""
    return (int(32 * w), int(320 * w), int(1280 * w) if w > 1.0 else 1280)


def torch_conv(x, filters, kernel_size, strides, name, init=None, dtype=None):
    """Dense conv with PyTorch padding k//2 (explicit when strided), no bias."""
    if strides == 1 and kernel_size > 1:
        padding = "same"
    elif kernel_size > 1:
        x = keras.layers.ZeroPadding2D(kernel_size // 2, name=f"{name}_pad", dtype=dtype)(x)
        padding = "valid"
    else:
        padding = "valid"
    return keras.layers.Conv2D(filters, kernel_size, strides=strides, padding=padding,
                               use_bias=False, kernel_initializer=init or base.torch_linear_kernel(),
                               name=name, dtype=dtype)(x)


def depthwise(x, strides, name, init=None, dtype=None, formulation="auto"):
    """3x3 depthwise conv, PyTorch padding 1, no bias (PyTorch default init if `init` is None)."""
    return FastDepthwiseConv2D(3, strides=strides, padding=1, use_bias=False,
                               kernel_initializer=init or torch_default_conv_init(9),
                               formulation=formulation, name=name, dtype=dtype)(x)


def pointwise(x, filters, name, groups=1, init=None, dtype=None, formulation="auto"):
    return GroupedPointwiseConv2D(filters, groups=groups, use_bias=False,
                                  kernel_initializer=init or base.torch_linear_kernel(),
                                  formulation=formulation, name=name, dtype=dtype)(x)


def linear_head(x, classes, name, dropout=None, kernel_init=None, bias_init=None, dtype=None):
    x = keras.layers.GlobalAveragePooling2D(name="avg_pool", dtype=dtype)(x)
    if dropout:
        x = keras.layers.Dropout(dropout, name="dropout", dtype=dtype)(x)
    fan_in = x.shape[-1]
    return keras.layers.Dense(classes, kernel_initializer=kernel_init or base.torch_linear_kernel(),
                              bias_initializer=bias_init or base.torch_linear_bias(fan_in),
                              name=name, dtype=dtype)(x)


def _common_checks(width_mult, classes, weights):
    check_width(width_mult)
    base.check_positive_int(classes, "classes")
    if weights is not None and not isinstance(weights, str):
        raise ValueError(f"`weights` must be None or a file path. Received: weights={weights!r}")


@keras.saving.register_keras_serializable(package="keras_lrn")
class MobileNet(base.FunctionalModel):
    """MobileNet (v1) for CIFAR / Fashion-MNIST, as in okankop/CNN-layer-reuse.

    Stem 3x3 s1 -> int(32w), BN, ReLU; 13 blocks (dw 3x3 + BN + ReLU, 1x1 +
    BN + ReLU) with (channels, repeats, stride) (64,1,2), (128,2,2), (256,2,1),
    (512,6,2), (1024,2,1) times w; global average pool, Dropout(0.2), Linear.
    PyTorch default initialisation throughout.

    Args:
        width_mult: float. Defaults to 1.0 (published: 0.25, 0.4).
        classes: int. Defaults to 10.
        input_shape: tuple. Defaults to (32, 32, 3).
        dropout: float. Defaults to 0.2.
        weights: None, a published `.t7` checkpoint or a Keras weights file.
        input_tensor, name, dtype: as usual.

    Example:
    ```python
    model = keras_lrn.models.MobileNet(width_mult=0.25)   # 215,642 trainable params
    ```
    """

    def __init__(self, width_mult=1.0, classes=10, input_shape=None, dropout=0.2, weights=None,
                 input_tensor=None, name=None, dtype=None, **kwargs):
        _common_checks(width_mult, classes, weights)
        inputs = base.make_inputs(input_shape, input_tensor, (32, 32, 3))
        cin = int(32 * width_mult)
        x = torch_conv(inputs, cin, 3, 1, "features__0__0", dtype=dtype)
        x = base.batch_norm("features__0__1", dtype)(x)
        x = keras.layers.ReLU(name="features__0__2", dtype=dtype)(x)
        i = 1
        for c, n, s in MOBILENET_CFG:
            out = int(c * width_mult)
            for j in range(n):
                p = f"features__{i}"
                x = depthwise(x, s if j == 0 else 1, f"{p}__conv1", dtype=dtype)
                x = base.batch_norm(f"{p}__bn1", dtype)(x)
                x = keras.layers.ReLU(name=f"{p}__relu1", dtype=dtype)(x)
                x = pointwise(x, out, f"{p}__conv2", dtype=dtype)
                x = base.batch_norm(f"{p}__bn2", dtype)(x)
                x = keras.layers.ReLU(name=f"{p}__relu2", dtype=dtype)(x)
                i += 1
        outputs = linear_head(x, classes, "classifier__1", dropout=dropout, dtype=dtype)
        super().__init__(inputs=inputs, outputs=outputs,
                         name=name or f"mobilenet_{width_mult:g}x", dtype=dtype, **kwargs)
        self._store_config(width_mult=width_mult, classes=classes,
                           input_shape=tuple(inputs.shape[1:]), dropout=dropout, weights=None,
                           input_tensor=None, dtype=dtype)
        load_weights_argument(self, weights, "MobileNet")


@keras.saving.register_keras_serializable(package="keras_lrn")
class MobileNetV2(base.FunctionalModel):
    """MobileNetV2 for CIFAR / Fashion-MNIST, as in okankop/CNN-layer-reuse.

    Stem 3x3 **s1** -> int(32w), BN, ReLU6; inverted residual blocks (t, c, n,
    s) = (1,16,1,1), (6,24,2,2), (6,32,3,2), (6,64,4,1), (6,96,3,1),
    (6,160,3,2), (6,320,1,1); 1x1 conv -> 1280 (1280w if w > 1), BN, ReLU6;
    GAP, Dropout(0.2), Linear. Init: convs N(0, sqrt(2/(k*k*out))), Linear
    N(0, 0.01), biases 0.

    Args:
        width_mult: float. Defaults to 1.0 (published: 0.25, 0.4).
        classes, input_shape, dropout, weights, input_tensor, name, dtype: as `MobileNet`.

    Example:
    ```python
    model = keras_lrn.models.MobileNetV2(width_mult=0.25)   # 249,122 trainable params
    ```
    """

    def __init__(self, width_mult=1.0, classes=10, input_shape=None, dropout=0.2, weights=None,
                 input_tensor=None, name=None, dtype=None, **kwargs):
        _common_checks(width_mult, classes, weights)
        inputs = base.make_inputs(input_shape, input_tensor, (32, 32, 3))
        he = base.he_normal_fan_out

        def dw_init(channels):
            return keras.initializers.RandomNormal(stddev=math.sqrt(2.0 / (9 * channels)))

        inp = int(32 * width_mult)
        x = torch_conv(inputs, inp, 3, 1, "features__0__0", init=he(), dtype=dtype)
        x = base.batch_norm("features__0__1", dtype)(x)
        x = keras.layers.ReLU(6.0, name="features__0__2", dtype=dtype)(x)
        i = 1
        for t, c, n, s in MOBILENETV2_CFG:
            oup = int(c * width_mult)
            for j in range(n):
                stride = s if j == 0 else 1
                p = f"features__{i}__conv"
                hidden = int(round(inp * t))
                y = x
                k = 0
                if t != 1:
                    y = pointwise(y, hidden, f"{p}__0", init=he(), dtype=dtype)
                    y = base.batch_norm(f"{p}__1", dtype)(y)
                    y = keras.layers.ReLU(6.0, name=f"{p}__2", dtype=dtype)(y)
                    k = 3
                y = depthwise(y, stride, f"{p}__{k}", init=dw_init(hidden), dtype=dtype)
                y = base.batch_norm(f"{p}__{k + 1}", dtype)(y)
                y = keras.layers.ReLU(6.0, name=f"{p}__{k + 2}", dtype=dtype)(y)
                y = pointwise(y, oup, f"{p}__{k + 3}", init=he(), dtype=dtype)
                y = base.batch_norm(f"{p}__{k + 4}", dtype)(y)
                if stride == 1 and inp == oup:
                    y = keras.layers.Add(name=f"features__{i}__add", dtype=dtype)([x, y])
                x = y
                inp = oup
                i += 1
        last = int(1280 * width_mult) if width_mult > 1.0 else 1280
        x = pointwise(x, last, f"features__{i}__0", init=he(), dtype=dtype)
        x = base.batch_norm(f"features__{i}__1", dtype)(x)
        x = keras.layers.ReLU(6.0, name=f"features__{i}__2", dtype=dtype)(x)
        outputs = linear_head(x, classes, "classifier__1", dropout=dropout,
                              kernel_init=keras.initializers.RandomNormal(stddev=0.01),
                              bias_init="zeros", dtype=dtype)
        super().__init__(inputs=inputs, outputs=outputs,
                         name=name or f"mobilenetv2_{width_mult:g}x", dtype=dtype, **kwargs)
        self._store_config(width_mult=width_mult, classes=classes,
                           input_shape=tuple(inputs.shape[1:]), dropout=dropout, weights=None,
                           input_tensor=None, dtype=dtype)
        load_weights_argument(self, weights, "MobileNetV2")


# ---------------------------------------------------------------- registry (spec §2.2)
DATASETS = {"cifar10": ((32, 32, 3), 10, LRUNET_CIFAR10),
            "cifar100": ((32, 32, 3), 100, LRUNET_CIFAR100),
            "fashion_mnist": ((28, 28, 1), 10, LRUNET_FASHION_MNIST)}
BN_STATS = {("mobilenet", 0.25): 5472, ("mobilenet", 0.4): 8722,
            ("mobilenetv2", 0.25): 10448, ("mobilenetv2", 0.4): 14980}
COUNTS = {
    ("mobilenet", 0.25): {"cifar10": 215642, "cifar100": 238772, "fashion_mnist": 215498},
    ("mobilenet", 0.4): {"cifar10": 530317, "cifar100": 567217, "fashion_mnist": 530101},
    ("mobilenetv2", 0.25): {"cifar10": 249122, "cifar100": 364412, "fashion_mnist": 248978},
    ("mobilenetv2", 0.4): {"cifar10": 487958, "cifar100": 603248, "fashion_mnist": 487742},
}
MACS = {
    ("mobilenet", 0.25): {"cifar10": 4020736, "cifar100": 4043776, "fashion_mnist": 3709360},
    ("mobilenet", 0.4): {"cifar10": 9742586, "cifar100": 9779396, "fashion_mnist": 9147857},
    ("mobilenetv2", 0.25): {"cifar10": 6332672, "cifar100": 6447872, "fashion_mnist": 5425316},
    ("mobilenetv2", 0.4): {"cifar10": 13233984, "cifar100": 13349184,
                           "fashion_mnist": 11326740},
}
#: Published checkpoints: CIFAR-10 and Fashion-MNIST at 0.25x, CIFAR-100 at 0.4x.
PUBLISHED = {
    ("mobilenet", 0.25, "cifar10"): "cifar10-mobilenet-025x-ckpt-08472.t7",
    ("mobilenet", 0.4, "cifar100"): "cifar100-mobilenet-0.4x-ckpt-06054.t7",
    ("mobilenet", 0.25, "fashion_mnist"): "fmnist-mobilenet-025x-ckpt-09063.t7",
    ("mobilenetv2", 0.25, "cifar10"): "cifar10-mobilenetv2-025x-ckpt-08957.t7",
    ("mobilenetv2", 0.4, "cifar100"): "cifar100-mobilenetv2-0.4x-ckpt-06995.t7",
    ("mobilenetv2", 0.25, "fashion_mnist"): "fmnist-mobilenetv2-025x-ckpt-09343.t7",
}
_CLASSES = {"mobilenet": MobileNet, "mobilenetv2": MobileNetV2}

for (_fam, _w), _rows in COUNTS.items():
    for _ds, _p in _rows.items():
        _shape, _nc, _recipe = DATASETS[_ds]
        _file = PUBLISHED.get((_fam, _w, _ds))
        register_model(
            f"{_fam}_{_w:g}x_{_ds}", _CLASSES[_fam],
            {"width_mult": _w, "classes": _nc, "input_shape": _shape},
            family=_fam, paper=PAPER_V1 if _fam == "mobilenet" else PAPER_V2, params=_p,
            non_trainable=BN_STATS[(_fam, _w)], macs=MACS[(_fam, _w)][_ds], recipe=_recipe,
            notes=("Published checkpoint: " + _file) if _file else "",
            slow=_file is None,
        )
