"""Layers of keras_lrn (all `keras.ops`, registered under the `keras_lrn` package)."""

from keras_lrn.layers.shortcut import ZeroPadShortcut

__all__ = ["ZeroPadShortcut"]
from keras_lrn.layers.epsilon_gate import EpsilonGate  # noqa: E402

__all__ += ["EpsilonGate"]
from keras_lrn.layers.fast_conv import (  # noqa: E402
    FastBatchNormalization,
    FastDepthwiseConv2D,
    GroupedPointwiseConv2D,
)
from keras_lrn.layers.reuse import ChannelShuffle, LRUBlock  # noqa: E402

__all__ += ["ChannelShuffle", "FastBatchNormalization", "FastDepthwiseConv2D",
            "GroupedPointwiseConv2D", "LRUBlock"]
from keras_lrn.layers.shared_conv2d import OrthogonalRows, SharedConv2D  # noqa: E402
from keras_lrn.layers.template_bank import TemplateBank  # noqa: E402

__all__ += ["OrthogonalRows", "SharedConv2D", "TemplateBank"]
from keras_lrn.layers.filter_basis import (  # noqa: E402
    BasisCoefficients,
    OrthogonalBasis,
    SharedBasisConv2D,
    UniqueBasis,
    basis_conv,
    make_shared_bases,
    shared_basis,
)

__all__ += ["BasisCoefficients", "OrthogonalBasis", "SharedBasisConv2D", "UniqueBasis",
            "basis_conv", "make_shared_bases", "shared_basis"]
from keras_lrn.layers.eca import ECA  # noqa: E402

__all__ += ["ECA"]
from keras_lrn.layers.rla import (  # noqa: E402
    RLAInitialState,
    rla_concat,
    rla_conv_out,
    rla_join,
    rla_pool,
    rla_recurrent_conv,
    rla_update,
)

__all__ += ["RLAInitialState", "rla_concat", "rla_conv_out", "rla_join", "rla_pool",
            "rla_recurrent_conv", "rla_update"]
