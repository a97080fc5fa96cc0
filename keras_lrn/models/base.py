"""Shared pieces of the model builders: argument checks, initialisers, the base class."""

from __future__ import annotations

import contextlib
import math
import sys

import keras

from keras_lrn.layers.fast_conv import FastBatchNormalization

# PyTorch-era conventions the reference codes used.
BN_MOMENTUM = 0.9  # PyTorch momentum 0.1, tensorpack decay 0.9
BN_EPSILON = 1e-5


def he_normal_fan_out():
    """`kaiming_normal_(mode="fan_out", nonlinearity="relu")`: N(0, 2 / fan_out), untruncated."""
    return keras.initializers.VarianceScaling(2.0, mode="fan_out", distribution="untruncated_normal")


def torch_linear_kernel():
    """PyTorch's default `nn.Linear` weight init: U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
    return keras.initializers.VarianceScaling(1.0 / 3.0, mode="fan_in", distribution="uniform")


def torch_linear_bias(fan_in):
    """PyTorch's default `nn.Linear` bias init for a layer with `fan_in` inputs."""
    bound = 1.0 / math.sqrt(fan_in)
    return keras.initializers.RandomUniform(-bound, bound)


@contextlib.contextmanager
def deep_graph(num_blocks):
    """Raise Python's recursion limit while Keras walks a deep functional graph.

    `Functional.__init__` maps the graph recursively, about one frame per
    layer, so ResNet-500+ (3,000+ layers) exceed the default limit of 1000.
    """
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(max(old, 12 * num_blocks + 2000))
    try:
        yield
    finally:
        sys.setrecursionlimit(old)


def batch_norm(name, dtype=None, **kwargs):
    kwargs.setdefault("momentum", BN_MOMENTUM)
    kwargs.setdefault("epsilon", BN_EPSILON)
    # Keras BatchNormalization; on TensorFlow its training step uses the matmul sums and the
    # closed-form gradient (~8 % faster ResNet-56 training step on TF-CPU).
    return FastBatchNormalization(axis=-1, name=name, dtype=dtype, **kwargs)


def check_positive_int(value, arg):
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"`{arg}` must be a positive integer. Received: {arg}={value!r}")
    return value


def check_choice(value, arg, allowed):
    if value not in allowed:
        allowed_s = ", ".join(repr(a) for a in allowed)
        raise ValueError(f"`{arg}` must be one of {allowed_s}. Received: {arg}={value!r}")
    return value


def make_inputs(input_shape, input_tensor, default_shape):
    """Validate keras.applications-style input arguments and return the input tensor."""
    if input_shape is None:
        input_shape = default_shape
    input_shape = tuple(input_shape)
    if len(input_shape) != 3 or any(d is not None and (not isinstance(d, int) or d < 1)
                                     for d in input_shape):
        raise ValueError(
            "`input_shape` must be (height, width, channels) with positive sizes. "
            f"Received: input_shape={input_shape!r}"
        )
    if input_tensor is not None:
        if not keras.utils.is_keras_tensor(input_tensor):
            raise ValueError(
                "`input_tensor` must be a symbolic Keras tensor from keras.Input. "
                f"Received: input_tensor={input_tensor!r}"
            )
        return input_tensor
    return keras.Input(shape=input_shape, name="image")


def check_head_args(include_top, pooling, classes, weights):
    if pooling not in (None, "avg", "max"):
        raise ValueError(f"`pooling` must be one of None, 'avg', 'max'. Received: pooling={pooling!r}")
    if include_top:
        check_positive_int(classes, "classes")
    if weights is not None and not isinstance(weights, str):
        raise ValueError(
            "`weights` must be None or the path of a weights file. "
            f"Received: weights={weights!r}"
        )


def apply_head(x, *, include_top, pooling, classes, classifier_activation, name_prefix="",
               dtype=None, kernel_initializer=None, bias_initializer=None):
    """Global pooling + dense classifier (PyTorch-default initialisation unless given)."""
    if include_top:
        x = keras.layers.GlobalAveragePooling2D(name=f"{name_prefix}avg_pool", dtype=dtype)(x)
        fan_in = x.shape[-1]
        x = keras.layers.Dense(
            classes,
            kernel_initializer=kernel_initializer or torch_linear_kernel(),
            bias_initializer=bias_initializer or torch_linear_bias(fan_in),
            name=f"{name_prefix}predictions",
            dtype=dtype,
        )(x)
        if classifier_activation is not None:
            x = keras.layers.Activation(classifier_activation, name=f"{name_prefix}activation",
                                        dtype="float32")(x)
    elif pooling == "avg":
        x = keras.layers.GlobalAveragePooling2D(name=f"{name_prefix}avg_pool", dtype=dtype)(x)
    elif pooling == "max":
        x = keras.layers.GlobalMaxPooling2D(name=f"{name_prefix}max_pool", dtype=dtype)(x)
    return x


class FunctionalModel(keras.Model):
    """Base of keras_lrn's functional model classes.

    Subclasses build their graph in `__init__`, call `super().__init__(inputs,
    outputs, name=...)`, then `self._store_config(locals-of-ctor)`. `get_config`
    returns exactly the constructor arguments, so `from_config` rebuilds the same
    class (keras-hub `Backbone` pattern) and `.keras` files reload as that class.
    """

    def _store_config(self, **config):
        self._ctor_config = dict(config)
        for key, value in config.items():
            try:
                setattr(self, key, value)
            except AttributeError:  # read-only Model attributes (e.g. "name")
                pass

    def get_config(self):
        config = {"name": self.name, "trainable": self.trainable}
        config.update(getattr(self, "_ctor_config", {}))
        if "input_tensor" in config:
            config["input_tensor"] = None
        return config

    @classmethod
    def from_config(cls, config, custom_objects=None):
        return cls(**config)

    def load_weights_file(self, weights):
        if weights is not None:
            self.load_weights(weights)
