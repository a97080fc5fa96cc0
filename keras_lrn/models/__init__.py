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
