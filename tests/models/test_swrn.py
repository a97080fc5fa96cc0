import keras
import numpy as np
import pytest

from keras_lrn import models
from keras_lrn.layers import SharedConv2D, TemplateBank
from keras_lrn.models.swrn import SPEC_PARAMS, SWRN, WRN, wrn_params
from keras_lrn.recipes import SWRN_CIFAR10, SWRN_CIFAR100
from keras_lrn.testing import (
    assert_config_round_trip,
    non_trainable_params,
    random_images,
    run_model_test,
    to_numpy,
    trainable_params,
)
from keras_lrn.training.weight_decay import apply_weight_decay

SMALL = dict(input_shape=(8, 8, 3))


def _coefficients_by_stage(model):
    out = {}
    for layer in model.layers:
        if isinstance(layer, SharedConv2D):
            out.setdefault(layer.name.split("_")[0], []).append(to_numpy(layer.coefficients))
    return {k: np.stack(v) for k, v in out.items()}


def test_spec_table_derivation():
    # wrn_params derives every row of the spec's table (§2.3); e.g. SWRN-28-10-6
    # = WRN-28-10 (36,479,194) + 3 stages x 6 shared convs x 6 coefficients.
    for (d, w, t, classes), params in SPEC_PARAMS.items():
        assert wrn_params(d, w, classes, t) == params
    assert wrn_params(28, 10) == 36_479_194 == SPEC_PARAMS[(28, 10, 6, 10)] - 108


@pytest.mark.parametrize("depth,width,bank", [(16, 2, 1), (22, 1, 3)])
def test_small_parameter_counts(depth, width, bank):
    model = SWRN(depth, width, bank, **SMALL)
    assert trainable_params(model) == wrn_params(depth, width, 10, bank)
    plain = WRN(depth, width, **SMALL)
    assert trainable_params(plain) == wrn_params(depth, width, 10)
    # Both hold the same BN layers.
    assert non_trainable_params(model) == non_trainable_params(plain)


def test_structure_first_block_unshared_one_bank_per_stage():
    model = SWRN(22, 1, 2, **SMALL)  # N = 3: blocks 2, 3 of each stage shared
    banks = [layer for layer in model.layers if isinstance(layer, TemplateBank)]
    assert [b.name for b in banks] == ["stage1_bank", "stage2_bank", "stage3_bank"]
    assert [b.template_shape for b in banks] == [(3, 3, 16, 16), (3, 3, 32, 32), (3, 3, 64, 64)]
    shared = [layer.name for layer in model.layers if isinstance(layer, SharedConv2D)]
    assert len(shared) == 12 and not any("block1" in n for n in shared)
    for layer in model.layers:
        if isinstance(layer, SharedConv2D):
            bank = layer._inbound_nodes[0].input_tensors[1]._keras_history.operation
            assert bank.name == layer.name.split("_")[0] + "_bank"
    assert isinstance(model.get_layer("stage2_block1_conv1"), keras.layers.Conv2D)


@pytest.mark.parametrize("depth,bank", [(16, 1), (16, 2), (22, 2)])
def test_coefficients_orthogonal_per_stage(depth, bank):
    model = SWRN(depth, 1, bank, **SMALL)
    for c in _coefficients_by_stage(model).values():
        rows, cols = c.shape
        if rows <= cols:
            np.testing.assert_allclose(c @ c.T, np.eye(rows), atol=1e-5)  # C C^T = I
        else:
            np.testing.assert_allclose(c.T @ c, np.eye(cols), atol=1e-5)  # C^T C = I


def test_coefficients_excluded_from_weight_decay():
    model = SWRN(16, 1, 2, **SMALL)
    decayed = apply_weight_decay(model, 5e-4, SWRN_CIFAR10.weight_decay_exclude)
    coefficient_paths = {v.path for v in model.trainable_variables
                         if v.path.endswith("coefficients")}
    assert len(coefficient_paths) == 6
    assert not coefficient_paths & {v.path for v in decayed}
    # Templates, BN gamma/beta and the dense bias are decayed (reference).
    assert len(decayed) == len(model.trainable_variables) - 6

    def penalty():
        return sum(float(to_numpy(v.regularizer(v))) for v in model.trainable_variables
                   if v.regularizer is not None)

    expected = sum(0.5 * 5e-4 * float(np.sum(to_numpy(v) ** 2)) for v in decayed)
    np.testing.assert_allclose(penalty(), expected, rtol=1e-5)
    for v in model.trainable_variables:
        if v.path.endswith("coefficients"):
            v.assign(v * 100.0)
    np.testing.assert_allclose(penalty(), expected, rtol=1e-5)


def test_trains_and_round_trips():
    model = SWRN(16, 1, 2, **SMALL)
    model.compile(keras.optimizers.SGD(0.1, momentum=0.9, nesterov=True),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x = random_images((4, 8, 8, 3))
    model.fit(x, np.array([0, 1, 2, 3]), epochs=1, batch_size=4, verbose=0)
    reloaded = run_model_test(model, x, atol=1e-5)
    banks = [layer for layer in reloaded.layers if isinstance(layer, TemplateBank)]
    assert len(banks) == 3
    assert sum(v.path.endswith("templates") for v in reloaded.weights) == 3


def test_config_round_trip():
    assert_config_round_trip(SWRN(16, 1, 2, classes=7, **SMALL))
    assert_config_round_trip(WRN(16, 1, **SMALL))


def test_bad_arguments():
    with pytest.raises(ValueError, match="depth"):
        SWRN(18, 1, 2, **SMALL)
    with pytest.raises(ValueError, match="bank_size"):
        SWRN(16, 1, 0, **SMALL)
    with pytest.raises(ValueError, match="width"):
        SWRN(16, 0, 2, **SMALL)
    with pytest.raises(ValueError, match="depth"):
        WRN(15, 1, **SMALL)


def test_registry_entries_carry_the_recipe():
    entry = models.get_entry("swrn28_10_6_cifar10")
    assert entry.params == 36_479_302 and entry.slow
    r = entry.recipe
    assert (r.nesterov, r.momentum, r.batch_size, r.epochs, r.weight_decay) == (
        True, 0.9, 128, 200, 5e-4)
    assert r.schedule == ((0, 0.1), (60, 0.02), (120, 0.004), (160, 0.0008))
    assert r.val_split == 0.1 and r.augment == "cifar" and r.normalize == "channel"
    assert models.get_entry("swrn28_10_6_cifar100").recipe is SWRN_CIFAR100
    assert not models.get_entry("swrn28_4_6_cifar10").slow


@pytest.mark.slow
@pytest.mark.parametrize("key", sorted(SPEC_PARAMS))
def test_spec_parameter_counts_built(key):
    depth, width, bank, classes = key
    model = SWRN(depth, width, bank, classes=classes)
    assert trainable_params(model) == SPEC_PARAMS[key]
