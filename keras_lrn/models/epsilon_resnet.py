"""epsilon-ResNet (Yu, Yu and Ramalingam, CVPR 2018): residual blocks that switch themselves off.

Every residual branch output `F` passes through an `EpsilonGate`: the block
becomes a strict identity (`S = 0`) when `|F| <= epsilon` everywhere in the
batch. With weight decay the switched-off blocks' weights decay, and
`keras_lrn.models.compress` rebuilds the network without them.

Two networks, as the reference code (`yuxwind/epsilon-resnet`, tensorpack):

* `EpsilonResNet`: CIFAR/SVHN pre-activation ResNet of depth 6n+2 (3n blocks
  of two 3x3 convs, 16/32/64 channels), option-A shortcuts (2x2 average
  pooling + symmetric zero channels) on the *raw* block input, no ReLU after
  the addition, BN-ReLU before global pooling.
* `EpsilonResNetImageNet`: the tensorpack pre-activation bottleneck ResNet
  (50/101/152) with its three pre-activation modes and 1x1 projection
  shortcuts.

Both have a training-only side head (BN-ReLU-GAP-Dense, loss weight 0.1 in the
recipes) as a second output `"side_logits"`; `inference_model()` is the
single-output network on the same layers. Conventions of the reference:
TF "SAME" padding (Keras `padding="same"`, both backends), convs without bias,
conv init `VarianceScaling(2, fan_out, truncated normal)`, dense init
`VarianceScaling(2, fan_in, truncated normal)` with zero bias, BN momentum 0.9
and epsilon 1e-5.

Layer names: `stem_*`, blocks `stage{s}_block{b}_*` (1-based; the reference's
`res2.9` is `stage2_block10`, `group2/block8` is `stage3_block9`), the main head
`head_bn`, `head_relu`, `avg_pool`, `predictions`, the side head `side_*`.

The compressed networks (`CompressedEpsilonResNet`) are built by the same code
without gates and with only the kept blocks; see `keras_lrn.models.compress`.
"""

from __future__ import annotations

import keras
from keras import ops

from keras_lrn.layers import EpsilonGate, ZeroPadShortcut
from keras_lrn.layers.epsilon_gate import EMA_DISCARD_THRESHOLD, _check_epsilon
from keras_lrn.models import base
from keras_lrn.models.registry import register_model
from keras_lrn.models.resnet import cifar_depth_to_blocks
from keras_lrn.recipes import EPSILON_CIFAR10, EPSILON_CIFAR100, EPSILON_IMAGENET, EPSILON_SVHN

PAPER = (
    "Yu, Yu and Ramalingam, Learning Strict Identity Mappings in Deep Residual "
    "Networks, CVPR 2018 (arXiv:1804.01661)"
)

#: Bottleneck blocks per stage of the ImageNet depths.
IMAGENET_STAGE_BLOCKS = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3), 152: (3, 8, 36, 3)}


# ----------------------------------------------------------------------------
# Building blocks (shared by the gated and the compressed networks)
# ----------------------------------------------------------------------------


def _conv_init():
    # tf.contrib variance_scaling_initializer(mode="FAN_OUT"): factor 2, truncated normal.
    return keras.initializers.VarianceScaling(2.0, mode="fan_out", distribution="truncated_normal")


def _dense_init():
    # tensorpack's FullyConnected default: variance_scaling_initializer() (fan_in, factor 2).
    return keras.initializers.VarianceScaling(2.0, mode="fan_in", distribution="truncated_normal")


def _conv(x, filters, kernel, strides, name, dtype):
    return keras.layers.Conv2D(
        filters, kernel, strides=strides, padding="same", use_bias=False,
        kernel_initializer=_conv_init(), name=name, dtype=dtype,
    )(x)


def _bn_relu(x, bn_name, relu_name, dtype):
    x = base.batch_norm(bn_name, dtype)(x)
    return keras.layers.ReLU(name=relu_name, dtype=dtype)(x)


def _gate(y, name, gate_epsilon, dtype):
    if gate_epsilon is None:
        return y
    return EpsilonGate(gate_epsilon, name=f"{name}_gate", dtype=dtype)(y)


def _cifar_shortcut(x, filters, strides, name, dtype):
    """Option A on the raw input: 2x2/2 average pooling (VALID) + symmetric zero channels."""
    if strides == 1 and x.shape[-1] == filters:
        return x
    return ZeroPadShortcut(filters, strides=strides, pool="average", name=f"{name}_shortcut",
                           dtype=dtype)(x)


def _cifar_block(x, filters, strides, first, name, gate_epsilon, dtype):
    """Pre-activation basic block: [BN-ReLU] conv3x3(s) BN-ReLU conv3x3, gate, + shortcut."""
    y = x if first else _bn_relu(x, f"{name}_preact_bn", f"{name}_preact_relu", dtype)
    y = _conv(y, filters, 3, strides, f"{name}_conv1", dtype)
    y = _bn_relu(y, f"{name}_bn1", f"{name}_relu1", dtype)
    y = _conv(y, filters, 3, 1, f"{name}_conv2", dtype)
    y = _gate(y, name, gate_epsilon, dtype)
    shortcut = _cifar_shortcut(x, filters, strides, name, dtype)
    return keras.layers.Add(name=f"{name}_add", dtype=dtype)([y, shortcut])


def _bottleneck(x, channels, strides, mode, name, gate_epsilon, dtype, branch=True):
    """tensorpack pre-activation bottleneck; `branch=False` builds only its shortcut path.

    `mode`: "no_preact" (input already BN-ReLU'd; stage 1 block 1), "both_preact"
    (BN-ReLU once, used by branch *and* projection; first block of stages 2-4)
    or "default" (branch on BN-ReLU(x), shortcut on raw x).
    """
    out = 4 * channels
    if mode == "no_preact":
        act, shortcut_in = x, x
    elif mode == "both_preact":
        act = _bn_relu(x, f"{name}_preact_bn", f"{name}_preact_relu", dtype)
        shortcut_in = act
    else:
        act, shortcut_in = None, x
    if x.shape[-1] != out:
        shortcut = _conv(shortcut_in, out, 1, strides, f"{name}_shortcut", dtype)
    else:
        shortcut = shortcut_in
    if not branch:
        return shortcut
    if act is None:
        act = _bn_relu(x, f"{name}_preact_bn", f"{name}_preact_relu", dtype)
    y = _conv(act, channels, 1, 1, f"{name}_conv1", dtype)
    y = _bn_relu(y, f"{name}_bn1", f"{name}_relu1", dtype)
    y = _conv(y, channels, 3, strides, f"{name}_conv2", dtype)
    y = _bn_relu(y, f"{name}_bn2", f"{name}_relu2", dtype)
    y = _conv(y, out, 1, 1, f"{name}_conv3", dtype)
    y = _gate(y, name, gate_epsilon, dtype)
    return keras.layers.Add(name=f"{name}_add", dtype=dtype)([y, shortcut])


def _block_name(stage, block):
    return f"stage{stage}_block{block}"


def _cifar_network(x, width, kept, gate_epsilon, side_name, dtype):
    """Stem + three stages with the 1-based block numbers in `kept`; returns (x, side_in)."""
    x = _conv(x, width, 3, 1, "stem_conv", dtype)
    x = _bn_relu(x, "stem_bn", "stem_relu", dtype)
    side = None
    for s, blocks in enumerate(kept):
        filters, strides = width * 2**s, (1 if s == 0 else 2)
        if 1 not in blocks:
            # Dropped first block: its output was its shortcut (parameter-free).
            x = _cifar_shortcut(x, filters, strides, _block_name(s + 1, 1), dtype)
        for b in blocks:
            name = _block_name(s + 1, b)
            x = _cifar_block(x, filters, strides if b == 1 else 1, s == 0 and b == 1, name,
                             gate_epsilon, dtype)
            if name == side_name:
                side = x
    return x, side


def _imagenet_network(x, width, kept, gate_epsilon, side_name, dtype):
    """Stem (7x7/2, BN-ReLU, 3x3/2 max pool) + four bottleneck stages; returns (x, side_in)."""
    x = _conv(x, width, 7, 2, "stem_conv", dtype)
    x = _bn_relu(x, "stem_bn", "stem_relu", dtype)
    x = keras.layers.MaxPooling2D(3, strides=2, padding="same", name="stem_pool", dtype=dtype)(x)
    side = None
    for s, blocks in enumerate(kept):
        channels, strides = width * 2**s, (1 if s == 0 else 2)
        first_mode = "no_preact" if s == 0 else "both_preact"
        if 1 not in blocks:
            # Dropped first block: keep what its shortcut computed (pre-activation
            # BN-ReLU for stages 2-4, and the 1x1 projection).
            x = _bottleneck(x, channels, strides, first_mode, _block_name(s + 1, 1), None,
                            dtype, branch=False)
        for b in blocks:
            name = _block_name(s + 1, b)
            x = _bottleneck(x, channels, strides if b == 1 else 1,
                            first_mode if b == 1 else "default", name, gate_epsilon, dtype)
            if name == side_name:
                side = x
    return x, side


def _head(x, *, include_top, pooling, classes, classifier_activation, prefix, dtype):
    """BN-ReLU, then global pooling + dense (include_top) or the requested pooling."""
    side = prefix == "side_"
    x = _bn_relu(x, f"{prefix}bn" if side else "head_bn", f"{prefix}relu" if side else "head_relu",
                 dtype)
    return base.apply_head(x, include_top=include_top, pooling=pooling, classes=classes,
                           classifier_activation=classifier_activation, name_prefix=prefix,
                           dtype=dtype, kernel_initializer=_dense_init(),
                           bias_initializer="zeros")


_deep_graph = base.deep_graph


# ----------------------------------------------------------------------------
# Argument checks
# ----------------------------------------------------------------------------


def _check_bool(value, arg):
    if not isinstance(value, bool):
        raise ValueError(f"`{arg}` must be True or False. Received: {arg}={value!r}")
    return value


def _check_width(width, even):
    base.check_positive_int(width, "width")
    if even and width % 2:
        raise ValueError(
            "`width` must be even (the option-A shortcut pads width/2 zero channels on each "
            f"side). Received: width={width!r}"
        )
    return width


def _check_imagenet_depth(depth, stage_blocks):
    """Per-stage bottleneck counts from `depth` (or `stage_blocks`); ValueError otherwise."""
    if stage_blocks is None:
        if isinstance(depth, bool) or depth not in IMAGENET_STAGE_BLOCKS:
            raise ValueError(
                "`depth` must be one of 50, 101, 152 for the ImageNet epsilon-ResNet (or pass "
                f"`stage_blocks`). Received: depth={depth!r}"
            )
        return IMAGENET_STAGE_BLOCKS[depth], depth
    stage_blocks = tuple(stage_blocks)
    if len(stage_blocks) != 4:
        raise ValueError(
            f"`stage_blocks` must have 4 entries. Received: stage_blocks={stage_blocks!r}"
        )
    for b in stage_blocks:
        base.check_positive_int(b, "stage_blocks")
    # `depth` is ignored; the network's depth is 3 * sum(stage_blocks) + 2.
    return stage_blocks, 3 * sum(stage_blocks) + 2


def _resolve_side_position(side_position, stage, stage_size, default_index, block_names):
    """The name of the block after which the side head sits."""
    if side_position is None:
        index = min(max(default_index, 0), stage_size - 1)
        return _block_name(stage, index + 1)
    if isinstance(side_position, str):
        if side_position not in block_names:
            raise ValueError(
                "`side_position` must be a block index in stage "
                f"{stage} (0 <= k < {stage_size}) or a block name of this network "
                f"({block_names[0]} ... {block_names[-1]}). Received: side_position={side_position!r}"
            )
        return side_position
    if isinstance(side_position, bool) or not isinstance(side_position, int) or not (
        0 <= side_position < stage_size
    ):
        raise ValueError(
            f"`side_position` must be a block index in stage {stage}, 0 <= k < {stage_size} "
            "(the reference's 0-based numbering), or a block name. "
            f"Received: side_position={side_position!r}"
        )
    return _block_name(stage, side_position + 1)


def _check_cifar_input(inputs):
    for d in inputs.shape[1:3]:
        if d is not None and d % 4:
            raise ValueError(
                "`input_shape` height and width must be multiples of 4 (two stride-2 "
                "stages with average-pooling shortcuts). Received: "
                f"input_shape={tuple(inputs.shape[1:])!r}"
            )


def _check_kept(blocks, num_stages):
    try:
        blocks = tuple(tuple(stage) for stage in blocks)
    except TypeError as e:
        raise ValueError(
            "`blocks` must be a sequence of per-stage sequences of kept block numbers. "
            f"Received: blocks={blocks!r}"
        ) from e
    if len(blocks) != num_stages:
        raise ValueError(
            f"`blocks` must have {num_stages} stages. Received: blocks={blocks!r}"
        )
    for stage in blocks:
        if any(isinstance(b, bool) or not isinstance(b, int) or b < 1 for b in stage) or list(
            stage
        ) != sorted(set(stage)):
            raise ValueError(
                "`blocks` entries must be increasing 1-based block numbers. "
                f"Received: blocks={blocks!r}"
            )
    return blocks


# ----------------------------------------------------------------------------
# Models
# ----------------------------------------------------------------------------


class _GatedNetwork:
    """Gate helpers shared by the two gated networks (mixed into `FunctionalModel`)."""

    def _init_gated(self, block_names, logits, has_side):
        # Plain attributes (object.__setattr__) so Keras does not track them as sublayers.
        object.__setattr__(self, "_block_names", tuple(block_names))
        object.__setattr__(self, "_logits_tensor", logits)
        object.__setattr__(self, "_has_side", has_side)
        object.__setattr__(self, "_inference_cache", None)
        object.__setattr__(self, "_gates", tuple(self.get_layer(f"{n}_gate") for n in block_names))

    @property
    def block_names(self):
        """Names of the gated blocks in network order (e.g. `"stage2_block10"`)."""
        return list(self._block_names)

    @property
    def gate_layers(self):
        """The `EpsilonGate` of every block, in the order of `block_names`."""
        return list(self._gates)

    @property
    def num_blocks(self):
        """Number of gated residual blocks (3n on CIFAR)."""
        return len(self._block_names)

    @property
    def stage_sizes(self):
        """Blocks per stage."""
        return tuple(self._stage_sizes)

    def set_epsilon(self, value):
        """Set every gate's epsilon (`ValueError` if `value < 0`)."""
        value = _check_epsilon(value)
        for gate in self.gate_layers:
            gate.set_epsilon(value)

    def get_epsilon(self) -> float:
        """The first gate's epsilon (every gate's, unless set one by one)."""
        return self.gate_layers[0].get_epsilon()

    def discarded_count(self, ema=False) -> float:
        """How many blocks are gated off, as a float read on the host.

        Args:
            ema: bool. False: blocks whose gate was 0 at the last training step.
                True: the sum of the blocks' EMAs of "gate == 0", the
                reference's `discarded_cnt` (a float). Defaults to False.
        """
        total = 0.0
        for gate in self.gate_layers:
            if ema:
                total += float(ops.convert_to_numpy(gate.discarded_ema))
            else:
                total += float(float(ops.convert_to_numpy(gate.gate)) == 0.0)
        return total

    def discarded_blocks(self, ema=False, threshold=EMA_DISCARD_THRESHOLD):
        """Names of the blocks gated off (see `EpsilonGate.is_discarded`)."""
        return [n for n, g in zip(self._block_names, self.gate_layers)
                if g.is_discarded(ema=ema, threshold=threshold)]

    def inference_model(self):
        """The single-output (main head) network on the same layers and weights.

        Returns `self` when the model has no side head. This is what export writes.
        """
        if not self._has_side:
            return self
        if self._inference_cache is None:
            with _deep_graph(self.num_blocks):
                model = keras.Model(self.inputs[0], self._logits_tensor,
                                    name=f"{self.name}_inference")
            object.__setattr__(self, "_inference_cache", model)
        return self._inference_cache


def _outputs(main, side_in, side_output, include_top, classes, classifier_activation, dtype):
    if side_output and include_top:
        side = _head(side_in, include_top=True, pooling=None, classes=classes,
                     classifier_activation=classifier_activation, prefix="side_", dtype=dtype)
        return {"logits": main, "side_logits": side}, True
    return main, False


@keras.saving.register_keras_serializable(package="keras_lrn")
class EpsilonResNet(_GatedNetwork, base.FunctionalModel):
    """epsilon-ResNet for CIFAR/SVHN: a gated pre-activation ResNet of depth 6n+2.

    3n pre-activation basic blocks (16/32/64 channels at strides 1/2/2); each
    branch output `F` goes through an `EpsilonGate`, block output
    `S*F + shortcut(x)` with the option-A shortcut (2x2 average pooling and
    symmetric zero channels) on the raw block input. The first block skips
    its pre-activation (the stem ends in BN-ReLU). A side head
    (BN-ReLU-GAP-Dense) sits after block `n // 2` (0-based) of stage 2,
    `stage2_block{n//2 + 1}`: after the 28th of 54 blocks for ResNet-110.

    With `side_output=True` (and `include_top=True`) the outputs are a dict
    `{"logits": ..., "side_logits": ...}` (compile with `loss_weights=
    {"logits": 1.0, "side_logits": 0.1}`); otherwise a single tensor.
    `inference_model()` is the single-output network on the same layers.
    The input is expected mean-subtracted and divided by 128 as in the
    reference (its graph divides by 128; this model does not).

    Args:
        depth: int. 6n+2 (20, 32, 44, 56, 110, 200, 500, 752, ...). Defaults to 110.
        epsilon: float. Initial epsilon of every gate, `>= 0`. Defaults to 2.5.
        side_output: bool. Add the side head as the second output. Only used
            with `include_top=True`. Defaults to True.
        include_top: bool. Add global pooling + the dense classifier. Defaults to True.
        weights: str or None. Path of a weights file to load. Defaults to None.
        input_tensor: optional Keras tensor to use as the image input.
        input_shape: tuple. Image shape, height and width multiples of 4.
            Defaults to (32, 32, 3).
        pooling: None, "avg" or "max": pooling when `include_top=False`.
        classes: int. Number of classes. Defaults to 10.
        classifier_activation: None (logits, the default) or an activation
            name, applied to both heads.
        side_position: None, int or str. Where the side head attaches: None
            for block `n // 2` of stage 2; an int k for block k (0-based, the
            reference's `res2.k`) of stage 2; or any block name. Defaults to None.
        width: int. Channels of the first stage (stages: width, 2*width,
            4*width); even. Defaults to 16.
        name: str. Model name. Defaults to `"epsilon_resnet{depth}"`.
        dtype: dtype policy of the layers (the gates compute in float32).

    Example:
    ```python
    model = keras_lrn.models.EpsilonResNet(depth=110, epsilon=2.5)
    model.num_blocks        # 54; outputs {"logits", "side_logits"}
    model.inference_model() # single output: 1,727,962 trainable parameters (+394 side head)
    model.set_epsilon(2.5); model.discarded_count(ema=True)
    ```

    Reference:
    - Yu, Yu and Ramalingam, "Learning Strict Identity Mappings in Deep
      Residual Networks", CVPR 2018 (arXiv:1804.01661); code
      `yuxwind/epsilon-resnet` `cifarEpsilonResnet.py`.
    """

    variant = "cifar"

    def __init__(self, depth=110, epsilon=2.5, side_output=True, include_top=True, weights=None,
                 input_tensor=None, input_shape=None, pooling=None, classes=10,
                 classifier_activation=None, side_position=None, width=16, name=None,
                 dtype=None, **kwargs):
        n = cifar_depth_to_blocks(depth)
        epsilon = _check_epsilon(epsilon)
        _check_bool(side_output, "side_output")
        base.check_head_args(include_top, pooling, classes, weights)
        _check_width(width, even=True)
        block_names = [_block_name(s, b) for s in (1, 2, 3) for b in range(1, n + 1)]
        side_name = _resolve_side_position(side_position, 2, n, n // 2, block_names)
        inputs = base.make_inputs(input_shape, input_tensor, (32, 32, 3))
        _check_cifar_input(inputs)

        kept = tuple(tuple(range(1, n + 1)) for _ in range(3))
        x, side_in = _cifar_network(inputs, width, kept, epsilon, side_name, dtype)
        main = _head(x, include_top=include_top, pooling=pooling, classes=classes,
                     classifier_activation=classifier_activation, prefix="", dtype=dtype)
        outputs, has_side = _outputs(main, side_in, side_output, include_top, classes,
                                     classifier_activation, dtype)
        with _deep_graph(3 * n):
            super().__init__(inputs=inputs, outputs=outputs,
                             name=name or f"epsilon_resnet{depth}", dtype=dtype, **kwargs)
        self._store_config(depth=depth, epsilon=epsilon, side_output=side_output,
                           include_top=include_top, weights=None, input_tensor=None,
                           input_shape=tuple(inputs.shape[1:]), pooling=pooling, classes=classes,
                           classifier_activation=classifier_activation,
                           side_position=side_position, width=width, dtype=dtype)
        object.__setattr__(self, "_stage_sizes", (n, n, n))
        object.__setattr__(self, "side_block", side_name)
        self._init_gated(block_names, main, has_side)
        self.load_weights_file(weights)


@keras.saving.register_keras_serializable(package="keras_lrn")
class EpsilonResNetImageNet(_GatedNetwork, base.FunctionalModel):
    """epsilon-ResNet for ImageNet: a gated pre-activation bottleneck ResNet-50/101/152.

    The tensorpack pre-activation ResNet: 7x7/2 conv, BN-ReLU, 3x3/2 max
    pooling; four stages of bottlenecks (1x1, 3x3 with the stride, 1x1 to
    4x channels; no BN after the last conv) with 64/128/256/512 channels at
    strides 1/2/2/2; BN-ReLU, global pooling, FC. Pre-activation modes: the
    very first block takes the already activated input (`no_preact`); the
    first block of stages 2-4 applies BN-ReLU once and feeds it to branch
    *and* projection (`both_preact`); all others use BN-ReLU(x) for the
    branch and raw x for the identity shortcut. 1x1 projection shortcuts
    (stride, no BN, no bias) where channels change. Each branch output goes
    through an `EpsilonGate`.

    The side head (BN-ReLU-GAP-FC) sits in stage 3 after block
    `sum(blocks) // 2 - blocks[0] - blocks[1] - 1` (0-based; the reference's
    `SIDE_POSITION`): `stage3_block9` for ResNet-101, `stage3_block14` for
    ResNet-152, `stage3_block1` for ResNet-50 (where the reference crashes
    with a missing-argument error; here it simply works).

    Args:
        depth: int. 50, 101 or 152; ignored when `stage_blocks` is given.
            Defaults to 101.
        epsilon: float. Initial epsilon of every gate, `>= 0`. Defaults to 2.0
            (the reference's module constant; its `-e` flag is ignored).
        side_output: bool. Add the side head as the second output `"side_logits"`.
            Only used with `include_top=True`. Defaults to True.
        include_top, weights, input_tensor, pooling, classifier_activation: as
            `EpsilonResNet`.
        input_shape: tuple. Defaults to (224, 224, 3).
        classes: int. Defaults to 1000.
        side_position: None, int (0-based block of stage 3) or a block name.
            Defaults to None (the reference's position, clamped into stage 3
            for custom `stage_blocks`).
        stage_blocks: None or 4 positive ints: bottlenecks per stage instead
            of the depth's (small test or research networks; depth
            3 * sum + 2). Defaults to None.
        width: int. Bottleneck channels of stage 1 (stages: width * 1/2/4/8,
            outputs 4x). Defaults to 64.
        name: str. Defaults to `"epsilon_resnet{depth}_imagenet"`.
        dtype: dtype policy of the layers.

    Example:
    ```python
    model = keras_lrn.models.EpsilonResNetImageNet(depth=101)  # 44,541,480 + 1,027,048 side
    ```

    Reference:
    - Yu, Yu and Ramalingam, CVPR 2018; code `yuxwind/epsilon-resnet`
      `imagenetEpsilonResnet.py`.
    """

    variant = "imagenet"

    def __init__(self, depth=101, epsilon=2.0, side_output=True, include_top=True, weights=None,
                 input_tensor=None, input_shape=None, pooling=None, classes=1000,
                 classifier_activation=None, side_position=None, stage_blocks=None, width=64,
                 name=None, dtype=None, **kwargs):
        sizes, depth_value = _check_imagenet_depth(depth, stage_blocks)
        epsilon = _check_epsilon(epsilon)
        _check_bool(side_output, "side_output")
        base.check_head_args(include_top, pooling, classes, weights)
        _check_width(width, even=False)
        block_names = [_block_name(s + 1, b) for s, k in enumerate(sizes)
                       for b in range(1, k + 1)]
        default_side = sum(sizes) // 2 - sizes[0] - sizes[1] - 1
        side_name = _resolve_side_position(side_position, 3, sizes[2], default_side, block_names)
        inputs = base.make_inputs(input_shape, input_tensor, (224, 224, 3))

        kept = tuple(tuple(range(1, k + 1)) for k in sizes)
        x, side_in = _imagenet_network(inputs, width, kept, epsilon, side_name, dtype)
        main = _head(x, include_top=include_top, pooling=pooling, classes=classes,
                     classifier_activation=classifier_activation, prefix="", dtype=dtype)
        outputs, has_side = _outputs(main, side_in, side_output, include_top, classes,
                                     classifier_activation, dtype)
        with _deep_graph(sum(sizes)):
            super().__init__(inputs=inputs, outputs=outputs,
                             name=name or f"epsilon_resnet{depth_value}_imagenet", dtype=dtype,
                             **kwargs)
        self._store_config(depth=depth, epsilon=epsilon, side_output=side_output,
                           include_top=include_top, weights=None, input_tensor=None,
                           input_shape=tuple(inputs.shape[1:]), pooling=pooling, classes=classes,
                           classifier_activation=classifier_activation,
                           side_position=side_position,
                           stage_blocks=None if stage_blocks is None else tuple(sizes),
                           width=width, dtype=dtype)
        object.__setattr__(self, "_stage_sizes", tuple(sizes))
        object.__setattr__(self, "side_block", side_name)
        self._init_gated(block_names, main, has_side)
        self.load_weights_file(weights)


@keras.saving.register_keras_serializable(package="keras_lrn")
class CompressedEpsilonResNet(base.FunctionalModel):
    """A gate-free epsilon-ResNet holding only the kept blocks (see `compress`).

    Built by the same code as the gated networks, without gates or side head.
    Kept blocks keep their original names (`stage2_block10_conv1`, ...), so
    weights map one-to-one. A stage whose first (down-sampling) block was
    dropped gets that block's shortcut path as a stand-in: on CIFAR the
    parameter-free average pool + zero channels (nothing in stage 1, whose
    first shortcut is the identity); on ImageNet the first block's
    pre-activation BN-ReLU (stages 2-4) and 1x1 projection, with its weights.

    Args:
        variant: str. "cifar" or "imagenet".
        blocks: per stage, the sorted 1-based numbers of the kept blocks
            (3 stages on CIFAR, 4 on ImageNet), e.g. `((1, 2, 3), (2, 3), (1, 3))`.
        width: int or None. First-stage channels; None for the variant's
            default (16 CIFAR, 64 ImageNet).
        include_top, weights, input_tensor, input_shape, pooling, classes,
        classifier_activation, name, dtype: as `EpsilonResNet`; `classes`
            None means 10 (CIFAR) or 1000 (ImageNet).

    Example:
    ```python
    compressed, report = keras_lrn.models.compress(model)   # model: an EpsilonResNet
    compressed.blocks, report.params_after
    ```

    Reference:
    - Yu, Yu and Ramalingam, CVPR 2018; `compressModel.py`, `*CompressedResnet.py`.
    """

    def __init__(self, variant="cifar", blocks=((1,), (1,), (1,)), width=None, include_top=True,
                 weights=None, input_tensor=None, input_shape=None, pooling=None, classes=None,
                 classifier_activation=None, name=None, dtype=None, **kwargs):
        base.check_choice(variant, "variant", ("cifar", "imagenet"))
        cifar = variant == "cifar"
        blocks = _check_kept(blocks, 3 if cifar else 4)
        if width is None:
            width = 16 if cifar else 64
        _check_width(width, even=cifar)
        if classes is None:
            classes = 10 if cifar else 1000
        base.check_head_args(include_top, pooling, classes, weights)
        inputs = base.make_inputs(input_shape, input_tensor,
                                  (32, 32, 3) if cifar else (224, 224, 3))
        if cifar:
            _check_cifar_input(inputs)
            x, _ = _cifar_network(inputs, width, blocks, None, None, dtype)
        else:
            x, _ = _imagenet_network(inputs, width, blocks, None, None, dtype)
        outputs = _head(x, include_top=include_top, pooling=pooling, classes=classes,
                        classifier_activation=classifier_activation, prefix="", dtype=dtype)
        with _deep_graph(sum(len(stage) for stage in blocks)):
            super().__init__(inputs=inputs, outputs=outputs,
                             name=name or f"compressed_epsilon_resnet_{variant}", dtype=dtype,
                             **kwargs)
        self._store_config(variant=variant, blocks=blocks, width=width, include_top=include_top,
                           weights=None, input_tensor=None, input_shape=tuple(inputs.shape[1:]),
                           pooling=pooling, classes=classes,
                           classifier_activation=classifier_activation, dtype=dtype)
        self.load_weights_file(weights)

    @property
    def block_names(self):
        """Names of the kept residual blocks, in network order."""
        return [_block_name(s + 1, b) for s, stage in enumerate(self.blocks) for b in stage]

    @property
    def num_blocks(self):
        return sum(len(stage) for stage in self.blocks)


# ----------------------------------------------------------------------------
# Analytic parameter counts (trainable: conv/dense kernels, dense bias, BN gamma+beta)
# ----------------------------------------------------------------------------


def cifar_param_counts(n, classes=10, width=16):
    """(main trainable, side-head trainable, main non-trainable) of `EpsilonResNet`.

    Stem 27w + 2w; per block [2*c_in preact BN (not the very first block)] +
    9*c_in*c + 2c + 9*c*c; head BN 2*4w + dense 4w*classes + classes; side head
    BN 2*2w + 2w*classes + classes. Non-trainable: the BN moving mean and
    variance (as many as the BN gamma+beta) + 4 gate scalars per block.
    """
    w = width
    trainable, bn_channels, prev = 27 * w + 2 * w, w, w
    for s in range(3):
        c = w * 2**s
        for b in range(n):
            cin = prev if b == 0 else c
            first = s == 0 and b == 0
            trainable += (0 if first else 2 * cin) + 9 * cin * c + 2 * c + 9 * c * c
            bn_channels += (0 if first else cin) + c
        prev = c
    trainable += 2 * 4 * w + 4 * w * classes + classes
    bn_channels += 4 * w
    side = 2 * 2 * w + 2 * w * classes + classes
    return trainable, side, 2 * bn_channels + 4 * 3 * n


def imagenet_param_counts(stage_blocks, classes=1000, width=64):
    """(main trainable, side-head trainable, main non-trainable) of `EpsilonResNetImageNet`.

    Stem 49*3*w + 2w; bottleneck (c channels, 4c out): [2*c_in preact BN] +
    c_in*c + 2c + 9c^2 + 2c + 4c^2 (+ c_in*4c projection when c_in != 4c);
    head BN 2*32w + 32w*classes + classes; side head on stage 3 (16w channels).
    """
    w = width
    trainable, bn_channels, prev = 49 * 3 * w + 2 * w, w, w
    for s, k in enumerate(stage_blocks):
        c = w * 2**s
        for b in range(k):
            cin = prev if b == 0 else 4 * c
            preact = not (s == 0 and b == 0)
            trainable += (2 * cin if preact else 0) + cin * c + 2 * c + 9 * c * c + 2 * c + 4 * c * c
            bn_channels += (cin if preact else 0) + 2 * c
            if cin != 4 * c:
                trainable += cin * 4 * c
        prev = 4 * c
    trainable += 2 * 32 * w + 32 * w * classes + classes
    bn_channels += 32 * w
    side = 2 * 16 * w + 16 * w * classes + classes
    return trainable, side, 2 * bn_channels + 4 * sum(stage_blocks)


# ----------------------------------------------------------------------------
# Registry
# ----------------------------------------------------------------------------

for _depth in (20, 32, 44, 56, 110, 200, 500, 752):
    _n = (_depth - 2) // 6
    _main, _side, _nt = cifar_param_counts(_n)
    register_model(
        f"epsilon_resnet{_depth}",
        EpsilonResNet,
        {"depth": _depth},
        family="epsilon_resnet",
        paper=PAPER,
        # Spec §1.1 (analytic): n=18 1,727,962; n=33 3,186,202; n=83 8,047,002;
        # n=125 12,130,074; side head +394 (BN 2*32 + dense 32*10 + 10).
        params=_main,
        non_trainable=_nt,
        extra_params={"side_head": _side},
        recipe=EPSILON_CIFAR10,
        dataset_recipes={"cifar100": EPSILON_CIFAR100, "svhn": EPSILON_SVHN},
        notes=(
            f"{3 * _n} gated blocks; side head after stage2_block{_n // 2 + 1} (n // 2, "
            "Python-2 semantics; the reference's n/2 builds none for odd n under Python 3). "
            "`params` counts the inference network; the side head is `extra_params`. "
            "`non_trainable` includes 4 gate scalars per block."
        ),
        slow=_depth >= 500,
    )

for _depth in (50, 101, 152):
    _main, _side, _nt = imagenet_param_counts(IMAGENET_STAGE_BLOCKS[_depth])
    register_model(
        f"epsilon_resnet{_depth}_imagenet",
        EpsilonResNetImageNet,
        {"depth": _depth},
        family="epsilon_resnet",
        paper=PAPER,
        # Spec §1.2 (analytic): ResNet-101 44,541,480 + side 1,027,048;
        # ResNet-152 60,185,128. ResNet-50: the same count, no reference number.
        params=_main,
        non_trainable=_nt,
        extra_params={"side_head": _side},
        recipe=EPSILON_IMAGENET,
        notes=(
            "Side head after stage3_block{} (the reference's SIDE_POSITION).".format(
                sum(IMAGENET_STAGE_BLOCKS[_depth]) // 2 - IMAGENET_STAGE_BLOCKS[_depth][0]
                - IMAGENET_STAGE_BLOCKS[_depth][1]
            )
            + (" The reference crashes building ResNet-50's side head (SIDE_POSITION = 0 "
               "hits a call with a missing argument); here it sits where that formula puts "
               "it, after stage3_block1. No reference parameter count: analytic."
               if _depth == 50 else "")
            + " epsilon 2.0 as the reference really uses (its -e flag is ignored)."
        ),
        slow=True,
    )

del _depth, _n, _main, _side, _nt
