"""Imports every model family so that their registry entries exist."""

from keras_lrn.models import (  # noqa: F401,E401
    epsilon_resnet,  # noqa: F401
    lrunet,
    mobilenet,
    resnet,  # noqa: F401
    shufflenet,
)
from keras_lrn.models import swrn  # noqa: E402,F401
