"""keras_lrn: parameter-efficient CNNs by layer reuse and sharing, for Keras 3.

Layers and models use `keras.ops` only and run on the TensorFlow and JAX backends.
"""

from keras_lrn import data, export, layers, models, profile, testing, training
from keras_lrn.version import __version__

__all__ = ["__version__", "data", "export", "layers", "models", "profile", "testing", "training"]
