"""MobileNetV2 with shared 1x1 bases (Net_RL2, `models/{cifar100,ilsvrc}/mobilenetv2.py`).

Net_RL2's own MobileNetV2 (not the okankop CIFAR one in
`keras_lrn.models.mobilenet`). Every block is

    1x1 expand (C_in -> t*C_in) -> BN -> ReLU -> 3x3 depthwise (stride) -> BN -> ReLU
        -> 1x1 project (-> C_out) -> BN  [-> ECA]  [+ shortcut]

with plain ReLU (not ReLU6) inside the blocks, and an expand conv also when
t = 1. Stages (t, C_out, n): (1, 16, 1), (6, 24, 2), (6, 32, 3), (6, 64, 4),
(6, 96, 3), (6, 160, 3), (6, 320, 1); head 1x1 conv -> 1280 (bias), BN,
ReLU6, GAP, classifier. Two versions:

* ``"cifar100"``: stem **1x1 conv with padding 1** (3 -> 32, bias; 32x32 grows
  to 34x34), BN, ReLU6; stage strides 1, 2, 2, 2, 1, 1, 1; a residual on
  *every* stride-1 block (identity when C_in == C_out, else 1x1 conv + BN);
  classifier a 1x1 conv with bias after GAP (= a dense layer), no dropout.
* ``"imagenet"``: stem 3x3 conv stride 2 padding 1 (bias), BN, ReLU6; stage
  strides 1, 2, 2, 2, 1, 2, 1; identity residual only for stride 1 and
  C_in == C_out; GAP, Dropout(0.2), Linear.

Sharing, in stages 3-6 (32, 64, 96, 160 channels), for every block after the
first (which changes the width and carries the stride):

* ``"shared"`` (`MobileNetV2_Shared`): the expand 1x1 is the stage's
  `shared_basis_g` (C -> 6C), one layer called by every such block;
* ``"shared_double"`` (`MobileNetV2_SharedDouble`): the projection 1x1 is also
  shared, `shared_basis_g_2` (6C -> C) (the expand basis is `shared_basis_g_1`).
  The ImageNet version ("Shared++") adds ECA channel attention after bn3,
  before the residual add, with k = 1 if C < 96 else 3.

Each block keeps its own BNs and depthwise conv. All weights keep PyTorch's
default init, U(+-1/sqrt(fan_in)) (bases included: not orthogonal at init).
The orthogonality penalty is the reference's: `train_basis` /
`train_basis_single` (the four shared bases, `sum_g ||W W^T - I||^2 / sum_g s_g^2`)
for "shared", `train_basis_double_separate` (the `_1` bases and the `_2` bases
averaged separately, `lambda_r * (avg_1 + avg_2)`) for "shared_double".
"""

from __future__ import annotations

import keras

from keras_lrn.layers.eca import ECA
from keras_lrn.layers.fast_conv import GroupedPointwiseConv2D
from keras_lrn.models import base
from keras_lrn.models.basis_resnet import PAPER, BasisModel, add_orthogonality, check_lambda_r
from keras_lrn.models.mobilenet import depthwise
from keras_lrn.models.registry import register_model
from keras_lrn.recipes import NET_RL2_CIFAR100, NET_RL2_IMAGENET_MOBILENETV2

MOBILENETV2_VARIANTS = ("plain", "shared", "shared_double")
MOBILENETV2_VERSIONS = ("cifar100", "imagenet")
# (expansion, out channels, blocks, stride) per stage; stage 6 stride 2 on ImageNet.
STAGES = {
    "cifar100": ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
                 (6, 160, 3, 1), (6, 320, 1, 1)),
    "imagenet": ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
                 (6, 160, 3, 2), (6, 320, 1, 1)),
}
SHARED_STAGES = (2, 3, 4, 5)  # 0-based: stages 3-6


def _pw(filters, name, bias_fan_in=None, dtype=None):
    """A 1x1 conv with PyTorch's default init, U(+-1/sqrt(fan_in)); a bias if `bias_fan_in`."""
    return GroupedPointwiseConv2D(
        filters, use_bias=bias_fan_in is not None, kernel_initializer=base.torch_linear_kernel(),
        bias_initializer=base.torch_linear_bias(bias_fan_in) if bias_fan_in else "zeros",
        name=name, dtype=dtype)


def eca_kernel_size(in_planes):
    """The reference's ECA kernel size: 1 below 96 input channels, else 3."""
    return 1 if in_planes < 96 else 3


def inverted_residual(x, out_planes, expansion, stride, name, version, expand=None,
                      project=None, eca=False, dtype=None):
    """One block; `expand` / `project`: shared 1x1 layers replacing the block's own."""
    in_planes = x.shape[-1]
    planes = expansion * in_planes
    if expand is None:
        expand = _pw(planes, f"{name}_expand", dtype=dtype)
    y = expand(x)
    y = base.batch_norm(f"{name}_bn1", dtype)(y)
    y = keras.layers.ReLU(name=f"{name}_relu1", dtype=dtype)(y)
    y = depthwise(y, stride, f"{name}_dw", dtype=dtype)
    y = base.batch_norm(f"{name}_bn2", dtype)(y)
    y = keras.layers.ReLU(name=f"{name}_relu2", dtype=dtype)(y)
    if project is None:
        project = _pw(out_planes, f"{name}_project", dtype=dtype)
    y = project(y)
    y = base.batch_norm(f"{name}_bn3", dtype)(y)
    if eca:
        y = ECA(eca_kernel_size(in_planes), name=f"{name}_eca", dtype=dtype)(y)
    if stride != 1:
        return y
    if in_planes == out_planes:
        shortcut = x
    elif version == "cifar100":
        shortcut = _pw(out_planes, f"{name}_shortcut_conv", dtype=dtype)(x)
        shortcut = base.batch_norm(f"{name}_shortcut_bn", dtype)(shortcut)
    else:
        return y
    return keras.layers.Add(name=f"{name}_add", dtype=dtype)([y, shortcut])


@keras.saving.register_keras_serializable(package="keras_lrn")
class BasisMobileNetV2(BasisModel):
    """Net_RL2's MobileNetV2 (CIFAR-100 or ImageNet) with shared 1x1 bases.

    Args:
        variant: str. `"plain"`, `"shared"` (shared expand 1x1 per stage 3-6)
            or `"shared_double"` (shared expand and project). Defaults to
            `"shared"`.
        version: str. `"cifar100"` (1x1 pad-1 stem, conv shortcuts, 1x1-conv
            classifier) or `"imagenet"` (3x3 stride-2 stem, Dropout + Linear).
            Defaults to `"cifar100"`.
        eca: bool or None. ECA attention in the shared blocks (after bn3).
            None: as the reference, i.e. only for `"shared_double"` on
            `"imagenet"` (Shared++). Defaults to None.
        dropout: float or None. Dropout before the classifier. None: 0.2 on
            `"imagenet"`, 0 on `"cifar100"`. Defaults to None.
        lambda_r: float. Weight of the orthogonality penalty. Defaults to 10.
        include_top, weights, input_tensor, input_shape, pooling, classes,
            classifier_activation, name: as `keras.applications`; `classes`
            defaults to 100 (`"cifar100"`) / 1000 (`"imagenet"`), `input_shape`
            to (32, 32, 3) / (224, 224, 3).

    Example:
    ```python
    model = keras_lrn.models.BasisMobileNetV2("shared_double")   # 1,899,620 parameters
    ```

    Reference:
    - Kang et al., "Learning Deeply Shared Filter Bases for Efficient
      ConvNets", github.com/ssregibility/Net_RL2.
    - Sandler et al., "MobileNetV2: Inverted Residuals and Linear
      Bottlenecks", CVPR 2018.
    """

    def __init__(self, variant="shared", version="cifar100", eca=None, dropout=None,
                 lambda_r=10.0, include_top=True, weights=None, input_tensor=None,
                 input_shape=None, pooling=None, classes=None, classifier_activation=None,
                 name=None, dtype=None, **kwargs):
        base.check_choice(variant, "variant", MOBILENETV2_VARIANTS)
        base.check_choice(version, "version", MOBILENETV2_VERSIONS)
        imagenet = version == "imagenet"
        if eca is None:
            eca = imagenet and variant == "shared_double"
        if not isinstance(eca, bool):
            raise ValueError(f"`eca` must be None or a bool. Received: eca={eca!r}")
        if eca and variant == "plain":
            raise ValueError("`eca` attends the shared blocks: it needs variant='shared' or "
                             f"'shared_double'. Received: eca={eca!r}, variant={variant!r}")
        if dropout is None:
            dropout = 0.2 if imagenet else 0.0
        if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not (
                0 <= dropout < 1):
            raise ValueError(f"`dropout` must be a number in [0, 1). Received: dropout={dropout!r}")
        lambda_r = check_lambda_r(lambda_r)
        if classes is None:
            classes = 1000 if imagenet else 100
        base.check_head_args(include_top, pooling, classes, weights)
        inputs = base.make_inputs(input_shape, input_tensor,
                                  (224, 224, 3) if imagenet else (32, 32, 3))

        x = keras.layers.ZeroPadding2D(1, name="stem_pad", dtype=dtype)(inputs)
        k = 3 if imagenet else 1
        x = keras.layers.Conv2D(32, k, strides=2 if imagenet else 1, padding="valid",
                                kernel_initializer=base.torch_linear_kernel(),
                                bias_initializer=base.torch_linear_bias(k * k * inputs.shape[-1]),
                                name="stem_conv", dtype=dtype)(x)
        x = base.batch_norm("stem_bn", dtype)(x)
        x = keras.layers.ReLU(6.0, name="stem_relu", dtype=dtype)(x)
        terms = [[], []]
        for stage, (t, c, n, s) in enumerate(STAGES[version]):
            expand = project = None
            if variant != "plain" and stage in SHARED_STAGES:
                g = SHARED_STAGES.index(stage) + 1
                suffix = "_1" if variant == "shared_double" else ""
                expand = _pw(t * c, f"shared_basis_{g}{suffix}", dtype=dtype)
                terms[0].append(([expand], []))
                if variant == "shared_double":
                    project = _pw(c, f"shared_basis_{g}_2", dtype=dtype)
                    terms[1].append(([project], []))
            for j in range(n):
                first = j == 0
                x = inverted_residual(
                    x, c, t, s if first else 1, f"stage{stage + 1}_block{j + 1}", version,
                    expand=None if first else expand, project=None if first else project,
                    eca=eca and not first and expand is not None, dtype=dtype)
        x = _pw(1280, "head_conv", bias_fan_in=x.shape[-1], dtype=dtype)(x)
        x = base.batch_norm("head_bn", dtype)(x)
        x = keras.layers.ReLU(6.0, name="head_relu", dtype=dtype)(x)
        if include_top and dropout:
            x = keras.layers.GlobalAveragePooling2D(name="avg_pool", dtype=dtype)(x)
            x = keras.layers.Dropout(dropout, name="dropout", dtype=dtype)(x)
            outputs = keras.layers.Dense(
                classes, kernel_initializer=base.torch_linear_kernel(),
                bias_initializer=base.torch_linear_bias(1280), name="predictions",
                dtype=dtype)(x)
            if classifier_activation is not None:
                outputs = keras.layers.Activation(classifier_activation, name="activation",
                                                  dtype="float32")(outputs)
        else:
            outputs = base.apply_head(x, include_top=include_top, pooling=pooling,
                                      classes=classes,
                                      classifier_activation=classifier_activation, dtype=dtype)
        outputs = add_orthogonality(outputs, [term for term in terms if term], lambda_r, dtype)
        super().__init__(inputs=inputs, outputs=outputs,
                         name=name or f"mobilenetv2_{variant}_{version}", dtype=dtype, **kwargs)
        self._init_orthogonality()
        self._store_config(variant=variant, version=version, eca=eca, dropout=float(dropout),
                           lambda_r=lambda_r, include_top=include_top, weights=None,
                           input_tensor=None, input_shape=tuple(inputs.shape[1:]),
                           pooling=pooling, classes=classes,
                           classifier_activation=classifier_activation, dtype=dtype)
        self.load_weights_file(weights)


def mobilenetv2_params(variant, version, classes=None):
    """Trainable parameters of `BasisMobileNetV2`, counted as the reference defines them.

    Stem (k*k*3 + 1)*32 + BN 64; per block with in C, hidden 6C (C for t=1),
    out P: expand C*6C, BN 2*6C, depthwise 9*6C, BN 2*6C, project 6C*P, BN 2P,
    plus (CIFAR-100, stride 1, C != P) a shortcut C*P + 2P; head 320*1280 +
    1280 + BN 2560 + 1280*classes + classes. Sharing removes the expand (and
    project) of the non-first blocks of stages 3-6 and adds one C*6C (and 6C*C)
    basis per stage; ECA adds k weights per shared block.
    """
    imagenet = version == "imagenet"
    classes = classes or (1000 if imagenet else 100)
    total = (9 if imagenet else 1) * 3 * 32 + 32 + 64
    cin = 32
    for stage, (t, c, n, s) in enumerate(STAGES[version]):
        shared = variant != "plain" and stage in SHARED_STAGES
        if shared:
            total += c * t * c * (2 if variant == "shared_double" else 1)
        for j in range(n):
            stride = s if j == 0 else 1
            hidden = t * cin
            own_expand = not (shared and j)
            own_project = not (shared and j and variant == "shared_double")
            total += cin * hidden * own_expand + 4 * hidden + 9 * hidden
            total += hidden * c * own_project + 2 * c
            if stride == 1 and cin != c and not imagenet:
                total += cin * c + 2 * c
            if shared and j and imagenet and variant == "shared_double":
                total += eca_kernel_size(cin)
            cin = c
    return total + 320 * 1280 + 1280 + 2 * 1280 + 1280 * classes + classes


# (variant, version): (params, BN running stats, MACs) from spec §2.4-2.5
# (FlopCounterMode / 2, batch 1; the ECA's Conv1d counts channels * k per call).
SPEC_MOBILENETV2 = {
    ("plain", "cifar100"): (2_428_004, 35_360, 67_356_736),
    ("shared", "cifar100"): (2_163_812, 35_360, 67_356_736),
    ("shared_double", "cifar100"): (1_899_620, 35_360, 67_356_736),
    ("plain", "imagenet"): (3_507_272, 34_176, 313_619_328),
    ("shared", "imagenet"): (3_243_080, 34_176, 313_619_328),
    ("shared_double", "imagenet"): (2_978_905, 34_176, 313_621_120),
}

NAMES = {
    ("plain", "cifar100"): "mobilenetv2_netrl2_cifar100",
    ("shared", "cifar100"): "mobilenetv2_shared_cifar100",
    ("shared_double", "cifar100"): "mobilenetv2_shared_double_cifar100",
    ("plain", "imagenet"): "mobilenetv2_netrl2_imagenet",
    ("shared", "imagenet"): "mobilenetv2_shared_imagenet",
    ("shared_double", "imagenet"): "mobilenetv2_shared_pp_imagenet",
}

_NOTES = {
    "plain": "Net_RL2's plain MobileNetV2 baseline ({v} version; not okankop's "
             "mobilenetv2_*x_* models).",
    "shared": "Net_RL2 MobileNetV2_Shared ({v}): shared expand 1x1 per stage 3-6; "
              "lambda_r * orthogonality penalty ({reg}) added in training by the model's "
              "BasisOrthogonality layer.",
    "shared_double": "Net_RL2 MobileNetV2_SharedDouble ({v}{pp}): shared expand and project "
                     "1x1 per stage 3-6; lambda_r * (avg_1 + avg_2) orthogonality penalty "
                     "(train_basis_double_separate) added in training by the model's "
                     "BasisOrthogonality layer.",
}


for (_variant, _version), (_p, _bn, _macs) in SPEC_MOBILENETV2.items():
    _imagenet = _version == "imagenet"
    register_model(
        NAMES[(_variant, _version)], BasisMobileNetV2,
        {"variant": _variant, "version": _version},
        family="basis_mobilenetv2", paper=PAPER, params=_p, non_trainable=_bn, macs=_macs,
        recipe=NET_RL2_IMAGENET_MOBILENETV2 if _imagenet else NET_RL2_CIFAR100,
        notes=_NOTES[_variant].format(
            v="ILSVRC" if _imagenet else "CIFAR-100",
            reg="train_basis_single" if _imagenet else "train_basis",
            pp=", 'Shared++': ECA after bn3 in the shared blocks" if _imagenet else ""),
        slow=False,  # each builds in about a second
    )
