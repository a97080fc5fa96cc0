"""Depthwise and grouped 1x1 convolutions that are fast on every backend.

On CPU, XLA's gradient of a feature-grouped convolution is pathologically slow
(a single `DepthwiseConv2D(3, depth_multiplier=2)` training step on a
(128, 16, 16, 64) input takes ~16 s under JAX), and grouped convolutions are
slow on both TensorFlow and JAX, while dense matmuls and element-wise ops are
fast. These layers keep the *weights* in the standard Keras layouts

* `FastDepthwiseConv2D.kernel`: `(kh, kw, in_channels, depth_multiplier)`,
  exactly `keras.layers.DepthwiseConv2D`'s kernel (output channel
  `c * depth_multiplier + m` reads input channel `c`);
* `GroupedPointwiseConv2D.kernel`: `(1, 1, in_channels // groups, filters)`,
  exactly `keras.layers.Conv2D(filters, 1, groups=groups)`'s kernel (output
  channel `o` belongs to group `o // (filters // groups)`),

so checkpoints, converters and `.keras` files do not depend on how the
convolution is computed. The *formulation* is picked at call time from
`keras.backend.backend()` (or forced with `formulation=`):

* depthwise: `"native"` (`keras.ops.depthwise_conv`, TensorFlow's fast kernel)
  or `"shift"` (k*k shifted multiply-adds in `keras.ops`; what JAX uses);
* grouped 1x1: `"native"` (`keras.ops.conv` with a grouped kernel),
  `"einsum"` (per-group einsum), `"batched"` (the input transposed to
  group-major and one batched matmul over the groups: exactly the grouped
  MACs; the fastest on JAX at every LruNet size) or `"blockdiag"` (one dense
  matmul with the block-diagonal expansion of the kernel: `groups` times the
  MACs, but a single large GEMM; the fastest on TensorFlow for <= 256 input
  channels).

`FastBatchNormalization` is `keras.layers.BatchNormalization` (same weights,
config and inference path) whose *training* step can be computed as
`"matmul"`: the per-channel sums as `ones(1, M) @ x` matmuls and an analytic
gradient (`keras.ops.custom_gradient`), ~2.8x faster fwd+bwd than Keras' BN
on TensorFlow-CPU, where Keras' BN is unfused; `"native"` (Keras' own code) is
kept on JAX, where XLA fuses it.

All formulations compute the same function; they differ only in float
summation order (max abs difference ~1e-6 relative in float32).
"""

from __future__ import annotations

import math

import keras
from keras import ops

DEPTHWISE_FORMULATIONS = ("auto", "native", "shift")
POINTWISE_FORMULATIONS = ("auto", "native", "einsum", "blockdiag", "batched")

# Fastest measured formulation per backend (benchmarks/lrunet_speed.py).
_AUTO_DEPTHWISE = {"jax": "shift", "tensorflow": "native"}
# (formulation, from how many input channels per group on; "blockdiag" below)
_AUTO_POINTWISE = {"jax": ("batched", 32), "tensorflow": ("batched", 64)}
BATCH_NORM_FORMULATIONS = ("auto", "native", "matmul")
_AUTO_BATCH_NORM = {"jax": "native", "tensorflow": "matmul"}


def resolve_depthwise_formulation(formulation="auto", backend=None):
    """The depthwise formulation used for `formulation` on `backend` (default: current)."""
    if formulation != "auto":
        return formulation
    return _AUTO_DEPTHWISE.get(backend or keras.backend.backend(), "shift")


def resolve_pointwise_formulation(formulation="auto", backend=None, group_channels=None):
    """The grouped-1x1 formulation used for `formulation` on `backend` (default: current).

    "auto" is "batched" from 32 input channels per group (`group_channels`) on
    JAX and from 64 on TensorFlow, "blockdiag" below (or when unknown): at 16
    channels per group the batched matmuls are too thin (LRU block at
    16x16x128 -> 64 on JAX: ~8 % slower training step), at 128 they win
    (1024 -> 512: 2.7x faster than the block-diagonal GEMM's 8x MACs).
    """
    if formulation != "auto":
        return formulation
    choice, threshold = _AUTO_POINTWISE.get(backend or keras.backend.backend(),
                                            ("blockdiag", 0))
    if group_channels is None or group_channels < threshold:
        return "blockdiag"
    return choice


def resolve_batch_norm_formulation(formulation="auto", backend=None):
    """The BN training formulation used for `formulation` on `backend` (default: current)."""
    if formulation != "auto":
        return formulation
    return _AUTO_BATCH_NORM.get(backend or keras.backend.backend(), "native")


def _pair(value, arg):
    if isinstance(value, int) and not isinstance(value, bool):
        value = (value, value)
    value = tuple(value)
    if len(value) != 2 or any(isinstance(v, bool) or not isinstance(v, int) or v < 1
                              for v in value):
        raise ValueError(f"`{arg}` must be a positive int or a pair of them. Received: "
                         f"{arg}={value!r}")
    return value


def _check_padding(padding):
    if isinstance(padding, str):
        if padding.lower() not in ("same", "valid"):
            raise ValueError("`padding` must be 'same', 'valid' or a non-negative int "
                             f"(symmetric, PyTorch style). Received: padding={padding!r}")
        return padding.lower()
    if isinstance(padding, bool) or not isinstance(padding, int) or padding < 0:
        raise ValueError("`padding` must be 'same', 'valid' or a non-negative int "
                         f"(symmetric, PyTorch style). Received: padding={padding!r}")
    return padding


def _same_pads(size, k, s):
    out = -(-size // s)
    total = max((out - 1) * s + k - size, 0)
    return total // 2, total - total // 2


def _explicit_pads(padding, kernel_size, strides, spatial):
    """((top, bottom), (left, right)) zero padding for `padding`."""
    if padding == "valid":
        return (0, 0), (0, 0)
    if isinstance(padding, int):
        return (padding, padding), (padding, padding)
    pads = []
    for size, k, s in zip(spatial, kernel_size, strides):
        if s == 1:
            pads.append(((k - 1) // 2, k - 1 - (k - 1) // 2))
        else:
            if size is None:
                raise ValueError("padding='same' with strides > 1 needs a static spatial size. "
                                 "Use an int padding instead.")
            pads.append(_same_pads(size, k, s))
    return tuple(pads)


def _out_size(size, k, s, pad):
    if size is None:
        return None
    return (size + pad[0] + pad[1] - k) // s + 1


@keras.saving.register_keras_serializable(package="keras_lrn")
class FastDepthwiseConv2D(keras.layers.Layer):
    """`keras.layers.DepthwiseConv2D` with a backend-specific fast formulation.

    Same kernel layout and outputs as `keras.layers.DepthwiseConv2D` (channels
    last). `padding` may also be an int: symmetric zero padding as PyTorch's
    `padding=` (which differs from Keras `"same"` at stride 2 on even inputs).

    Args:
        kernel_size: int or pair. Defaults to 3.
        strides: int or pair. Defaults to 1.
        padding: "same", "valid" or a non-negative int. Defaults to "same".
        depth_multiplier: int. Output channels per input channel. Defaults to 1.
        use_bias: bool. Defaults to False.
        kernel_initializer, bias_initializer, kernel_regularizer,
        bias_regularizer: as in Keras.
        formulation: "auto" (per backend), "native" or "shift".

    Example:
    ```python
    layer = FastDepthwiseConv2D(3, depth_multiplier=2)
    y = layer(keras.ops.ones((1, 8, 8, 4)))   # (1, 8, 8, 8)
    ```
    """

    def __init__(self, kernel_size=3, strides=1, padding="same", depth_multiplier=1,
                 use_bias=False, kernel_initializer="glorot_uniform",
                 bias_initializer="zeros", kernel_regularizer=None, bias_regularizer=None,
                 formulation="auto", **kwargs):
        super().__init__(**kwargs)
        self.kernel_size = _pair(kernel_size, "kernel_size")
        self.strides = _pair(strides, "strides")
        self.padding = _check_padding(padding)
        if isinstance(depth_multiplier, bool) or not isinstance(depth_multiplier, int) or (
                depth_multiplier < 1):
            raise ValueError("`depth_multiplier` must be a positive int. Received: "
                             f"depth_multiplier={depth_multiplier!r}")
        self.depth_multiplier = depth_multiplier
        self.use_bias = bool(use_bias)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)
        self.bias_regularizer = keras.regularizers.get(bias_regularizer)
        if formulation not in DEPTHWISE_FORMULATIONS:
            raise ValueError(f"`formulation` must be one of {DEPTHWISE_FORMULATIONS}. "
                             f"Received: formulation={formulation!r}")
        self.formulation = formulation
        self.input_spec = keras.layers.InputSpec(ndim=4)

    def build(self, input_shape):
        channels = input_shape[-1]
        if channels is None:
            raise ValueError("The channel dimension of the input must be known. "
                             f"Received: input_shape={input_shape}")
        self.input_spec = keras.layers.InputSpec(ndim=4, axes={-1: channels})
        self.kernel = self.add_weight(
            name="kernel", shape=self.kernel_size + (channels, self.depth_multiplier),
            initializer=self.kernel_initializer, regularizer=self.kernel_regularizer)
        if self.use_bias:
            self.bias = self.add_weight(name="bias", shape=(channels * self.depth_multiplier,),
                                        initializer=self.bias_initializer,
                                        regularizer=self.bias_regularizer)
        else:
            self.bias = None

    def call(self, inputs):
        pads = _explicit_pads(self.padding, self.kernel_size, self.strides, inputs.shape[1:3])
        x = inputs
        if any(p for pair in pads for p in pair):
            x = ops.pad(x, [[0, 0], list(pads[0]), list(pads[1]), [0, 0]])
        kernel = ops.cast(self.kernel, x.dtype)
        formulation = resolve_depthwise_formulation(self.formulation)
        if formulation == "native":
            y = ops.depthwise_conv(x, kernel, strides=self.strides, padding="valid")
        else:
            y = _depthwise(x, kernel, self.strides)
        if self.bias is not None:
            y = y + ops.cast(self.bias, y.dtype)
        return y

    def compute_output_shape(self, input_shape):
        b, h, w, c = input_shape
        pads = _explicit_pads(self.padding, self.kernel_size, self.strides, (h, w))
        return (b, _out_size(h, self.kernel_size[0], self.strides[0], pads[0]),
                _out_size(w, self.kernel_size[1], self.strides[1], pads[1]),
                None if c is None else c * self.depth_multiplier)

    def get_config(self):
        config = super().get_config()
        config.update(
            kernel_size=self.kernel_size, strides=self.strides, padding=self.padding,
            depth_multiplier=self.depth_multiplier, use_bias=self.use_bias,
            kernel_initializer=keras.initializers.serialize(self.kernel_initializer),
            bias_initializer=keras.initializers.serialize(self.bias_initializer),
            kernel_regularizer=keras.regularizers.serialize(self.kernel_regularizer),
            bias_regularizer=keras.regularizers.serialize(self.bias_regularizer),
            formulation=self.formulation,
        )
        return config


# Images per chunk of the depthwise kernel gradient: chunks of about this many
# bytes of (padded, channel-repeated) input stay in cache (see `_depthwise_kernel_grad`).
_KERNEL_GRAD_CHUNK_BYTES = 2 << 20


def _depthwise(x, kernel, strides):
    """Shifted-multiply-add depthwise conv with a cache-friendly gradient at stride 1.

    Autodiff of `_shifted_depthwise` keeps each of the kh*kw shifted input taps
    as a residual and reduces each against the upstream gradient over the
    whole batch: on XLA:CPU that is kh*kw full-size copies plus kh*kw passes
    over memory (~115 ms of a ~120 ms LruNet-14 stage-1 iteration on JAX).
    Here the only residual is the padded input; the input gradient is the
    same shifted multiply-add on the padded upstream gradient with the flipped
    kernel, and the kernel gradient is summed chunk by chunk over the batch
    (`ops.map`), so each chunk's taps stay in cache. Same function and
    gradient; only the float summation order differs.
    """
    if tuple(strides) != (1, 1) or x.shape[0] is None or any(d is None for d in x.shape[1:]):
        return _shifted_depthwise(x, kernel, strides)

    @ops.custom_gradient
    def depthwise(x, kernel):
        y = _shifted_depthwise(x, kernel, (1, 1))

        def grad(*args, upstream=None):
            dy = _upstream(args, upstream)
            return _depthwise_input_grad(dy, kernel), _depthwise_kernel_grad(x, dy, kernel.shape)

        return y, grad

    return depthwise(x, kernel)


def _depthwise_input_grad(dy, kernel):
    """d(loss)/d(padded input) of a stride-1 valid depthwise conv.

    The correlation of the zero-padded upstream gradient with the flipped
    kernel, summed over the depth multiplier inside the same element-wise
    expression (a separate reduction over the multiplier axis makes XLA:CPU
    materialise every shifted tap).
    """
    kh, kw, channels, mult = kernel.shape
    dy = ops.pad(dy, [[0, 0], [kh - 1, kh - 1], [kw - 1, kw - 1], [0, 0]])
    h, w = dy.shape[1] - kh + 1, dy.shape[2] - kw + 1
    acc = None
    for m in range(mult):
        dym = dy[..., m::mult] if mult > 1 else dy
        for i in range(kh):
            for j in range(kw):
                term = dym[:, kh - 1 - i:kh - 1 - i + h, kw - 1 - j:kw - 1 - j + w] * kernel[i, j, :, m]
                acc = term if acc is None else acc + term
    return acc


def _depthwise_kernel_grad(x, dy, kernel_shape):
    """d(loss)/d(kernel) of a stride-1 valid depthwise conv, summed in batch chunks."""
    kh, kw, channels, mult = kernel_shape
    batch, h, w, _ = x.shape
    ho, wo = h - kh + 1, w - kw + 1
    per_image = h * w * channels * mult * 4
    target = max(1, min(batch, _KERNEL_GRAD_CHUNK_BYTES // per_image))
    # the largest chunk <= target that divides the batch (padding would copy it all)
    chunk = max(d for d in range(1, target + 1) if batch % d == 0)
    if chunk * 4 < target:  # e.g. a prime batch: pad with zero images instead
        chunk = target
        extra = -batch % chunk
        x = ops.pad(x, [[0, extra], [0, 0], [0, 0], [0, 0]])
        dy = ops.pad(dy, [[0, extra], [0, 0], [0, 0], [0, 0]])
    steps = x.shape[0] // chunk
    xs = ops.reshape(x, (steps, chunk, h, w, channels))
    dys = ops.reshape(dy, (steps, chunk, ho, wo, channels * mult))

    def partial(pair):
        xc, dyc = pair
        if mult > 1:
            xc = ops.repeat(xc, mult, axis=-1)
        return ops.stack([ops.sum(xc[:, i:i + ho, j:j + wo] * dyc, axis=(0, 1, 2))
                          for i in range(kh) for j in range(kw)])

    dk = ops.sum(ops.map(partial, (xs, dys)), axis=0)
    return ops.reshape(dk, (kh, kw, channels, mult))


def _shifted_depthwise(x, kernel, strides):
    """Valid depthwise conv of a pre-padded NHWC `x` as kh*kw shifted multiply-adds.

    With a depth multiplier M > 1 the input is first channel-repeated once
    (channel c*M + m = input channel c, Keras' output order) and the kernel
    flattened to (kh, kw, C*M), so every tap is a plain 4-D multiply-add. This
    computes exactly the same products and sums, in the same order, as
    broadcasting a 5-D (N, H, W, C, 1) input against (C, M), but XLA fuses it
    (and its gradient) much better: ~1.4x faster LRU-block training on JAX.
    """
    kh, kw, channels, mult = kernel.shape
    sh, sw = strides
    h, w = x.shape[1], x.shape[2]
    ho = (h - kh) // sh + 1
    wo = (w - kw) // sw + 1
    if mult > 1:
        x = ops.repeat(x, mult, axis=-1)
    kernel = ops.reshape(kernel, (kh, kw, channels * mult))
    acc = None
    for i in range(kh):
        for j in range(kw):
            tap = x[:, i:i + sh * (ho - 1) + 1:sh, j:j + sw * (wo - 1) + 1:sw]
            term = tap * kernel[i, j]
            acc = term if acc is None else acc + term
    return acc


@keras.saving.register_keras_serializable(package="keras_lrn")
class GroupedPointwiseConv2D(keras.layers.Layer):
    """A 1x1 convolution with `groups`, computed fast on every backend.

    Same kernel layout and outputs as `keras.layers.Conv2D(filters, 1,
    groups=groups)` (channels last, stride 1).

    Args:
        filters: int. Output channels (a multiple of `groups`).
        groups: int. Defaults to 1.
        use_bias: bool. Defaults to False.
        kernel_initializer, bias_initializer, kernel_regularizer,
        bias_regularizer: as in Keras.
        formulation: "auto" (per backend), "native", "einsum" or "blockdiag".

    Example:
    ```python
    y = GroupedPointwiseConv2D(64, groups=8)(keras.ops.ones((1, 4, 4, 128)))  # (1, 4, 4, 64)
    ```
    """

    def __init__(self, filters, groups=1, use_bias=False, kernel_initializer="glorot_uniform",
                 bias_initializer="zeros", kernel_regularizer=None, bias_regularizer=None,
                 formulation="auto", **kwargs):
        super().__init__(**kwargs)
        for value, arg in ((filters, "filters"), (groups, "groups")):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"`{arg}` must be a positive int. Received: {arg}={value!r}")
        if filters % groups:
            raise ValueError("`filters` must be a multiple of `groups`. Received: "
                             f"filters={filters}, groups={groups}")
        if formulation not in POINTWISE_FORMULATIONS:
            raise ValueError(f"`formulation` must be one of {POINTWISE_FORMULATIONS}. "
                             f"Received: formulation={formulation!r}")
        self.filters = filters
        self.groups = groups
        self.use_bias = bool(use_bias)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)
        self.bias_regularizer = keras.regularizers.get(bias_regularizer)
        self.formulation = formulation
        self.input_spec = keras.layers.InputSpec(min_ndim=2)

    def build(self, input_shape):
        channels = input_shape[-1]
        if channels is None or channels % self.groups:
            raise ValueError("The input channels must be known and a multiple of `groups`. "
                             f"Received: input_shape={input_shape}, groups={self.groups}")
        self.kernel = self.add_weight(
            name="kernel", shape=(1, 1, channels // self.groups, self.filters),
            initializer=self.kernel_initializer, regularizer=self.kernel_regularizer)
        if self.use_bias:
            self.bias = self.add_weight(name="bias", shape=(self.filters,),
                                        initializer=self.bias_initializer,
                                        regularizer=self.bias_regularizer)
        else:
            self.bias = None

    def call(self, inputs):
        x = inputs
        kernel = ops.cast(self.kernel, x.dtype)
        g = self.groups
        cin_g = kernel.shape[2]
        cout_g = self.filters // g
        formulation = resolve_pointwise_formulation(self.formulation, group_channels=cin_g)
        if formulation == "native" and g > 1:
            if len(x.shape) != 4:
                raise ValueError("formulation='native' needs a 4D input.")
            y = ops.conv(x, kernel, strides=1, padding="valid")
        else:
            lead = tuple(ops.shape(x)[:-1])
            y = grouped_matmul(ops.reshape(x, (-1, g * cin_g)), kernel[0, 0], g, formulation)
            y = ops.reshape(y, lead + (cout_g * g,))
        if self.bias is not None:
            y = y + ops.cast(self.bias, y.dtype)
        return y

    def matmul_formulation(self):
        """The `grouped_matmul` formulation this layer's call uses on the current backend
        ("native" maps to "blockdiag"), for callers that fold a BatchNormalization into
        `self.kernel[0, 0]`."""
        formulation = resolve_pointwise_formulation(self.formulation,
                                                    group_channels=self.kernel.shape[2])
        return "blockdiag" if formulation == "native" else formulation

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.filters,)

    def get_config(self):
        config = super().get_config()
        config.update(
            filters=self.filters, groups=self.groups, use_bias=self.use_bias,
            kernel_initializer=keras.initializers.serialize(self.kernel_initializer),
            bias_initializer=keras.initializers.serialize(self.bias_initializer),
            kernel_regularizer=keras.regularizers.serialize(self.kernel_regularizer),
            bias_regularizer=keras.regularizers.serialize(self.bias_regularizer),
            formulation=self.formulation,
        )
        return config


def _channel_sum(x2d, ones):
    """Per-column sum of a (M, C) matrix as the matmul `ones(1, M) @ x2d` -> (C,)."""
    return ops.reshape(ops.matmul(ones, x2d), (-1,))


def _upstream(args, upstream):
    """The cotangent of a custom gradient's first output, however the backend passes it
    (TF: positional; JAX: `upstream`, possibly the tuple of all outputs' cotangents)."""
    dy = args[0] if upstream is None else upstream
    return dy[0] if isinstance(dy, (tuple, list)) else dy


def _matmul_moments(x2d, epsilon):
    """Batch statistics of a (M, C) matrix with the sums as matmuls:
    `(n, ones(1, M), mean, x - mean, biased variance, 1 / sqrt(variance + epsilon))`."""
    rows = ops.shape(x2d)[0]
    n = ops.cast(rows, x2d.dtype)
    ones = ops.ones((1, rows), x2d.dtype)
    mean = _channel_sum(x2d, ones) / n
    centered = x2d - mean
    variance = _channel_sum(ops.square(centered), ones) / n
    return n, ones, mean, centered, variance, ops.rsqrt(variance + epsilon)


def _batch_norm_train(x2d, gamma, beta, epsilon):
    """Training-mode BN of a (M, C) matrix: `(y, batch mean, biased batch variance)`.

    Same function as `ops.moments` + `ops.batch_normalization`; the sums are
    matmuls and the gradient is the closed form (with xhat = (x - mean) / std,
    g = dL/dy, n = M):

        dbeta = sum(g),  dgamma = sum(g * xhat),
        dx = gamma / std * (g - dbeta / n - xhat * dgamma / n).
    """

    @ops.custom_gradient
    def bn(x2d, gamma, beta):
        n, ones, mean, centered, variance, inv = _matmul_moments(x2d, epsilon)
        scale = gamma * inv
        y = centered * scale + beta

        def grad(*args, upstream=None):
            dy = _upstream(args, upstream)
            dbeta = _channel_sum(dy, ones)
            dcentered = _channel_sum(dy * centered, ones)
            dgamma = dcentered * inv
            dx = dy * scale + (centered * (-scale * inv * inv * dcentered / n)
                               - scale * dbeta / n)
            return dx, dgamma, dbeta

        return (y, mean, variance), grad

    y, mean, variance = bn(x2d, gamma, beta)
    return y, ops.stop_gradient(mean), ops.stop_gradient(variance)


def batch_norm(x, gamma, beta, moving_mean, moving_variance, epsilon, training,
               formulation="auto"):
    """Functional BatchNormalization over the last axis: `(y, mean, variance)`.

    Training: batch statistics (`mean`, biased `variance`, gradients stopped,
    for the caller's moving-average update); inference: the moving ones.
    Keras' `BatchNormalization` arithmetic (statistics in float32 for
    float16/bfloat16 inputs), or `_batch_norm_train` where `formulation`
    resolves to "matmul" and the input is float32.
    """
    stats_dtype = keras.backend.result_type(x.dtype, "float32")
    channels = x.shape[-1]
    gamma, beta = ops.cast(gamma, stats_dtype), ops.cast(beta, stats_dtype)
    if training and resolve_batch_norm_formulation(formulation) == "matmul" and (
            x.dtype == stats_dtype):
        y, mean, variance = _batch_norm_train(ops.reshape(x, (-1, channels)), gamma, beta,
                                              epsilon)
        return ops.reshape(y, ops.shape(x)), mean, variance
    x32 = ops.cast(x, stats_dtype)
    if training:
        mean, variance = ops.moments(x32, axes=list(range(len(x.shape) - 1)))
    else:
        mean = ops.cast(moving_mean, stats_dtype)
        variance = ops.cast(moving_variance, stats_dtype)
    y = ops.batch_normalization(x32, mean, variance, axis=-1, offset=beta, scale=gamma,
                                epsilon=epsilon)
    return ops.cast(y, x.dtype), ops.stop_gradient(mean), ops.stop_gradient(variance)


def folded_batch_norm_matmul(z, kernel, gamma, beta, moving_mean, moving_variance, epsilon,
                             training, formulation="auto", groups=1, matmul_formulation="blockdiag"):
    """Functional `grouped_matmul(BN(z), kernel)` with the BN folded into the kernel's rows:
    `(y, mean, variance)` as `batch_norm` returns them (see
    `FastBatchNormalization.fold_into_matmul`). `kernel` is a grouped 1x1 kernel
    (in_channels // groups, out), multiplied with `matmul_formulation`."""
    stats_dtype = keras.backend.result_type(z.dtype, "float32")
    channels = z.shape[-1]
    out_shape = tuple(ops.shape(z)[:-1]) + (kernel.shape[-1],)
    z2d = ops.reshape(z, (-1, channels))
    gamma, beta = ops.cast(gamma, stats_dtype), ops.cast(beta, stats_dtype)
    kernel = ops.cast(kernel, stats_dtype)
    if training:
        if resolve_batch_norm_formulation(formulation) == "matmul" and z.dtype == stats_dtype:
            y, mean, variance = _folded_batch_norm_matmul_train(
                z2d, gamma, beta, kernel, epsilon, groups, matmul_formulation)
            return ops.reshape(y, out_shape), mean, variance
        mean, variance = ops.moments(ops.cast(z2d, stats_dtype), axes=[0])
    else:
        mean = ops.cast(moving_mean, stats_dtype)
        variance = ops.cast(moving_variance, stats_dtype)
    scale = gamma * ops.rsqrt(variance + epsilon)
    shift = beta - mean * scale
    folded = ops.cast(_fold_rows(scale, kernel, groups), z.dtype)
    bias = ops.cast(ops.sum(_fold_rows(shift, kernel, groups), axis=0), z.dtype)
    y = grouped_matmul(z2d, folded, groups, matmul_formulation) + bias
    return ops.reshape(y, out_shape), ops.stop_gradient(mean), ops.stop_gradient(variance)


def _transpose_grouped(kernel, groups):
    """The grouped kernel (cout_g, in) of the transpose of the block-diagonal matrix of
    the grouped kernel (cin_g, out): `grouped_matmul(dy, _transpose_grouped(K, g), g)`
    is `dy @ block_diagonal_kernel(K, g).T`."""
    cin_g, cout = kernel.shape
    k = ops.transpose(ops.reshape(kernel, (cin_g, groups, cout // groups)), (2, 1, 0))
    return ops.reshape(k, (cout // groups, groups * cin_g))


def _grouped_gram(z2d, dy, groups, cin_g):
    """The diagonal blocks of `z2d.T @ dy` in the grouped kernel layout (cin_g, out)."""
    cout_g = dy.shape[-1] // groups
    zg = ops.transpose(ops.reshape(z2d, (-1, groups, cin_g)), (1, 2, 0))  # (g, cin_g, n)
    dyg = ops.transpose(ops.reshape(dy, (-1, groups, cout_g)), (1, 0, 2))  # (g, n, cout_g)
    m = ops.transpose(ops.matmul(zg, dyg), (1, 0, 2))  # (cin_g, g, cout_g)
    return ops.reshape(m, (cin_g, groups * cout_g))


def _grouped_row_sums(matrix, groups):
    """Per input channel (g * cin_g + i) sums of row i of group g's columns of a
    grouped-layout (cin_g, out) matrix -> (in,)."""
    cin_g, cout = matrix.shape
    sums = ops.sum(ops.reshape(matrix, (cin_g, groups, cout // groups)), axis=2)
    return ops.reshape(ops.transpose(sums), (-1,))


def _folded_batch_norm_matmul_train(z2d, gamma, beta, kernel, epsilon, groups=1,
                                    formulation="blockdiag"):
    """`grouped_matmul(BN(z2d), kernel)` in training mode, BN folded into the kernel,
    closed-form gradient. Returns `(y, batch mean, biased batch variance)`.

    With s = gamma / std, F = s[:, None] * K and b = (beta - mean * s) @ K
    (K the block-diagonal matrix of the grouped kernel), y = z @ F + b. Given
    G = dL/dy, n rows and M = z^T G (only K's diagonal blocks are needed):

        dF = M, db = sum_rows(G), dbeta = K db,
        ds = rowsum(M * K) - mean * dbeta,  dgamma = ds / std,
        dK = s[:, None] * M + outer(beta - mean * s, db),
        dz = G F^T - s * dbeta / n - (z - mean) * gamma * ds / (n std^3)

    (the mean's path through the variance vanishes). The channel sums are
    matmuls; with groups > 1 and a formulation other than "blockdiag" every
    product is a per-group batched matmul (exactly the grouped MACs).
    """
    dense = groups == 1 or formulation == "blockdiag"
    if dense and groups > 1:
        # the block-diagonal matrix; autodiff maps its gradient back to the grouped kernel
        return _folded_batch_norm_matmul_train(z2d, gamma, beta,
                                               block_diagonal_kernel(kernel, groups), epsilon)
    cin_g = kernel.shape[0]

    @ops.custom_gradient
    def folded(z2d, gamma, beta, kernel):
        n, ones, mean, centered, variance, inv = _matmul_moments(z2d, epsilon)
        scale = gamma * inv
        shift = beta - mean * scale
        folded_kernel = _fold_rows(scale, kernel, groups)
        bias = ops.sum(_fold_rows(shift, kernel, groups), axis=0)
        y = grouped_matmul(z2d, folded_kernel, groups, formulation) + bias

        def grad(*args, upstream=None):
            dy = _upstream(args, upstream)
            db = _channel_sum(dy, ones)
            if groups == 1:
                m = ops.matmul(ops.transpose(z2d), dy)
                dbeta = ops.reshape(ops.matmul(kernel, ops.expand_dims(db, 1)), (-1,))
                dscale = ops.sum(m * kernel, axis=1) - mean * dbeta
                dkernel = ops.expand_dims(scale, 1) * m + ops.expand_dims(shift, 1) * db
                dz_direct = ops.matmul(dy, ops.transpose(folded_kernel))
            else:
                m = _grouped_gram(z2d, dy, groups, cin_g)
                dbeta = _grouped_row_sums(kernel * db, groups)
                dscale = _grouped_row_sums(m * kernel, groups) - mean * dbeta
                dkernel = (_fold_rows(scale, m, groups)
                           + _fold_rows(shift, ops.zeros_like(m) + db, groups))
                dz_direct = grouped_matmul(dy, _transpose_grouped(folded_kernel, groups),
                                           groups, formulation)
            dgamma = dscale * inv
            dz = (dz_direct - scale * dbeta / n
                  - centered * (gamma * dscale * inv * inv * inv / n))
            return dz, dgamma, dbeta, dkernel

        return (y, mean, variance), grad

    y, mean, variance = folded(z2d, gamma, beta, kernel)
    return y, ops.stop_gradient(mean), ops.stop_gradient(variance)


@keras.saving.register_keras_serializable(package="keras_lrn")
class FastBatchNormalization(keras.layers.BatchNormalization):
    """`keras.layers.BatchNormalization` with a faster training step on TensorFlow.

    Same arguments, weights (`gamma`, `beta`, `moving_mean`, `moving_variance`),
    moving-average update and inference path as the Keras layer. With
    `formulation="matmul"` (the "auto" choice on TensorFlow) a training call on
    the last axis computes the batch sums as matmuls and uses the closed-form
    gradient (see `_batch_norm_train`); any other case (JAX's "auto" choice
    `"native"`, `axis != -1`, masks, renorm, synchronized, `center=False` or
    `scale=False`) runs Keras' own code.

    Args:
        formulation: "auto" (per backend), "native" or "matmul".
        **kwargs: `keras.layers.BatchNormalization` arguments.

    Example:
    ```python
    bn = FastBatchNormalization(momentum=0.9, epsilon=1e-5)
    y = bn(keras.ops.ones((2, 4, 4, 8)), training=True)
    ```
    """

    def __init__(self, formulation="auto", **kwargs):
        super().__init__(**kwargs)
        if formulation not in BATCH_NORM_FORMULATIONS:
            raise ValueError(f"`formulation` must be one of {BATCH_NORM_FORMULATIONS}. "
                             f"Received: formulation={formulation!r}")
        self.formulation = formulation

    def _use_matmul(self, inputs, training, mask):
        return (training and self.trainable and mask is None
                and resolve_batch_norm_formulation(self.formulation) == "matmul"
                and self.axis in (-1, len(inputs.shape) - 1) and len(inputs.shape) >= 2
                and self.center and self.scale and not self.renorm and not self.synchronized)

    def call(self, inputs, training=None, mask=None):
        if not self._use_matmul(inputs, training, mask):
            return super().call(inputs, training=training, mask=mask)
        compute_dtype = keras.backend.result_type(inputs.dtype, "float32")
        x = ops.cast(inputs, compute_dtype)
        channels = x.shape[-1]
        y, mean, variance = _batch_norm_train(
            ops.reshape(x, (-1, channels)), ops.cast(self.gamma, compute_dtype),
            ops.cast(self.beta, compute_dtype), self.epsilon)
        moving_mean = ops.cast(self.moving_mean, compute_dtype)
        moving_variance = ops.cast(self.moving_variance, compute_dtype)
        self.moving_mean.assign(moving_mean * self.momentum + mean * (1.0 - self.momentum))
        self.moving_variance.assign(
            moving_variance * self.momentum + variance * (1.0 - self.momentum))
        return ops.cast(ops.reshape(y, ops.shape(x)), self.compute_dtype)

    def can_fold(self, inputs, mask=None):
        """Whether `fold_into_matmul` applies: BN over the last axis with both gamma and
        beta, no renorm, no cross-replica statistics, no mask."""
        return (mask is None and self.axis in (-1, len(inputs.shape) - 1)
                and self.center and self.scale and not self.renorm and not self.synchronized)

    def fold_into_matmul(self, inputs, kernel, training=None, groups=1,
                         matmul_formulation="blockdiag"):
        """`matmul(self(inputs, training), kernel)` with the BN folded into the matmul.

        BN followed by a linear map is the linear map of the *unnormalised*
        input with the per-channel scale folded into the kernel's rows:

            BN(z) @ K = z @ (s[:, None] * K) + (beta - mean * s) @ K,
            s = gamma / sqrt(var + epsilon),

        so the normalised tensor is never written and the backward pass has no
        per-channel reductions over it (only the two small vectors' chain rule).
        Training (batch statistics, moving averages updated exactly as the
        layer does) and inference (moving statistics) alike. Same function;
        rounding differs from normalising first by ~1e-6 relative. The caller
        checks `can_fold` first. `kernel` may be a grouped 1x1 kernel
        (in_channels // groups, out) with `groups` (see `grouped_matmul`); see
        `folded_batch_norm_matmul` for the functional form.
        """
        training = bool(training) and self.trainable
        y, mean, variance = folded_batch_norm_matmul(
            inputs, kernel, self.gamma, self.beta, self.moving_mean, self.moving_variance,
            self.epsilon, training, self.formulation, groups, matmul_formulation)
        if training:
            self._update_moving(mean, variance, mean.dtype)
        return y

    def statistics(self):
        """`(gamma, beta, moving_mean, moving_variance)`: the tensors the functional
        forms (`batch_norm`, `folded_batch_norm_matmul`) take."""
        return self.gamma, self.beta, self.moving_mean, self.moving_variance

    def _update_moving(self, mean, variance, dtype):
        self.moving_mean.assign(ops.cast(self.moving_mean, dtype) * self.momentum
                                + ops.stop_gradient(mean) * (1.0 - self.momentum))
        self.moving_variance.assign(ops.cast(self.moving_variance, dtype) * self.momentum
                                    + ops.stop_gradient(variance) * (1.0 - self.momentum))

    def get_config(self):
        config = super().get_config()
        config["formulation"] = self.formulation
        return config


def grouped_matmul(x2d, kernel, groups, formulation):
    """`(n, groups * cin_g) @` the grouped 1x1 `kernel` (cin_g, filters) -> (n, filters).

    Output channel o reads input group o // (filters // groups), as
    `Conv2D(filters, 1, groups=groups)`. `formulation`: "blockdiag",
    "einsum" or "batched" (see the module doc); all give the same result.
    """
    cin_g, cout = kernel.shape
    if groups == 1:
        return ops.matmul(x2d, kernel)
    cout_g = cout // groups
    if formulation == "blockdiag":
        return ops.matmul(x2d, block_diagonal_kernel(kernel, groups))
    kg = ops.transpose(ops.reshape(kernel, (cin_g, groups, cout_g)), (1, 0, 2))
    xg = ops.reshape(x2d, (-1, groups, cin_g))
    if formulation == "einsum":
        y = ops.einsum("ngi,gio->ngo", xg, kg)
    elif formulation == "batched":
        y = ops.transpose(ops.matmul(ops.transpose(xg, (1, 0, 2)), kg), (1, 0, 2))
    else:
        raise ValueError("`formulation` must be 'blockdiag', 'einsum' or 'batched'. "
                         f"Received: formulation={formulation!r}")
    return ops.reshape(y, (-1, cout))


def _fold_rows(vector, kernel, groups):
    """`vector[:, None] * K` for the block-diagonal K of the grouped kernel (cin_g, cout),
    kept in the grouped layout: row i of group g's columns is scaled by vector[g*cin_g+i]."""
    cin_g, cout = kernel.shape
    per_group = ops.transpose(ops.reshape(vector, (groups, cin_g)))  # (cin_g, groups)
    return ops.repeat(per_group, cout // groups, axis=1) * kernel


def block_diagonal_kernel(kernel, groups):
    """(in/g, out) grouped 1x1 kernel -> the equivalent dense (in, out) matrix."""
    cin_g, cout = kernel.shape
    cout_g = cout // groups
    # (cin_g, out) -> (g, cin_g, 1, cout_g) * eye(g)[:, None, :, None] -> (g*cin_g, g*cout_g)
    kg = ops.transpose(ops.reshape(kernel, (cin_g, groups, cout_g)), (1, 0, 2))
    eye = ops.cast(ops.eye(groups), kernel.dtype)
    full = ops.expand_dims(kg, 2) * ops.reshape(eye, (groups, 1, groups, 1))
    return ops.reshape(full, (groups * cin_g, groups * cout_g))


def torch_default_conv_init(fan_in):
    """PyTorch's default conv/linear weight init, U(+-1/sqrt(fan_in)), for a known fan_in."""
    bound = 1.0 / math.sqrt(fan_in)
    return keras.initializers.RandomUniform(-bound, bound)
