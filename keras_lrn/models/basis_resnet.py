"""CIFAR-10 ResNets with deeply shared filter bases (Net_RL2, `models/cifar10/resnet.py`).

The plain CIFAR ResNet (3x3 stem of 16 channels, stages of 16/32/64 channels
at strides 1/2/2, option-A shortcuts, GAP + dense) where, in every stage, the
first block is an ordinary BasicBlock (it carries the stride and the channel
change) and every later block replaces each 3x3 conv by a basis convolution
(`keras_lrn.layers.basis_conv`): cat[unique (u_g), shared (s_g)] -> BN -> 1x1
coefficient conv, then the block's BN. Ranks are scaled by the stage:
`s_g = shared_rank * (1, 2, 4)`, `u_g = unique_rank * (1, 2, 4)`.

Variants (reference factories):

* ``"single"`` (`ResNet{32,56}_SingleShared(s, u)`): one shared basis per stage
  for conv1 and conv2; each basis orthogonal on its own at init.
* ``"double"`` (`*_DoubleShared(s, u)`, the README's `*`): `_1` for all conv1s,
  `_2` for all conv2s, the halves of one orthogonal draw.
* ``"shared_only"`` (`*_SharedOnly(s)`): two bases as Double, no unique part.
* ``"non_shared"`` (`*_NonShared(u)`): unique bases only, no regulariser.

The orthogonality regulariser of the reference's training loop
(`train_basis_single` / `train_basis_double` with the unique bases,
`train_basis_sharedonly`) is part of the model: a `BasisOrthogonality` layer on
the output adds `lambda_r * penalty` to the losses during training, and the
model logs the unscaled penalty as the metric `orthogonality`.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from keras_lrn.layers.filter_basis import VARIANTS, basis_conv, make_shared_bases
from keras_lrn.models import base
from keras_lrn.models.registry import register_model
from keras_lrn.models.resnet import basic_block, conv3x3
from keras_lrn.recipes import NET_RL2_CIFAR10
from keras_lrn.regularizers import BasisOrthogonality

PAPER = ("Kang et al., Learning Deeply Shared Filter Bases for Efficient ConvNets "
         "(Net_RL2), arXiv:2006.05066")

CIFAR10_DEPTHS = {20: 3, 32: 5, 44: 7, 56: 9, 110: 18}
ORTHOGONALITY_LAYER = "orthogonality"


def check_lambda_r(lambda_r):
    if isinstance(lambda_r, bool) or not isinstance(lambda_r, (int, float)) or not (
            lambda_r >= 0):
        raise ValueError(f"`lambda_r` must be a number >= 0. Received: lambda_r={lambda_r!r}")
    return float(lambda_r)


def resolve_ranks(variant, shared_rank, unique_rank):
    """Validate `(shared_rank, unique_rank)` for `variant`; `None` means the default."""
    base.check_choice(variant, "variant", VARIANTS)
    uses_shared = variant != "non_shared"
    uses_unique = variant != "shared_only"
    if shared_rank is None:
        shared_rank = 16 if uses_shared else 0
    if unique_rank is None:
        unique_rank = 1 if uses_unique else 0
    for value, arg in ((shared_rank, "shared_rank"), (unique_rank, "unique_rank")):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"`{arg}` must be a non-negative integer. Received: {arg}={value!r}")
    if uses_shared and shared_rank < 1:
        raise ValueError(f"`shared_rank` must be >= 1 for variant={variant!r}. "
                         f"Received: shared_rank={shared_rank}")
    if not uses_shared and shared_rank:
        raise ValueError(f"variant='non_shared' has no shared basis: `shared_rank` must be 0. "
                         f"Received: shared_rank={shared_rank}")
    if not uses_unique and unique_rank:
        raise ValueError(f"variant='shared_only' has no unique basis: `unique_rank` must be 0. "
                         f"Received: unique_rank={unique_rank}")
    if variant == "non_shared" and unique_rank < 1:
        raise ValueError(f"`unique_rank` must be >= 1 for variant='non_shared'. "
                         f"Received: unique_rank={unique_rank}")
    return shared_rank, unique_rank


class BasisModel(base.FunctionalModel):
    """Base of the shared-basis models: the orthogonality penalty and its metric.

    `lambda_r * penalty` reaches the loss through the `BasisOrthogonality`
    layer's `add_loss` (training only); `compute_loss` also records the
    unscaled penalty in the `orthogonality` metric (train and validation logs).
    """

    def _init_orthogonality(self):
        self.orthogonality_tracker = keras.metrics.Mean(name="orthogonality")

    @property
    def orthogonality_layer(self):
        try:
            layer = self.get_layer(ORTHOGONALITY_LAYER)
        except ValueError:
            return None
        return layer if layer.has_groups else None

    def orthogonality_penalty(self):
        """The current penalty of the shared bases (without lambda), float32 scalar."""
        layer = self.orthogonality_layer
        return ops.convert_to_tensor(0.0) if layer is None else layer.penalty()

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        loss = super().compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=sample_weight,
                                    training=training)
        if self.orthogonality_layer is not None:
            self.orthogonality_tracker.update_state(
                ops.stop_gradient(self.orthogonality_penalty()))
        return loss


def add_orthogonality(x, terms, lambda_r, dtype=None):
    """Apply a `BasisOrthogonality` layer (wired to `terms`) to `x`; no-op without terms."""
    if not any(terms):
        return x
    reg = BasisOrthogonality(lambda_r, name=ORTHOGONALITY_LAYER, dtype=dtype)
    reg.set_groups(terms)
    return reg(x)


def basis_basic_block(x, filters, name, shared1, shared2, unique_rank, dtype=None):
    """A non-first block: two basis convs (stride 1) with the block's BNs, identity shortcut.

    Returns `(output, [conv1 unique layer, conv2 unique layer])` (None entries
    when there is no unique basis).
    """
    y, l1 = basis_conv(x, filters, f"{name}_conv1", shared=shared1, unique_rank=unique_rank,
                       dtype=dtype, return_layers=True)
    y = base.batch_norm(f"{name}_bn1", dtype)(y)
    y = keras.layers.ReLU(name=f"{name}_relu1", dtype=dtype)(y)
    y, l2 = basis_conv(y, filters, f"{name}_conv2", shared=shared2, unique_rank=unique_rank,
                       dtype=dtype, return_layers=True)
    y = base.batch_norm(f"{name}_bn2", dtype)(y)
    y = keras.layers.Add(name=f"{name}_add", dtype=dtype)([y, x])
    y = keras.layers.ReLU(name=f"{name}_out", dtype=dtype)(y)
    return y, [l1["unique"], l2["unique"]]


def orthogonality_terms(variant, groups):
    """The reference's selection for the CIFAR-10 ResNets.

    `groups`: per stage `(bases, uniques)` with `bases` the distinct shared
    layers (`[basis]` or `[basis_1, basis_2]`) and `uniques` the unique layers
    in block order. Single/Double include the unique rows
    (`include_unique_basis=True`), SharedOnly only the shared block,
    NonShared has no penalty.
    """
    if variant == "non_shared":
        return []
    if variant == "shared_only":
        return [[(bases, []) for bases, _ in groups]]
    return [[(bases, uniques) for bases, uniques in groups]]


@keras.saving.register_keras_serializable(package="keras_lrn")
class BasisResNet(BasisModel):
    """CIFAR-10 ResNet with deeply shared filter bases (Net_RL2).

    Args:
        depth: int. One of 20, 32, 44, 56, 110. Defaults to 56.
        variant: str. "single", "double", "shared_only" or "non_shared".
            Defaults to "single".
        shared_rank: int. Shared filters of stage 1 (x2, x4 in stages 2, 3).
            Defaults to 16 (0 for "non_shared").
        unique_rank: int. Unique filters per conv in stage 1 (x2, x4). Defaults
            to 1 (0 for "shared_only").
        lambda_r: float. Weight of the orthogonality penalty. Defaults to 10.
        include_top, weights, input_tensor, input_shape, pooling, classes,
            classifier_activation, name: as `keras.applications`.
        seed: int or None. Seed of the shared bases' orthogonal init.

    Example:
    ```python
    model = keras_lrn.models.BasisResNet(56, "single", 16, 1)   # 270,842 parameters
    ```

    Reference:
    - Kang et al., "Learning Deeply Shared Filter Bases for Efficient
      ConvNets", github.com/ssregibility/Net_RL2.
    """

    def __init__(self, depth=56, variant="single", shared_rank=None, unique_rank=None,
                 lambda_r=10.0, include_top=True, weights=None, input_tensor=None,
                 input_shape=None, pooling=None, classes=10, classifier_activation=None,
                 seed=None, name=None, dtype=None, **kwargs):
        if depth not in CIFAR10_DEPTHS or isinstance(depth, bool):
            raise ValueError(f"`depth` must be one of {sorted(CIFAR10_DEPTHS)}. "
                             f"Received: depth={depth!r}")
        n = CIFAR10_DEPTHS[depth]
        shared_rank, unique_rank = resolve_ranks(variant, shared_rank, unique_rank)
        lambda_r = check_lambda_r(lambda_r)
        base.check_head_args(include_top, pooling, classes, weights)
        if seed is None:
            seed = int(np.random.randint(0, 2**31 - 1 - 16))
        inputs = base.make_inputs(input_shape, input_tensor, (32, 32, 3))
        x = conv3x3(inputs, 16, 1, "stem_conv", dtype)
        x = base.batch_norm("stem_bn", dtype)(x)
        x = keras.layers.ReLU(name="stem_relu", dtype=dtype)(x)
        groups = []
        for stage, (filters, mult) in enumerate(zip((16, 32, 64), (1, 2, 4))):
            prefix = f"stage{stage + 1}"
            x = basic_block(x, filters, 2 if stage else 1, f"{prefix}_block1", dtype)
            b1, b2 = make_shared_bases(variant, shared_rank * mult, f"{prefix}_shared_basis",
                                       seed=seed + stage, dtype=dtype)
            uniques = []
            for block in range(1, n):
                x, u = basis_basic_block(x, filters, f"{prefix}_block{block + 1}", b1, b2,
                                         unique_rank * mult, dtype)
                uniques += [layer for layer in u if layer is not None]
            bases = [b for b in dict.fromkeys((b1, b2)) if b is not None]
            groups.append((bases, uniques))
        outputs = base.apply_head(x, include_top=include_top, pooling=pooling, classes=classes,
                                  classifier_activation=classifier_activation, dtype=dtype)
        outputs = add_orthogonality(outputs, orthogonality_terms(variant, groups), lambda_r,
                                    dtype)
        with base.deep_graph(3 * n):
            super().__init__(inputs=inputs, outputs=outputs,
                             name=name or f"resnet{depth}_{variant}", dtype=dtype, **kwargs)
        self._init_orthogonality()
        self._store_config(depth=depth, variant=variant, shared_rank=shared_rank,
                           unique_rank=unique_rank, lambda_r=lambda_r, include_top=include_top,
                           weights=None, input_tensor=None, input_shape=tuple(inputs.shape[1:]),
                           pooling=pooling, classes=classes,
                           classifier_activation=classifier_activation, seed=seed, dtype=dtype)
        self.load_weights_file(weights)


def basis_resnet_params(n, variant, s, u, classes=10):
    """Trainable parameters of `BasisResNet`, counted as the reference defines them.

    Stem 3*9*16 + 2*16; per stage (c, s_g, u_g): the first BasicBlock
    9*c_in*c + 9*c*c + 4c; the shared bases 9*c*s_g (x2 for Double/SharedOnly);
    per basis conv of the n-1 later blocks (2 each): unique 9*c*u_g,
    basis BN 2(u_g+s_g), coefficients (u_g+s_g)*c, block BN 2c; head 64*classes + classes.
    """
    total = 3 * 9 * 16 + 2 * 16
    prev = 16
    nbases = {"single": 1, "double": 2, "shared_only": 2, "non_shared": 0}[variant]
    for c, m in ((16, 1), (32, 2), (64, 4)):
        sg, ug = s * m, u * m
        total += 9 * prev * c + 9 * c * c + 4 * c
        total += nbases * 9 * c * sg
        total += 2 * (n - 1) * (9 * c * ug + 2 * (ug + sg) + (ug + sg) * c + 2 * c)
        prev = c
    return total + 64 * classes + classes


def basis_resnet_bn_stats(n, s, u):
    """BN moving mean + variance: the plain ResNet's plus 2(u_g+s_g) per basis conv."""
    plain = 2 * (16 + 2 * n * (16 + 32 + 64))
    return plain + sum(2 * (n - 1) * 2 * (u + s) * m for m in (1, 2, 4))


# (depth, variant, shared_rank, unique_rank): (params, BN stats, MACs), spec §2.4
# (FlopCounterMode / 2). The formulas above reproduce every params/BN entry.
SPEC_CIFAR10 = {
    (32, "single", 8, 1): (150_666, 3_280, 47_628_928),
    (32, "single", 16, 1): (197_258, 4_176, 79_086_208),
    (32, "double", 16, 1): (245_642, 4_176, 79_086_208),
    (56, "single", 8, 1): (201_850, 6_080, 83_018_368),
    (56, "single", 16, 1): (270_842, 7_872, 145_932_928),
    (56, "double", 16, 1): (319_226, 7_872, 145_932_928),
    (56, "double", 24, 1): (412_410, 9_664, 208_847_488),
}


def registry_name(depth, variant, s, u):
    """The paper's labels: `resnet56_s16u1`, `resnet56_s16u1_double`; ablations
    `resnet56_s16u0` (SharedOnly) and `resnet56_s0u16` (NonShared)."""
    suffix = "_double" if variant == "double" else ""
    return f"resnet{depth}_s{s}u{u}{suffix}"


_NOTES = ("Net_RL2 CIFAR-10; lambda_r * orthogonality penalty is added in training by the "
          "model's BasisOrthogonality layer. The README's 0.22M for ResNet56-S16U1 leaves out "
          "the shared bases (270,842 with them, spec §2.4).")

_CONFIGS = list(SPEC_CIFAR10) + [
    (32, "shared_only", 16, 0), (56, "shared_only", 16, 0),
    (32, "non_shared", 0, 16), (56, "non_shared", 0, 16),
]
for _depth, _variant, _s, _u in _CONFIGS:
    _n = CIFAR10_DEPTHS[_depth]
    _spec = SPEC_CIFAR10.get((_depth, _variant, _s, _u))
    register_model(
        registry_name(_depth, _variant, _s, _u),
        BasisResNet,
        {"depth": _depth, "variant": _variant, "shared_rank": _s, "unique_rank": _u},
        family="basis_resnet",
        paper=PAPER,
        params=basis_resnet_params(_n, _variant, _s, _u),
        non_trainable=basis_resnet_bn_stats(_n, _s, _u),
        macs=_spec[2] if _spec else None,
        recipe=NET_RL2_CIFAR10,
        notes=_NOTES,
        # Default CI builds the ResNet32 entries and the headline ResNet56-S16U1.
        slow=_depth > 32 and (_depth, _variant, _s, _u) != (56, "single", 16, 1),
    )
