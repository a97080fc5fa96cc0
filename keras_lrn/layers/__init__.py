"""Layers of keras_lrn (all `keras.ops`, registered under the `keras_lrn` package)."""

from keras_lrn.layers.shortcut import ZeroPadShortcut

__all__ = ["ZeroPadShortcut"]
