"""Data sets, normalisation, augmentation and input pipelines.

Only keras, numpy and the standard library are imported here. TensorFlow,
tensorflow_datasets, Pillow and scipy are imported lazily by the functions
that need them; everything but the TFDS source works without TensorFlow.

Example:
```python
from keras_lrn import data

(x_train, y_train), (x_test, y_test) = data.load("cifar10", data_dir="/work/shared/datasets/cifar10")
(x_tr, y_tr), (x_val, y_val) = data.train_val_split(x_train, y_train, val_fraction=0.1)
norm = data.Normalizer("channel").fit(x_tr)
train_ds = data.make_dataset(x_tr, y_tr, augment="cifar", normalizer=norm)
val_ds = data.make_dataset(x_val, y_val, training=False, normalizer=norm)
```
"""

from keras_lrn.data.augment import AUGMENTS, POST_AUGMENTS
from keras_lrn.data.datasets import (
    DATASET_NAMES,
    DatasetInfo,
    get_info,
    list_datasets,
    synthetic,
    train_val_split,
)
from keras_lrn.data.layers import Cutout, RandomPadCrop
from keras_lrn.data.loading import SOURCES, load
from keras_lrn.data.normalization import NORMALIZE_KINDS, Normalizer
from keras_lrn.data.pipeline import (
    PIPELINES,
    ArrayDataset,
    EpochSync,
    benchmark_pipeline,
    make_dataset,
    set_epoch,
)

__all__ = [
    "AUGMENTS",
    "ArrayDataset",
    "Cutout",
    "DATASET_NAMES",
    "DatasetInfo",
    "EpochSync",
    "NORMALIZE_KINDS",
    "Normalizer",
    "PIPELINES",
    "POST_AUGMENTS",
    "RandomPadCrop",
    "SOURCES",
    "benchmark_pipeline",
    "get_info",
    "list_datasets",
    "load",
    "make_dataset",
    "set_epoch",
    "synthetic",
    "train_val_split",
]
