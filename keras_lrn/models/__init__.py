"""Model builders and the registry."""

from keras_lrn.models.registry import (
    ModelEntry,
    get_entry,
    get_model,
    list_models,
    register_model,
)
from keras_lrn.models.resnet import CifarResNet

__all__ = [
    "CifarResNet",
    "ModelEntry",
    "get_entry",
    "get_model",
    "list_models",
    "register_model",
]
from keras_lrn.models.compress import CompressionReport, compress  # noqa: E402
from keras_lrn.models.epsilon_resnet import (  # noqa: E402
    CompressedEpsilonResNet,
    EpsilonResNet,
    EpsilonResNetImageNet,
)

__all__ += [
    "CompressedEpsilonResNet",
    "CompressionReport",
    "EpsilonResNet",
    "EpsilonResNetImageNet",
    "compress",
]
from keras_lrn.models.checkpoints import (  # noqa: E402
    load_reference_checkpoint,
    read_torch_checkpoint,
)
from keras_lrn.models.lrunet import LruNet  # noqa: E402
from keras_lrn.models.mobilenet import MobileNet, MobileNetV2  # noqa: E402
from keras_lrn.models.shufflenet import ShuffleNet, ShuffleNetV2  # noqa: E402

__all__ += ["LruNet", "MobileNet", "MobileNetV2", "ShuffleNet", "ShuffleNetV2",
            "load_reference_checkpoint", "read_torch_checkpoint"]
from keras_lrn.models.swrn import SWRN, WRN  # noqa: E402

__all__ += ["SWRN", "WRN"]
from keras_lrn.models.basis_resnet import BasisResNet  # noqa: E402

__all__ += ["BasisResNet"]
from keras_lrn.models.basis_densenet import BasisDenseNet  # noqa: E402
from keras_lrn.models.basis_mobilenetv2 import BasisMobileNetV2  # noqa: E402

__all__ += ["BasisDenseNet", "BasisMobileNetV2"]
from keras_lrn.models.basis_resnet_large import (  # noqa: E402
    BasisBasicResNet,
    SharedBottleneckResNet,
)
from keras_lrn.models.basis_resnext import BasisResNeXt  # noqa: E402

__all__ += ["BasisBasicResNet", "BasisResNeXt", "SharedBottleneckResNet"]
from keras_lrn.models.imagenet_resnet import (  # noqa: E402
    ImageNetResNet,
    ResNet50,
    ResNet101,
    ResNet152,
)
from keras_lrn.models.rla import (  # noqa: E402
    ImageNetMobileNetV2,
    RLACifarResNet,
    RLAMobileNetV2,
    RLAResNet,
)

__all__ += ["ImageNetMobileNetV2", "ImageNetResNet", "RLACifarResNet", "RLAMobileNetV2",
            "RLAResNet", "ResNet101", "ResNet152", "ResNet50"]
