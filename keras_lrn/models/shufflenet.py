"""ShuffleNet (v1) and ShuffleNetV2 as okankop/CNN-layer-reuse adapted them to CIFAR.

Ports of `models/shufflenet.py` and `models/shufflenetv2.py` (spec §1.1):
stride-1 3x3 stem, no stem max-pool. Layer names are the PyTorch module
paths with "." written as "__" (`layer2__0__conv3`). PyTorch default
initialisation throughout.
"""

from __future__ import annotations

import keras

from keras_lrn.layers.reuse import ChannelShuffle
from keras_lrn.models import base
from keras_lrn.models.checkpoints import load_weights_argument
from keras_lrn.models.mobilenet import (
    DATASETS,
    check_width,
    depthwise,
    linear_head,
    pointwise,
    torch_conv,
)
from keras_lrn.models.registry import register_model

PAPER_V1 = ("Zhang et al., ShuffleNet, CVPR 2018; CIFAR adaptation of okankop/CNN-layer-reuse "
            "(Köpüklü et al., ICASSP 2019)")
PAPER_V2 = ("Ma et al., ShuffleNet V2, ECCV 2018; CIFAR adaptation of okankop/CNN-layer-reuse "
            "(Köpüklü et al., ICASSP 2019)")

#: Stage output channels per groups (ShuffleNet paper table; g=3 is the
#: reference's default and the only one with published weights).
SHUFFLENET_STAGE_CHANNELS = {1: (144, 288, 576), 2: (200, 400, 800), 3: (240, 480, 960),
                             4: (272, 544, 1088), 8: (384, 768, 1536)}
SHUFFLENET_BLOCKS = (4, 8, 4)
#: ShuffleNetV2 channels keyed by the exact width (any other width: ValueError,
#: the reference raises KeyError).
SHUFFLENETV2_CONFIGS = {0.25: (32, 64, 128, 1024), 0.5: (48, 96, 192, 1024),
                        0.75: (60, 120, 240, 1024), 1.0: (116, 232, 464, 1024),
                        1.5: (176, 352, 704, 1024), 2.0: (244, 488, 976, 2048)}
SHUFFLENETV2_BLOCKS = (3, 7, 3)


def shufflenet_planes(width_mult, groups):
    """[stem, stage1, stage2, stage3] channels of ShuffleNet(width_mult, groups)."""
    if groups not in SHUFFLENET_STAGE_CHANNELS:
        raise ValueError(f"`groups` must be one of {sorted(SHUFFLENET_STAGE_CHANNELS)}. "
                         f"Received: groups={groups!r}")
    planes = [int(c * width_mult) for c in (24,) + SHUFFLENET_STAGE_CHANNELS[groups]]
    prev = planes[0]
    for out in planes[1:]:
        branch = out - prev
        mid = (branch // (4 * groups)) * groups
        if prev % groups or branch % groups or out % groups or mid < groups:
            raise ValueError(f"ShuffleNet width_mult={width_mult} gives channels {planes} "
                             f"that are not divisible by groups={groups}.")
        prev = out
    return planes


@keras.saving.register_keras_serializable(package="keras_lrn")
class ShuffleNet(base.FunctionalModel):
    """ShuffleNet (v1) for CIFAR / Fashion-MNIST, as in okankop/CNN-layer-reuse.

    Stem 3x3 s1 -> int(24w), BN, ReLU. Three stages of (4, 8, 4) bottlenecks;
    the first of each has stride 2 and concatenates an AvgPool(3, s2, p1,
    count_include_pad) shortcut. Bottleneck: grouped 1x1 (also in the first
    unit) + BN + ReLU, channel shuffle, dw 3x3 + BN + **ReLU** (as the
    reference), grouped 1x1 + BN, then ReLU(concat) / ReLU(add). GAP, Linear.

    Args:
        width_mult: float. Defaults to 1.0 (published: 0.5, 0.75).
        groups: int. Defaults to 3.
        classes, input_shape, weights, input_tensor, name, dtype: as usual.

    Example:
    ```python
    model = keras_lrn.models.ShuffleNet(width_mult=0.5, groups=3)   # 228,565 params
    ```
    """

    def __init__(self, width_mult=1.0, groups=3, classes=10, input_shape=None, weights=None,
                 input_tensor=None, name=None, dtype=None, **kwargs):
        check_width(width_mult)
        base.check_positive_int(classes, "classes")
        planes = shufflenet_planes(width_mult, groups)
        if weights is not None and not isinstance(weights, str):
            raise ValueError(f"`weights` must be None or a file path. Received: weights={weights!r}")
        inputs = base.make_inputs(input_shape, input_tensor, (32, 32, 3))
        x = torch_conv(inputs, planes[0], 3, 1, "conv1", dtype=dtype)
        x = base.batch_norm("bn1", dtype)(x)
        x = keras.layers.ReLU(name="relu1", dtype=dtype)(x)
        cin = planes[0]
        for s, (out, n) in enumerate(zip(planes[1:], SHUFFLENET_BLOCKS), start=1):
            for b in range(n):
                p = f"layer{s}__{b}"
                stride = 2 if b == 0 else 1
                branch_out = out - cin if b == 0 else out
                mid = (branch_out // (4 * groups)) * groups
                y = pointwise(x, mid, f"{p}__conv1", groups=groups, dtype=dtype)
                y = base.batch_norm(f"{p}__bn1", dtype)(y)
                y = keras.layers.ReLU(name=f"{p}__relu1", dtype=dtype)(y)
                y = ChannelShuffle(groups, name=f"{p}__shuffle", dtype=dtype)(y)
                y = depthwise(y, stride, f"{p}__conv2", dtype=dtype)
                y = base.batch_norm(f"{p}__bn2", dtype)(y)
                y = keras.layers.ReLU(name=f"{p}__relu2", dtype=dtype)(y)
                y = pointwise(y, branch_out, f"{p}__conv3", groups=groups, dtype=dtype)
                y = base.batch_norm(f"{p}__bn3", dtype)(y)
                if stride == 2:
                    r = keras.layers.ZeroPadding2D(1, name=f"{p}__shortcut_pad", dtype=dtype)(x)
                    r = keras.layers.AveragePooling2D(3, 2, padding="valid",
                                                      name=f"{p}__shortcut", dtype=dtype)(r)
                    y = keras.layers.Concatenate(name=f"{p}__cat", dtype=dtype)([y, r])
                else:
                    y = keras.layers.Add(name=f"{p}__add", dtype=dtype)([y, x])
                x = keras.layers.ReLU(name=f"{p}__out", dtype=dtype)(y)
                cin = out
        outputs = linear_head(x, classes, "linear", dtype=dtype)
        super().__init__(inputs=inputs, outputs=outputs,
                         name=name or f"shufflenet_{width_mult:g}x_g{groups}", dtype=dtype,
                         **kwargs)
        self._store_config(width_mult=width_mult, groups=groups, classes=classes,
                           input_shape=tuple(inputs.shape[1:]), weights=None, input_tensor=None,
                           dtype=dtype)
        load_weights_argument(self, weights, "ShuffleNet")


@keras.saving.register_keras_serializable(package="keras_lrn")
class ShuffleNetV2(base.FunctionalModel):
    """ShuffleNetV2 for CIFAR / Fashion-MNIST, as in okankop/CNN-layer-reuse.

    Stem 3x3 s1 -> 24 (fixed), BN, ReLU; three stages of one DownBlock and
    (3, 7, 3) BasicBlocks with the channels of `SHUFFLENETV2_CONFIGS[width]`;
    1x1 conv -> 1024 (2048 at 2x), BN, ReLU, AvgPool 4x4 (fixed, not global),
    Linear. No dropout.

    Args:
        width_mult: one of 0.25, 0.5, 0.75, 1.0, 1.5, 2.0 (published: 0.25, 0.75).
        classes, input_shape, weights, input_tensor, name, dtype: as usual.

    Example:
    ```python
    model = keras_lrn.models.ShuffleNetV2(width_mult=0.25)   # 211,082 params
    ```
    """

    def __init__(self, width_mult=1.0, classes=10, input_shape=None, weights=None,
                 input_tensor=None, name=None, dtype=None, **kwargs):
        if width_mult not in SHUFFLENETV2_CONFIGS or isinstance(width_mult, bool):
            raise ValueError(f"`width_mult` must be one of {sorted(SHUFFLENETV2_CONFIGS)}. "
                             f"Received: width_mult={width_mult!r}")
        width_mult = float(width_mult)
        base.check_positive_int(classes, "classes")
        if weights is not None and not isinstance(weights, str):
            raise ValueError(f"`weights` must be None or a file path. Received: weights={weights!r}")
        cfg = SHUFFLENETV2_CONFIGS[width_mult]
        inputs = base.make_inputs(input_shape, input_tensor, (32, 32, 3))
        x = torch_conv(inputs, 24, 3, 1, "conv1", dtype=dtype)
        x = base.batch_norm("bn1", dtype)(x)
        x = keras.layers.ReLU(name="relu1", dtype=dtype)(x)

        def relu(t, n):
            return keras.layers.ReLU(name=n, dtype=dtype)(t)

        def bn(t, n):
            return base.batch_norm(n, dtype)(t)

        for s, (out, n) in enumerate(zip(cfg[:3], SHUFFLENETV2_BLOCKS), start=1):
            mid = out // 2
            p = f"layer{s}__0"
            left = bn(depthwise(x, 2, f"{p}__conv1", dtype=dtype), f"{p}__bn1")
            left = relu(bn(pointwise(left, mid, f"{p}__conv2", dtype=dtype), f"{p}__bn2"),
                        f"{p}__relu2")
            right = relu(bn(pointwise(x, mid, f"{p}__conv3", dtype=dtype), f"{p}__bn3"),
                         f"{p}__relu3")
            right = bn(depthwise(right, 2, f"{p}__conv4", dtype=dtype), f"{p}__bn4")
            right = relu(bn(pointwise(right, mid, f"{p}__conv5", dtype=dtype), f"{p}__bn5"),
                         f"{p}__relu5")
            x = keras.layers.Concatenate(name=f"{p}__cat", dtype=dtype)([left, right])
            x = ChannelShuffle(2, name=f"{p}__shuffle", dtype=dtype)(x)
            for b in range(1, n + 1):
                p = f"layer{s}__{b}"
                c = out // 2
                x1 = _Split(0, c, name=f"{p}__split1", dtype=dtype)(x)
                x2 = _Split(c, out, name=f"{p}__split2", dtype=dtype)(x)
                y = relu(bn(pointwise(x2, c, f"{p}__conv1", dtype=dtype), f"{p}__bn1"),
                         f"{p}__relu1")
                y = bn(depthwise(y, 1, f"{p}__conv2", dtype=dtype), f"{p}__bn2")
                y = relu(bn(pointwise(y, c, f"{p}__conv3", dtype=dtype), f"{p}__bn3"),
                         f"{p}__relu3")
                x = keras.layers.Concatenate(name=f"{p}__cat", dtype=dtype)([x1, y])
                x = ChannelShuffle(2, name=f"{p}__shuffle", dtype=dtype)(x)
        x = relu(bn(pointwise(x, cfg[3], "conv2", dtype=dtype), "bn2"), "relu2")
        x = keras.layers.AveragePooling2D(4, name="avg_pool4", dtype=dtype)(x)
        x = keras.layers.Flatten(name="flatten", dtype=dtype)(x)
        fan_in = x.shape[-1]
        outputs = keras.layers.Dense(classes, kernel_initializer=base.torch_linear_kernel(),
                                     bias_initializer=base.torch_linear_bias(fan_in),
                                     name="linear", dtype=dtype)(x)
        super().__init__(inputs=inputs, outputs=outputs,
                         name=name or f"shufflenetv2_{width_mult:g}x", dtype=dtype, **kwargs)
        self._store_config(width_mult=width_mult, classes=classes,
                           input_shape=tuple(inputs.shape[1:]), weights=None, input_tensor=None,
                           dtype=dtype)
        load_weights_argument(self, weights, "ShuffleNetV2")


@keras.saving.register_keras_serializable(package="keras_lrn")
class _Split(keras.layers.Layer):
    """Channels [start, stop) of the input (ShuffleNetV2's channel split)."""

    def __init__(self, start, stop, **kwargs):
        super().__init__(**kwargs)
        self.start = start
        self.stop = stop

    def call(self, inputs):
        return inputs[..., self.start:self.stop]

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.stop - self.start,)

    def get_config(self):
        config = super().get_config()
        config.update(start=self.start, stop=self.stop)
        return config


# ---------------------------------------------------------------- registry (spec §2.2)
BN_STATS = {("shufflenet", 0.5): 11868, ("shufflenet", 0.75): 17796,
            ("shufflenetv2", 0.25): 6016, ("shufflenetv2", 0.75): 9404}
COUNTS = {
    ("shufflenet", 0.5): {"cifar10": 228565, "cifar100": 271855, "fashion_mnist": 228349},
    ("shufflenet", 0.75): {"cifar10": 494743, "cifar100": 559633, "fashion_mnist": 494419},
    ("shufflenetv2", 0.25): {"cifar10": 211082, "cifar100": 303332, "fashion_mnist": 210650},
    ("shufflenetv2", 0.75): {"cifar10": 476158, "cifar100": 568408, "fashion_mnist": 475726},
}
MACS = {
    ("shufflenet", 0.5): {"cifar10": 10040448, "cifar100": 10083648, "fashion_mnist": 7983174},
    ("shufflenet", 0.75): {"cifar10": 21863232, "cifar100": 21928032,
                           "fashion_mnist": 17520471},
    ("shufflenetv2", 0.25): {"cifar10": 6233088, "cifar100": 6325248, "fashion_mnist": 5061120},
    ("shufflenetv2", 0.75): {"cifar10": 15242368, "cifar100": 15334528,
                             "fashion_mnist": 12707500},
}
PUBLISHED = {
    ("shufflenet", 0.5, "cifar10"): "cifar10-shufflenet-05x-ckpt-090320.t7",
    ("shufflenet", 0.75, "cifar100"): "cifar100-shufflenet-075x-ckpt-06997.t7",
    ("shufflenet", 0.5, "fashion_mnist"): "fmnist-shufflenet-05x-ckpt-09411.t7",
    ("shufflenetv2", 0.25, "cifar10"): "cifar10-shufflenetv2-025x-ckpt-089310.t7",
    ("shufflenetv2", 0.75, "cifar100"): "cifar100-shufflenetv2-075x-ckpt-06915.t7",
    ("shufflenetv2", 0.25, "fashion_mnist"): "fmnist-shufflenetv2-025x-ckpt-09342.t7",
}

for (_fam, _w), _rows in COUNTS.items():
    for _ds, _p in _rows.items():
        _shape, _nc, _recipe = DATASETS[_ds]
        _file = PUBLISHED.get((_fam, _w, _ds))
        _cfg = {"width_mult": _w, "classes": _nc, "input_shape": _shape}
        if _fam == "shufflenet":
            _cfg["groups"] = 3
        register_model(
            f"shufflenet_{_w:g}x_g3_{_ds}" if _fam == "shufflenet" else f"{_fam}_{_w:g}x_{_ds}",
            ShuffleNet if _fam == "shufflenet" else ShuffleNetV2, _cfg,
            family=_fam, paper=PAPER_V1 if _fam == "shufflenet" else PAPER_V2, params=_p,
            non_trainable=BN_STATS[(_fam, _w)], macs=MACS[(_fam, _w)][_ds], recipe=_recipe,
            notes=("Published checkpoint: " + _file) if _file else "",
            slow=_file is None,
        )
