import os
import tempfile

import keras
import numpy as np
import pytest

from keras_lrn import sharing
from keras_lrn.export import export
from keras_lrn.layers import SharedConv2D, TemplateBank
from keras_lrn.models import SWRN, WRN, CifarResNet
from keras_lrn.testing import random_images, save_and_reload, to_numpy, trainable_params

SMALL = dict(input_shape=(8, 8, 3))


def _banks(model):
    return [layer for layer in model.layers if isinstance(layer, TemplateBank)]


def _bank_of(conv):
    return conv._inbound_nodes[0].input_tensors[1]._keras_history.operation


def _predicted(model, groups, t):
    # Each group of L convs with |W|-sized kernels: L|W| -> T|W| + L T.
    total = trainable_params(model)
    for names in groups:
        size = int(np.prod(model.get_layer(names[0]).kernel.shape))
        total += -len(names) * size + t * size + len(names) * t
    return total


def _train_step(model, x):
    model.compile(keras.optimizers.SGD(0.1, momentum=0.9, nesterov=True),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    before = to_numpy(_banks(model)[0].templates)
    model.fit(x, np.arange(len(x)) % 10, epochs=1, batch_size=len(x), verbose=0)
    assert not np.allclose(before, to_numpy(_banks(model)[0].templates))


def _check_round_trips(model, x, num_banks):
    expected = to_numpy(model(x, training=False))
    reloaded = save_and_reload(model)
    banks = _banks(reloaded)
    assert len(banks) == num_banks
    convs = [layer for layer in reloaded.layers if isinstance(layer, SharedConv2D)]
    assert all(any(_bank_of(c) is b for b in banks) for c in convs)
    assert sum(v.path.endswith("templates") for v in reloaded.weights) == num_banks
    np.testing.assert_allclose(to_numpy(reloaded(x, training=False)), expected, rtol=1e-4, atol=1e-5)
    tf = pytest.importorskip("tensorflow")
    path = export(model, os.path.join(tempfile.mkdtemp(), "sm"), format="saved_model")
    loaded = tf.saved_model.load(path)
    assert sum(len(v.shape) == 5 for v in loaded.variables) == num_banks
    np.testing.assert_allclose(loaded.serve(x).numpy(), expected, rtol=1e-4, atol=1e-5)


def test_resnet56_soft_share_count_train_round_trip():
    model = CifarResNet(depth=56, width=(4, 8, 8), **SMALL)
    shared, report = sharing.soft_share(model, 3, return_report=True)
    # Stage 1: all 18 convs are 4->4 at 8x8; stages 2/3: the strided first conv
    # is left out, the other 17 share.
    assert [len(g) for g in report.groups] == [18, 17, 17]
    assert report.params_after == trainable_params(shared) == report.predicted
    assert report.predicted == _predicted(model, report.groups, 3)
    assert report.params_before == trainable_params(model)
    x = random_images((2, 8, 8, 3))
    _train_step(shared, x)
    _check_round_trips(shared, x, 3)


@pytest.mark.slow
def test_full_resnet56_parameter_count():
    model = CifarResNet(depth=56)
    shared, report = sharing.soft_share(model, 4, return_report=True)
    # 853,018 - (18*2304 + 17*9216 + 17*36864) + 4*(2304 + 9216 + 36864) + 4*(18 + 17 + 17)
    assert trainable_params(shared) == report.predicted == 853_018 - 824_832 + 193_744 == 221_930


def test_wrn_soft_share_trains_and_round_trips():
    model = WRN(16, 1, **SMALL)
    shared, report = sharing.soft_share(model, 2, return_report=True)
    assert trainable_params(shared) == report.predicted == _predicted(model, report.groups, 2)
    x = random_images((2, 8, 8, 3))
    _train_step(shared, x)
    _check_round_trips(shared, x, 3)


def test_excluding_first_blocks_gives_the_swrn_count():
    shared = sharing.soft_share(WRN(16, 1, **SMALL), 2, exclude=r"_block1_")
    assert trainable_params(shared) == trainable_params(SWRN(16, 1, 2, **SMALL))


def test_fresh_init_orthogonal_coefficients_and_original_untouched():
    model = CifarResNet(depth=20, width=(4, 8, 8), **SMALL)
    weights = [to_numpy(w) for w in model.weights]
    shared, report = sharing.soft_share(model, 2, return_report=True)
    for names in report.groups:
        c = np.stack([to_numpy(shared.get_layer(n).coefficients) for n in names])
        np.testing.assert_allclose(c.T @ c, np.eye(2), atol=1e-5)  # L > T: C^T C = I
    for w, v in zip(weights, model.weights):
        np.testing.assert_array_equal(w, to_numpy(v))
    # Layers outside the groups keep their weights.
    np.testing.assert_array_equal(to_numpy(shared.get_layer("stem_conv").kernel),
                                  to_numpy(model.get_layer("stem_conv").kernel))


def test_pretrained_init_reproduces_the_model_when_t_covers_the_group():
    model = CifarResNet(depth=20, width=(4, 8, 8), **SMALL)
    x = random_images((2, 8, 8, 3))
    shared, report = sharing.soft_share(model, 6, init="pretrained", return_report=True)
    assert max(len(g) for g in report.groups) <= 6
    np.testing.assert_allclose(to_numpy(shared(x)), to_numpy(model(x)), atol=1e-4)
    fitted = sharing.soft_share(model, 2, init="pretrained", return_report=True)[0]
    for names in report.groups:
        c = np.stack([to_numpy(fitted.get_layer(n).coefficients) for n in names])
        np.testing.assert_allclose(c.T @ c, np.eye(2), atol=1e-5)


def test_explicit_groups_and_bad_input():
    model = CifarResNet(depth=20, width=(4, 8, 8), **SMALL)
    shared, report = sharing.soft_share(
        model, 1, groups=[["stage1_block1_conv1", "stage1_block2_conv1"]], return_report=True)
    assert report.groups == (("stage1_block1_conv1", "stage1_block2_conv1"),)
    assert len(_banks(shared)) == 1
    with pytest.raises(ValueError, match="num_templates"):
        sharing.soft_share(model, 0)
    with pytest.raises(ValueError, match="groups"):  # different shapes (4->4 vs 8->8)
        sharing.soft_share(model, 2, groups=[["stage1_block1_conv1", "stage2_block2_conv1"]])
    with pytest.raises(ValueError, match="groups"):  # different strides (8->8 s2 vs s1)
        sharing.soft_share(model, 2, groups=[["stage3_block1_conv1", "stage2_block2_conv1"]])
    with pytest.raises(ValueError, match="groups"):
        sharing.soft_share(model, 2, groups=[["no_such_layer", "stem_conv"]])
    with pytest.raises(ValueError, match="groups"):
        sharing.soft_share(model, 2, groups="everything")
    with pytest.raises(ValueError, match="init"):
        sharing.soft_share(model, 2, init="copy")
