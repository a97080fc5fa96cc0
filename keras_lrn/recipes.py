"""Training recipes: the hyper-parameters each paper's code trained with.

A `Recipe` is plain data. Registry entries carry one; the training CLI uses its
fields as defaults that command-line flags override.

Conventions (shared by every recipe and by `keras_lrn.training`):

* `schedule` is a tuple of `(epoch, lr)` pairs: from the 0-based Keras epoch
  `epoch` onward the learning rate is `lr`. `(0, 0.1), (150, 0.01)` trains
  epochs 0..149 at 0.1 and 150.. at 0.01 (PyTorch's "epoch > 150" with 1-based
  epochs, tensorpack's "after epoch 150").
* `weight_decay` is *coupled* L2, as the reference codes used it: the loss gets
  `weight_decay / 2 * sum(w**2)` for every trainable variable whose path matches
  none of `weight_decay_exclude` (regular expressions, `re.search`) -- the
  gradient then gains `weight_decay * w`, exactly PyTorch's SGD `weight_decay`
  and tensorpack's `wd * 0.5 * ||W||^2`.
* `augment` names a pipeline in `keras_lrn.data` (pixel space, before
  normalisation); `normalize` names a normalisation; `post_augment` runs after it.
"""

from __future__ import annotations

import dataclasses
from typing import Any

# Variable-path patterns for common weight-decay exemptions.
KERNELS_ONLY = (r"gamma$", r"beta$", r"bias$", r"moving_", r"coefficients$")
NO_EXCLUSION = ()


@dataclasses.dataclass(frozen=True)
class Recipe:
    """Hyper-parameters of one training recipe (see module docstring)."""

    dataset: str = "cifar10"
    epochs: int = 200
    batch_size: int = 128
    optimizer: str = "sgd"
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 1e-4
    weight_decay_exclude: tuple = NO_EXCLUSION
    schedule: tuple = ((0, 0.1),)
    lr_policy: str = "piecewise"
    augment: str = "cifar"
    normalize: str = "channel"
    post_augment: str = "none"
    val_split: float = 0.0
    loss_weights: Any = None
    extra: Any = None
    source: str = ""

    def replace(self, **changes) -> "Recipe":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        out = dataclasses.asdict(self)
        out["schedule"] = [list(p) for p in self.schedule]
        out["weight_decay_exclude"] = list(self.weight_decay_exclude)
        return out


#: He et al. 2016 CIFAR ResNets as trained by the Net_RL2 reference code (its
#: plain ResNet20..110 baselines): SGD 0.9, batch 256, wd 5e-4 on everything,
#: 300 epochs, x0.1 after 150 and 225, ImageNet-statistics normalisation.
CIFAR_RESNET = Recipe(
    dataset="cifar10",
    epochs=300,
    batch_size=256,
    lr=0.1,
    momentum=0.9,
    weight_decay=5e-4,
    schedule=((0, 0.1), (150, 0.01), (225, 0.001)),
    augment="cifar",
    normalize="imagenet",
    source="ssregibility/Net_RL2 train_cifar10.py",
)
