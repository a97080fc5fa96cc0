"""A bank of convolution kernel templates (Savarese & Maire, ICLR 2019, soft sharing).

`TemplateBank` owns one variable `templates` of shape `(T, kh, kw, in, out)`:
T kernels with exactly the Keras `Conv2D` kernel layout (the reference's
PyTorch `(T, out, in, kh, kw)` transposed). Many `SharedConv2D` layers draw on
one bank; each mixes the templates with its own coefficients.

The bank is shared *through the functional graph* (keras_lrn's rule for
sharing, see `SharedConv2D`): the bank is a graph node whose output is the
templates tensor, and each `SharedConv2D` takes `[x, templates]`. Its input
only anchors it in the graph (pass the model input); it is not read. A `.keras`
reload or a SavedModel therefore holds the bank once, and every shared
convolution reads the same variable.
"""

from __future__ import annotations

import math

import keras
from keras import ops


def _check_positive_int(value, arg):
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"`{arg}` must be a positive integer. Received: {arg}={value!r}")
    return value


def _kernel_size(kernel_size):
    if isinstance(kernel_size, int) and not isinstance(kernel_size, bool):
        kernel_size = (kernel_size, kernel_size)
    kernel_size = tuple(kernel_size)
    if len(kernel_size) != 2:
        raise ValueError(f"`kernel_size` must be an int or 2 ints. Received: "
                         f"kernel_size={kernel_size!r}")
    for k in kernel_size:
        _check_positive_int(k, "kernel_size")
    return kernel_size


@keras.saving.register_keras_serializable(package="keras_lrn")
class TemplateBank(keras.layers.Layer):
    """T convolution kernel templates shared by several `SharedConv2D` layers.

    Calling the bank on any tensor (the model input, say) returns the templates
    tensor `(num_templates, kh, kw, in_channels, filters)`; the input only
    places the bank in the functional graph.

    Args:
        num_templates: int. Number of templates T (the paper's bank size).
        in_channels: int. Input channels of the convolutions that use the bank.
        filters: int. Output channels of those convolutions.
        kernel_size: int or 2 ints. Defaults to 3.
        templates_initializer: initializer of the whole `(T, kh, kw, in,
            filters)` variable, or None (the default) for the reference's
            `kaiming_normal_` per template: untruncated N(0, 2 / (kh*kw*in)).

    Example:
    ```python
    x = keras.Input((32, 32, 16))
    templates = keras_lrn.layers.TemplateBank(4, 16, 16)(x)
    y = keras_lrn.layers.SharedConv2D(16)([x, templates])
    y = keras_lrn.layers.SharedConv2D(16)([y, templates])  # same bank
    ```

    Reference:
    - Savarese and Maire, "Learning Implicitly Recurrent CNNs Through
      Parameter Sharing", ICLR 2019.
    """

    def __init__(self, num_templates, in_channels, filters, kernel_size=3,
                 templates_initializer=None, **kwargs):
        super().__init__(**kwargs)
        self.num_templates = _check_positive_int(num_templates, "num_templates")
        self.in_channels = _check_positive_int(in_channels, "in_channels")
        self.filters = _check_positive_int(filters, "filters")
        self.kernel_size = _kernel_size(kernel_size)
        self.templates_initializer = (None if templates_initializer is None
                                      else keras.initializers.get(templates_initializer))

    @property
    def template_shape(self):
        """The shape of one template: `(kh, kw, in_channels, filters)`."""
        return self.kernel_size + (self.in_channels, self.filters)

    def build(self, input_shape=None):
        init = self.templates_initializer
        if init is None:
            fan_in = self.kernel_size[0] * self.kernel_size[1] * self.in_channels
            init = keras.initializers.RandomNormal(0.0, math.sqrt(2.0 / fan_in))
        self.templates = self.add_weight(
            name="templates", shape=(self.num_templates,) + self.template_shape,
            initializer=init, trainable=True)
        self.built = True

    def call(self, inputs=None):
        return ops.convert_to_tensor(self.templates)

    def compute_output_spec(self, inputs=None):
        return keras.KerasTensor((self.num_templates,) + self.template_shape,
                                 dtype=self.compute_dtype)

    def get_config(self):
        config = super().get_config()
        config.update({
            "num_templates": self.num_templates,
            "in_channels": self.in_channels,
            "filters": self.filters,
            "kernel_size": self.kernel_size,
            "templates_initializer": (None if self.templates_initializer is None
                                      else keras.initializers.serialize(
                                          self.templates_initializer)),
        })
        return config
