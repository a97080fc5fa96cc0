"""Imports every model family so that their registry entries exist."""

from keras_lrn.models import (  # noqa: F401,E401
    basis_resnet,  # noqa: E402,F401
    epsilon_resnet,  # noqa: F401
    lrunet,
    mobilenet,
    resnet,  # noqa: F401
    shufflenet,
    swrn,  # noqa: E402,F401
)
