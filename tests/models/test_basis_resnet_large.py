"""Net_RL2 CIFAR-100 / ILSVRC ResNet34, ILSVRC ResNet50/101 Shared(++), CIFAR-100 ResNeXt50.

Counts against the spec (§2.4, §2.5), the orthogonality penalties against literal
numpy ports of the reference's `train_basis*` functions, grouped convs against a
numpy grouped convolution, sharing through `.keras` save/load, errors.
"""

import keras
import numpy as np
import pytest

import keras_lrn
from keras_lrn import models
from keras_lrn.models import BasisBasicResNet, BasisResNeXt, SharedBottleneckResNet
from keras_lrn.models.basis_resnet_large import (
    BOTTLENECK_NAMES,
    SPEC_BOTTLENECK,
    SPEC_RESNET34,
    basic_resnet_bn_stats,
    basic_resnet_params,
    resnet34_registry_name,
)
from keras_lrn.models.basis_resnext import (
    SPEC_RESNEXT,
    GroupedConv2D,
    resnext_bn_stats,
    resnext_params,
)
from keras_lrn.regularizers import orthogonality_penalty, reference_terms
from keras_lrn.testing import (
    count_params,
    non_trainable_params,
    save_and_reload,
    to_numpy,
    trainable_params,
)

# ------------------------------------------------------------------ reference penalties


def oihw(kernel):
    """A Keras (kh, kw, in/groups, out) kernel in PyTorch's (out, in/groups, kh, kw), float64."""
    return np.transpose(to_numpy(kernel), (3, 2, 0, 1)).astype("float64")


def ref_avg(stages):
    """Literal port of the reference loop: per stage `B = cat(bases).view(n, -1)`,
    `D = (B B^T - I)**2`, `sim += D[:n, :n].sum()`, `cnt += n**2`; `sim / cnt`."""
    sim, cnt = 0.0, 0
    for bases in stages:
        num = sum(w.shape[0] for w in bases)
        b = np.concatenate(bases).reshape(num, -1)
        d = (b @ b.T - np.eye(num)) ** 2
        sim += d[0:num, 0:num].sum()
        cnt += num ** 2
    return sim / cnt


def ref_penalty(selection, stages):
    """`train_basis` / `_single` / `_double` / `_double_separate` on OIHW weights."""
    if selection == "train_basis_double_separate":
        return ref_avg([[s[0]] for s in stages]) + ref_avg([[s[1]] for s in stages])
    return ref_avg(stages)


def perturb(layers, seed=0, scale=0.05):
    rng = np.random.default_rng(seed)
    for layer in layers:
        k = layer.kernel
        k.assign(to_numpy(k) + scale * rng.standard_normal(k.shape).astype("float32"))


def stage_bases(model, names):
    return [[model.get_layer(f"stage{g}_{n}") for n in names] for g in range(1, 5)]


@pytest.mark.parametrize("selection", ["train_basis", "train_basis_single",
                                       "train_basis_double", "train_basis_double_separate"])
def test_reference_terms_equal_the_reference_loops(selection):
    rng = np.random.default_rng(3)
    double = selection.startswith("train_basis_double")
    # stage g: a 3x3 basis of 2g filters on 3 inputs, and (double) a 1x1 one of 3g on 2g.
    stages = []
    for g in range(1, 5):
        bases = [rng.standard_normal((3, 3, 3, 2 * g)).astype("float32")]
        if double:
            shape = ((3, 3, 3, 2 * g) if selection == "train_basis_double"
                     else (1, 1, 2 * g, 3 * g))
            bases.append(rng.standard_normal(shape).astype("float32"))
        stages.append(bases)
    got = float(to_numpy(orthogonality_penalty(reference_terms(selection, stages))))
    want = ref_penalty(selection, [[oihw(k) for k in s] for s in stages])
    np.testing.assert_allclose(got, want, rtol=1e-5)


def test_reference_terms_bad_input():
    with pytest.raises(ValueError, match="selection"):
        reference_terms("train_basis_triple", [])
    with pytest.raises(ValueError, match="stages"):
        reference_terms("train_basis_double", [[np.zeros((3, 3, 1, 1))]])


# ------------------------------------------------------------------ counts


@pytest.mark.parametrize("key", sorted(SPEC_RESNET34))
def test_resnet34_count_formulas_equal_the_spec(key):
    stem, variant, s, u = key
    params, bn, _ = SPEC_RESNET34[key]
    assert basic_resnet_params(34, variant, s, u, stem) == params
    assert basic_resnet_bn_stats(34, s, u) == bn
    entry = models.get_entry(resnet34_registry_name(*key))
    assert (entry.params, entry.non_trainable) == (params, bn)
    assert entry.recipe.batch_size == 256 and entry.recipe.weight_decay_exclude == ()
    if stem == "cifar":
        # The paper's schedule by default; the reference script's constant LR is
        # `--schedule constant` (recipes.NET_RL2_CIFAR100).
        assert entry.recipe.schedule == ((0, 0.1), (150, 0.01), (225, 0.001))
        assert entry.recipe.weight_decay == 5e-4 and entry.recipe.dataset == "cifar100"
    else:
        assert entry.recipe.schedule == ((0, 0.1), (60, 0.01), (100, 0.001), (140, 1e-4))
        assert (entry.recipe.epochs, entry.recipe.weight_decay) == (150, 1e-4)
        assert entry.recipe.augment == entry.recipe.normalize == "imagenet"


def test_resnext_count_formula_equals_the_spec():
    # Spec §2.4: README "ResNeXt50-S16U1" = (64, 4); other measured ranks.
    assert resnext_params(64, 4) == SPEC_RESNEXT[(64, 4)][0] == 19_333_380
    for (s, u), p in {(16, 4): 16_601_220, (16, 8): 16_828_900, (16, 16): 17_284_260,
                      (32, 4): 17_511_940}.items():
        assert resnext_params(s, u) == p
    entry = models.get_entry("resnext50_s16u1_cifar100")
    assert entry.config["shared_rank"] == 64 and entry.config["unique_rank"] == 4
    assert entry.non_trainable == resnext_bn_stats(64, 4)


def test_bottleneck_registry_names_and_recipes():
    for key, name in BOTTLENECK_NAMES.items():
        entry = models.get_entry(name)
        assert entry.params == SPEC_BOTTLENECK[key][0]
        assert entry.recipe.weight_decay == (4e-5 if key == (50, "single") else 1e-4)
        assert entry.recipe.epochs == 150 and entry.recipe.extra["lambda_r"] == 10.0


# ------------------------------------------------------------------ models, fast


@pytest.mark.slow
def test_imagenet_resnet34_s32u1_small_input_fit():
    model = BasisBasicResNet(34, "single", 32, 1, stem="imagenet", input_shape=(64, 64, 3))
    # Parameter counts do not depend on the input size: spec §2.5 at 224x224.
    assert trainable_params(model) == 8_196_056
    assert non_trainable_params(model) == 22_832
    assert model.output_shape == (None, 1000)
    x = np.random.default_rng(0).uniform(size=(2, 64, 64, 3)).astype("float32")
    model.compile(keras.optimizers.SGD(0.01, momentum=0.9),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True), jit_compile=False)
    history = model.fit(x, np.array([1, 7]), batch_size=2, epochs=1, verbose=0)
    assert all(np.isfinite(history.history["loss"]))
    assert "orthogonality" in history.history
    # Single bases: one term, stage bases each orthonormal at init (penalty ~0 then).
    bases = stage_bases(model, ["shared_basis"])
    np.testing.assert_allclose(float(to_numpy(model.orthogonality_penalty())),
                               ref_penalty("train_basis_single",
                                           [[oihw(b.kernel) for b in s] for s in bases]),
                               rtol=1e-4, atol=1e-7)


def test_double_joint_init_and_penalty():
    """ILSVRC ResNet Double: `_1`/`_2` drawn jointly (~0 `train_basis_double` at init);
    the model's penalty is the literal `train_basis_double` (cross terms included)."""
    model = BasisBasicResNet(18, "double", 2, 1, stem="imagenet", input_shape=(32, 32, 3),
                             classes=10, seed=4)
    bases = stage_bases(model, ["shared_basis_1", "shared_basis_2"])
    w = [[oihw(b.kernel) for b in s] for s in bases]
    assert ref_penalty("train_basis_double", w) < 1e-10
    assert float(to_numpy(model.orthogonality_penalty())) < 1e-6
    perturb([b for s in bases for b in s], scale=0.1)
    w = [[oihw(b.kernel) for b in s] for s in bases]
    got = float(to_numpy(model.orthogonality_penalty()))
    np.testing.assert_allclose(got, ref_penalty("train_basis_double", w), rtol=1e-4)
    # Averaging _1 and _2 apart (no cross terms) gives another number.
    assert abs(ref_penalty("train_basis_double_separate", w) - got) > 1e-3 * got


# Compiling this ResNet18's training step costs ~40 s CPU under JAX (~6 s under TF):
# the default run trains it on TensorFlow, `-m slow` on both backends.
@(pytest.mark.slow if keras.backend.backend() == "jax" else lambda f: f)
def test_imagenet_single_fit_lowers_penalty_and_save_load_keeps_sharing():
    """A fast ILSVRC forward/backward (ResNet18 topology at 32x32): `train_basis_single`
    wiring, a few SGD steps lower the penalty, `.keras` keeps the bases shared."""
    model = BasisBasicResNet(18, "single", 2, 1, stem="imagenet", input_shape=(32, 32, 3),
                             classes=10, seed=7)
    bases = stage_bases(model, ["shared_basis"])
    assert ref_penalty("train_basis_single", [[oihw(s[0].kernel)] for s in bases]) < 1e-10
    perturb([s[0] for s in bases], scale=0.1)
    before = float(to_numpy(model.orthogonality_penalty()))
    np.testing.assert_allclose(
        before, ref_penalty("train_basis_single", [[oihw(s[0].kernel)] for s in bases]),
        rtol=1e-4)
    x = np.random.default_rng(1).uniform(size=(8, 32, 32, 3)).astype("float32")
    model.compile(keras.optimizers.SGD(0.05), keras.losses.SparseCategoricalCrossentropy(
        from_logits=True), jit_compile=False)
    history = model.fit(x, np.arange(8) % 10, batch_size=4, epochs=2, verbose=0)
    after = float(to_numpy(model.orthogonality_penalty()))
    assert np.all(np.isfinite(history.history["loss"]))
    assert after < 0.8 * before
    assert history.history["orthogonality"][1] < history.history["orthogonality"][0]
    reloaded = save_and_reload(model)
    assert type(reloaded) is BasisBasicResNet
    np.testing.assert_allclose(to_numpy(reloaded(x[:2])), to_numpy(model(x[:2])), atol=1e-4)
    layers = [layer for layer in reloaded.layers if layer.name == "stage3_shared_basis"]
    assert len(layers) == 1 and len(layers[0]._inbound_nodes) == 2  # conv1 + conv2 of block 2
    assert count_params(reloaded.trainable_weights) == count_params(model.trainable_weights)
    np.testing.assert_allclose(float(to_numpy(reloaded.orthogonality_penalty())), after,
                               rtol=1e-6)
    assert reloaded.get_config() == model.get_config()


@pytest.mark.slow
def test_resnext_small_grouped_bases_penalty_and_step():
    model = BasisResNeXt(50, 8, 4, input_shape=(8, 8, 3), classes=10, seed=2)
    assert trainable_params(model) == resnext_params(8, 4, classes=10)
    assert non_trainable_params(model) == resnext_bn_stats(8, 4)
    basis = model.get_layer("stage3_shared_basis")
    # 32 filters, 2 groups: each filter reads 512 / 2 channels.
    assert basis.groups == 2 and tuple(basis.kernel.shape) == (3, 3, 256, 32)
    assert len(basis._inbound_nodes) == 5
    bases = stage_bases(model, ["shared_basis"])
    w = [[oihw(b.kernel) for b in s] for s in bases]
    assert ref_penalty("train_basis", w) < 1e-10  # orthonormal filters at init
    perturb([s[0] for s in bases], scale=0.1)
    w = [[oihw(b.kernel) for b in s] for s in bases]
    np.testing.assert_allclose(float(to_numpy(model.orthogonality_penalty())),
                               ref_penalty("train_basis", w), rtol=1e-4)
    x = np.random.default_rng(0).uniform(size=(2, 8, 8, 3)).astype("float32")
    model.compile(keras.optimizers.SGD(0.01), keras.losses.SparseCategoricalCrossentropy(
        from_logits=True), jit_compile=False)
    logs = model.train_on_batch(x, np.array([0, 3]), return_dict=True)
    assert np.isfinite(logs["loss"]) and np.isfinite(logs["orthogonality"])


def numpy_grouped_conv(x, kernel, groups, strides, padding):
    x = np.pad(x, ((0, 0), (padding, padding), (padding, padding), (0, 0))).astype("float64")
    kh, kw, ipg, out = kernel.shape
    opg = out // groups
    ho = (x.shape[1] - kh) // strides + 1
    wo = (x.shape[2] - kw) // strides + 1
    y = np.zeros((x.shape[0], ho, wo, out))
    for o in range(out):
        g = o // opg
        for i in range(ho):
            for j in range(wo):
                patch = x[:, i * strides:i * strides + kh, j * strides:j * strides + kw,
                          g * ipg:(g + 1) * ipg]
                y[:, i, j, o] = np.einsum("bhwc,hwc->b", patch, kernel[:, :, :, o])
    return y


@pytest.mark.parametrize("formulation", ["native", "blockdiag", "shift", "auto"])
@pytest.mark.parametrize("strides,groups", [(1, 4), (2, 2), (2, 1)])
def test_grouped_conv_formulations_equal_numpy(formulation, strides, groups):
    x = np.random.default_rng(0).standard_normal((2, 6, 6, 8)).astype("float32")
    layer = GroupedConv2D(8, 3, strides=strides, groups=groups, formulation=formulation)
    y = to_numpy(layer(x))
    want = numpy_grouped_conv(x, to_numpy(layer.kernel), groups, strides, 1)
    np.testing.assert_allclose(y, want, atol=1e-5)
    assert layer.compute_output_shape(x.shape) == y.shape
    assert tuple(layer.kernel.shape) == (3, 3, 8 // groups, 8)


def test_grouped_conv_training_step_equals_native():
    """One SGD step from the same kernel: every formulation's gradient equals native's."""
    rng = np.random.default_rng(2)
    x = rng.standard_normal((4, 6, 6, 8)).astype("float32")
    y = rng.standard_normal((4, 3, 3, 8)).astype("float32")
    kernel = rng.standard_normal((3, 3, 4, 8)).astype("float32")
    updated = {}
    for formulation in ("native", "blockdiag", "shift"):
        inp = keras.Input((6, 6, 8))
        layer = GroupedConv2D(8, 3, strides=2, groups=2, formulation=formulation)
        model = keras.Model(inp, layer(inp))
        layer.kernel.assign(kernel)
        model.compile(keras.optimizers.SGD(0.1), "mse", jit_compile=False)
        model.train_on_batch(x, y)
        updated[formulation] = to_numpy(layer.kernel)
    assert np.abs(updated["native"] - kernel).max() > 1e-3
    for formulation in ("blockdiag", "shift"):
        np.testing.assert_allclose(updated[formulation], updated["native"], atol=1e-5)


def test_grouped_conv_save_load_and_macs():
    x = np.random.default_rng(1).standard_normal((2, 6, 6, 8)).astype("float32")
    inp = keras.Input((6, 6, 8))
    layer = GroupedConv2D(4, 3, groups=4, formulation="shift", name="g")
    model = keras.Model(inp, layer(inp))
    reloaded = save_and_reload(model)
    assert reloaded.get_layer("g").get_config() == layer.get_config()
    np.testing.assert_allclose(to_numpy(reloaded(x)), to_numpy(model(x)), atol=1e-6)
    # The MAC count sees the grouped kernel: 6*6*4 outputs x 9 taps x 2 inputs per group.
    assert keras_lrn.profile(model).macs == 6 * 6 * 4 * 9 * 2
    with pytest.raises(ValueError, match="groups"):
        GroupedConv2D(6, groups=4)
    with pytest.raises(ValueError, match="formulation"):
        GroupedConv2D(8, groups=4, formulation="fft")


@pytest.mark.slow
def test_save_load_keeps_bases_shared():
    model = BasisBasicResNet(18, "single", 2, 1, input_shape=(8, 8, 3), classes=10, seed=1)
    perturb([layer for s in stage_bases(model, ["shared_basis"]) for layer in s])
    x = np.random.default_rng(0).uniform(size=(2, 8, 8, 3)).astype("float32")
    reloaded = save_and_reload(model)
    assert type(reloaded) is BasisBasicResNet
    np.testing.assert_allclose(to_numpy(reloaded(x)), to_numpy(model(x)), atol=1e-5)
    layers = [layer for layer in reloaded.layers if layer.name == "stage2_shared_basis"]
    assert len(layers) == 1 and len(layers[0]._inbound_nodes) == 2  # block 2: conv1 + conv2
    assert count_params(reloaded.trainable_weights) == count_params(model.trainable_weights)
    np.testing.assert_allclose(to_numpy(reloaded.orthogonality_penalty()),
                               to_numpy(model.orthogonality_penalty()), rtol=1e-6)
    assert reloaded.get_config() == model.get_config()


@pytest.mark.parametrize("cls,kwargs,arg", [
    (BasisBasicResNet, {"depth": 35}, "depth"),
    (BasisBasicResNet, {"shared_rank": -1}, "shared_rank"),
    (BasisBasicResNet, {"unique_rank": -1}, "unique_rank"),
    (BasisBasicResNet, {"lambda_r": -1.0}, "lambda_r"),
    (BasisBasicResNet, {"stem": "svhn"}, "stem"),
    (BasisBasicResNet, {"variant": "plain", "shared_rank": 4}, "shared_rank"),
    (BasisBasicResNet, {"variant": "shared_only", "unique_rank": 1}, "unique_rank"),
    (SharedBottleneckResNet, {"depth": 152}, "depth"),
    (SharedBottleneckResNet, {"variant": "triple"}, "variant"),
    (SharedBottleneckResNet, {"lambda_r": -0.1}, "lambda_r"),
    (BasisResNeXt, {"depth": 101}, "depth"),
    (BasisResNeXt, {"shared_rank": -4}, "shared_rank"),
    (BasisResNeXt, {"shared_rank": 6}, "shared_rank"),
    (BasisResNeXt, {"unique_rank": -1}, "unique_rank"),
    (BasisResNeXt, {"lambda_r": -1.0}, "lambda_r"),
    (BasisResNeXt, {"formulation": "fft"}, "formulation"),
])
def test_bad_arguments(cls, kwargs, arg):
    with pytest.raises(ValueError, match=arg):
        cls(**kwargs)


def test_resnext_literal_readme_ranks_raise():
    """The README label S16U1 taken literally: the reference crashes (groups=0)."""
    with pytest.raises(ValueError, match=r"`unique_rank` must be a positive multiple of the "
                                         r"group width 4.*Received: unique_rank=1"):
        BasisResNeXt(50, 16, 1)
    with pytest.raises(ValueError, match="`shared_rank` must be a positive multiple of the "
                                         "group width 4"):
        BasisResNeXt(50, 2, 4)


# ------------------------------------------------------------------ slow: full sizes


@pytest.mark.slow
@pytest.mark.parametrize("name", [resnet34_registry_name(*k) for k in sorted(SPEC_RESNET34)]
                         + sorted(BOTTLENECK_NAMES.values()) + ["resnext50_s16u1_cifar100"])
def test_spec_params_bn_and_macs(name):
    """Spec §2.4 / §2.5 trainable, BN statistics and MACs (FlopCounterMode / 2)."""
    entry = models.get_entry(name)
    p = keras_lrn.profile(entry.build())
    assert (p.trainable, p.non_trainable, p.macs) == (entry.params, entry.non_trainable,
                                                      entry.macs)


@pytest.mark.slow
@pytest.mark.parametrize("depth,variant,selection,names", [
    (50, "single", "train_basis_single", ["shared_basis"]),
    (50, "double", "train_basis_double_separate", ["shared_basis_1", "shared_basis_2"]),
])
def test_bottleneck_penalty_equals_reference(depth, variant, selection, names):
    model = SharedBottleneckResNet(depth, variant, input_shape=(32, 32, 3), classes=10)
    bases = stage_bases(model, names)
    # each 3x3 basis C -> C orthonormal on its own; the 4C x C 1x1 ones cannot have
    # orthonormal rows, so Shared++'s penalty is > 0 at init, as in the reference.
    assert ref_avg([[oihw(s[0].kernel)] for s in bases]) < 1e-10
    perturb([b for s in bases for b in s])
    w = [[oihw(b.kernel) for b in s] for s in bases]
    np.testing.assert_allclose(float(to_numpy(model.orthogonality_penalty())),
                               ref_penalty(selection, w), rtol=1e-4)
    assert len(model.get_layer("stage3_shared_basis" + ("_1" if variant == "double" else ""))
               ._inbound_nodes) == 5


@pytest.mark.slow
def test_resnext_full_save_load_and_fit():
    model = models.get_model("resnext50_s16u1_cifar100")
    x = np.random.default_rng(0).uniform(size=(2, 32, 32, 3)).astype("float32")
    reloaded = save_and_reload(model)
    np.testing.assert_allclose(to_numpy(reloaded(x)), to_numpy(model(x)), atol=1e-4)
    assert len([la for la in reloaded.layers if la.name == "stage4_shared_basis"]) == 1
    model.compile(keras.optimizers.SGD(0.01), keras.losses.SparseCategoricalCrossentropy(
        from_logits=True), jit_compile=False)
    logs = model.train_on_batch(x, np.array([0, 99]), return_dict=True)
    assert np.isfinite(logs["loss"]) and np.isfinite(logs["orthogonality"])
