"""A 2D convolution whose kernel is a learned mix of a `TemplateBank`'s templates.

Savarese & Maire (ICLR 2019): layer i's kernel is `W_i = sum_t alpha_i[t] T_t`
with its own coefficients `alpha_i` (T scalars) and the bank's templates `T_t`.
The kernel is computed once per call (one `tensordot`, independent of the
batch), cast to the compute dtype, and the convolution runs through
`keras.ops.conv` exactly as `keras.layers.Conv2D.convolution_op` does.
"""

from __future__ import annotations

import keras
from keras import ops

from keras_lrn.layers.template_bank import _check_positive_int, _kernel_size

PADDINGS = ("same", "valid")


@keras.saving.register_keras_serializable(package="keras_lrn")
class OrthogonalRows(keras.initializers.Initializer):
    """Row `row` of an orthogonal `(num_rows, T)` matrix drawn from `seed`.

    The soft-sharing reference fills one `(L, T)` matrix per bank with
    `torch.nn.init.orthogonal_` and gives row j to the j-th layer using the
    bank. Every layer of a group gets this initializer with the same
    `num_rows` and `seed` and its own `row`, so the group's coefficients are
    jointly orthogonal: `C C^T = I` when L <= T, `C^T C = I` when L >= T.

    Args:
        num_rows: int. L, the number of layers sharing the bank.
        row: int. Which row this layer takes (0-based).
        seed: int. The group's seed (the same for every row).
        gain: float. Defaults to 1.0.
    """

    def __init__(self, num_rows, row, seed, gain=1.0):
        self.num_rows = _check_positive_int(num_rows, "num_rows")
        if isinstance(row, bool) or not isinstance(row, int) or not 0 <= row < num_rows:
            raise ValueError(f"`row` must be in [0, num_rows={num_rows}). Received: row={row!r}")
        self.row = row
        self.seed = int(seed)
        self.gain = float(gain)

    def __call__(self, shape, dtype=None):
        shape = tuple(shape)
        if len(shape) != 1:
            raise ValueError(f"OrthogonalRows initializes 1D coefficients. Received: shape={shape}")
        matrix = keras.initializers.Orthogonal(gain=self.gain, seed=self.seed)(
            (self.num_rows, shape[0]), dtype="float32")
        return ops.cast(matrix[self.row], dtype or "float32")

    def get_config(self):
        return {"num_rows": self.num_rows, "row": self.row, "seed": self.seed, "gain": self.gain}


@keras.saving.register_keras_serializable(package="keras_lrn")
class SharedConv2D(keras.layers.Layer):
    """Conv2D whose kernel is `tensordot(coefficients, templates, 1)`.

    Called on `[x, templates]` where `templates` is the output of a
    `TemplateBank` (shape `(T, kh, kw, in_channels, filters)`). The layer owns
    only its `coefficients` (T scalars) and, optionally, a bias; the bank is
    never part of its config, so sharing survives `.keras` save/load and
    SavedModel export (the functional graph carries it).

    Args:
        filters: int. Output channels; must equal the bank's `filters`.
        kernel_size: int or 2 ints. Must equal the bank's. Defaults to 3.
        strides: int or 2 ints. Defaults to 1.
        padding: "same" or "valid". Defaults to "same" (PyTorch `padding=1`
            for a stride-1 3x3 conv; pad explicitly before a strided one).
        dilation_rate: int or 2 ints. Defaults to 1.
        use_bias: bool. Defaults to False (the reference's SConv2d has none).
        activation: activation applied after the conv. Defaults to None.
        coefficients_initializer: initializer of the `(T,)` coefficients.
            Defaults to "zeros" (the reference's SConv2d; its SWRN then
            re-initializes them with an orthogonal matrix per bank, see
            `OrthogonalRows`).
        bias_initializer: Defaults to "zeros".

    Example:
    ```python
    x = keras.Input((32, 32, 16))
    templates = keras_lrn.layers.TemplateBank(4, 16, 16)(x)
    y = keras_lrn.layers.SharedConv2D(16)([x, templates])
    ```

    Reference:
    - Savarese and Maire, "Learning Implicitly Recurrent CNNs Through
      Parameter Sharing", ICLR 2019.
    """

    def __init__(self, filters, kernel_size=3, strides=1, padding="same", dilation_rate=1,
                 use_bias=False, activation=None, coefficients_initializer="zeros",
                 bias_initializer="zeros", **kwargs):
        super().__init__(**kwargs)
        self.filters = _check_positive_int(filters, "filters")
        self.kernel_size = _kernel_size(kernel_size)
        self.strides = _pair(strides, "strides")
        self.dilation_rate = _pair(dilation_rate, "dilation_rate")
        if padding not in PADDINGS:
            raise ValueError(f"`padding` must be one of {PADDINGS}. Received: padding={padding!r}")
        self.padding = padding
        if not isinstance(use_bias, bool):
            raise ValueError(f"`use_bias` must be True or False. Received: use_bias={use_bias!r}")
        self.use_bias = use_bias
        self.activation = keras.activations.get(activation)
        self.coefficients_initializer = keras.initializers.get(coefficients_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)

    def build(self, input_shape):
        if not isinstance(input_shape, (list, tuple)) or len(input_shape) != 2 or not isinstance(
                input_shape[0], (list, tuple)):
            raise ValueError(
                "SharedConv2D is called on `[inputs, templates]` (templates = a TemplateBank's "
                f"output). Received input shapes: {input_shape!r}")
        x_shape, t_shape = tuple(input_shape[0]), tuple(input_shape[1])
        expected = self.kernel_size + (x_shape[-1], self.filters)
        if len(t_shape) != 5 or tuple(t_shape[1:]) != expected:
            raise ValueError(
                f"`templates` (the bank) must have shape (T, {expected[0]}, {expected[1]}, "
                f"{expected[2]}, {expected[3]}) to fit layer {self.name!r} (kernel_size="
                f"{self.kernel_size}, input channels={x_shape[-1]}, filters={self.filters}). "
                f"Received: templates shape={t_shape}")
        if len(x_shape) != 4:
            raise ValueError(f"`inputs` must be 4D (batch, height, width, channels). "
                             f"Received: inputs shape={x_shape}")
        self.num_templates = t_shape[0]
        self.coefficients = self.add_weight(
            name="coefficients", shape=(self.num_templates,),
            initializer=self.coefficients_initializer, trainable=True)
        if self.use_bias:
            self.bias = self.add_weight(name="bias", shape=(self.filters,),
                                        initializer=self.bias_initializer, trainable=True)
        self.built = True

    def mix(self, templates):
        """The kernel `sum_t coefficients[t] * templates[t]`, in the compute dtype."""
        coefficients = ops.cast(self.coefficients, templates.dtype)
        kernel = ops.tensordot(coefficients, templates, axes=1)
        return ops.cast(kernel, self.compute_dtype)

    def convolution_op(self, inputs, kernel):
        return ops.conv(inputs, kernel, strides=list(self.strides), padding=self.padding,
                        dilation_rate=self.dilation_rate, data_format="channels_last")

    def call(self, inputs):
        x, templates = inputs
        outputs = self.convolution_op(x, self.mix(templates))
        if self.use_bias:
            outputs = ops.add(outputs, ops.cast(self.bias, outputs.dtype))
        if self.activation is not None:
            outputs = self.activation(outputs)
        return outputs

    def compute_output_shape(self, input_shape):
        x_shape = tuple(input_shape[0])
        spatial = []
        for i, size in enumerate(x_shape[1:3]):
            if size is None:
                spatial.append(None)
                continue
            k = (self.kernel_size[i] - 1) * self.dilation_rate[i] + 1
            if self.padding == "same":
                spatial.append(-(-size // self.strides[i]))
            else:
                spatial.append((size - k) // self.strides[i] + 1)
        return (x_shape[0], *spatial, self.filters)

    def get_config(self):
        config = super().get_config()
        config.update({
            "filters": self.filters,
            "kernel_size": self.kernel_size,
            "strides": self.strides,
            "padding": self.padding,
            "dilation_rate": self.dilation_rate,
            "use_bias": self.use_bias,
            "activation": keras.activations.serialize(self.activation)
            if self.activation is not None else None,
            "coefficients_initializer": keras.initializers.serialize(
                self.coefficients_initializer),
            "bias_initializer": keras.initializers.serialize(self.bias_initializer),
        })
        return config


def _pair(value, arg):
    if isinstance(value, int) and not isinstance(value, bool):
        value = (value, value)
    value = tuple(value)
    if len(value) != 2:
        raise ValueError(f"`{arg}` must be an int or 2 ints. Received: {arg}={value!r}")
    for v in value:
        _check_positive_int(v, arg)
    return value
