"""Imports every model family so that their registry entries exist."""

from keras_lrn.models import resnet  # noqa: F401
