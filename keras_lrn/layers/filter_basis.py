"""Deeply shared filter bases (Net_RL2): the basis convolution and its pieces.

A 3x3 convolution `C_in -> P` becomes

    cat([unique_basis(x), shared_basis(x)])  ->  BN (no activation)  ->  1x1 coefficient conv

* `unique_basis`: a per-layer 3x3 conv `C_in -> u`, no bias;
* `shared_basis`: a 3x3 conv `C_in -> s`, no bias, stride 1, and the **same layer
  instance** for every block of a stage (Keras tracks it once, `.keras` save/load
  keeps it shared, its gradient is summed over the calls);
* the unique part comes first in the concat;
* the coefficient conv is a per-layer 1x1 conv `u + s -> P`, no bias.

How it is computed (same function, fewer and larger kernels):

* with both parts, the unique basis is a `UniqueBasis` layer (`{name}_unique`)
  whose output is its kernel, and the shared basis (`SharedBasisConv2D`) called
  on `[x, unique_kernel]` returns the concat; on TensorFlow as one conv of `x`
  with `cat[unique_kernel, shared_kernel]` -- one C_in -> u + s conv instead of a
  C_in -> u conv (a few output channels, as slow as a full one), a C_in -> s conv
  and a concat (on JAX the two convs are faster);
* the basis BN and the coefficient conv are one layer, `BasisCoefficients`
  (`{name}_coeff`, sublayers `bn` and `conv`): the BN is folded into the 1x1
  kernel (`FastBatchNormalization.fold_into_matmul`), so the normalised basis
  responses are never written.

The block then applies its usual BN (and ReLU or the residual add). Variants:

* ``"single"``: one shared basis per stage, used by conv1 and conv2 of every block;
* ``"double"``: one shared basis per conv position (`_1` for conv1s, `_2` for conv2s),
  drawn jointly orthogonal;
* ``"shared_only"``: two bases as "double", no unique part;
* ``"non_shared"``: unique bases only (no sharing).

Everything here is plain Keras layers wired in the functional graph, so the
sharing needs no custom serialisation.

Reference:
- Kang et al., "Learning Deeply Shared Filter Bases for Efficient ConvNets",
  github.com/ssregibility/Net_RL2.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from keras_lrn.layers.fast_conv import FastBatchNormalization

VARIANTS = ("single", "double", "shared_only", "non_shared")
# `SharedBasisConv2D([x, unique_kernel])` as one conv with the concatenated kernel (else two
# convs and a concat), per backend (measured:
# ResNet56-S16U1 training step TF 1.06-1.16 -> 1.01 s; JAX 2.54 -> 3.1-3.5 s, XLA's conv
# with u + s output channels and the kernel concat's gradient cost more than the two convs).
_MERGE = {"tensorflow": True, "jax": False}


def _check_rank(value, arg, allow_zero=True):
    low = 0 if allow_zero else 1
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        kind = "a non-negative" if allow_zero else "a positive"
        raise ValueError(f"`{arg}` must be {kind} integer. Received: {arg}={value!r}")
    return value


@keras.saving.register_keras_serializable(package="keras_lrn")
class OrthogonalBasis(keras.initializers.Initializer):
    """Orthogonal filters on the `(out, in * kh * kw)` view of a conv kernel.

    `torch.nn.init.orthogonal_` on a PyTorch `(out, in, kh, kw)` weight makes the
    flattened filters orthonormal (when `out <= in*kh*kw`). This draws the same
    `(out, in*kh*kw)` matrix and lays it out as a Keras `(kh, kw, in, out)`
    kernel. With `parts > 1`, one `(parts*out, in*kh*kw)` matrix is drawn from
    `seed` and this kernel takes rows `[part*out, (part+1)*out)`: Net_RL2's
    Double bases `_1`/`_2` are the two halves of one orthogonal matrix, so they
    are mutually orthogonal at init. All parts must use the same `seed`.

    Args:
        parts: int. Number of kernels drawn jointly. Defaults to 1.
        part: int. Which part this kernel takes (0-based). Defaults to 0.
        seed: int or None. Seed of the joint draw (required when `parts > 1`).
        gain: float. Defaults to 1.0.

    Example:
    ```python
    init = OrthogonalBasis(seed=1)
    k = init((3, 3, 16, 8))      # rows of reshape(transpose(k, (3, 2, 0, 1)), (8, -1)) orthonormal
    ```
    """

    def __init__(self, parts=1, part=0, seed=None, gain=1.0):
        _check_rank(parts, "parts", allow_zero=False)
        if isinstance(part, bool) or not isinstance(part, int) or not 0 <= part < parts:
            raise ValueError(f"`part` must be in [0, parts={parts}). Received: part={part!r}")
        if parts > 1 and seed is None:
            raise ValueError("`seed` must be an int when `parts` > 1 (all parts share one draw).")
        self.parts = parts
        self.part = part
        self.seed = None if seed is None else int(seed)
        self.gain = float(gain)

    def __call__(self, shape, dtype=None):
        shape = tuple(int(d) for d in shape)
        if len(shape) != 4:
            raise ValueError(f"OrthogonalBasis initializes 4D conv kernels. Received: shape={shape}")
        kh, kw, cin, cout = shape
        matrix = keras.initializers.Orthogonal(gain=self.gain, seed=self.seed)(
            (self.parts * cout, cin * kh * kw), dtype="float32")
        rows = matrix[self.part * cout:(self.part + 1) * cout]  # (out, in*kh*kw), torch order
        kernel = ops.transpose(ops.reshape(rows, (cout, cin, kh, kw)), (2, 3, 1, 0))
        return ops.cast(kernel, dtype or "float32")

    def get_config(self):
        return {"parts": self.parts, "part": self.part, "seed": self.seed, "gain": self.gain}


@keras.saving.register_keras_serializable(package="keras_lrn")
class BasisCoefficients(keras.layers.Layer):
    """The basis BN followed by the 1x1 coefficient conv, as one matmul.

    Computes `conv(bn(z))` with `bn = FastBatchNormalization(momentum, epsilon)`
    and `conv = Conv2D(filters, 1, use_bias=False)` (sublayers `bn` and `conv`,
    which hold the weights), the BN folded into the kernel:
    `bn(z) @ K = z @ (s K) + (beta - mean s) @ K`, `s = gamma / sqrt(var + eps)`.
    Same batch statistics, moving-average updates and inference path as the two
    layers; rounding differs by ~1e-6 relative.

    Args:
        filters: int. Output channels P.
        kernel_initializer: initializer of the 1x1 kernel.
        momentum: float. BN moving-average momentum (Keras convention). Defaults
            to 0.9 (PyTorch's 0.1).
        epsilon: float. Defaults to 1e-5 (PyTorch's).

    Example:
    ```python
    y = BasisCoefficients(16)(keras.ops.ones((2, 8, 8, 17)))  # (2, 8, 8, 16)
    ```
    """

    def __init__(self, filters, kernel_initializer="glorot_uniform", momentum=0.9,
                 epsilon=1e-5, **kwargs):
        super().__init__(**kwargs)
        _check_rank(filters, "filters", allow_zero=False)
        self.filters = int(filters)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bn = FastBatchNormalization(momentum=momentum, epsilon=epsilon, name="bn",
                                         dtype=self.dtype_policy)
        self.conv = keras.layers.Conv2D(self.filters, 1, use_bias=False,
                                        kernel_initializer=self.kernel_initializer, name="conv",
                                        dtype=self.dtype_policy)

    def build(self, input_shape):
        self.bn.build(input_shape)
        self.conv.build(input_shape)
        self.built = True

    def call(self, inputs, training=None):
        if self.bn.can_fold(inputs):
            return self.bn.fold_into_matmul(inputs, self.conv.kernel[0, 0], training)
        return self.conv(self.bn(inputs, training=training))

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.filters)

    def compute_macs(self, input_shape):
        """MACs of the 1x1 conv (the BN is not counted, as for `Conv2D` + BN)."""
        return int(np.prod([1 if d is None else int(d) for d in input_shape])) * self.filters

    def get_config(self):
        config = super().get_config()
        config.update(filters=self.filters,
                      kernel_initializer=keras.initializers.serialize(self.kernel_initializer),
                      momentum=self.bn.momentum, epsilon=self.bn.epsilon)
        return config


@keras.saving.register_keras_serializable(package="keras_lrn")
class SharedBasisConv2D(keras.layers.Conv2D):
    """`Conv2D` for a shared basis; called on `[x, unique_kernel]` it also runs the unique part.

    On a tensor it is the plain conv. On `[x, unique_kernel]` (`unique_kernel`
    of shape `(kh, kw, C_in, u)`, e.g. a `UniqueBasis` output) it returns
    `cat[conv(x, unique_kernel), conv(x, self.kernel)]`: on TensorFlow as one conv
    with the concatenated kernel, on JAX as the two convs (what is faster there).
    The layer is shared by calling it from every block; its kernel is one variable
    whatever the number of calls. Same layers and weights on every backend.

    Example:
    ```python
    basis = SharedBasisConv2D(16, 3, padding="same", use_bias=False)
    x = keras.Input((32, 32, 16))
    y = basis([x, UniqueBasis(1)(x)])  # (None, 32, 32, 17): unique channel first
    ```
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.input_spec = None  # one tensor or [tensor, kernel]

    def build(self, input_shape):
        if isinstance(input_shape, (list, tuple)) and isinstance(input_shape[0], (list, tuple)):
            if self.use_bias:
                raise ValueError("`SharedBasisConv2D` called on [x, unique_kernel] needs "
                                 "use_bias=False (a basis has no bias). Received: use_bias=True")
            input_shape = input_shape[0]
        super().build(input_shape)
        self.input_spec = None  # Conv2D's build sets one for a single tensor

    def call(self, inputs):
        if not isinstance(inputs, (list, tuple)):
            return super().call(inputs)
        x, unique = inputs
        unique = ops.cast(unique, self.kernel.dtype)
        if _MERGE.get(keras.backend.backend(), False):
            kernel = ops.concatenate([unique, self.kernel], axis=-1)
            outputs = self.convolution_op(x, kernel)
        else:
            outputs = ops.concatenate(
                [self.convolution_op(x, unique), self.convolution_op(x, self.kernel)], axis=-1)
        return outputs if self.activation is None else self.activation(outputs)

    def compute_output_shape(self, input_shape):
        if isinstance(input_shape, (list, tuple)) and isinstance(input_shape[0], (list, tuple)):
            out = super().compute_output_shape(input_shape[0])
            return (*out[:-1], out[-1] + input_shape[1][-1])
        return super().compute_output_shape(input_shape)


@keras.saving.register_keras_serializable(package="keras_lrn")
class UniqueBasis(keras.layers.Layer):
    """A per-layer unique basis kernel `(kh, kw, C_in, rank)`, output as a tensor.

    Called on the tensor the basis convolution reads (only its channel count is
    used), it returns its kernel for `SharedBasisConv2D([x, kernel])`. The
    convolution's MACs are counted there, so this layer reports none.

    Args:
        rank: int. Number of unique filters u.
        kernel_size: int. Defaults to 3.
        kernel_initializer: Defaults to `"glorot_uniform"`.
    """

    def __init__(self, rank, kernel_size=3, kernel_initializer="glorot_uniform", **kwargs):
        super().__init__(**kwargs)
        _check_rank(rank, "rank", allow_zero=False)
        _check_rank(kernel_size, "kernel_size", allow_zero=False)
        self.rank = rank
        self.kernel_size = kernel_size
        self.kernel_initializer = keras.initializers.get(kernel_initializer)

    def build(self, input_shape):
        k = self.kernel_size
        self.kernel = self.add_weight(name="kernel", shape=(k, k, int(input_shape[-1]), self.rank),
                                      initializer=self.kernel_initializer, trainable=True)
        self.built = True

    def call(self, inputs):
        return ops.convert_to_tensor(self.kernel)

    def compute_output_spec(self, inputs):
        k = self.kernel_size
        return keras.KerasTensor((k, k, inputs.shape[-1], self.rank), dtype=self.compute_dtype)

    def compute_macs(self, input_shape):
        return 0

    def get_config(self):
        config = super().get_config()
        config.update(rank=self.rank, kernel_size=self.kernel_size,
                      kernel_initializer=keras.initializers.serialize(self.kernel_initializer))
        return config


def shared_basis(rank, name, kernel_size=3, kernel_initializer=None, dtype=None):
    """A shared basis: a bias-free, stride-1 `SharedBasisConv2D(rank, kernel_size, "same")`.

    Call the returned layer from every block that shares it.

    Args:
        rank: int. Number of basis filters (output channels).
        name: str. Layer name.
        kernel_size: int. Defaults to 3.
        kernel_initializer: Defaults to `OrthogonalBasis()`.
        dtype: dtype policy.
    """
    _check_rank(rank, "rank", allow_zero=False)
    return SharedBasisConv2D(
        rank, kernel_size, strides=1, padding="same", use_bias=False,
        kernel_initializer=kernel_initializer or OrthogonalBasis(), name=name, dtype=dtype)


def make_shared_bases(variant, rank, name, seed=None, dtype=None):
    """The shared bases of one stage for `variant`: `(basis_for_conv1, basis_for_conv2)`.

    * "single": the same layer twice (`{name}`), orthogonal on its own;
    * "double" / "shared_only": two layers `{name}_1`, `{name}_2`, the halves of
      one orthogonal draw (`OrthogonalBasis(parts=2)`, same `seed`);
    * "non_shared": `(None, None)`.
    """
    if variant not in VARIANTS:
        raise ValueError(f"`variant` must be one of {', '.join(map(repr, VARIANTS))}. "
                         f"Received: variant={variant!r}")
    if variant == "non_shared":
        return None, None
    if variant == "single":
        layer = shared_basis(rank, name, kernel_initializer=OrthogonalBasis(seed=seed),
                             dtype=dtype)
        return layer, layer
    if seed is None:
        seed = int(np.random.randint(0, 2**31 - 1))
    return tuple(
        shared_basis(rank, f"{name}_{i + 1}", dtype=dtype,
                     kernel_initializer=OrthogonalBasis(parts=2, part=i, seed=seed))
        for i in range(2))


def basis_conv(x, filters, name, shared=None, unique_rank=0, strides=1, dtype=None,
               kernel_initializer=None, return_layers=False):
    """The basis convolution: cat[unique(x), shared(x)] -> BN -> 1x1 coefficient conv.

    Returns the coefficient conv's output (the caller applies the block's BN).

    Args:
        x: Keras tensor (NHWC).
        filters: int. Output channels P of the replaced 3x3 conv.
        name: str. Prefix of the per-layer names (`{name}_unique`, `_concat` when
            the parts are two convs, `_coeff`: the `BasisCoefficients` with the
            basis BN and the 1x1 conv).
        shared: a shared basis layer (see `shared_basis`) or None.
        unique_rank: int. Filters of the per-layer unique basis (0: none).
        strides: int. Stride of the unique basis; a shared basis is always
            stride 1, so `strides > 1` needs `shared=None`. Defaults to 1.
        dtype: dtype policy.
        kernel_initializer: initializer of the unique and coefficient convs.
            Defaults to PyTorch's `kaiming_normal_(fan_out)`.
        return_layers: bool. Also return `{"unique", "basis_bn", "coeff",
            "coefficients"}` layers (the BN, the 1x1 conv, their `BasisCoefficients`).
    """
    _check_rank(unique_rank, "unique_rank")
    _check_rank(filters, "filters", allow_zero=False)
    if shared is None and unique_rank == 0:
        raise ValueError("A basis conv needs a shared basis or `unique_rank` > 0. "
                         f"Received: shared=None, unique_rank={unique_rank}")
    if shared is not None and strides != 1:
        raise ValueError(f"A shared basis has stride 1. Received: strides={strides!r}")
    init = kernel_initializer or keras.initializers.VarianceScaling(
        2.0, mode="fan_out", distribution="untruncated_normal")
    parts, unique = [], None
    if (unique_rank and isinstance(shared, SharedBasisConv2D)
            and tuple(shared.kernel_size) == (3, 3)):  # one layer: cat[unique, shared] convs
        unique = UniqueBasis(unique_rank, kernel_initializer=init, name=f"{name}_unique",
                             dtype=dtype)
        parts.append(shared([x, unique(x)]))
        shared = None
    elif unique_rank:
        if strides == 1:
            u_in, padding = x, "same"
        else:
            u_in = keras.layers.ZeroPadding2D(1, name=f"{name}_pad", dtype=dtype)(x)
            padding = "valid"
        unique = keras.layers.Conv2D(unique_rank, 3, strides=strides, padding=padding,
                                     use_bias=False, kernel_initializer=init,
                                     name=f"{name}_unique", dtype=dtype)
        parts.append(unique(u_in))
    if shared is not None:
        parts.append(shared(x))
    y = parts[0] if len(parts) == 1 else keras.layers.Concatenate(
        axis=-1, name=f"{name}_concat", dtype=dtype)(parts)
    coefficients = BasisCoefficients(filters, kernel_initializer=init, momentum=0.9,
                                     epsilon=1e-5, name=f"{name}_coeff", dtype=dtype)
    y = coefficients(y)  # PyTorch BN defaults; the BN folded into the 1x1 conv
    if return_layers:
        return y, {"unique": unique, "basis_bn": coefficients.bn, "coeff": coefficients.conv,
                   "coefficients": coefficients}
    return y
