"""CIFAR-100 DenseNet-BC with deeply shared filter bases (Net_RL2, `models/cifar100/densenet.py`).

DenseNet-BC (growth 32, dense blocks [6, 12, 24, 16], compression 0.5) with a
3x3 stem of `2 * growth` channels and no stem BN. Every bottleneck layer is

    BN -> ReLU -> 1x1 conv (-> 4*growth) -> BN -> ReLU
       -> cat[unique 3x3 (u), shared 3x3 (s)] -> BN(u+s) -> 1x1 conv (-> growth)

and its output is concatenated onto its input. Transitions are BN + 1x1 conv
+ AvgPool 2; the head is BN, ReLU, GAP, Linear. Dense block `g` uses the
shared basis `shared_basis_g` (a `(s, 4*growth, 3, 3)` conv shared by *all*
its layers, first one included); the rank is not scaled per block. Unlike the
CIFAR ResNets, nothing is orthogonally initialised: every conv and the linear
layer keep PyTorch's default init, U(+-1/sqrt(fan_in)).

**The reference's bug.** `DenseNet_SingleShared` builds the fourth dense block
with `shared_basis_3` (a leaked loop variable): `shared_basis_4` exists, is
counted and regularised, but is never used in the forward pass.
`faithful=True` reproduces that (the model keeps an unused, trained-only-by-
the-penalty `shared_basis_4`); the default `faithful=False` is what the paper
describes (block 4 uses `shared_basis_4`). Both have the same parameters and
MACs (basis_3 and basis_4 have the same shape).

The orthogonality penalty is the reference's `train_basis`: the four shared
bases only, `sum_g ||W_g W_g^T - I||_F^2 / sum_g s_g^2`, weighted by
`lambda_r` (see `keras_lrn.regularizers`).
"""

from __future__ import annotations

import keras

from keras_lrn.layers.filter_basis import basis_conv, shared_basis
from keras_lrn.models import base
from keras_lrn.models.basis_resnet import PAPER, BasisModel, add_orthogonality, check_lambda_r
from keras_lrn.models.registry import register_model
from keras_lrn.recipes import NET_RL2_CIFAR100

DENSENET_VARIANTS = ("single", "plain")
DENSENET121_BLOCKS = (6, 12, 24, 16)


def _check_rank(value, arg, low):
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"`{arg}` must be an integer >= {low}. Received: {arg}={value!r}")
    return value


def _check_blocks(blocks):
    if (not isinstance(blocks, (list, tuple)) or len(blocks) != 4 or any(
            isinstance(b, bool) or not isinstance(b, int) or b < 1 for b in blocks)):
        raise ValueError("`blocks` must be 4 positive integers (layers per dense block). "
                         f"Received: blocks={blocks!r}")
    return tuple(blocks)


def _conv(filters, kernel_size, name, dtype=None):
    """Bias-free conv, PyTorch padding k//2 (stride 1), PyTorch default init."""
    return keras.layers.Conv2D(filters, kernel_size, padding="same", use_bias=False,
                               kernel_initializer=base.torch_linear_kernel(), name=name,
                               dtype=dtype)


def _bn_relu(x, name, dtype=None):
    x = base.batch_norm(f"{name}_bn", dtype)(x)
    return keras.layers.ReLU(name=f"{name}_relu", dtype=dtype)(x)


def bottleneck(x, growth_rate, name, basis=None, unique_rank=0, dtype=None):
    """One DenseNet-BC layer; `basis` (a shared basis layer) makes it a basis conv."""
    y = _bn_relu(x, f"{name}_0", dtype)
    y = _conv(4 * growth_rate, 1, f"{name}_conv1", dtype)(y)
    y = _bn_relu(y, f"{name}_1", dtype)
    if basis is None:
        y = _conv(growth_rate, 3, f"{name}_conv2", dtype)(y)
    else:
        y = basis_conv(y, growth_rate, f"{name}_conv2", shared=basis, unique_rank=unique_rank,
                       dtype=dtype, kernel_initializer=base.torch_linear_kernel())
    return keras.layers.Concatenate(axis=-1, name=f"{name}_concat", dtype=dtype)([x, y])


def transition(x, channels, name, dtype=None):
    x = base.batch_norm(f"{name}_bn", dtype)(x)
    x = _conv(channels, 1, f"{name}_conv", dtype)(x)
    return keras.layers.AveragePooling2D(2, strides=2, name=f"{name}_pool", dtype=dtype)(x)


@keras.saving.register_keras_serializable(package="keras_lrn")
class BasisDenseNet(BasisModel):
    """CIFAR-100 DenseNet-BC (DenseNet121) with deeply shared filter bases (Net_RL2).

    Args:
        variant: str. `"single"` (`DenseNet121_SingleShared(s, u)`, one shared
            basis per dense block) or `"plain"` (the reference `DenseNet121`).
            Defaults to `"single"`.
        shared_rank: int. Filters of each shared basis (not scaled per
            block). Defaults to 16 (0 for `"plain"`).
        unique_rank: int. Unique filters per layer (0: no unique basis).
            Defaults to 1 (0 for `"plain"`).
        faithful: bool. Reproduce the reference's bug: dense block 4 uses
            `shared_basis_3`, and `shared_basis_4` is counted and regularised
            but never used. Defaults to False (block 4 uses `shared_basis_4`).
        lambda_r: float. Weight of the orthogonality penalty. Defaults to 10.
        growth_rate: int. Defaults to 32.
        blocks: 4 ints. Layers per dense block. Defaults to (6, 12, 24, 16).
        reduction: float in (0, 1]. Transition compression. Defaults to 0.5.
        include_top, weights, input_tensor, input_shape, pooling, classes,
            classifier_activation, name: as `keras.applications`; `classes`
            defaults to 100.

    Example:
    ```python
    model = keras_lrn.models.BasisDenseNet("single", 16, 1)   # 5,084,504 parameters
    ```

    Reference:
    - Kang et al., "Learning Deeply Shared Filter Bases for Efficient
      ConvNets", github.com/ssregibility/Net_RL2.
    """

    def __init__(self, variant="single", shared_rank=None, unique_rank=None, faithful=False,
                 lambda_r=10.0, growth_rate=32, blocks=DENSENET121_BLOCKS, reduction=0.5,
                 include_top=True, weights=None, input_tensor=None, input_shape=None,
                 pooling=None, classes=100, classifier_activation=None, name=None, dtype=None,
                 **kwargs):
        base.check_choice(variant, "variant", DENSENET_VARIANTS)
        shared = variant == "single"
        if shared_rank is None:
            shared_rank = 16 if shared else 0
        if unique_rank is None:
            unique_rank = 1 if shared else 0
        _check_rank(shared_rank, "shared_rank", 1 if shared else 0)
        _check_rank(unique_rank, "unique_rank", 0)
        if not shared and (shared_rank or unique_rank):
            raise ValueError("variant='plain' has no bases: `shared_rank` and `unique_rank` "
                             f"must be 0. Received: shared_rank={shared_rank}, "
                             f"unique_rank={unique_rank}")
        if not isinstance(faithful, bool):
            raise ValueError(f"`faithful` must be a bool. Received: faithful={faithful!r}")
        lambda_r = check_lambda_r(lambda_r)
        base.check_positive_int(growth_rate, "growth_rate")
        blocks = _check_blocks(blocks)
        if isinstance(reduction, bool) or not isinstance(reduction, (int, float)) or not (
                0 < reduction <= 1):
            raise ValueError(f"`reduction` must be a number in (0, 1]. "
                             f"Received: reduction={reduction!r}")
        base.check_head_args(include_top, pooling, classes, weights)
        inputs = base.make_inputs(input_shape, input_tensor, (32, 32, 3))

        bases = []
        if shared:
            bases = [shared_basis(shared_rank, f"shared_basis_{g + 1}", dtype=dtype,
                                  kernel_initializer=base.torch_linear_kernel())
                     for g in range(4)]
        channels = 2 * growth_rate
        x = _conv(channels, 3, "conv1", dtype)(inputs)
        for b, n in enumerate(blocks):
            basis = None
            if shared:
                # The reference's leaked loop index: block 4 gets shared_basis_3.
                basis = bases[2] if (faithful and b == 3) else bases[b]
            for i in range(n):
                x = bottleneck(x, growth_rate, f"dense{b + 1}_layer{i + 1}", basis,
                               unique_rank, dtype)
            channels += growth_rate * n
            if b < 3:
                channels = int(reduction * channels)
                x = transition(x, channels, f"transition{b + 1}", dtype)
        x = _bn_relu(x, "final", dtype)
        outputs = base.apply_head(x, include_top=include_top, pooling=pooling, classes=classes,
                                  classifier_activation=classifier_activation, dtype=dtype)
        # `train_basis`: the four shared bases (basis 4 included, used or not).
        outputs = add_orthogonality(outputs, [[([b], []) for b in bases]], lambda_r, dtype)
        with base.deep_graph(sum(blocks) * 2):
            super().__init__(inputs=inputs, outputs=outputs,
                             name=name or f"densenet{_depth(blocks)}_{variant}", dtype=dtype,
                             **kwargs)
        if shared and faithful:
            # Not in the graph: track it as an attribute so that it is a weight
            # of the model (counted, saved, regularised), as in the reference.
            bases[3].build((None, None, None, 4 * growth_rate))
            self.unused_shared_basis = bases[3]
        self._init_orthogonality()
        self._store_config(variant=variant, shared_rank=shared_rank, unique_rank=unique_rank,
                           faithful=faithful, lambda_r=lambda_r, growth_rate=growth_rate,
                           blocks=blocks, reduction=reduction, include_top=include_top,
                           weights=None, input_tensor=None, input_shape=tuple(inputs.shape[1:]),
                           pooling=pooling, classes=classes,
                           classifier_activation=classifier_activation, dtype=dtype)
        self.load_weights_file(weights)

    def get_config(self):
        config = super().get_config()
        config["blocks"] = list(config["blocks"])
        return config

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        config["blocks"] = tuple(config["blocks"])
        return cls(**config)


def _depth(blocks):
    """DenseNet's depth label: 2 convs per layer + stem + 3 transitions + classifier."""
    return 2 * sum(blocks) + 5


def densenet_params(s, u, blocks=DENSENET121_BLOCKS, growth=32, classes=100, reduction=0.5):
    """Trainable parameters of `BasisDenseNet` as the reference counts them.

    Stem 9*3*2g; per layer with c input channels: BN 2c + 1x1 c*4g + BN 2*4g,
    then plain 9*4g*g or (shared) unique 9*4g*u + basis BN 2(u+s) + coefficients
    (u+s)*g; transitions BN 2c + 1x1 c*floor(c*reduction); head BN 2c + c*classes
    + classes; four shared bases 4 * s*4g*9 (basis 4 is counted also when unused).
    """
    total, c = 9 * 3 * 2 * growth, 2 * growth
    for b, n in enumerate(blocks):
        for _ in range(n):
            total += 2 * c + c * 4 * growth + 2 * 4 * growth
            total += (9 * 4 * growth * u + 2 * (u + s) + (u + s) * growth) if s else (
                9 * 4 * growth * growth)
            c += growth
        if b < 3:
            total += 2 * c + c * int(reduction * c)
            c = int(reduction * c)
    total += 2 * c + c * classes + classes
    return total + (4 * s * 4 * growth * 9 if s else 0)


def densenet_bn_stats(s, u, blocks=DENSENET121_BLOCKS, growth=32, reduction=0.5):
    """BN moving mean + variance: 2c + 2*4g (+ 2(u+s)) per layer, 2c per transition and head."""
    total, c = 0, 2 * growth
    for b, n in enumerate(blocks):
        for _ in range(n):
            total += 2 * c + 2 * 4 * growth + (2 * (u + s) if s else 0)
            c += growth
        if b < 3:
            total += 2 * c
            c = int(reduction * c)
    return total + 2 * c


# (variant, s, u): (params, BN stats, MACs) from spec §2.4 (FlopCounterMode / 2).
SPEC_DENSENET = {
    ("plain", 0, 0): (7_048_548, 83_520, 888_442_880),
    ("single", 16, 1): (5_084_504, None, 704_212_992),
    ("single", 64, 4): (5_606_708, 91_408, 1_368_920_064),
}

_NOTES = ("Net_RL2 CIFAR-100 DenseNet121_SingleShared; lambda_r * orthogonality penalty "
          "(train_basis: the 4 shared bases) is added in training by the model's "
          "BasisOrthogonality layer. {extra}")
_LABEL_NOTE = ("The README label 'DenseNet121-S64U4' does not match the ranks: its row "
               "(5.08M, 1.43 GFLOPs) is reproduced by the CLI ranks --shared_rank 16 "
               "--unique_rank 1 (spec §2.4), so this entry "
               "uses shared_rank=16, unique_rank=1; the literal (64, 4) is "
               "densenet121_s64u4_literal_cifar100 (5,606,708).")
_FAITHFUL_NOTE = ("faithful=True reproduces the reference bug: dense block 4 calls "
                  "shared_basis_3; shared_basis_4 is counted and regularised but unused "
                  "(same parameters and MACs as the paper-faithful default).")

register_model(
    "densenet121_cifar100", BasisDenseNet, {"variant": "plain"},
    family="basis_densenet", paper=PAPER, params=densenet_params(0, 0),
    non_trainable=densenet_bn_stats(0, 0), macs=SPEC_DENSENET[("plain", 0, 0)][2],
    recipe=NET_RL2_CIFAR100,
    notes="Net_RL2's plain DenseNet121 (DenseNet-BC, growth 32) baseline for CIFAR-100.",
    slow=True)
register_model(
    "densenet121_s64u4_cifar100", BasisDenseNet,
    {"variant": "single", "shared_rank": 16, "unique_rank": 1},
    family="basis_densenet", paper=PAPER, params=densenet_params(16, 1),
    non_trainable=densenet_bn_stats(16, 1), macs=SPEC_DENSENET[("single", 16, 1)][2],
    recipe=NET_RL2_CIFAR100, notes=_NOTES.format(extra=_LABEL_NOTE))
register_model(
    "densenet121_s64u4_faithful_cifar100", BasisDenseNet,
    {"variant": "single", "shared_rank": 16, "unique_rank": 1, "faithful": True},
    family="basis_densenet", paper=PAPER, params=densenet_params(16, 1),
    non_trainable=densenet_bn_stats(16, 1), macs=SPEC_DENSENET[("single", 16, 1)][2],
    recipe=NET_RL2_CIFAR100, notes=_NOTES.format(extra=_LABEL_NOTE + " " + _FAITHFUL_NOTE),
    slow=True)
register_model(
    "densenet121_s64u4_literal_cifar100", BasisDenseNet,
    {"variant": "single", "shared_rank": 64, "unique_rank": 4},
    family="basis_densenet", paper=PAPER, params=densenet_params(64, 4),
    non_trainable=densenet_bn_stats(64, 4), macs=SPEC_DENSENET[("single", 64, 4)][2],
    recipe=NET_RL2_CIFAR100,
    notes=_NOTES.format(extra="The README label's literal ranks (64, 4); the README's numbers "
                              "belong to (16, 1), see densenet121_s64u4_cifar100."),
    slow=True)
