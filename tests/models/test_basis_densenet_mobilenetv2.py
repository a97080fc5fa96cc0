"""Net_RL2 CIFAR-100 DenseNet121 and MobileNetV2 (CIFAR-100 / ILSVRC) with shared bases."""

import keras
import numpy as np
import pytest

import keras_lrn
from keras_lrn import models
from keras_lrn.models import BasisDenseNet, BasisMobileNetV2
from keras_lrn.models.basis_densenet import SPEC_DENSENET, densenet_bn_stats, densenet_params
from keras_lrn.models.basis_mobilenetv2 import NAMES, SPEC_MOBILENETV2, mobilenetv2_params
from keras_lrn.testing import (
    assert_config_round_trip,
    non_trainable_params,
    save_and_reload,
    to_numpy,
    trainable_params,
)

# A few steps run faster eagerly than traced on TensorFlow; JAX is faster jitted.
EAGER = keras.backend.backend() == "tensorflow"
TINY_DENSE = {"growth_rate": 4, "blocks": (1, 1, 1, 2), "classes": 10, "input_shape": (8, 8, 3)}


def tiny_densenet(**kwargs):
    return BasisDenseNet(**{"variant": "single", "shared_rank": 3, "unique_rank": 1,
                            **TINY_DENSE, **kwargs})


def numpy_term(kernels):
    """Reference: sum_g sum((B_g B_g^T - I)**2) / sum_g s_g**2, B_g = torch (out, in*kh*kw)."""
    total = count = 0.0
    for k in kernels:
        b = np.transpose(np.asarray(k, "float64"), (3, 2, 0, 1)).reshape(k.shape[-1], -1)
        d = (b @ b.T - np.eye(b.shape[0])) ** 2
        total += d.sum()
        count += b.shape[0] ** 2
    return total / count


def kernel(model, name):
    return to_numpy(model.get_layer(name).kernel)


def calls(model, name):
    return len(model.get_layer(name)._inbound_nodes)


# ------------------------------------------------------------------ counts (spec §2.4-2.5)
def test_densenet_count_formulas_equal_the_spec():
    """Spec §2.4. DenseNet121 (CIFAR-100): stem 1,728; 58 layers, e.g. the first
    (c = 64): BN 128 + 1x1 8,192 + BN 256 + 3x3 36,864; transitions 2c + c*c/2;
    head BN 2,048 + 102,500 -> 7,048,548. S16U1: each 3x3 becomes unique 1,152 +
    basis BN 34 + coefficients 544, plus four bases 4 * 16*128*9 = 73,728 ->
    5,084,504 (the README's "DenseNet121-S64U4"); literal (64, 4) 5,606,708."""
    for (_variant, s, u), (params, bn, _) in SPEC_DENSENET.items():
        assert densenet_params(s, u) == params
        if bn is not None:
            assert densenet_bn_stats(s, u) == bn
    # BN stats of (16, 1): the plain 83,520 + 58 basis BNs of 2 * 17.
    assert densenet_bn_stats(16, 1) == 83_520 + 58 * 2 * 17
    entry = models.get_entry("densenet121_s64u4_cifar100")
    assert (entry.config["shared_rank"], entry.config["unique_rank"]) == (16, 1)
    assert (entry.params, entry.macs) == (5_084_504, 704_212_992)
    assert "16" in entry.notes and "label" in entry.notes
    assert entry.recipe.dataset == "cifar100" and entry.recipe.schedule == ((0, 0.1),)
    faithful = models.get_entry("densenet121_s64u4_faithful_cifar100")
    assert (faithful.params, faithful.macs) == (entry.params, entry.macs)
    assert faithful.config["faithful"] and not entry.config.get("faithful", False)


def test_mobilenetv2_count_formula_equals_the_spec():
    """Spec §2.4/2.5: CIFAR-100 MobileNetV2 2,428,004. Sharing the expand 1x1 of the
    n-1 non-first blocks of stages 3-6 (C = 32, 64, 96, 160; n = 3, 4, 3, 3) replaces
    n-1 kernels of C*6C by one: saves 6C^2 (n-2) = 6,144 + 49,152 + 55,296 + 153,600
    = 264,192; sharing the projections too saves as much again. ILSVRC Shared++ =
    SharedDouble (2,978,888) + 17 ECA weights (2*1 + 3*1 + 2*3 + 2*3)."""
    for (variant, version), (params, _, _) in SPEC_MOBILENETV2.items():
        assert mobilenetv2_params(variant, version) == params
        entry = models.get_entry(NAMES[(variant, version)])
        assert entry.params == params and entry.family == "basis_mobilenetv2"
        assert entry.recipe.dataset == ("imagenet" if version == "imagenet" else "cifar100")
    assert 2_428_004 - 2_163_812 == 2_163_812 - 1_899_620 == 264_192
    imagenet = models.get_entry("mobilenetv2_shared_pp_imagenet").recipe
    assert imagenet.weight_decay == 1e-5 and imagenet.epochs == 300
    assert imagenet.schedule == ((0, 0.1), (150, 0.01), (225, 0.001), (285, 0.0005))


def test_mobilenetv2_imagenet_macs_count_eca():
    """Spec §2.5: Shared 313,619,328 MACs; Shared++ adds the ECA Conv1d's channels * k
    per shared block: 2*32*1 + 3*64*1 + 2*96*3 + 2*160*3 = 1,792 -> 313,621,120."""
    pp = keras_lrn.profile(BasisMobileNetV2("shared_double", "imagenet"))
    shared_macs = SPEC_MOBILENETV2[("shared", "imagenet")][2]
    assert pp.macs == SPEC_MOBILENETV2[("shared_double", "imagenet")][2] == shared_macs + 1_792
    assert (pp.trainable, pp.non_trainable) == (2_978_905, 34_176)
    eca = [c for c in pp.calls if c.kind == "ECA"]
    assert sum(c.macs for c in eca) == 1_792 and len(eca) == 9


@pytest.fixture(scope="module")
def cifar_double():
    return BasisMobileNetV2("shared_double")


def test_mobilenetv2_structure(cifar_double):
    model = cifar_double
    assert model.output_shape == (None, 100)
    # 1x1 pad-1 stem: 32 -> 34 -> 17 -> 9 -> 5
    assert model.get_layer("stem_conv").output.shape[1:3] == (34, 34)
    assert model.get_layer("head_conv").output.shape[1:3] == (5, 5)
    for g, n in zip((1, 2, 3, 4), (3, 4, 3, 3)):  # stages 3-6: every non-first block
        assert calls(model, f"shared_basis_{g}_1") == calls(model, f"shared_basis_{g}_2") == n - 1
    # CIFAR-100: residual on every stride-1 block, 1x1 conv + BN when widths differ
    for name in ("stage1_block1", "stage5_block1", "stage6_block1", "stage7_block1"):
        model.get_layer(f"{name}_shortcut_conv")
    assert not any("eca" in layer.name or "dropout" in layer.name for layer in model.layers)
    # PyTorch default init everywhere, U(+-1/sqrt(fan_in)), biases included
    for name, weight, fan_in in (("stem_conv", "bias", 3), ("head_conv", "bias", 320),
                                 ("stage4_block2_dw", "kernel", 9),
                                 ("shared_basis_4_1", "kernel", 160),
                                 ("shared_basis_4_2", "kernel", 960), ("predictions", "bias", 1280)):
        w = np.abs(to_numpy(getattr(model.get_layer(name), weight)))
        assert 0.5 / np.sqrt(fan_in) < w.max() <= 1 / np.sqrt(fan_in), name


# ------------------------------------------------------------------ DenseNet's basis_4 bug
def test_densenet_faithful_reproduces_the_unused_basis():
    fixed, faithful = tiny_densenet(), tiny_densenet(faithful=True)
    expected = densenet_params(3, 1, blocks=(1, 1, 1, 2), growth=4, classes=10)
    assert trainable_params(fixed) == trainable_params(faithful) == expected
    assert non_trainable_params(fixed) == densenet_bn_stats(3, 1, (1, 1, 1, 2), 4)
    assert [calls(fixed, f"shared_basis_{g}") for g in (1, 2, 3, 4)] == [1, 1, 1, 2]
    assert [calls(faithful, f"shared_basis_{g}") for g in (1, 2, 3)] == [1, 1, 3]
    with pytest.raises(ValueError):
        faithful.get_layer("shared_basis_4")  # not in the graph ...
    assert any(w is faithful.unused_shared_basis.kernel  # ... but a weight
               for w in faithful.trainable_weights)
    assert keras_lrn.profile(fixed).macs == keras_lrn.profile(faithful).macs
    # no orthogonal init: PyTorch's default U(+-1/sqrt(in * 9)), in = 4 * growth = 16
    k = np.abs(kernel(fixed, "shared_basis_1"))
    assert 0.5 / 12 < k.max() <= 1 / 12
    # train_basis includes basis 4 in both
    for model, b4 in ((fixed, kernel(fixed, "shared_basis_4")),
                      (faithful, to_numpy(faithful.unused_shared_basis.kernel))):
        ks = [kernel(model, f"shared_basis_{g}") for g in (1, 2, 3)] + [b4]
        np.testing.assert_allclose(to_numpy(model.orthogonality_penalty()), numpy_term(ks),
                                   rtol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("faithful,counts", [(True, [6, 12, 40, 0]), (False, [6, 12, 24, 16])])
def test_densenet121_basis_calls_and_counts(faithful, counts):
    """Spec §1.3: forward-hook counts basis_1 x6, basis_2 x12, basis_3 x40, basis_4 x0;
    same parameters and MACs either way (basis 3 and 4 have the same shape)."""
    model = BasisDenseNet("single", 16, 1, faithful=faithful)
    got = []
    for g in (1, 2, 3, 4):
        try:
            got.append(calls(model, f"shared_basis_{g}"))
        except ValueError:
            got.append(0)
    assert got == counts
    p = keras_lrn.profile(model)
    assert (p.trainable, p.non_trainable, p.macs) == (5_084_504, densenet_bn_stats(16, 1),
                                                      704_212_992)


@pytest.mark.slow
@pytest.mark.parametrize("key", sorted(SPEC_DENSENET))
def test_densenet_spec_rows(key):
    variant, s, u = key
    params, bn, macs = SPEC_DENSENET[key]
    p = keras_lrn.profile(BasisDenseNet(variant, s, u))
    assert (p.trainable, p.macs) == (params, macs)
    assert p.non_trainable == (bn if bn is not None else densenet_bn_stats(s, u))


# ------------------------------------------------------------------ orthogonality penalty
def test_mobilenetv2_penalty_equals_the_reference_formula(cifar_double):
    """`train_basis_double_separate` (`train_basis` is checked on the DenseNet above)."""
    rng = np.random.default_rng(0)
    double = cifar_double
    for g in (1, 2, 3, 4):  # move off the init, to arbitrary (not unit-norm) filters
        for i in (1, 2):
            layer = double.get_layer(f"shared_basis_{g}_{i}")
            layer.kernel.assign(rng.normal(size=layer.kernel.shape).astype("float32") * 0.1)
    # avg over the four _1 (6C x C) bases + avg over the four _2 (C x 6C) bases
    avg_1 = numpy_term([kernel(double, f"shared_basis_{g}_1") for g in (1, 2, 3, 4)])
    avg_2 = numpy_term([kernel(double, f"shared_basis_{g}_2") for g in (1, 2, 3, 4)])
    joint = numpy_term([kernel(double, f"shared_basis_{g}_{i}") for g in (1, 2, 3, 4)
                        for i in (1, 2)])
    got = float(to_numpy(double.orthogonality_penalty()))
    np.testing.assert_allclose(got, avg_1 + avg_2, rtol=1e-5)
    assert abs(got - joint) > 1e-3 * got  # not one joint average


def test_training_lowers_the_penalty_and_trains_the_unused_basis():
    model = tiny_densenet(faithful=True, lambda_r=10.0)
    x = np.random.default_rng(0).uniform(size=(8, 8, 8, 3)).astype("float32")
    y = np.arange(8) % 10
    before = float(to_numpy(model.orthogonality_penalty()))
    b4 = to_numpy(model.unused_shared_basis.kernel)
    model.compile(keras.optimizers.SGD(0.1),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  run_eagerly=EAGER)
    history = model.fit(x, y, batch_size=8, epochs=3, verbose=0)
    after = float(to_numpy(model.orthogonality_penalty()))
    assert after < 0.7 * before, (before, after)  # measured ~0.15 -> ~0.05
    assert history.history["orthogonality"][-1] < history.history["orthogonality"][0]
    # basis 4 gets gradient only from the penalty, as in the reference
    assert not np.allclose(to_numpy(model.unused_shared_basis.kernel), b4)


def test_imagenet_shared_pp_forward_backward_tiny_input():
    model = BasisMobileNetV2("shared_double", "imagenet", input_shape=(32, 32, 3), classes=10)
    # ILSVRC: stride-2 3x3 stem, identity residuals only, Dropout(0.2) head; 32 -> 1
    assert not any("shortcut" in layer.name for layer in model.layers)
    assert model.get_layer("dropout").rate == 0.2
    assert model.get_layer("head_conv").output.shape[1:3] == (1, 1)
    assert model.get_layer("stage5_block2_eca").k_size == 3
    x = np.random.default_rng(1).uniform(size=(2, 32, 32, 3)).astype("float32")
    model.compile(keras.optimizers.SGD(0.01),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  run_eagerly=EAGER)
    before = to_numpy(model.get_layer("shared_basis_2_2").kernel)
    logs = model.train_on_batch(x, np.array([1, 2]), return_dict=True)
    assert np.isfinite(logs["loss"]) and logs["orthogonality"] > 0
    assert not np.allclose(to_numpy(model.get_layer("shared_basis_2_2").kernel), before)


# ------------------------------------------------------------------ save / load, config
def test_save_load_keeps_bases_shared():
    x = np.random.default_rng(0).uniform(size=(2, 8, 8, 3)).astype("float32")
    dense = tiny_densenet(faithful=True)
    reloaded = save_and_reload(dense)
    assert type(reloaded) is BasisDenseNet
    np.testing.assert_allclose(reloaded.predict_on_batch(x), dense.predict_on_batch(x),
                               atol=1e-5)
    # one layer object, called by blocks 3 and 4 (faithful), and the unused basis 4
    layers = [layer for layer in reloaded.layers if layer.name == "shared_basis_3"]
    assert len(layers) == 1 and len(layers[0]._inbound_nodes) == 3
    # the penalty reads the very layers of the graph (and the unused basis)
    groups = reloaded.orthogonality_layer._groups.terms[0]
    assert groups[2][0][0] is layers[0] and groups[3][0][0] is reloaded.unused_shared_basis
    assert trainable_params(reloaded) == trainable_params(dense)
    assert reloaded.get_config() == dense.get_config()
    np.testing.assert_array_equal(to_numpy(reloaded.unused_shared_basis.kernel),
                                  to_numpy(dense.unused_shared_basis.kernel))
    np.testing.assert_allclose(to_numpy(reloaded.orthogonality_penalty()),
                               to_numpy(dense.orthogonality_penalty()), rtol=1e-6)


def test_config_round_trip():
    assert_config_round_trip(tiny_densenet())
    assert_config_round_trip(BasisMobileNetV2("shared_double", "imagenet",
                                              input_shape=(32, 32, 3), classes=10))


@pytest.mark.parametrize("kwargs,arg", [
    ({"shared_rank": -1}, "shared_rank"), ({"unique_rank": -1}, "unique_rank"),
    ({"shared_rank": 0}, "shared_rank"), ({"lambda_r": -1.0}, "lambda_r"),
    ({"variant": "double"}, "variant"), ({"variant": "plain", "shared_rank": 4}, "shared_rank"),
    ({"blocks": (6, 12, 24)}, "blocks"), ({"faithful": 1}, "faithful"),
    ({"reduction": 0.0}, "reduction"),
])
def test_densenet_bad_arguments(kwargs, arg):
    with pytest.raises(ValueError, match=arg):
        BasisDenseNet(**{**TINY_DENSE, **kwargs})


@pytest.mark.parametrize("kwargs,arg", [
    ({"variant": "triple"}, "variant"), ({"version": "cifar10"}, "version"),
    ({"lambda_r": -0.5}, "lambda_r"), ({"variant": "plain", "eca": True}, "eca"),
    ({"dropout": 1.5}, "dropout"), ({"classes": 0}, "classes"),
])
def test_mobilenetv2_bad_arguments(kwargs, arg):
    with pytest.raises(ValueError, match=arg):
        BasisMobileNetV2(**{"input_shape": (8, 8, 3), **kwargs})
