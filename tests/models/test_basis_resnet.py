"""Net_RL2 CIFAR-10 shared-basis ResNets: exact counts, sharing through save/load, errors."""

import keras
import numpy as np
import pytest

from keras_lrn import models
from keras_lrn.models import BasisResNet
from keras_lrn.models.basis_resnet import (
    CIFAR10_DEPTHS,
    SPEC_CIFAR10,
    basis_resnet_bn_stats,
    basis_resnet_params,
    registry_name,
)
from keras_lrn.testing import (
    assert_config_round_trip,
    count_params,
    non_trainable_params,
    save_and_reload,
    to_numpy,
    trainable_params,
)


@pytest.mark.parametrize("key", sorted(SPEC_CIFAR10))
def test_count_formulas_equal_the_spec(key):
    """Spec §2.4: e.g. ResNet32-S8U1 150,666 = stem 464 + stages 8,528 + 28,576 + 112,448
    + head 650 (see `basis_resnet_params` for the per-stage terms)."""
    depth, variant, s, u = key
    params, bn, _ = SPEC_CIFAR10[key]
    n = CIFAR10_DEPTHS[depth]
    assert basis_resnet_params(n, variant, s, u) == params
    assert basis_resnet_bn_stats(n, s, u) == bn
    entry = models.get_entry(registry_name(*key))
    assert (entry.params, entry.non_trainable) == (params, bn)
    assert entry.recipe.batch_size == 256 and entry.recipe.weight_decay == 5e-4
    assert entry.recipe.normalize == "imagenet" and entry.recipe.weight_decay_exclude == ()


def test_registry_names():
    names = models.list_models(family="basis_resnet")
    for name in ("resnet32_s8u1", "resnet32_s16u1", "resnet32_s16u1_double", "resnet56_s8u1",
                 "resnet56_s16u1", "resnet56_s16u1_double", "resnet56_s24u1_double",
                 "resnet56_s16u0", "resnet56_s0u16"):
        assert name in names


@pytest.mark.parametrize("variant,s,u", [("single", 2, 1), ("double", 2, 1),
                                         ("shared_only", 2, 0), ("non_shared", 0, 2)])
def test_small_variants_counts(variant, s, u):
    model = BasisResNet(20, variant, s, u, input_shape=(8, 8, 3))
    assert trainable_params(model) == basis_resnet_params(3, variant, s, u)
    assert non_trainable_params(model) == basis_resnet_bn_stats(3, s, u)
    assert model.output_shape == (None, 10)
    nbases = {"single": 3, "double": 6, "shared_only": 6, "non_shared": 0}[variant]
    assert sum("shared_basis" in layer.name for layer in model.layers) == nbases


def test_shared_bases_init_orthogonal():
    model = BasisResNet(20, "double", 2, 1, input_shape=(8, 8, 3), seed=5)
    k = [to_numpy(model.get_layer(f"stage3_shared_basis_{i}").kernel) for i in (1, 2)]
    b = np.concatenate([np.transpose(x, (3, 2, 0, 1)).reshape(8, -1) for x in k])
    np.testing.assert_allclose(b @ b.T, np.eye(16), atol=1e-5)  # joint draw, split in halves


@pytest.mark.parametrize("variant", ["single", "double"])
def test_save_load_keeps_bases_shared(variant):
    model = BasisResNet(20, variant, 2, 1, input_shape=(8, 8, 3))
    x = np.random.default_rng(0).uniform(size=(2, 8, 8, 3)).astype("float32")
    reloaded = save_and_reload(model)
    assert type(reloaded) is BasisResNet
    np.testing.assert_allclose(to_numpy(reloaded(x)), to_numpy(model(x)), atol=1e-5)
    name = "stage2_shared_basis" if variant == "single" else "stage2_shared_basis_1"
    layers = [layer for layer in reloaded.layers if layer.name == name]
    # one layer object, called by every non-first block (single: twice per block)
    assert len(layers) == 1
    assert len(layers[0]._inbound_nodes) == (4 if variant == "single" else 2)
    assert count_params(reloaded.trainable_weights) == count_params(model.trainable_weights)
    np.testing.assert_allclose(to_numpy(reloaded.orthogonality_penalty()),
                               to_numpy(model.orthogonality_penalty()), rtol=1e-6)
    assert reloaded.get_config() == model.get_config()


def test_config_round_trip():
    assert_config_round_trip(BasisResNet(20, "shared_only", 2, input_shape=(8, 8, 3), seed=1))


@pytest.mark.parametrize("kwargs,arg", [
    ({"depth": 57}, "depth"), ({"depth": 1202}, "depth"),
    ({"shared_rank": -1}, "shared_rank"), ({"unique_rank": -1}, "unique_rank"),
    ({"lambda_r": -1.0}, "lambda_r"), ({"variant": "triple"}, "variant"),
    ({"variant": "shared_only", "unique_rank": 1}, "unique_rank"),
    ({"variant": "non_shared", "shared_rank": 4}, "shared_rank"),
    ({"shared_rank": 0}, "shared_rank"),
])
def test_bad_arguments(kwargs, arg):
    with pytest.raises(ValueError, match=arg):
        BasisResNet(**{"depth": 20, **kwargs})


@pytest.mark.slow
def test_fit_full_model_one_step():
    model = models.get_model("resnet56_s16u1")
    x = np.random.default_rng(0).uniform(size=(8, 32, 32, 3)).astype("float32")
    model.compile(keras.optimizers.SGD(0.1, momentum=0.9),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    history = model.fit(x, np.arange(8) % 10, batch_size=8, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0]) and "orthogonality" in history.history


@pytest.mark.slow
@pytest.mark.parametrize("key", sorted(SPEC_CIFAR10))
def test_spec_params_and_macs_of_every_row(key):
    """Spec §2.4 trainable, BN statistics and MACs (FlopCounterMode / 2) for every row."""
    import keras_lrn

    params, bn, macs = SPEC_CIFAR10[key]
    p = keras_lrn.profile(models.get_model(registry_name(*key)))
    assert (p.trainable, p.non_trainable, p.macs) == (params, bn, macs)
