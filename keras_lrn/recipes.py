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

    def replace(self, **changes) -> Recipe:
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


#: epsilon-ResNet on CIFAR-10 (yuxwind/epsilon-resnet `cifarEpsilonResnet.py`,
#: `run_cifar.sh`; spec §1.6-1.8): SGD momentum 0.9 (not Nesterov), batch 128,
#: tensorpack `wd=2e-4` on `.*/W` (0.5*||W||^2, conv and dense kernels, side
#: head included) = coupled weight_decay 2e-4 on kernels only; 1000 epochs.
#: The base schedule is what the adaptive LR setter (`lr_policy`) follows until
#: the discarded-block count rises; `lr_preset` names its adaptive template.
#: Main loss + 0.1 x side-head loss. (The reference's wd staircase 0.2^(step //
#: 480000) never fires within 1000 CIFAR epochs. The 2020 epsilon warm-up,
#: epsilon = 0 for epochs 0-149, is not part of this paper-era recipe.)
EPSILON_CIFAR10 = Recipe(
    dataset="cifar10",
    epochs=1000,
    batch_size=128,
    optimizer="sgd",
    lr=0.1,
    momentum=0.9,
    nesterov=False,
    weight_decay=2e-4,
    weight_decay_exclude=KERNELS_ONLY,
    schedule=((0, 0.1), (82, 0.01), (123, 0.001), (300, 2e-4)),
    lr_policy="epsilon_adaptive",
    augment="cifar",
    normalize="per_pixel_mean",
    loss_weights={"logits": 1.0, "side_logits": 0.1},
    extra={"lr_preset": "cifar", "epsilon": 2.5},
    source="yuxwind/epsilon-resnet cifarEpsilonResnet.py, run_cifar.sh",
)

#: The same recipe on CIFAR-100 (`--cifar100`).
EPSILON_CIFAR100 = EPSILON_CIFAR10.replace(dataset="cifar100")

#: epsilon-ResNet on SVHN (train + extra; `svhnEpsilonResnet.py`, `run_svhn.sh`):
#: as CIFAR with epsilon 1.5, 200 epochs, the SVHN base schedule (tensorpack
#: `(1, .1)` = the initial 0.1) and adaptive template. (The reference's wd
#: staircase, x0.2 after 480k steps, falls near epoch ~102 of 200 on SVHN; it
#: is not expressed here.)
EPSILON_SVHN = EPSILON_CIFAR10.replace(
    dataset="svhn",
    epochs=200,
    schedule=((0, 0.1), (20, 0.01), (28, 0.001), (50, 1e-4)),
    augment="svhn",
    extra={"lr_preset": "svhn", "epsilon": 1.5},
    source="yuxwind/epsilon-resnet svhnEpsilonResnet.py, run_svhn.sh",
)

#: epsilon-ResNet on ImageNet (`imagenetEpsilonResnet.py`, `run_imagenet.sh`):
#: Nesterov momentum 0.9, batch 256, tf.contrib `l2_regularizer(1e-4)` =
#: 1e-4 * sum(0.5*||W||^2) = coupled weight_decay 1e-4 on kernels only;
#: LR 0.1, /10 from epochs 30, 60, 85, 95 (no adaptive LR); 110 epochs;
#: epsilon 2.0 (the module constant the reference really uses).
EPSILON_IMAGENET = Recipe(
    dataset="imagenet",
    epochs=110,
    batch_size=256,
    optimizer="sgd",
    lr=0.1,
    momentum=0.9,
    nesterov=True,
    weight_decay=1e-4,
    weight_decay_exclude=KERNELS_ONLY,
    schedule=((0, 0.1), (30, 0.01), (60, 0.001), (85, 1e-4), (95, 1e-5)),
    lr_policy="piecewise",
    augment="imagenet",
    normalize="imagenet",
    loss_weights={"logits": 1.0, "side_logits": 0.1},
    extra={"epsilon": 2.0},
    source="yuxwind/epsilon-resnet imagenetEpsilonResnet.py, run_imagenet.sh",
)


#: LruNet and its baselines (okankop/CNN-layer-reuse `main.py`, spec §1.1):
#: SGD momentum 0.9 (not Nesterov), batch 256, coupled weight decay 5e-4 on
#: every parameter (BN gamma/beta and biases too); LR 0.1, 0.01 from epoch 200,
#: 0.001 from 250 (the README's manual restarts), 300 epochs; augmentation
#: RandomCrop(32, padding 4) + RandomRotation(10 deg) + horizontal flip; NO
#: normalisation (pixels / 255). Fashion-MNIST trains on 32x32 crops of the
#: 28x28 images and tests at 28x28. Dropout 0.5 is a model argument.
LRUNET_CIFAR10 = Recipe(
    dataset="cifar10",
    epochs=300,
    batch_size=256,
    optimizer="sgd",
    lr=0.1,
    momentum=0.9,
    nesterov=False,
    weight_decay=5e-4,
    weight_decay_exclude=NO_EXCLUSION,
    schedule=((0, 0.1), (200, 0.01), (250, 0.001)),
    augment="lrunet",
    normalize="scale",
    source="okankop/CNN-layer-reuse main.py, README",
)
LRUNET_CIFAR100 = LRUNET_CIFAR10.replace(dataset="cifar100")
LRUNET_FASHION_MNIST = LRUNET_CIFAR10.replace(dataset="fashion_mnist")


#: Soft parameter sharing / SWRN (lolemacs/soft-sharing `main.py`, spec §1.2):
#: SGD with Nesterov momentum 0.9, batch 128, 200 epochs, LR 0.1 x0.2 at epochs
#: 60/120/160; coupled weight decay 5e-4 on every variable (templates, kernels,
#: BN gamma/beta, biases) EXCEPT the `SharedConv2D` coefficients (path
#: ".../coefficients"); flip + pad-4 crop, then per-channel normalisation (the
#: reference's constants are CIFAR-10 mean [125.3, 123.0, 113.9]/255, std
#: [63.0, 62.1, 66.7]/255; `Normalizer("channel")` fits the same statistics on
#: the training set); 90/10 train/validation split. The `--cutout` runs add
#: Cutout(16) after normalisation: `SWRN_CIFAR10.replace(post_augment="cutout16")`.
SWRN_CIFAR10 = Recipe(
    dataset="cifar10",
    epochs=200,
    batch_size=128,
    optimizer="sgd",
    lr=0.1,
    momentum=0.9,
    nesterov=True,
    weight_decay=5e-4,
    weight_decay_exclude=(r"coefficients$",),
    schedule=((0, 0.1), (60, 0.02), (120, 0.004), (160, 0.0008)),
    lr_policy="piecewise",
    augment="cifar",
    normalize="channel",
    post_augment="none",
    val_split=0.1,
    extra={"mean": (125.3 / 255, 123.0 / 255, 113.9 / 255),
           "std": (63.0 / 255, 62.1 / 255, 66.7 / 255)},
    source="lolemacs/soft-sharing main.py, README",
)
#: CIFAR-100: mean [129.3, 124.1, 112.4]/255, std [68.2, 65.4, 70.4]/255.
SWRN_CIFAR100 = SWRN_CIFAR10.replace(
    dataset="cifar100",
    extra={"mean": (129.3 / 255, 124.1 / 255, 112.4 / 255),
           "std": (68.2 / 255, 65.4 / 255, 70.4 / 255)},
)
#: The Cutout(16) variants (`--cutout`).
SWRN_CIFAR10_CUTOUT = SWRN_CIFAR10.replace(post_augment="cutout16")
SWRN_CIFAR100_CUTOUT = SWRN_CIFAR100.replace(post_augment="cutout16")


#: Net_RL2 shared-basis ResNets on CIFAR-10 (ssregibility/Net_RL2
#: `train_cifar10.py`, spec §1.3): SGD momentum 0.9 (not Nesterov), batch 256,
#: coupled weight decay 5e-4 on ALL variables (shared bases, BN, biases), LR 0.1
#: x0.1 for epoch > 150 and > 225 (1-based), 300 epochs, crop + flip, ImageNet
#: mean/std normalisation. The orthogonality weight lambdaR = 10 is the models'
#: `lambda_r` argument (recorded in `extra`).
NET_RL2_CIFAR10 = CIFAR_RESNET.replace(
    extra={"lambda_r": 10.0},
    source="ssregibility/Net_RL2 train_cifar10.py, README (commit 618e9df)",
)
#: CIFAR-100 (`train_cifar100.py`): the same, but CIFAR-100 mean/std and NO LR
#: schedule (`adjust_learning_rate` is defined but never called): LR 0.1 constant.
NET_RL2_CIFAR100 = NET_RL2_CIFAR10.replace(
    dataset="cifar100",
    schedule=((0, 0.1),),
    normalize="channel",
    extra={"lambda_r": 10.0, "mean": (0.507, 0.487, 0.441), "std": (0.267, 0.256, 0.276)},
    source="ssregibility/Net_RL2 train_cifar100.py, README (commit 618e9df)",
)


#: RLA-Net ImageNet ResNets and their plain/ECA baselines (fangyanwen1106/RLANet
#: `train.py`, spec §2.3): the PyTorch ImageNet example -- SGD momentum 0.9 (not
#: Nesterov), LR 0.1 x0.1 every 30 epochs, 120 epochs, batch 256 in total, coupled
#: weight decay 1e-4 on ALL parameters (BN and biases too); RandomResizedCrop(224) +
#: flip, ImageNet mean/std; validation Resize 256 / CenterCrop 224. The README's
#: errors are the best validation epoch's top-1 and top-5, picked separately (`best.py`).
RLA_RESNET_IMAGENET = Recipe(
    dataset="imagenet",
    epochs=120,
    batch_size=256,
    optimizer="sgd",
    lr=0.1,
    momentum=0.9,
    nesterov=False,
    weight_decay=1e-4,
    weight_decay_exclude=NO_EXCLUSION,
    schedule=((0, 0.1), (30, 0.01), (60, 0.001), (90, 1e-4)),
    lr_policy="piecewise",
    augment="imagenet",
    normalize="imagenet",
    source="fangyanwen1106/RLANet train.py",
)

#: RLA-Net MobileNetV2s and their baseline (`train_light.py`, spec §2.3): SGD
#: momentum 0.9, LR 0.045 x 0.98^epoch (set once per epoch, written here as one
#: `(epoch, lr)` pair per epoch), 400 epochs, batch 96, coupled weight decay 4e-5 on
#: all parameters; the ResNets' augmentation and normalisation.
RLA_MOBILENETV2_IMAGENET = RLA_RESNET_IMAGENET.replace(
    epochs=400,
    batch_size=96,
    lr=0.045,
    weight_decay=4e-5,
    schedule=tuple((e, 0.045 * 0.98 ** e) for e in range(400)),
    source="fangyanwen1106/RLANet train_light.py",
)

#: Net_RL2 ILSVRC MobileNetV2 / _Shared / _SharedDouble (`train_ilsvrc.py`,
#: `adjust_learning_rate_mobilenetv2`, spec §1.3): SGD momentum 0.9 (not
#: Nesterov), batch 256, coupled weight decay 1e-5 (README) on ALL parameters,
#: LR 0.1 x0.1 for epoch > 150 and > 225, then x0.5 for epoch > 285 (1-based),
#: 300 epochs; RandomResizedCrop(224) + flip, ImageNet mean/std. lambdaR = 10.
NET_RL2_IMAGENET_MOBILENETV2 = Recipe(
    dataset="imagenet",
    epochs=300,
    batch_size=256,
    optimizer="sgd",
    lr=0.1,
    momentum=0.9,
    nesterov=False,
    weight_decay=1e-5,
    weight_decay_exclude=NO_EXCLUSION,
    schedule=((0, 0.1), (150, 0.01), (225, 0.001), (285, 0.0005)),
    lr_policy="piecewise",
    augment="imagenet",
    normalize="imagenet",
    extra={"lambda_r": 10.0},
    source="ssregibility/Net_RL2 train_ilsvrc.py, README",
)

#: Net_RL2 CIFAR-100 with the PAPER's schedule: as `NET_RL2_CIFAR100` but LR 0.1
#: x0.1 for epoch > 150 and > 225 (1-based), the `adjust_learning_rate` that
#: `train_cifar100.py` defines but never calls. The default of the CIFAR-100
#: ResNet34 / ResNeXt50 entries; the faithful constant-LR run is
#: `NET_RL2_CIFAR100`, reached from the CLI with `--schedule constant`.
NET_RL2_CIFAR100_PAPER = NET_RL2_CIFAR100.replace(
    schedule=((0, 0.1), (150, 0.01), (225, 0.001)),
    source="ssregibility/Net_RL2 train_cifar100.py (its uncalled adjust_learning_rate), "
           "README (commit 618e9df)",
)

#: Net_RL2 ILSVRC ResNets (`train_ilsvrc.py`, README, spec §1.3): SGD momentum
#: 0.9 (not Nesterov), batch 256, coupled weight decay 1e-4 on ALL parameters
#: (ResNet34-S48U1, ResNet50-Shared++, ResNet101-Shared), LR 0.1 x0.1 for
#: epoch > 60, > 100, > 140 (1-based), 150 epochs; RandomResizedCrop(224) +
#: flip, ImageNet mean/std (test Resize 256 + CenterCrop 224). lambdaR = 10.
NET_RL2_IMAGENET = Recipe(
    dataset="imagenet",
    epochs=150,
    batch_size=256,
    optimizer="sgd",
    lr=0.1,
    momentum=0.9,
    nesterov=False,
    weight_decay=1e-4,
    weight_decay_exclude=NO_EXCLUSION,
    schedule=((0, 0.1), (60, 0.01), (100, 0.001), (140, 1e-4)),
    lr_policy="piecewise",
    augment="imagenet",
    normalize="imagenet",
    extra={"lambda_r": 10.0},
    source="ssregibility/Net_RL2 train_ilsvrc.py, README",
)
#: ResNet50-Shared (`ResNet50_SharedSingle`): the README trains it with wd 4e-5.
NET_RL2_IMAGENET_WD4E5 = NET_RL2_IMAGENET.replace(weight_decay=4e-5)
