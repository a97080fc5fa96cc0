"""Layer reuse (Köpüklü et al., "Convolutional Neural Networks with Layer Reuse", ICASSP 2019).

`LRUBlock` owns ONE depthwise (x2) 3x3 convolution and ONE 1x1 convolution
with groups=8 and applies them `n_iter` times. Each iteration has its own
BatchNorm pair (BN is not shared), a residual add and a ReLU, and the LRU
channel shuffle runs between iterations (not after the last one).
"""

from __future__ import annotations

import math

import keras
from keras import ops

from keras_lrn.layers.fast_conv import (
    FastBatchNormalization,
    FastDepthwiseConv2D,
    GroupedPointwiseConv2D,
    batch_norm,
    folded_batch_norm_matmul,
)

SHUFFLE_MODES = ("standard", "lru")

# `LRUBlock(unroll="auto")` per backend (measured with LruNet-14, batch 128, CPU;
# benchmarks/RESULTS.md): the formulation with the faster training step.
_AUTO_UNROLL = {"jax": True, "tensorflow": False}


def channel_shuffle(x, groups):
    """ShuffleNet's channel shuffle (NHWC): (.., g, C/g) -> (.., C/g, g).

    g=3 on channels 0..8 gives [0, 3, 6, 1, 4, 7, 2, 5, 8].
    """
    c = x.shape[-1]
    lead = tuple(x.shape[1:-1])
    y = ops.reshape(x, (-1,) + lead + (groups, c // groups))
    perm = tuple(range(len(lead) + 1)) + (len(lead) + 2, len(lead) + 1)
    y = ops.transpose(y, perm)
    return ops.reshape(y, (-1,) + lead + (c,))


# Fastest measured LRU-shuffle formulation per backend (LRU-block training
# step, alternating A/B rounds in one process): a reverse + transpose is ~1.2x
# faster than stacking two slices on TensorFlow (no XLA on CPU), while XLA
# (JAX) fuses the stacked slices better. Both are the same exact permutation.
_AUTO_LRU_SHUFFLE = {"tensorflow": "flip", "jax": "stack"}


def lru_channel_shuffle(x, formulation="auto"):
    """The LRU shuffle: swap the halves, then a groups=2 transpose.

    On channels 0..7 it gives [4, 0, 5, 1, 6, 2, 7, 3]: output 2i is input
    C/2 + i and output 2i+1 is input i (ShuffleNet's g=2 would give
    [0, 4, 1, 5, ...]). `formulation` ("auto", "stack" or "flip") only picks
    how the permutation is computed.
    """
    if formulation == "auto":
        formulation = _AUTO_LRU_SHUFFLE.get(keras.backend.backend(), "stack")
    c = x.shape[-1]
    half = c // 2
    lead = tuple(x.shape[1:-1])
    if formulation == "flip":
        # (.., 2, C/2) -> swap the halves -> (.., C/2, 2)
        y = ops.reshape(x, (-1,) + lead + (2, half))
        y = ops.swapaxes(ops.flip(y, axis=-2), -1, -2)
    elif formulation == "stack":
        y = ops.stack([x[..., half:], x[..., :half]], axis=-1)
    else:
        raise ValueError("`formulation` must be 'auto', 'stack' or 'flip'. Received: "
                         f"formulation={formulation!r}")
    return ops.reshape(y, (-1,) + lead + (c,))


def lru_channel_unshuffle(x):
    """The inverse of `lru_channel_shuffle`: input i = output 2i+1, input C/2+i = output 2i."""
    return ops.concatenate([x[..., 1::2], x[..., 0::2]], axis=-1)


@keras.saving.register_keras_serializable(package="keras_lrn")
class ChannelShuffle(keras.layers.Layer):
    """Channel shuffle layer: `mode="standard"` (ShuffleNet, `groups`) or `"lru"`.

    Args:
        groups: int. Number of groups for the standard shuffle (the LRU shuffle
            always uses 2). Defaults to 2.
        mode: "standard" or "lru". Defaults to "standard".

    Example:
    ```python
    ChannelShuffle(3)(x)          # ShuffleNet g=3
    ChannelShuffle(mode="lru")(x)  # LruNet
    ```
    """

    def __init__(self, groups=2, mode="standard", **kwargs):
        super().__init__(**kwargs)
        if isinstance(groups, bool) or not isinstance(groups, int) or groups < 1:
            raise ValueError(f"`groups` must be a positive int. Received: groups={groups!r}")
        if mode not in SHUFFLE_MODES:
            raise ValueError(f"`mode` must be one of {SHUFFLE_MODES}. Received: mode={mode!r}")
        self.groups = groups
        self.mode = mode

    def build(self, input_shape):
        c = input_shape[-1]
        div = 2 if self.mode == "lru" else self.groups
        if c is None or c % div:
            raise ValueError(f"The channels ({c}) must be a multiple of {div} for a "
                             f"{self.mode!r} shuffle.")

    def call(self, inputs):
        if self.mode == "lru":
            return lru_channel_shuffle(inputs)
        return channel_shuffle(inputs, self.groups)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(groups=self.groups, mode=self.mode)
        return config


@keras.saving.register_keras_serializable(package="keras_lrn")
class LRUBlock(keras.layers.Layer):
    """The layer-reuse (LRU) block of LruNet.

    One depthwise 3x3 conv (`depth_multiplier=expansion`, no bias) and one 1x1
    conv with `groups` (expansion*planes -> planes, no bias) are reused
    `n_iter` times. Iteration i computes

        x = relu(pw_bn[i](pw(dw_bn[i](dw(x)))) + x)

    and, unless it is the last, the LRU channel shuffle. The conv weights are
    created once (`block.dw.kernel` is (3, 3, planes, expansion) and
    `block.pw.kernel` is (1, 1, expansion*planes/groups, planes)); there are
    `n_iter` BN pairs (`block.dw_bns[i]`, `block.pw_bns[i]`, PyTorch
    defaults: momentum 0.1 = Keras 0.9, epsilon 1e-5). The BNs are
    `FastBatchNormalization` (Keras' BatchNormalization with the same weights;
    its training step is ~1.6x faster for the whole block on TensorFlow).

    The input must have `planes` channels. Initialisation is the reference's
    `kaiming_normal_(mode="fan_out")` (untruncated normal, gain sqrt(2), torch
    fan_out = out_channels * k * k).

    Args:
        planes: int. Channels in and out.
        n_iter: int. How many times the convs are reused (LruNet-N). Defaults to 1.
        expansion: int. Depth multiplier of the depthwise conv. Defaults to 2.
        groups: int. Groups of the 1x1 conv. Defaults to 8.
        depthwise_formulation, pointwise_formulation: forwarded to
            `FastDepthwiseConv2D` / `GroupedPointwiseConv2D` ("auto": per backend).
        unroll: "auto", True or False. False: the N reuses run as one loop body,
            traced and compiled once whatever N is; True: N traced copies (what
            a plain Python loop gives). Same function and weights either way.
            "auto" (default) picks the faster training step per backend: True on
            JAX (the loop's stacked residuals cost 8-15 % of a LruNet-14 step,
            for 25 % less compile time), False on TensorFlow (a 4 % slower step
            for 40 % less compile time).

    Example:
    ```python
    block = LRUBlock(64, n_iter=14)
    y = block(keras.ops.ones((2, 16, 16, 64)))   # (2, 16, 16, 64); 2,176 conv weights
    ```

    Reference:
    - Köpüklü et al., "Convolutional Neural Networks with Layer Reuse", ICASSP 2019.
    """

    def __init__(self, planes, n_iter=1, expansion=2, groups=8, depthwise_formulation="auto",
                 pointwise_formulation="auto", unroll="auto", **kwargs):
        super().__init__(**kwargs)
        for value, arg in ((planes, "planes"), (n_iter, "n_iter"), (expansion, "expansion"),
                           (groups, "groups")):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"`{arg}` must be a positive int. Received: {arg}={value!r}")
        if (planes * expansion) % groups or planes % groups:
            raise ValueError("`planes` and `planes * expansion` must be multiples of `groups`. "
                             f"Received: planes={planes}, expansion={expansion}, groups={groups}")
        if n_iter > 1 and planes % 2:
            raise ValueError(f"The LRU shuffle needs an even `planes`. Received: planes={planes}")
        self.planes = planes
        self.n_iter = n_iter
        self.expansion = expansion
        self.groups = groups
        self.depthwise_formulation = depthwise_formulation
        self.pointwise_formulation = pointwise_formulation
        if unroll not in ("auto", True, False):
            raise ValueError("`unroll` must be 'auto', True or False. Received: "
                             f"unroll={unroll!r}")
        self.unroll = unroll
        wide = planes * expansion
        self.dw = FastDepthwiseConv2D(
            3, padding=1, depth_multiplier=expansion, use_bias=False,
            kernel_initializer=keras.initializers.RandomNormal(
                stddev=math.sqrt(2.0 / (wide * 9))),
            formulation=depthwise_formulation, dtype=self.dtype_policy, name="dw")
        self.pw = GroupedPointwiseConv2D(
            planes, groups=groups, use_bias=False,
            kernel_initializer=keras.initializers.RandomNormal(stddev=math.sqrt(2.0 / planes)),
            formulation=pointwise_formulation, dtype=self.dtype_policy, name="pw")
        self.dw_bns = [FastBatchNormalization(momentum=0.9, epsilon=1e-5,
                                               dtype=self.dtype_policy, name=f"dw_bn_{i}")
                       for i in range(n_iter)]
        self.pw_bns = [FastBatchNormalization(momentum=0.9, epsilon=1e-5,
                                               dtype=self.dtype_policy, name=f"pw_bn_{i}")
                       for i in range(n_iter)]

    def build(self, input_shape):
        if input_shape[-1] != self.planes:
            raise ValueError(f"LRUBlock(planes={self.planes}) needs {self.planes} input "
                             f"channels. Received: input_shape={input_shape}")
        wide_shape = tuple(input_shape[:-1]) + (self.planes * self.expansion,)
        self.dw.build(input_shape)
        self.pw.build(wide_shape)
        for bn in self.dw_bns:
            bn.build(wide_shape)
        for bn in self.pw_bns:
            bn.build(input_shape)

    def call(self, inputs, training=None):
        unroll = self.unroll
        if unroll == "auto":
            unroll = _AUTO_UNROLL.get(keras.backend.backend(), False)
        if unroll or self.n_iter == 1 or not self._loopable(inputs):
            return self._call_unrolled(inputs, training)
        return self._call_loop(inputs, training)

    def _call_unrolled(self, inputs, training):
        x = inputs
        for i in range(self.n_iter):
            out = self.dw(x)
            bn = self.dw_bns[i]
            if self.pw.bias is None and bn.can_fold(out):
                # pw(dw_bn(out)) with the BN folded into the 1x1 kernel (no normalised copy)
                out = bn.fold_into_matmul(out, self.pw.kernel[0, 0], training, self.groups,
                                          self.pw.matmul_formulation())
            else:
                out = self.pw(bn(out, training=training))
            out = self.pw_bns[i](out, training=training)
            x = ops.relu(out + x)
            if i < self.n_iter - 1:
                x = lru_channel_shuffle(x)
        return x

    def _loopable(self, inputs):
        bns = self.dw_bns + self.pw_bns
        return (self.pw.bias is None and all(bn.can_fold(inputs) for bn in bns)
                and len({bn.trainable for bn in bns}) == 1
                and len({(bn.epsilon, bn.formulation) for bn in bns}) == 1)

    def _call_loop(self, inputs, training):
        """The N reuses as ONE loop body (`ops.fori_loop`): traced and compiled once.

        Iteration i reads its BN parameters from the (N, C) stacks of the
        per-reuse BNs' weights and returns its batch statistics, which update
        the BNs' moving averages after the loop. The shuffle runs at the start
        of every iteration; the input is un-shuffled once beforehand, so
        iteration 0 sees the input itself. Same function as the unrolled loop.
        """
        n = self.n_iter
        update = bool(training) and self.dw_bns[0].trainable
        epsilon, formulation = self.dw_bns[0].epsilon, self.dw_bns[0].formulation
        stats_dtype = keras.backend.result_type(inputs.dtype, "float32")
        stacks = [ops.stack([ops.cast(t, stats_dtype) for t in tensors])
                  for bns in (self.dw_bns, self.pw_bns)
                  for tensors in zip(*(bn.statistics() for bn in bns))]
        pw_kernel, pw_formulation = self.pw.kernel[0, 0], self.pw.matmul_formulation()
        wide = self.planes * self.expansion
        zeros = tuple(ops.zeros((n, c), stats_dtype)
                      for c in (wide, wide, self.planes, self.planes)) if update else ()

        def body(i, carry):
            x, stats = carry
            dw_gamma, dw_beta, dw_mean, dw_var, pw_gamma, pw_beta, pw_mean, pw_var = (
                ops.take(t, i, axis=0) for t in stacks)
            x = lru_channel_shuffle(x)
            out, m1, v1 = folded_batch_norm_matmul(
                self.dw(x), pw_kernel, dw_gamma, dw_beta, dw_mean, dw_var, epsilon, update,
                formulation, self.groups, pw_formulation)
            out, m2, v2 = batch_norm(out, pw_gamma, pw_beta, pw_mean, pw_var, epsilon, update,
                                     formulation)
            x = ops.relu(out + x)
            if update:
                # (statistics carry no gradient; TF has none for the update op)
                stats = tuple(ops.stop_gradient(ops.slice_update(s, (i, 0), ops.expand_dims(v, 0)))
                              for s, v in zip(stats, (m1, v1, m2, v2)))
            return x, stats

        x, stats = ops.fori_loop(0, n, body, (lru_channel_unshuffle(inputs), zeros))
        if update:
            for i in range(n):
                self.dw_bns[i]._update_moving(stats[0][i], stats[1][i], stats_dtype)
                self.pw_bns[i]._update_moving(stats[2][i], stats[3][i], stats_dtype)
        return x

    def compute_output_shape(self, input_shape):
        return input_shape

    def compute_macs(self, input_shape):
        """Multiply-accumulates of one call (`keras_lrn.profile`): the shared depthwise
        and pointwise kernels run `n_iter` times (stride 1, same spatial size)."""
        _, h, w, _ = input_shape
        kh, kw, _, _ = self.dw.kernel.shape
        dw_out = h * w * int(self.dw.kernel.shape[2]) * int(self.dw.kernel.shape[3])
        _, _, pw_in, pw_out = self.pw.kernel.shape
        return self.n_iter * (dw_out * int(kh) * int(kw) + h * w * int(pw_out) * int(pw_in))

    def get_config(self):
        config = super().get_config()
        config.update(planes=self.planes, n_iter=self.n_iter, expansion=self.expansion,
                      groups=self.groups, depthwise_formulation=self.depthwise_formulation,
                      pointwise_formulation=self.pointwise_formulation, unroll=self.unroll)
        return config
