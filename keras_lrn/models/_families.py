"""Imports every model family so that their registry entries exist."""

from keras_lrn.models import (  # noqa: F401,E401
    basis_densenet,  # noqa: F401
    basis_mobilenetv2,  # noqa: F401
    basis_resnet,  # noqa: E402,F401
    basis_resnet_large,  # noqa: F401
    basis_resnext,  # noqa: F401
    epsilon_resnet,  # noqa: F401
    lrunet,
    mobilenet,
    resnet,  # noqa: F401
    rla,  # noqa: F401
    shufflenet,
    swrn,  # noqa: E402,F401
)
