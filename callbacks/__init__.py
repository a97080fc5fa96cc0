"""Training callbacks of keras_lrn (the `keras_lrn.callbacks` package).

epsilon-ResNet (Yu, Yu and Ramalingam, CVPR 2018):

* `DiscardedLayerCounter` logs the number of discarded blocks (exact and EMA).
* `AdaptiveLRSetter` is the reference's adaptive learning-rate rule.
* `EpsilonScheduler` schedules the gates' epsilon (the 2020 warm-up).
* `SideSupervision` reports the side head's validation error and schedules its
  loss weight through `ScaledLoss`.
* `BackupAndRestore` is Keras' callback plus callback state and atomic writes.

Order in `callbacks=[...]`: `EpsilonScheduler`, `SideSupervision`,
`DiscardedLayerCounter`, `AdaptiveLRSetter`, then `CSVLogger`/`TensorBoard`,
then `BackupAndRestore`.
"""

from keras_lrn.callbacks.adaptive_lr import AdaptiveLRSetter
from keras_lrn.callbacks.backup_and_restore import BackupAndRestore
from keras_lrn.callbacks.discarded_counter import DiscardedLayerCounter
from keras_lrn.callbacks.epsilon_scheduler import EpsilonScheduler
from keras_lrn.callbacks.scaled_loss import ScaledLoss
from keras_lrn.callbacks.side_supervision import SideSupervision

__all__ = [
    "AdaptiveLRSetter",
    "BackupAndRestore",
    "DiscardedLayerCounter",
    "EpsilonScheduler",
    "ScaledLoss",
    "SideSupervision",
]
