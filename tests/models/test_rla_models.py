import keras
import numpy as np
import pytest

import keras_lrn
from keras_lrn import models
from keras_lrn.models.imagenet_resnet import STAGE_BLOCKS, bottleneck_bn_channels
from keras_lrn.models.rla import (
    MOBILENETV2_SETTING,
    RLACifarResNet,
    RLAMobileNetV2,
    RLAResNet,
    mobilenetv2_bn_channels,
    rla_cifar_param_count,
)
from keras_lrn.recipes import RLA_MOBILENETV2_IMAGENET, RLA_RESNET_IMAGENET
from keras_lrn.testing import (
    assert_config_round_trip,
    non_trainable_params,
    random_images,
    run_model_test,
    save_and_reload,
    to_numpy,
    trainable_params,
)

# Spec §2.4: exact trainable parameters, FCM GMACs (10^9, as printed there) and the
# README's binary-unit figures (params / 2^20, thop-style MACs / 2^30 or 2^20).
SPEC = {
    "resnet50_imagenet": (25_557_032, "4.089", None),
    "resnet50_eca_imagenet": (25_557_118, "4.089", None),
    "resnet101_imagenet": (44_549_160, "7.801", None),
    "resnet152_imagenet": (60_192_808, "11.514", None),
    "rla_resnet50": (25_870_696, "4.455", "24.67M / 4.17G"),
    "rla_resnet50_eca": (25_870_782, "4.455", "24.67M / 4.18G"),
    "rla_resnet101": (45_003_176, "8.334", "42.92M / 7.79G"),
    "rla_resnet101_eca": (45_003_347, "8.334", "42.92M / 7.80G"),
    "rla_resnet152": (60_770_792, "12.267", None),
    "rla_resnet152_eca": (60_771_048, "12.268", None),
    "mobilenetv2_imagenet": (3_504_872, "0.301", None),
    "rla_mobilenetv2": (3_633_096, "0.555", None),
    "rla_mobilenetv2_eca": (3_633_127, "0.555", None),
    "dsrla_mobilenetv2": (3_624_168, "0.353", "3.46M / 351.8M"),
    "dsrla_mobilenetv2_eca": (3_624_199, "0.353", "3.46M / 352.4M"),
}
# The spec's exact conv + linear MACs (its README-FLOPs reconstruction).
EXACT_MACS = {"rla_resnet50": 4_454_648_064, "rla_resnet101": 8_334_055_680,
              "dsrla_mobilenetv2": 352_505_728}


def _check_entry(name, p_fcm, p_readme=None):
    params, gmacs, readme = SPEC[name]
    entry = models.get_entry(name)
    assert entry.params == params == p_fcm.trainable
    assert entry.macs == p_fcm.macs
    assert f"{p_fcm.macs / 1e9:.{len(gmacs.split('.')[1])}f}" == gmacs
    if name in EXACT_MACS:
        assert p_fcm.macs == EXACT_MACS[name]
    if readme is not None:
        got = p_readme.binary_units()
        # The README prints "M" MACs with one decimal.
        if got.endswith("M"):
            head, macs = got.rsplit(" ", 1)
            got = f"{head} {float(macs[:-1]):.1f}M"
        assert got == readme


def test_registry_names_and_family():
    names = set(models.list_models(family="rla"))
    assert set(SPEC) <= names
    assert {"rla_resnet32_cifar10", "rla_resnet56_cifar10"} <= names
    for name in SPEC:
        entry = models.get_entry(name)
        assert entry.recipe is (RLA_MOBILENETV2_IMAGENET if "mobilenet" in name
                                else RLA_RESNET_IMAGENET)


def test_bn_statistics_formulas():
    # BN statistics = 2 x BN channels, derived by hand in the two helpers.
    assert 2 * bottleneck_bn_channels(STAGE_BLOCKS[50]) == 53_120  # = keras.applications'
    assert 2 * bottleneck_bn_channels(STAGE_BLOCKS[50], 32) == 53_120 + 2 * 32 * (16 + 1)
    assert 2 * bottleneck_bn_channels(STAGE_BLOCKS[101], 32) == 105_344 + 2 * 32 * (33 + 1)
    assert 2 * mobilenetv2_bn_channels(32) == 34_112 + 2 * (2 * 32 * 17 + 32)
    for name in SPEC:
        entry = models.get_entry(name)
        if "mobilenet" in name:
            k = 0 if name == "mobilenetv2_imagenet" else 32
            assert entry.non_trainable == 2 * mobilenetv2_bn_channels(k)
        else:
            depth = int(name.split("resnet")[1][:3].rstrip("_"))
            k = 32 if name.startswith("rla") else 0
            assert entry.non_trainable == 2 * bottleneck_bn_channels(STAGE_BLOCKS[depth], k)


def _train_step(model, x, classes):
    model.compile(optimizer=keras.optimizers.SGD(0.01),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    before = {w.path: to_numpy(w) for w in model.trainable_weights}
    loss = float(np.asarray(model.train_on_batch(x, np.arange(len(x)) % classes)))
    assert np.isfinite(loss)
    changed = {w.path for w in model.trainable_weights
               if not np.array_equal(before[w.path], to_numpy(w))}
    return changed


def test_rla_resnet50_counts_sharing_and_train_step():
    model = RLAResNet(50, input_shape=(32, 32, 3))
    # Parameters do not depend on the input size: the spec's 224x224 count.
    assert trainable_params(model) == 25_870_696
    assert non_trainable_params(model) == 54_208
    for s, blocks in enumerate(STAGE_BLOCKS[50]):
        assert len(model.get_layer(f"conv_outs__{s}")._inbound_nodes) == blocks
        assert len(model.get_layer(f"recurrent_convs__{s}")._inbound_nodes) == blocks
    # conv1 reads concat([x, h]): C + 32 input channels; zero-gamma bn3.
    assert model.get_layer("stages__1__0__conv1").kernel.shape == (1, 1, 256 + 32, 128)
    assert not to_numpy(model.get_layer("stages__2__3__bn3").gamma).any()
    # h is consumed at the input resolution of a down-sampling block, then pooled.
    assert model.get_layer("stages__2__0__concat").output.shape[1:] == (4, 4, 512 + 32)
    assert model.get_layer("stage_bns__2__0").output.shape[1:] == (2, 2, 32)
    assert model.output_shape == (None, 1000)
    changed = _train_step(model, random_images((2, 32, 32, 3)), 1000)
    # (At init the gradient reaching the early stages' h path is ~1e-12: too small to
    # move float32 weights; the zero-gamma bn3 blocks the branch convs' gradient.)
    for name in ("recurrent_convs__3", "conv_outs__3", "stage_bns__3__2", "bn2",
                 "stages__0__0__bn3", "predictions"):
        assert any(p.startswith(f"{name}/") for p in changed), name


def _dsrla_structure(model):
    rec = model.get_layer("recurrent_dsconvs__0")
    # ONE depthwise recurrent conv for the whole network, called by all 17 blocks.
    assert rec.kernel.shape == (3, 3, 32, 1)
    assert len(rec._inbound_nodes) == sum(n for _, _, n, _ in MOBILENETV2_SETTING) == 17
    assert not [w for w in model.weights if "recurrent" in w.path and w is not rec.kernel]
    for j, (_, _, n, _) in enumerate(MOBILENETV2_SETTING):
        assert len(model.get_layer(f"conv_outs__{j}")._inbound_nodes) == n
    # h joins the expanded tensor: the depthwise conv runs over hidden + k channels.
    assert model.get_layer("stages__1__0__conv__0__0").kernel.shape == (3, 3, 96 + 32, 1)
    assert model.get_layer("conv2__0").kernel.shape == (1, 1, 320 + 32, 1280)
    # No zero-gamma in the MobileNets.
    assert to_numpy(model.get_layer("stages__3__1__conv__2").gamma).all()


@pytest.mark.slow
def test_dsrla_mobilenetv2_train_step():
    model = RLAMobileNetV2("depthwise", input_shape=(64, 64, 3), classes=7)
    _dsrla_structure(model)
    changed = _train_step(model, random_images((2, 64, 64, 3)), 7)
    assert any(p.startswith("recurrent_dsconvs__0/") for p in changed)
    assert any(p.startswith("conv_outs__6/") for p in changed)


def test_dsrla_mobilenetv2_structure_macs_and_readme_units():
    model = models.get_model("dsrla_mobilenetv2")
    _dsrla_structure(model)
    _check_entry("dsrla_mobilenetv2", keras_lrn.profile(model),
                 keras_lrn.profile(model, convention="thop_readme"))


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n in SPEC if n != "dsrla_mobilenetv2"])
def test_imagenet_entries_params_macs_readme(name):
    model = models.get_model(name)
    _check_entry(name, keras_lrn.profile(model),
                 keras_lrn.profile(model, convention="thop_readme"))
    assert non_trainable_params(model) == models.get_entry(name).non_trainable


# ----------------------------------------------------------- numpy reference (CIFAR)
def _np_conv(x, w, stride=1):
    """NHWC conv with PyTorch padding k//2 (symmetric), stride `stride`; w HWIO."""
    k = w.shape[0]
    p = k // 2
    xp = np.pad(x, ((0, 0), (p, p), (p, p), (0, 0)))
    ho = (x.shape[1] + 2 * p - k) // stride + 1
    wo = (x.shape[2] + 2 * p - k) // stride + 1
    out = np.zeros((x.shape[0], ho, wo, w.shape[-1]))
    for i in range(k):
        for j in range(k):
            patch = xp[:, i:i + stride * (ho - 1) + 1:stride, j:j + stride * (wo - 1) + 1:stride]
            out += patch @ w[i, j]
    return out


def _np_bn(x, layer):
    g, b, m, v = (np.asarray(t, "float64") for t in layer.get_weights())
    return g * (x - m) / np.sqrt(v + 1e-5) + b


def _np_rla_cifar(model, img, n, k, aggregate):
    W = lambda name: to_numpy(model.get_layer(name).kernel).astype("float64")  # noqa: E731
    L = model.get_layer
    x = np.maximum(_np_bn(_np_conv(img, W("conv1")), L("bn1")), 0)
    h = np.zeros(x.shape[:3] + (k,))
    for s, planes in enumerate((16, 32, 64)):
        for b in range(n):
            p = f"stages__{s}__{b}"
            stride = 2 if s > 0 and b == 0 else 1
            xh = np.concatenate([x, h], -1)  # x channels first
            y = np.maximum(_np_bn(_np_conv(xh, W(f"{p}__conv1"), stride), L(f"{p}__bn1")), 0)
            y = _np_bn(_np_conv(y, W(f"{p}__conv2")), L(f"{p}__bn2"))
            identity = x
            if stride != 1:
                sub = x[:, ::2, ::2]
                pad = (planes - x.shape[-1]) // 2
                identity = np.pad(sub, ((0, 0), (0, 0), (0, 0), (pad, pad)))
                hh = h.shape[1] // 2
                h = h.reshape(h.shape[0], hh, 2, hh, 2, k).mean(axis=(2, 4))
            out = np.maximum(y + identity, 0)
            agg = out if aggregate == "output" else y
            h = h + _np_conv(agg, W(f"conv_outs__{s}"))
            h = _np_conv(np.tanh(_np_bn(h, L(f"stage_bns__{s}__{b}"))),
                         W(f"recurrent_convs__{s}"))
            x = out
    x = np.concatenate([x, np.maximum(_np_bn(h, L("bn2")), 0)], -1)
    dense = L("predictions")
    return x.mean(axis=(1, 2)) @ to_numpy(dense.kernel) + to_numpy(dense.bias)


@pytest.mark.parametrize("aggregate", ["output", "branch"])
def test_rla_cifar_resnet_matches_numpy(aggregate):
    k, n = 4, 1
    model = RLACifarResNet(8, rla_channels=k, aggregate=aggregate, input_shape=(8, 8, 3))
    rng = np.random.default_rng(3)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            c = layer.gamma.shape[0]
            layer.set_weights([rng.uniform(0.5, 1.5, c), rng.normal(size=c),
                               0.3 * rng.normal(size=c), rng.uniform(0.5, 2.0, c)])
    img = rng.normal(size=(2, 8, 8, 3)).astype("float32")
    got = to_numpy(model(img, training=False))
    expected = _np_rla_cifar(model, img.astype("float64"), n, k, aggregate)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)


def test_aggregate_branch_keeps_h_zero_at_init():
    """Zero-gamma last BN: the branch is 0 at init, so 'branch' leaves h = 0; the block
    output (the reference code's aliased y) is not 0."""
    img = random_images((2, 16, 16, 3))
    hs = {}
    for aggregate in ("output", "branch"):
        model = RLACifarResNet(8, rla_channels=4, aggregate=aggregate,
                               input_shape=(16, 16, 3), include_top=False)
        feats = to_numpy(model(img, training=True))
        assert feats.shape == (2, 4, 4, 64 + 4)
        hs[aggregate] = feats[..., 64:]
    assert not hs["branch"].any()
    assert np.abs(hs["output"]).max() > 1e-3


def test_rla_cifar_counts_against_formula():
    # Difference to the plain CIFAR ResNet-32 (464,154), by hand: k = 16, n = 5:
    # conv1 extra inputs 9*16*112*5 = 80,640; BNs on h 2*16*16 = 512; conv_outs
    # 112*16 = 1,792; recurrent convs 3*9*16*16 = 6,912; Linear 16*10 = 160.
    assert rla_cifar_param_count(5, 16) == 464_154 + 80_640 + 512 + 1_792 + 6_912 + 160
    model = RLACifarResNet(32, rla_channels=16)
    assert trainable_params(model) == rla_cifar_param_count(5, 16) == 554_170
    assert models.get_entry("rla_resnet32_cifar10").params == 554_170


# -------------------------------------------------------------- save / load, configs
def test_save_load_keeps_the_global_recurrent_conv_shared(backend):
    # The registry's dsRLA shapes (cheap to build after it on JAX), at 32x32, with ECA.
    model = RLAMobileNetV2("depthwise", eca=True, input_shape=(32, 32, 3), classes=5)
    # Outputs compared on TensorFlow (cheap there); the JAX run checks the structure
    # (its first eager forward of the 17 blocks costs ~10 s of XLA compiles).
    if backend == "tensorflow":
        reloaded = run_model_test(model, random_images((2, 32, 32, 3)), atol=1e-5)
    else:
        reloaded = save_and_reload(model)
        assert type(reloaded) is RLAMobileNetV2
    rec = reloaded.get_layer("recurrent_dsconvs__0")
    assert len(rec._inbound_nodes) == 17
    recurrent_layers = {id(layer) for layer in reloaded.layers if "recurrent" in layer.name}
    assert recurrent_layers == {id(rec)}
    np.testing.assert_array_equal(to_numpy(rec.kernel),
                                  to_numpy(model.get_layer("recurrent_dsconvs__0").kernel))
    assert trainable_params(reloaded) == trainable_params(model)


def test_save_load_cifar_per_stage_sharing():
    model = RLACifarResNet(14, rla_channels=4, input_shape=(16, 16, 3))
    reloaded = run_model_test(model, random_images((2, 16, 16, 3)), atol=1e-5)
    for s in range(3):
        assert len(reloaded.get_layer(f"recurrent_convs__{s}")._inbound_nodes) == 2
        assert len(reloaded.get_layer(f"conv_outs__{s}")._inbound_nodes) == 2
    assert_config_round_trip(reloaded)


def test_config_round_trips():
    m = assert_config_round_trip(
        RLAMobileNetV2("depthwise", input_shape=(32, 32, 3), include_top=False, pooling="avg"))
    assert m.output_shape == (None, 1280)
    assert m.get_config()["recurrent"] == "depthwise" and m.get_config()["pooling"] == "avg"


@pytest.mark.slow
def test_rla_resnet_config_round_trip():
    m = assert_config_round_trip(RLAResNet(50, eca=True, aggregate="branch", rla_channels=16,
                                           input_shape=(64, 64, 3), classes=10))
    assert m.get_config()["eca"] == [5, 5, 5, 7]
    assert type(m) is RLAResNet and trainable_params(m) > 0


# ---------------------------------------------------------------------- bad input
@pytest.mark.parametrize("kwargs, arg", [
    ({"depth": 34}, "depth"), ({"depth": "50"}, "depth"), ({"aggregate": "sum"}, "aggregate"),
    ({"rla_channels": 0}, "rla_channels"), ({"rla_channels": 2.5}, "rla_channels"),
    ({"eca": (3, 3)}, "eca"), ({"eca": (5, 5, 4, 7)}, "eca"),
    ({"zero_init_last_bn": "yes"}, "zero_init_last_bn"), ({"classes": 0}, "classes"),
])
def test_rla_resnet_bad_arguments(kwargs, arg):
    with pytest.raises(ValueError, match=f"`{arg}`.*Received: {arg}="):
        RLAResNet(**kwargs)


@pytest.mark.parametrize("kwargs, arg", [
    ({"recurrent": "grouped"}, "recurrent"), ({"recurrent": None}, "recurrent"),
    ({"rla_channels": -1}, "rla_channels"), ({"eca": 3}, "eca"),
    ({"width_mult": 0}, "width_mult"), ({"dropout": 1.0}, "dropout"),
])
def test_rla_mobilenetv2_bad_arguments(kwargs, arg):
    with pytest.raises(ValueError, match=f"`{arg}`.*Received: {arg}="):
        RLAMobileNetV2(**kwargs)


def test_cifar_bad_arguments_and_odd_inputs():
    with pytest.raises(ValueError, match="`depth`"):
        RLACifarResNet(33)
    with pytest.raises(ValueError, match="`aggregate`"):
        RLACifarResNet(8, aggregate="block_output")
    with pytest.raises(ValueError, match="even sizes"):
        RLACifarResNet(8, input_shape=(30, 30, 3))
    with pytest.raises(ValueError, match="even sizes"):
        RLAMobileNetV2(input_shape=(200, 200, 3))


# ------------------------------------------------------------------------ recipes
def test_recipes():
    r = RLA_RESNET_IMAGENET
    assert (r.epochs, r.batch_size, r.lr, r.momentum, r.nesterov) == (120, 256, 0.1, 0.9, False)
    assert r.weight_decay == 1e-4 and r.weight_decay_exclude == ()
    assert r.schedule == ((0, 0.1), (30, 0.01), (60, 0.001), (90, 1e-4))
    assert (r.augment, r.normalize, r.dataset) == ("imagenet", "imagenet", "imagenet")
    m = RLA_MOBILENETV2_IMAGENET
    assert (m.epochs, m.batch_size, m.lr, m.momentum, m.weight_decay) == (400, 96, 0.045, 0.9,
                                                                           4e-5)
    from keras_lrn.training.schedules import piecewise

    fn = piecewise(m.schedule)
    for epoch in (0, 1, 57, 399):
        assert fn(epoch) == pytest.approx(0.045 * 0.98 ** epoch, rel=1e-12)


# ------------------------------------------------------- profile: README convention
def test_profile_thop_readme_convention(capsys):
    from keras_lrn.layers import ECA
    from keras_lrn.profile import Profile, main, profile

    inp = keras.Input((8, 8, 3))
    y = keras.layers.Conv2D(4, 3, padding="same", use_bias=False)(inp)  # 8*8*4 * 27 = 6,912
    y = keras.layers.BatchNormalization()(y)  # 256 outputs: +2 each
    y = keras.layers.AveragePooling2D(2)(y)  # 64 outputs: +1 each
    y = ECA(3)(y)  # Conv1d: 4 channels * 3 = 12; its global pool: 4 * (4*4 + 1) = 68
    y = keras.layers.GlobalAveragePooling2D()(y)  # not counted
    model = keras.Model(inp, y)
    assert profile(model).macs == 6_912 + 12
    readme = profile(model, convention="thop_readme")
    assert readme.macs == 6_912 + 12 + 2 * 256 + 64 + 68
    assert readme.to_dict()["convention"] == "thop_readme"
    with pytest.raises(ValueError, match="convention"):
        profile(model, convention="thop")
    # The spec's RLA-ResNet-50 reconstruction: (4,454,648,064 + 2 * 11,559,296) / 2^30.
    p = Profile("rla_resnet50", 25_870_696, 0, 4_454_648_064 + 2 * 11_559_296, 0, [],
                "thop_readme")
    assert p.binary_units() == "24.67M / 4.17G"
    assert main(["--model", "rla_resnet32_cifar10", "--convention", "thop_readme",
                 "--rows", "1"]) == 0
    assert "README units (2^20 / 2^30): 0.53M / " in capsys.readouterr().out
