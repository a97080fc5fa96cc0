import keras
import numpy as np
import pytest

from keras_lrn import models
from keras_lrn.layers import LRUBlock
from keras_lrn.models import lrunet
from keras_lrn.testing import (
    non_trainable_params,
    run_model_test,
    to_numpy,
    trainable_params,
)

# Every row of spec §2.1. The registry test builds the published configurations
# and the 0.5x fix; here N = 4 runs for every CIFAR-10 width by default and the
# whole table with -m slow (each extra reuse only adds BN pairs).
ALL_ROWS = [(ds, w, n) for (ds, w), rows in lrunet._LRU_COUNTS.items() for n in rows]
FAST_ROWS = [r for r in ALL_ROWS if r[2] == 4 and r[0] == "cifar10"]


@pytest.mark.parametrize("dataset,width,n", FAST_ROWS)
def test_parameter_counts_match_spec(dataset, width, n):
    _check_counts(dataset, width, n)


@pytest.mark.slow
@pytest.mark.parametrize("dataset,width,n", [r for r in ALL_ROWS if r not in FAST_ROWS])
def test_parameter_counts_full_table(dataset, width, n):
    _check_counts(dataset, width, n)


def _check_counts(dataset, width, n):
    p, nt = lrunet._LRU_COUNTS[(dataset, width)][n]
    model = models.LruNet(layer_reuse=n, width_mult=width, classes=lrunet._CLASSES[dataset],
                          input_shape=lrunet.DATASET_SHAPES[dataset])
    assert trainable_params(model) == p
    assert non_trainable_params(model) == nt


def test_registry_entries():
    names = models.list_models("lrunet*")
    for published in ("lrunet1_cifar10", "lrunet14_cifar10", "lrunet1_2x_cifar100",
                      "lrunet14_2x_cifar100", "lrunet1_fashion_mnist", "lrunet10_fashion_mnist",
                      "lrunet14_0.5x_cifar10"):
        assert published in names
    e = models.get_entry("lrunet14_cifar10")
    assert e.params == 206282 and e.non_trainable == 81280 and e.macs == 35497984
    r = e.recipe
    assert r.schedule == ((0, 0.1), (200, 0.01), (250, 0.001)) and r.epochs == 300
    assert r.augment == "lrunet" and r.normalize == "scale" and r.weight_decay == 5e-4
    assert r.weight_decay_exclude == () and not r.nesterov
    assert e.config["dropout"] == 0.5
    assert models.get_entry("lrunet10_fashion_mnist").recipe.dataset == "fashion_mnist"
    assert "crashes in the reference" in models.get_entry("lrunet1_0.5x_cifar10").notes


def test_structure_and_sharing():
    model = models.LruNet(layer_reuse=3)
    blocks = [layer for layer in model.layers if isinstance(layer, LRUBlock)]
    assert [b.planes for b in blocks] == [64, 128, 256, 512]
    assert all(b.n_iter == 3 and len(b.dw_bns) == 3 for b in blocks)
    # One dw and one pw kernel per stage, whatever the reuse count.
    kernels = [w for w in model.trainable_weights if w.path.endswith("kernel")]
    assert len(kernels) == 1 + 4 * 2 + 2


@pytest.mark.parametrize("width,shape", [(1.0, (28, 28, 1)), (1.0, (32, 32, 1)),
                                         (0.5, (32, 32, 3)), (2.0, (32, 32, 3))])
def test_forward_rectified_logits(width, shape):
    model = models.LruNet(layer_reuse=2, width_mult=width, input_shape=shape)
    x = np.random.default_rng(0).uniform(0, 1, (2,) + shape).astype("float32")
    y = to_numpy(model(x, training=False))
    assert y.shape == (2, 10)
    assert (y >= 0).all()


@pytest.mark.parametrize("unroll", ["auto", False])
def test_save_reload_keeps_sharing(unroll):
    model = models.LruNet(layer_reuse=2, width_mult=0.5, unroll=unroll)
    x = np.random.default_rng(1).uniform(0, 1, (2, 32, 32, 3)).astype("float32")
    reloaded = run_model_test(model, x, atol=1e-5)
    assert len(reloaded.weights) == len(model.weights)
    assert trainable_params(reloaded) == trainable_params(model)
    assert reloaded.get_config() == model.get_config()


def test_train_step_runs():
    model = models.LruNet(layer_reuse=1, width_mult=0.5)
    model.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x = np.random.default_rng(2).uniform(0, 1, (4, 32, 32, 3)).astype("float32")
    loss = model.train_on_batch(x, np.array([0, 1, 2, 3]))
    assert np.isfinite(loss)


@pytest.mark.parametrize("kwargs,match", [
    (dict(layer_reuse=0), "layer_reuse"),
    (dict(width_mult=0.3), "width_mult"),
    (dict(width_mult=-1), "width_mult"),
    (dict(dropout=1.5), "dropout"),
    (dict(classes=0), "classes"),
    (dict(input_shape=(64, 64, 3)), "2x2"),
    (dict(weights=3), "weights"),
    (dict(unroll="no"), "unroll"),
])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        models.LruNet(**kwargs)
