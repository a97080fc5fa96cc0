"""Efficient Channel Attention (ECA), as Net_RL2's MobileNetV2 Shared++ and RLA-Net use it."""

import math

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_lrn")
class ECA(keras.layers.Layer):
    """Channel attention: GAP -> 1-D conv across channels -> sigmoid -> rescale.

    PyTorch `eca_layer(k_size)`: `Conv1d(1, 1, k, padding=(k - 1) // 2, bias=False)`
    over the pooled channel vector. The conv has `k_size` weights and no bias; it is
    computed as `k_size` shifted multiply-adds of the `(batch, channels)` vector (cheap
    on every backend). Its default init is PyTorch's Conv1d default,
    U(-1/sqrt(k), 1/sqrt(k)).

    Args:
        k_size: int. Odd kernel size of the channel conv. Defaults to 3.

    Example:
    ```python
    y = ECA(3)(keras.ops.ones((2, 8, 8, 96)))  # (2, 8, 8, 96)
    ```

    Reference:
    - Wang et al., "ECA-Net: Efficient Channel Attention for Deep Convolutional
      Neural Networks", CVPR 2020.
    """

    def __init__(self, k_size=3, kernel_initializer=None, **kwargs):
        super().__init__(**kwargs)
        if isinstance(k_size, bool) or not isinstance(k_size, int) or k_size < 1 or k_size % 2 == 0:
            raise ValueError(f"`k_size` must be a positive odd integer. Received: k_size={k_size!r}")
        self.k_size = k_size
        if kernel_initializer is None:
            bound = 1.0 / math.sqrt(k_size)
            kernel_initializer = keras.initializers.RandomUniform(-bound, bound)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)

    def build(self, input_shape):
        self.kernel = self.add_weight(name="kernel", shape=(self.k_size,),
                                      initializer=self.kernel_initializer)

    def call(self, inputs):
        pooled = ops.mean(ops.cast(inputs, self.compute_dtype), axis=(1, 2))  # (B, C)
        pad = (self.k_size - 1) // 2
        channels = pooled.shape[-1]
        padded = ops.pad(pooled, ((0, 0), (pad, pad))) if pad else pooled
        kernel = ops.cast(self.kernel, pooled.dtype)
        attn = kernel[0] * padded[:, 0:channels]
        for i in range(1, self.k_size):
            attn = attn + kernel[i] * padded[:, i:i + channels]
        attn = ops.sigmoid(attn)
        return inputs * ops.cast(attn[:, None, None, :], inputs.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(k_size=self.k_size,
                      kernel_initializer=keras.initializers.serialize(self.kernel_initializer))
        return config
