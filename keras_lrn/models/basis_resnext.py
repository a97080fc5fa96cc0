"""CIFAR-100 ResNeXt50-32x4d with shared *grouped* filter bases (Net_RL2 `models/cifar100/resnext.py`).

The CIFAR ResNeXt (3x3 stem of 64, no max-pool; bottleneck stages of widths
128/256/512/1024 = 32 groups x 4 channels x (1, 2, 4, 8), outputs 256..2048,
strides 1/2/2/2, [3, 4, 6, 3] blocks, 1x1 conv + BN shortcuts, GAP + dense).
In every stage the first block is the ordinary bottleneck (1x1, grouped 3x3
with 32 groups, 1x1); every later block replaces the grouped 3x3 by

    cat[unique grouped 3x3 (width -> u_g, groups u_g / 4),
        shared grouped 3x3 (width -> s_g, groups shared_rank / 4)] -> BN -> ReLU

followed by the block's 1x1 conv (u_g + s_g -> 4 planes). `u_g = unique_rank *
(1, 2, 4, 8)`, `s_g = shared_rank * (1, 2, 4, 8)`. Note the reference's shared
basis uses `groups = int(shared_rank / 4)` in EVERY stage (the *unscaled* rank),
so its filters read `width / (shared_rank / 4)` channels, 8 x stage_mult for
shared_rank 64; only this reproduces the spec's 19,333,380 parameters.

**Labels.** The old README's "ResNeXt50-S16U1" (19.3M parameters, 2.38 GFLOPs)
is `ResNext50_32x4d_SingleShared(64, 4)`, i.e. `shared_rank=64, unique_rank=4`
here: the label counts *groups* (64/4 = 16 shared, 4/4 = 1 unique). The literal
`(16, 1)` crashes in the reference (`groups=int(1/4)=0`); here it raises a
`ValueError`.

Init as the reference: PyTorch defaults (`kaiming_uniform(a=sqrt(5))`, i.e.
U(+-1/sqrt(fan_in)), for every conv and the dense layer; BN 1/0), then each
shared basis orthogonal on its own (on its `(out, in/groups * 9)` view). The
orthogonality penalty is `train_basis`: the shared bases only, each filter
flattened to its `(in / groups) * 9` weights.

The reference's head is `avg_pool2d(4)`, which equals global average pooling
at 32x32 inputs (4x4 final maps); GAP is used here so other sizes work too.

Grouped convolutions are very slow on CPU in both TensorFlow and XLA (a
`Conv2D(128, 3, groups=32)` training step on (8, 32, 32, 128) takes ~8 s), so
`GroupedConv2D` keeps Keras' grouped kernel layout but computes with a faster,
numerically equivalent formulation.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from keras_lrn.layers.filter_basis import OrthogonalBasis
from keras_lrn.models import base
from keras_lrn.models.basis_resnet import PAPER, BasisModel, add_orthogonality, check_lambda_r
from keras_lrn.models.basis_resnet_large import conv1x1, projection_shortcut
from keras_lrn.models.registry import register_model
from keras_lrn.recipes import NET_RL2_CIFAR100_PAPER
from keras_lrn.regularizers import reference_terms

GROUPED_FORMULATIONS = ("auto", "native", "blockdiag", "shift")
RESNEXT_DEPTHS = {50: (3, 4, 6, 3)}
CARDINALITY = 32
GROUP_WIDTH = 4  # base_width of 32x4d; also the reference's literal "/4" of the shared basis
# `auto`: the block-diagonal dense conv up to this in*out channel product, then shifts
# (measured on 2 CPU cores, both backends: blockdiag wins for (128 -> 128, 32 groups) at
# 32x32, the shifted einsums for (512 -> 512, 32 groups) at 8x8).
_BLOCKDIAG_MAX = 128 * 128


def _check_int(value, arg, low=1):
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"`{arg}` must be an integer >= {low}. Received: {arg}={value!r}")
    return value


@keras.saving.register_keras_serializable(package="keras_lrn")
class GroupedConv2D(keras.layers.Layer):
    """Grouped convolution without bias, PyTorch-style symmetric padding, fast on CPU.

    The kernel is exactly `keras.layers.Conv2D(filters, k, groups=groups)`'s:
    `(k, k, in_channels // groups, filters)`, output channel `o` in group
    `o // (filters // groups)` (PyTorch's `(out, in/groups, k, k)` transposed
    `(2, 3, 1, 0)`). The formulation is chosen at call time:

    * ``"native"``: `keras.ops.conv` with the grouped kernel;
    * ``"blockdiag"``: one dense conv with the block-diagonal expansion of the
      kernel (`groups` times the MACs, but a fast dense kernel);
    * ``"shift"``: `k*k` shifted, strided slices, each a per-group batched
      matmul (`einsum`), summed;
    * ``"auto"``: native for `groups == 1`, else blockdiag when
      `in_channels * filters <= 16384`, else shift.

    All compute the same function up to float summation order.

    Args:
        filters: int. Output channels (a multiple of `groups`).
        kernel_size: int. Defaults to 3.
        strides: int. Defaults to 1.
        padding: int. Zero padding on every side (PyTorch `padding`). Defaults
            to `kernel_size // 2`.
        groups: int. Defaults to 1.
        kernel_initializer: Defaults to PyTorch's conv default
            (`kaiming_uniform(a=sqrt(5))` = U(+-1/sqrt(fan_in))).
        formulation: str. One of "auto", "native", "blockdiag", "shift".

    Example:
    ```python
    y = GroupedConv2D(64, 3, groups=16)(keras.ops.ones((2, 8, 8, 128)))   # (2, 8, 8, 64)
    ```
    """

    def __init__(self, filters, kernel_size=3, strides=1, padding=None, groups=1,
                 kernel_initializer=None, formulation="auto", **kwargs):
        super().__init__(**kwargs)
        self.filters = _check_int(filters, "filters")
        self.kernel_size = _check_int(kernel_size, "kernel_size")
        self.strides = _check_int(strides, "strides")
        self.padding = kernel_size // 2 if padding is None else _check_int(padding, "padding", 0)
        self.groups = _check_int(groups, "groups")
        if filters % groups:
            raise ValueError(f"`filters` must be a multiple of `groups`={groups}. "
                             f"Received: filters={filters}")
        base.check_choice(formulation, "formulation", GROUPED_FORMULATIONS)
        self.formulation = formulation
        self.kernel_initializer = keras.initializers.get(
            kernel_initializer or base.torch_linear_kernel())

    def build(self, input_shape):
        cin = int(input_shape[-1])
        if cin % self.groups:
            raise ValueError(f"The input channels must be a multiple of `groups`={self.groups}. "
                             f"Received: input_shape={tuple(input_shape)}")
        k = self.kernel_size
        self.kernel = self.add_weight(name="kernel", shape=(k, k, cin // self.groups, self.filters),
                                      initializer=self.kernel_initializer)

    def resolved_formulation(self, in_channels):
        if self.formulation != "auto":
            return self.formulation
        if self.groups == 1:
            return "native"
        return "blockdiag" if in_channels * self.filters <= _BLOCKDIAG_MAX else "shift"

    def _out_size(self, size):
        return None if size is None else (size + 2 * self.padding - self.kernel_size) // (
            self.strides) + 1

    def call(self, inputs):
        k, s, g = self.kernel_size, self.strides, self.groups
        cin = inputs.shape[-1]
        kernel = ops.cast(self.kernel, inputs.dtype)
        x = inputs
        if self.padding:
            p = self.padding
            x = ops.pad(x, ((0, 0), (p, p), (p, p), (0, 0)))
        mode = self.resolved_formulation(cin)
        if mode == "native":
            return ops.conv(x, kernel, strides=s, padding="valid")
        ipg, opg = cin // g, self.filters // g
        if mode == "blockdiag":
            k5 = ops.reshape(kernel, (k, k, ipg, g, opg))
            dense = ops.einsum("hwigo,fg->hwfigo", k5, ops.eye(g, dtype=kernel.dtype))
            return ops.conv(x, ops.reshape(dense, (k, k, cin, self.filters)), strides=s,
                            padding="valid")
        ho = (x.shape[1] - k) // s + 1
        wo = (x.shape[2] - k) // s + 1
        kk = ops.transpose(ops.reshape(kernel, (k, k, ipg, g, opg)), (0, 1, 3, 2, 4))
        out = None
        for dh in range(k):
            for dw in range(k):
                xs = x[:, dh:dh + s * (ho - 1) + 1:s, dw:dw + s * (wo - 1) + 1:s, :]
                xs = ops.reshape(xs, (-1, ho, wo, g, ipg))
                t = ops.einsum("bhwgi,gio->bhwgo", xs, kk[dh, dw])
                out = t if out is None else out + t
        return ops.reshape(out, (-1, ho, wo, self.filters))

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self._out_size(input_shape[1]), self._out_size(input_shape[2]),
                self.filters)

    def get_config(self):
        config = super().get_config()
        config.update(filters=self.filters, kernel_size=self.kernel_size, strides=self.strides,
                      padding=self.padding, groups=self.groups, formulation=self.formulation,
                      kernel_initializer=keras.initializers.serialize(self.kernel_initializer))
        return config


def check_resnext_ranks(shared_rank, unique_rank):
    """Both ranks: positive multiples of the group width 4 whose group count divides 128."""
    for value, arg, what in ((shared_rank, "shared_rank", "groups = shared_rank / 4"),
                             (unique_rank, "unique_rank", "groups = unique_rank * mult / 4")):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"`{arg}` must be a non-negative integer. Received: {arg}={value!r}")
        if value < GROUP_WIDTH or value % GROUP_WIDTH or (128 % (value // GROUP_WIDTH)):
            raise ValueError(
                f"`{arg}` must be a positive multiple of the group width {GROUP_WIDTH} whose "
                f"group count ({what}) divides 128, e.g. 4, 8, 16, 32, 64 (the reference "
                f"builds a grouped conv with int({arg} / 4) groups; the README's "
                f"'ResNeXt50-S16U1' is shared_rank=64, unique_rank=4). "
                f"Received: {arg}={value!r}")
    return shared_rank, unique_rank


def _bottleneck_head(x, width, name, dtype):
    y = conv1x1(x, width, 1, f"{name}_conv1", dtype, base.torch_linear_kernel())
    y = base.batch_norm(f"{name}_bn1", dtype)(y)
    return keras.layers.ReLU(name=f"{name}_relu1", dtype=dtype)(y)


def _bottleneck_tail(x, y, planes, strides, name, dtype):
    y = conv1x1(y, 4 * planes, 1, f"{name}_conv3", dtype, base.torch_linear_kernel())
    y = base.batch_norm(f"{name}_bn3", dtype)(y)
    shortcut = projection_shortcut(x, 4 * planes, strides, name, dtype, base.torch_linear_kernel())
    y = keras.layers.Add(name=f"{name}_add", dtype=dtype)([y, shortcut])
    return keras.layers.ReLU(name=f"{name}_out", dtype=dtype)(y)


def resnext_block(x, planes, strides, name, dtype=None, formulation="auto"):
    """The ordinary 32x4d bottleneck (grouped 3x3 carries the stride)."""
    width = planes // 64 * GROUP_WIDTH * CARDINALITY
    y = _bottleneck_head(x, width, name, dtype)
    y = GroupedConv2D(width, 3, strides=strides, groups=CARDINALITY, formulation=formulation,
                      name=f"{name}_conv2", dtype=dtype)(y)
    y = base.batch_norm(f"{name}_bn2", dtype)(y)
    y = keras.layers.ReLU(name=f"{name}_relu2", dtype=dtype)(y)
    return _bottleneck_tail(x, y, planes, strides, name, dtype)


def basis_resnext_block(x, planes, name, shared, unique_rank, dtype=None, formulation="auto"):
    """A non-first block: cat[unique grouped 3x3, shared grouped 3x3] -> BN -> ReLU -> 1x1.

    Returns `(output, unique layer)`.
    """
    width = planes // 64 * GROUP_WIDTH * CARDINALITY
    y = _bottleneck_head(x, width, name, dtype)
    unique = GroupedConv2D(unique_rank, 3, groups=unique_rank // GROUP_WIDTH,
                           formulation=formulation, name=f"{name}_unique", dtype=dtype)
    y = keras.layers.Concatenate(axis=-1, name=f"{name}_concat", dtype=dtype)(
        [unique(y), shared(y)])
    y = base.batch_norm(f"{name}_bn2", dtype)(y)
    y = keras.layers.ReLU(name=f"{name}_relu2", dtype=dtype)(y)
    return _bottleneck_tail(x, y, planes, 1, name, dtype), unique


@keras.saving.register_keras_serializable(package="keras_lrn")
class BasisResNeXt(BasisModel):
    """CIFAR-100 ResNeXt50-32x4d with shared grouped filter bases (Net_RL2).

    Args:
        depth: int. 50. Defaults to 50.
        shared_rank: int. Shared filters of stage 1 (x2, x4, x8), a multiple of
            4; the shared basis has `shared_rank / 4` groups in every stage.
            Defaults to 64.
        unique_rank: int. Unique filters per block in stage 1 (x2, x4, x8), a
            multiple of 4 (`u_g / 4` groups). Defaults to 4.
        lambda_r: float. Weight of the orthogonality penalty. Defaults to 10.
        include_top, weights, input_tensor, input_shape, pooling, classes,
            classifier_activation, name: as `keras.applications` (32x32, 100
            classes by default).
        seed: int or None. Seed of the shared bases' orthogonal init.
        formulation: str. How the grouped convs compute (see `GroupedConv2D`).
            Defaults to "auto".

    Example:
    ```python
    model = keras_lrn.models.BasisResNeXt(50, 64, 4)   # README "ResNeXt50-S16U1", 19,333,380
    ```

    Reference:
    - Kang et al., "Learning Deeply Shared Filter Bases for Efficient
      ConvNets", github.com/ssregibility/Net_RL2 (`models/cifar100/resnext.py`).
    """

    def __init__(self, depth=50, shared_rank=64, unique_rank=4, lambda_r=10.0, include_top=True,
                 weights=None, input_tensor=None, input_shape=None, pooling=None, classes=100,
                 classifier_activation=None, seed=None, formulation="auto", name=None,
                 dtype=None, **kwargs):
        if isinstance(depth, bool) or depth not in RESNEXT_DEPTHS:
            raise ValueError(f"`depth` must be one of {sorted(RESNEXT_DEPTHS)}. "
                             f"Received: depth={depth!r}")
        blocks = RESNEXT_DEPTHS[depth]
        check_resnext_ranks(shared_rank, unique_rank)
        lambda_r = check_lambda_r(lambda_r)
        base.check_choice(formulation, "formulation", GROUPED_FORMULATIONS)
        base.check_head_args(include_top, pooling, classes, weights)
        if seed is None:
            seed = int(np.random.randint(0, 2**31 - 1 - 16))
        inputs = base.make_inputs(input_shape, input_tensor, (32, 32, 3))
        x = keras.layers.Conv2D(64, 3, padding="same", use_bias=False, name="stem_conv",
                                kernel_initializer=base.torch_linear_kernel(), dtype=dtype)(inputs)
        x = base.batch_norm("stem_bn", dtype)(x)
        x = keras.layers.ReLU(name="stem_relu", dtype=dtype)(x)
        stages = []
        for stage, (planes, n) in enumerate(zip((64, 128, 256, 512), blocks)):
            prefix = f"stage{stage + 1}"
            mult = 2 ** stage
            x = resnext_block(x, planes, 2 if stage else 1, f"{prefix}_block1", dtype,
                              formulation)
            basis = GroupedConv2D(shared_rank * mult, 3, groups=shared_rank // GROUP_WIDTH,
                                  kernel_initializer=OrthogonalBasis(seed=seed + stage),
                                  formulation=formulation, name=f"{prefix}_shared_basis",
                                  dtype=dtype)
            for block in range(1, n):
                x, _ = basis_resnext_block(x, planes, f"{prefix}_block{block + 1}", basis,
                                           unique_rank * mult, dtype, formulation)
            stages.append([basis])
        outputs = base.apply_head(x, include_top=include_top, pooling=pooling, classes=classes,
                                  classifier_activation=classifier_activation, dtype=dtype)
        outputs = add_orthogonality(outputs, reference_terms("train_basis", stages), lambda_r,
                                    dtype)
        with base.deep_graph(sum(blocks)):
            super().__init__(inputs=inputs, outputs=outputs,
                             name=name or f"resnext{depth}_32x4d_shared", dtype=dtype, **kwargs)
        self._init_orthogonality()
        self._store_config(depth=depth, shared_rank=shared_rank, unique_rank=unique_rank,
                           lambda_r=lambda_r, include_top=include_top, weights=None,
                           input_tensor=None, input_shape=tuple(inputs.shape[1:]),
                           pooling=pooling, classes=classes,
                           classifier_activation=classifier_activation, seed=seed,
                           formulation=formulation, dtype=dtype)
        self.load_weights_file(weights)


def resnext_params(s, u, classes=100):
    """Trainable parameters of `BasisResNeXt(50, s, u)`, counted as the reference does.

    Stem 3*9*64 + 128; per stage (planes p, width w = 2p, n blocks, s_g, u_g):
    first block c_in*w + 2w + w*(w/32)*9 + 2w + w*4p + 8p + (c_in*4p + 8p)
    shortcut; shared basis s_g * (w / (s/4)) * 9; each later block 4p*w + 2w
    + unique u_g * (w / (u_g/4)) * 9 (= 36w) + 2(u_g+s_g) + (u_g+s_g)*4p + 8p;
    head 2048*classes + classes.
    """
    total = 3 * 9 * 64 + 2 * 64
    cin = 64
    for stage, (p, n) in enumerate(zip((64, 128, 256, 512), RESNEXT_DEPTHS[50])):
        m = 2 ** stage
        w, sg, ug = 2 * p, s * m, u * m
        total += cin * w + 2 * w + w * (w // CARDINALITY) * 9 + 2 * w + w * 4 * p + 8 * p
        total += cin * 4 * p + 8 * p
        total += sg * (w // (s // GROUP_WIDTH)) * 9
        total += (n - 1) * (4 * p * w + 2 * w + ug * (w // (ug // GROUP_WIDTH)) * 9
                            + 2 * (ug + sg) + (ug + sg) * 4 * p + 8 * p)
        cin = 4 * p
    return total + 2048 * classes + classes


def resnext_bn_stats(s, u):
    """BN moving mean + variance (no spec row for the shared model: derived, see notes)."""
    total = 2 * 64
    for stage, (p, n) in enumerate(zip((64, 128, 256, 512), RESNEXT_DEPTHS[50])):
        m = 2 ** stage
        w = 2 * p
        total += 2 * (2 * w + 4 * p + 4 * p)  # first block: bn1, bn2, bn3, shortcut bn
        total += 2 * (n - 1) * (w + (u + s) * m + 4 * p)
    return total


# Spec §2.4: README "ResNeXt50-S16U1" = ResNext50_32x4d_SingleShared(64, 4).
SPEC_RESNEXT = {(64, 4): (19_333_380, 1_179_000_832)}

register_model(
    "resnext50_s16u1_cifar100",
    BasisResNeXt,
    {"depth": 50, "shared_rank": 64, "unique_rank": 4},
    family="basis_resnext",
    paper=PAPER,
    params=SPEC_RESNEXT[(64, 4)][0],
    non_trainable=resnext_bn_stats(64, 4),
    macs=SPEC_RESNEXT[(64, 4)][1],
    recipe=NET_RL2_CIFAR100_PAPER,
    notes=("Old README row 'ResNeXt50-S16U1' counts groups: it is "
           "`ResNext50_32x4d_SingleShared(64, 4)` (shared_rank=64, unique_rank=4; 19,333,380 "
           "params, 1.179 GMAC = the README's 2.38 GFLOPs within 1%). The literal (16, 1) "
           "crashes in the reference (groups=0) and raises ValueError here. The shared basis "
           "has shared_rank/4 groups in every stage, as in the reference. BN statistics "
           "(no spec row) are derived from the architecture. Recipe: the paper's schedule; "
           "`--schedule constant` is the reference script's constant LR."),
    slow=True,
)
