"""Shared wide ResNets (Savarese & Maire, ICLR 2019) and the plain WRN they share.

`SWRN(depth, width, bank_size)` is the reference's `swrn` (lolemacs/soft-sharing
`models/swrn.py`, spec §1.2): a pre-activation wide ResNet of depth 6N+4
without dropout, channels [16, 16w, 32w, 64w], stage strides 1/2/2.

* Stem: 3x3 conv 3->16, no bias.
* Block(in, out, stride): `o = ReLU(BN1(x))`; the residual is `o` if in != out
  (else the raw `x`); `conv2(ReLU(BN2(conv1(o))))` (conv1 carries the stride) +
  shortcut (1x1 conv with the stride, no bias, if in != out, else identity).
* The first block of each stage is an ordinary block (plain `Conv2D`). Blocks
  2..N of stage i use `SharedConv2D` for *both* 3x3 convs, all drawing on the
  stage's `TemplateBank` `stage{i}_bank` (T templates of (3, 3, C_i, C_i)):
  2(N-1) convolutions per bank.
* Head: BN + ReLU, average pooling (global; the reference's AvgPool(8) at
  32x32), Dense(classes).
* Init: templates `kaiming_normal_` per template (fan_in, gain sqrt 2); the
  coefficients of a stage are one orthogonal (2(N-1), T) matrix whose rows go to
  stage_i block2 conv1, block2 conv2, block3 conv1, ... (`OrthogonalRows`);
  convs `kaiming_normal_` (fan_in); dense `kaiming_normal_` (fan_in), bias 0;
  BN gamma 1, beta 0, momentum 0.9 (PyTorch 0.1), epsilon 1e-5.
* Stride-2 3x3 convs pad 1 on every side (PyTorch `padding=1`), explicitly.

`WRN(depth, width)` is the same network with plain `Conv2D` everywhere (the
reference's code path with nn.Conv2d): WRN-28-10 has 36,479,194 parameters,
SWRN-28-10-6 the same plus 18 x 6 = 108 coefficients.

Layer names: `stem_conv`, `stage{s}_block{b}_{bn1,relu1,conv1,bn2,relu2,conv2,
shortcut,add}` (1-based), the banks `stage{s}_bank`, `head_bn`, `head_relu`,
`avg_pool`, `predictions`.

With depth 10 (N = 1) no block is shared and the stage has no bank (the
reference would create an unused bank).
"""

from __future__ import annotations

import keras
import numpy as np

from keras_lrn.layers import OrthogonalRows, SharedConv2D, TemplateBank
from keras_lrn.models import base
from keras_lrn.models.registry import register_model
from keras_lrn.models.resnet import cifar_depth_to_blocks
from keras_lrn.recipes import SWRN_CIFAR10, SWRN_CIFAR100

PAPER = (
    "Savarese and Maire, Learning Implicitly Recurrent CNNs Through Parameter "
    "Sharing, ICLR 2019 (arXiv:1902.09701)"
)
WRN_PAPER = "Zagoruyko and Komodakis, Wide Residual Networks, BMVC 2016"


def he_normal_fan_in():
    """`kaiming_normal_()` at its defaults: N(0, 2 / fan_in), untruncated."""
    return keras.initializers.VarianceScaling(2.0, mode="fan_in", distribution="untruncated_normal")


def _conv(x, filters, kernel, strides, name, dtype):
    """Plain conv without bias; PyTorch padding (k // 2 on every side)."""
    if kernel > 1 and strides > 1:
        x = keras.layers.ZeroPadding2D(kernel // 2, name=f"{name}_pad", dtype=dtype)(x)
        padding = "valid"
    else:
        padding = "same"
    return keras.layers.Conv2D(filters, kernel, strides=strides, padding=padding, use_bias=False,
                               kernel_initializer=he_normal_fan_in(), name=name, dtype=dtype)(x)


def _shared_conv(x, templates, filters, name, init, dtype):
    return SharedConv2D(filters, 3, padding="same", coefficients_initializer=init, name=name,
                        dtype=dtype)([x, templates])


def _bn_relu(x, name, index, dtype):
    x = base.batch_norm(f"{name}_bn{index}", dtype)(x)
    return keras.layers.ReLU(name=f"{name}_relu{index}", dtype=dtype)(x)


def _block(x, filters, strides, name, dtype, templates=None, inits=None):
    """Pre-activation block; `templates` given: both 3x3 convs are `SharedConv2D`."""
    in_channels = x.shape[-1]
    o = _bn_relu(x, name, 1, dtype)
    residual = o if in_channels != filters else x
    if templates is None:
        y = _conv(o, filters, 3, strides, f"{name}_conv1", dtype)
    else:
        y = _shared_conv(o, templates, filters, f"{name}_conv1", inits[0], dtype)
    y = _bn_relu(y, name, 2, dtype)
    if templates is None:
        y = _conv(y, filters, 3, 1, f"{name}_conv2", dtype)
    else:
        y = _shared_conv(y, templates, filters, f"{name}_conv2", inits[1], dtype)
    shortcut = residual
    if in_channels != filters:
        shortcut = _conv(residual, filters, 1, strides, f"{name}_shortcut", dtype)
    return keras.layers.Add(name=f"{name}_add", dtype=dtype)([y, shortcut])


def _check_width(width):
    return base.check_positive_int(width, "width")


def _network(inputs, depth, width, bank_size, include_top, pooling, classes,
             classifier_activation, dtype):
    n = cifar_depth_to_blocks(depth, offset=4)
    _check_width(width)
    if bank_size is not None:
        base.check_positive_int(bank_size, "bank_size")
    x = _conv(inputs, 16, 3, 1, "stem_conv", dtype)
    for s, filters in enumerate((16 * width, 32 * width, 64 * width)):
        stage = s + 1
        x = _block(x, filters, 1 if s == 0 else 2, f"stage{stage}_block1", dtype)
        templates, inits = None, None
        if bank_size is not None and n > 1:
            templates = TemplateBank(bank_size, filters, filters, 3, name=f"stage{stage}_bank",
                                     dtype=dtype)(inputs)
            # One orthogonal (2(N-1), T) matrix per stage; rows in module order.
            seed = int(np.random.randint(0, 2**31 - 1))
            rows = 2 * (n - 1)
            inits = [OrthogonalRows(rows, r, seed) for r in range(rows)]
        for b in range(2, n + 1):
            pair = None if inits is None else inits[2 * (b - 2): 2 * (b - 1)]
            x = _block(x, filters, 1, f"stage{stage}_block{b}", dtype, templates, pair)
    x = base.batch_norm("head_bn", dtype)(x)
    x = keras.layers.ReLU(name="head_relu", dtype=dtype)(x)
    if include_top:
        x = keras.layers.GlobalAveragePooling2D(name="avg_pool", dtype=dtype)(x)
        x = keras.layers.Dense(classes, kernel_initializer=he_normal_fan_in(),
                               bias_initializer="zeros", name="predictions", dtype=dtype)(x)
        if classifier_activation is not None:
            x = keras.layers.Activation(classifier_activation, name="activation",
                                        dtype="float32")(x)
    elif pooling == "avg":
        x = keras.layers.GlobalAveragePooling2D(name="avg_pool", dtype=dtype)(x)
    elif pooling == "max":
        x = keras.layers.GlobalMaxPooling2D(name="max_pool", dtype=dtype)(x)
    return x, n


_DOC_ARGS = """
        include_top: bool. Add global pooling + the dense classifier. Defaults to True.
        weights: str or None. Path of a weights file to load. Defaults to None.
        input_tensor: optional Keras tensor to use as the image input.
        input_shape: tuple. Image shape. Defaults to (32, 32, 3).
        pooling: None, "avg" or "max": pooling when `include_top=False`.
        classes: int. Number of classes. Defaults to 10.
        classifier_activation: None (logits, the default) or an activation name.
        name: str. Model name.
"""


@keras.saving.register_keras_serializable(package="keras_lrn")
class SWRN(base.FunctionalModel):
    """Shared wide ResNet SWRN-depth-width-bank_size (soft parameter sharing).

    Args:
        depth: int. 6N+4 (N blocks per stage). Defaults to 28.
        width: int. Widening factor. Defaults to 10.
        bank_size: int. Templates per stage bank (T). Defaults to 6.
        include_top, weights, input_tensor, input_shape, pooling, classes,
            classifier_activation, name: as `keras.applications`; see below.
    """ + _DOC_ARGS + """
    Example:
    ```python
    model = keras_lrn.models.SWRN(28, 10, 6)  # 36,479,302 trainable parameters
    ```

    Reference:
    - Savarese and Maire, "Learning Implicitly Recurrent CNNs Through
      Parameter Sharing", ICLR 2019.
    """

    def __init__(self, depth=28, width=10, bank_size=6, include_top=True, weights=None,
                 input_tensor=None, input_shape=None, pooling=None, classes=10,
                 classifier_activation=None, name=None, dtype=None, **kwargs):
        base.check_positive_int(bank_size, "bank_size")
        base.check_head_args(include_top, pooling, classes, weights)
        inputs = base.make_inputs(input_shape, input_tensor, (32, 32, 3))
        outputs, n = _network(inputs, depth, width, bank_size, include_top, pooling, classes,
                              classifier_activation, dtype)
        with base.deep_graph(3 * n):
            super().__init__(inputs=inputs, outputs=outputs,
                             name=name or f"swrn{depth}_{width}_{bank_size}", dtype=dtype,
                             **kwargs)
        self._store_config(depth=depth, width=width, bank_size=bank_size,
                           include_top=include_top, weights=None, input_tensor=None,
                           input_shape=tuple(inputs.shape[1:]), pooling=pooling, classes=classes,
                           classifier_activation=classifier_activation, dtype=dtype)
        self.load_weights_file(weights)

    @property
    def banks(self):
        """The `TemplateBank` layers (one per stage with shared blocks)."""
        return [layer for layer in self.layers if isinstance(layer, TemplateBank)]


@keras.saving.register_keras_serializable(package="keras_lrn")
class WRN(base.FunctionalModel):
    """Wide ResNet WRN-depth-width built exactly as SWRN, with plain `Conv2D` everywhere.

    Args:
        depth: int. 6N+4. Defaults to 28.
        width: int. Widening factor. Defaults to 10.
    """ + _DOC_ARGS + """
    Example:
    ```python
    model = keras_lrn.models.WRN(28, 10)  # 36,479,194 trainable parameters
    ```

    Reference:
    - Zagoruyko and Komodakis, "Wide Residual Networks", BMVC 2016.
    """

    def __init__(self, depth=28, width=10, include_top=True, weights=None, input_tensor=None,
                 input_shape=None, pooling=None, classes=10, classifier_activation=None,
                 name=None, dtype=None, **kwargs):
        base.check_head_args(include_top, pooling, classes, weights)
        inputs = base.make_inputs(input_shape, input_tensor, (32, 32, 3))
        outputs, n = _network(inputs, depth, width, None, include_top, pooling, classes,
                              classifier_activation, dtype)
        with base.deep_graph(3 * n):
            super().__init__(inputs=inputs, outputs=outputs, name=name or f"wrn{depth}_{width}",
                             dtype=dtype, **kwargs)
        self._store_config(depth=depth, width=width, include_top=include_top, weights=None,
                           input_tensor=None, input_shape=tuple(inputs.shape[1:]),
                           pooling=pooling, classes=classes,
                           classifier_activation=classifier_activation, dtype=dtype)
        self.load_weights_file(weights)


# ----------------------------------------------------------------------------
# Parameter counts, derived (checked against the spec's table, §2.3)
# ----------------------------------------------------------------------------


def wrn_params(depth, width, classes=10, bank_size=None):
    """Trainable parameters of WRN-depth-width, or of SWRN with `bank_size`.

    Stem 27*16. Stage i (C = 16w * 2^(i-1), input C_in): block 1 = BN(C_in)
    2*C_in + 9*C_in*C + BN 2C + 9*C*C + (1x1 C_in*C if C_in != C); blocks
    2..N = 2 BN (4C) each + either 2 convs 9*C*C each (WRN) or, per stage, one
    bank 9*C*C*T plus T coefficients per shared conv (SWRN). Head BN 2*64w +
    Dense 64w*classes + classes.
    """
    n = (depth - 4) // 6
    total = 27 * 16
    c_in = 16
    for s in range(3):
        c = 16 * width * 2**s
        total += 2 * c_in + 9 * c_in * c + 2 * c + 9 * c * c + (c_in * c if c_in != c else 0)
        total += (n - 1) * 4 * c
        if bank_size is None or n == 1:
            total += (n - 1) * 2 * 9 * c * c
        else:
            total += 9 * c * c * bank_size + 2 * (n - 1) * bank_size
        c_in = c
    return total + 2 * 64 * width + 64 * width * classes + classes


def _bn_stats(depth, width):
    # Moving mean + variance of every BN: 2 * channels.
    n = (depth - 4) // 6
    total, c_in = 0, 16
    for s in range(3):
        c = 16 * width * 2**s
        total += 2 * (c_in + c) + (n - 1) * 4 * c
        c_in = c
    return total + 2 * 64 * width


# The spec's table (trainable parameters of the reference code, §2.3).
SPEC_PARAMS = {
    (28, 10, 6, 10): 36_479_302, (28, 10, 6, 100): 36_536_992,
    (28, 10, 4, 10): 26_802_466, (28, 10, 4, 100): 26_860_156,
    (28, 10, 2, 10): 17_125_630, (28, 10, 2, 100): 17_183_320,
    (28, 10, 1, 10): 12_287_212, (28, 10, 1, 100): 12_344_902,
    (16, 8, 2, 10): 10_961_382, (16, 8, 2, 100): 11_007_552,
    (16, 8, 1, 10): 7_864_800, (16, 8, 1, 100): 7_910_970,
    (28, 18, 12, 10): 212_178_354, (28, 18, 12, 100): 212_282_124,
    (28, 4, 6, 10): 5_849_158, (28, 4, 6, 100): 5_872_288,
}

SPEC_BN_STATS = {(28, 10): 17_952, (16, 8): 7_200, (28, 18): 32_288, (28, 4): 7_200}

_NOTES = ("Registered as in the soft-sharing README (swrn --depth D --wide W --bank_size T); "
          "no paper numbers to compare (the README has no table). Cutout variants: "
          "recipe.replace(post_augment='cutout16').")

for (_d, _w, _t, _classes), _params in SPEC_PARAMS.items():
    _dataset = "cifar10" if _classes == 10 else "cifar100"
    assert wrn_params(_d, _w, _classes, _t) == _params, (_d, _w, _t, _classes)
    register_model(
        f"swrn{_d}_{_w}_{_t}_{_dataset}",
        SWRN,
        {"depth": _d, "width": _w, "bank_size": _t, "classes": _classes},
        family="swrn",
        paper=PAPER,
        params=_params,
        non_trainable=SPEC_BN_STATS[(_d, _w)],
        recipe=SWRN_CIFAR10 if _classes == 10 else SWRN_CIFAR100,
        notes=_NOTES,
        # Building a 5.8M-212M parameter network takes too long for the default
        # test run; SWRN-28-4-6 (5.8M) is the one small enough to check there.
        slow=not ((_d, _w, _t) == (28, 4, 6) and _classes == 10),
    )

for (_d, _w) in ((28, 10), (16, 8), (28, 4)):
    for _classes, _dataset in ((10, "cifar10"), (100, "cifar100")):
        register_model(
            f"wrn{_d}_{_w}_{_dataset}",
            WRN,
            {"depth": _d, "width": _w, "classes": _classes},
            family="swrn",
            paper=WRN_PAPER,
            # The soft-sharing code with nn.Conv2d everywhere (spec §2.3: WRN-28-10
            # = 36,479,194 = SWRN-28-10-6 minus its 108 coefficients).
            params=wrn_params(_d, _w, _classes),
            non_trainable=SPEC_BN_STATS[(_d, _w)],
            recipe=SWRN_CIFAR10 if _classes == 10 else SWRN_CIFAR100,
            notes="The soft-sharing reference's network with plain convolutions.",
            slow=True,
        )
