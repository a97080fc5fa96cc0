"""Parameter-free "option A" residual shortcut."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_lrn")
class ZeroPadShortcut(keras.layers.Layer):
    """Down-sample spatially and zero-pad channels: He et al.'s option-A shortcut.

    The new channels are split evenly before and after the input channels
    (`(out - in) // 2` zeros on each side), as the reference codes do.

    Args:
        out_channels: int. Channels of the output; `>=` the input's and of the
            same parity difference.
        strides: int. Spatial down-sampling factor (1 or 2). Defaults to 2.
        pool: str. How to down-sample: `"subsample"` keeps every `strides`-th
            row and column (PyTorch `x[:, :, ::2, ::2]`, the CIFAR ResNets of
            Net_RL2), `"average"` uses `strides`x`strides` average pooling
            (VALID; epsilon-ResNet). Defaults to `"subsample"`.

    Example:
    ```python
    y = ZeroPadShortcut(32, strides=2)(keras.ops.ones((1, 8, 8, 16)))  # (1, 4, 4, 32)
    ```

    Reference:
    - He et al., "Deep Residual Learning for Image Recognition", CVPR 2016.
    """

    def __init__(self, out_channels, strides=2, pool="subsample", **kwargs):
        super().__init__(**kwargs)
        if not isinstance(out_channels, int) or out_channels < 1:
            raise ValueError(
                f"`out_channels` must be a positive int. Received: out_channels={out_channels!r}"
            )
        if strides not in (1, 2):
            raise ValueError(f"`strides` must be 1 or 2. Received: strides={strides!r}")
        if pool not in ("subsample", "average"):
            raise ValueError(
                f"`pool` must be one of 'subsample', 'average'. Received: pool={pool!r}"
            )
        self.out_channels = out_channels
        self.strides = strides
        self.pool = pool

    def build(self, input_shape):
        in_channels = input_shape[-1]
        extra = self.out_channels - in_channels
        if extra < 0 or extra % 2:
            raise ValueError(
                "`out_channels` must exceed the input channels by an even number. "
                f"Received: out_channels={self.out_channels} for {in_channels} input channels"
            )
        self._pad = extra // 2

    def call(self, inputs):
        x = inputs
        if self.strides > 1:
            if self.pool == "subsample":
                x = x[:, :: self.strides, :: self.strides, :]
            else:
                x = ops.average_pool(x, self.strides, self.strides, padding="valid")
        if self._pad:
            x = ops.pad(x, [[0, 0], [0, 0], [0, 0], [self._pad, self._pad]])
        return x

    def compute_output_shape(self, input_shape):
        b, h, w, _ = input_shape
        if self.strides > 1:
            if self.pool == "subsample":
                h = None if h is None else -(-h // self.strides)
                w = None if w is None else -(-w // self.strides)
            else:
                h = None if h is None else h // self.strides
                w = None if w is None else w // self.strides
        return (b, h, w, self.out_channels)

    def get_config(self):
        config = super().get_config()
        config.update(out_channels=self.out_channels, strides=self.strides, pool=self.pool)
        return config
