"""epsilon-ResNet models (spec §1.1-1.5): structure, exact parameters, side head, gates."""

import keras
import numpy as np
import pytest

from keras_lrn import models
from keras_lrn.layers import EpsilonGate
from keras_lrn.models import EpsilonResNet, EpsilonResNetImageNet, get_entry
from keras_lrn.models.epsilon_resnet import cifar_param_counts, imagenet_param_counts
from keras_lrn.testing import (
    assert_config_round_trip,
    non_trainable_params,
    random_images,
    run_model_test,
    save_and_reload,
    to_numpy,
    trainable_params,
)

# Small ImageNet-variant network for tests: bottleneck stages (1, 2, 2, 1), width 4.
TINY_IMAGENET = {"stage_blocks": (1, 2, 2, 1), "width": 4, "input_shape": (32, 32, 3),
                 "classes": 5}


def test_spec_parameter_counts():
    # Spec §1.1 (analytic, BN = gamma + beta). n=18: stem 27*16+32 = 464; stage 1
    # 4,640 + 17*4,672 = 84,064; stage 2 13,920 + 17*18,560 = 329,440; stage 3
    # 55,488 + 17*73,984 = 1,313,216; head BN 128 + dense 650 -> 1,727,962.
    # Side head: BN 2*32 + dense 32*10 + 10 = 394.
    assert cifar_param_counts(18)[:2] == (1_727_962, 394)
    assert cifar_param_counts(33)[:2] == (3_186_202, 394)
    assert cifar_param_counts(83)[:2] == (8_047_002, 394)
    assert cifar_param_counts(125)[:2] == (12_130_074, 394)
    # Spec §1.2: ImageNet ResNet-101 44,541,480 + side head (BN 2*1024 + FC
    # 1024*1000 + 1000) 1,027,048; ResNet-152 60,185,128.
    assert imagenet_param_counts((3, 4, 23, 3))[:2] == (44_541_480, 1_027_048)
    assert imagenet_param_counts((3, 8, 36, 3))[:2] == (60_185_128, 1_027_048)
    for name, params in [("epsilon_resnet110", 1_727_962), ("epsilon_resnet200", 3_186_202),
                         ("epsilon_resnet500", 8_047_002), ("epsilon_resnet752", 12_130_074)]:
        assert get_entry(name).params == params
        assert get_entry(name).extra_params == {"side_head": 394}
    assert get_entry("epsilon_resnet101_imagenet").params == 44_541_480
    assert get_entry("epsilon_resnet101_imagenet").extra_params == {"side_head": 1_027_048}
    assert get_entry("epsilon_resnet152_imagenet").params == 60_185_128
    names = models.list_models("epsilon_resnet*", family="epsilon_resnet")
    assert set(names) == (
        {f"epsilon_resnet{d}" for d in (20, 32, 44, 56, 110, 200, 500, 752)}
        | {f"epsilon_resnet{d}_imagenet" for d in (50, 101, 152)}
    )
    fast = {n for n in names if not get_entry(n).slow}
    assert fast == {f"epsilon_resnet{d}" for d in (20, 32, 44, 56, 110, 200)}


def test_cifar_structure_and_counts():
    # ResNet-110 itself (1,727,962 + 394) is built by tests/models/test_registry.py.
    model = EpsilonResNet(depth=20, epsilon=2.5, input_shape=(8, 8, 3))
    assert model.num_blocks == 9 and len(model.gate_layers) == 9
    assert all(isinstance(g, EpsilonGate) for g in model.gate_layers)
    assert model.block_names[0] == "stage1_block1" and model.block_names[-1] == "stage3_block3"
    assert [g.name for g in model.gate_layers] == [f"{n}_gate" for n in model.block_names]
    # Side head after res2.{n // 2} = res2.1 -> stage2_block2 (n=18: stage2_block10, 28th of 54).
    assert model.side_block == "stage2_block2"
    main, side, non_trainable = cifar_param_counts(3)
    assert trainable_params(model.inference_model()) == main
    assert trainable_params(model) == main + side == main + 394
    # Non-trainable: BN moving mean + variance (as many as gamma + beta) and 4 gate scalars.
    assert non_trainable_params(model.inference_model()) == non_trainable
    assert model.get_epsilon() == 2.5
    # Option A on the raw input; BN momentum 0.9 and epsilon 1e-5.
    shortcut = model.get_layer("stage2_block1_shortcut")
    assert shortcut.pool == "average" and shortcut.out_channels == 32
    assert shortcut.input is model.get_layer("stage1_block3_add").output
    bn = model.get_layer("stage2_block3_preact_bn")
    assert bn.momentum == 0.9 and bn.epsilon == 1e-5
    with pytest.raises(ValueError):
        model.get_layer("stage1_block1_preact_bn")  # the first block skips its preact


@pytest.mark.parametrize("depth, side", [(8, "stage2_block1"), (26, "stage2_block3")])
def test_side_head_position(depth, side):
    # After block n // 2 (0-based) of stage 2: n=1 -> res2.0, n=4 -> res2.2.
    model = EpsilonResNet(depth=depth, input_shape=(8, 8, 3))
    assert model.side_block == side
    assert model.get_layer("side_bn").input is model.get_layer(f"{side}_add").output
    assert model.get_layer("side_bn").momentum == 0.9
    assert model.get_layer("side_predictions").kernel.shape == (32, 10)


def test_side_position_argument():
    model = EpsilonResNet(depth=26, input_shape=(8, 8, 3), side_position=0)
    assert model.side_block == "stage2_block1"
    model = EpsilonResNet(depth=14, input_shape=(8, 8, 3), side_position="stage3_block1")
    assert model.get_layer("side_bn").input is model.get_layer("stage3_block1_add").output
    assert model.get_layer("side_predictions").kernel.shape == (64, 10)


def test_imagenet_structure():
    model = EpsilonResNetImageNet(**TINY_IMAGENET)
    assert model.num_blocks == 6
    # SIDE_POSITION = 6 // 2 - 1 - 2 - 1 = -1 -> clamped to the first block of stage 3.
    assert model.side_block == "stage3_block1"
    assert trainable_params(model.inference_model()) == imagenet_param_counts((1, 2, 2, 1), 5, 4)[0]
    assert trainable_params(model) - trainable_params(model.inference_model()) == (
        imagenet_param_counts((1, 2, 2, 1), 5, 4)[1]
    )
    # Pre-activation modes: no_preact (stage1_block1), both_preact (first of stages 2-4:
    # the projection takes the activated input), default (raw input shortcut).
    with pytest.raises(ValueError):
        model.get_layer("stage1_block1_preact_bn")
    assert model.get_layer("stage1_block1_shortcut").input is model.get_layer("stem_pool").output
    assert (model.get_layer("stage2_block1_shortcut").input
            is model.get_layer("stage2_block1_preact_relu").output)
    assert (model.get_layer("stage2_block1_conv1").input
            is model.get_layer("stage2_block1_preact_relu").output)
    with pytest.raises(ValueError):
        model.get_layer("stage2_block2_shortcut")
    add = model.get_layer("stage2_block2_add")
    assert add.input[1] is model.get_layer("stage2_block1_add").output
    assert model.get_layer("stage3_block1_conv2").strides == (2, 2)
    assert model.get_layer("stage3_block1_shortcut").strides == (2, 2)
    # The reference's side positions (0-based in group 2): 101 -> 8, 152 -> 13, 50 -> 0.
    for depth, block in [(101, 9), (152, 14), (50, 1)]:
        assert f"after stage3_block{block} " in get_entry(f"epsilon_resnet{depth}_imagenet").notes


def test_forward_save_reload_both_outputs():
    model = EpsilonResNet(depth=8, input_shape=(8, 8, 3))
    assert set(model.output_names) == {"predictions", "side_predictions"}
    x = random_images((2, 8, 8, 3), high=255.0)
    out = model(x, training=False)
    assert set(out) == {"logits", "side_logits"}
    assert out["logits"].shape == (2, 10) and out["side_logits"].shape == (2, 10)
    # Gate state survives the round trip.
    model.set_epsilon(0.0)
    model.gate_layers[1].set_epsilon(1e3)
    model(x, training=True)
    reloaded = run_model_test(model, x, atol=1e-6)
    assert reloaded.discarded_blocks() == model.discarded_blocks() == ["stage2_block1"]
    assert reloaded.gate_layers[1].get_epsilon() == 1e3
    np.testing.assert_allclose(reloaded.discarded_count(ema=True), model.discarded_count(ema=True))
    assert_config_round_trip(model)
    single = reloaded.inference_model()
    np.testing.assert_allclose(to_numpy(single(x)), to_numpy(model(x)["logits"]), atol=1e-6)


def test_imagenet_save_reload_and_config():
    model = EpsilonResNetImageNet(**TINY_IMAGENET)
    x = random_images((2, 32, 32, 3))
    run_model_test(model, x)
    clone = assert_config_round_trip(model)
    assert clone.stage_sizes == (1, 2, 2, 1)


def test_inference_model_shares_layers():
    model = EpsilonResNet(depth=8, input_shape=(8, 8, 3))
    single = model.inference_model()
    assert single is model.inference_model()
    assert not isinstance(single.output, dict) and single.output_shape == (None, 10)
    ids = {id(v) for v in model.weights}
    assert all(id(v) in ids for v in single.weights)
    x = random_images((2, 8, 8, 3))
    np.testing.assert_allclose(to_numpy(single(x)), to_numpy(model(x)["logits"]), atol=1e-6)
    plain = EpsilonResNet(depth=8, input_shape=(8, 8, 3), side_output=False)
    assert plain.inference_model() is plain
    assert to_numpy(plain(x)).shape == (2, 10)
    assert trainable_params(plain) == trainable_params(single)
    features = EpsilonResNet(depth=8, input_shape=(8, 8, 3), include_top=False, pooling="avg")
    assert features.output_shape == (None, 64)


def _sce():
    return keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def test_large_epsilon_discards_every_block_after_a_training_step():
    """fit() path (JAX: stateless variable updates carried back like BN statistics)."""
    model = EpsilonResNet(depth=8, epsilon=1e3, input_shape=(8, 8, 3))
    assert model.discarded_count() == 0.0
    model.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9),
                  loss={"logits": _sce(), "side_logits": _sce()},
                  loss_weights={"logits": 1.0, "side_logits": 0.1})
    x = random_images((4, 8, 8, 3))
    y = np.array([0, 1, 2, 3])
    kernel_before = to_numpy(model.get_layer("stage2_block1_conv1").kernel)
    model.train_on_batch(x, {"logits": y, "side_logits": y})
    assert model.discarded_count() == model.num_blocks == 3
    assert model.discarded_blocks() == model.block_names
    # First EMA update: decay min(0.95, 1/10) = 0.1 -> EMA 0.9 per block.
    np.testing.assert_allclose(model.discarded_count(ema=True), 0.9 * 3, rtol=1e-6)
    assert model.discarded_blocks(ema=True) == []
    assert model.discarded_blocks(ema=True, threshold=0.5) == model.block_names
    # A discarded block gets no gradient from any data loss (no weight decay here).
    np.testing.assert_array_equal(
        to_numpy(model.get_layer("stage2_block1_conv1").kernel), kernel_before)
    model.set_epsilon(0.0)
    assert model.get_epsilon() == 0.0
    model.train_on_batch(x, {"logits": y, "side_logits": y})
    assert model.discarded_count() == 0.0


def test_mixed_precision_forward():
    keras.config.set_dtype_policy("mixed_float16")
    try:
        model = EpsilonResNet(depth=8, input_shape=(8, 8, 3), dtype="mixed_float16")
        out = model(random_images((2, 8, 8, 3)), training=True)
        assert np.all(np.isfinite(to_numpy(out["logits"]).astype("float32")))
        assert model.gate_layers[0].gate.dtype == "float32"
        assert model.get_layer("stage1_block1_conv2").compute_dtype == "float16"
    finally:
        keras.config.set_dtype_policy("float32")


@pytest.mark.parametrize("depth", [21, 0, 7, 7.5, "110", True])
def test_bad_cifar_depth(depth):
    with pytest.raises(ValueError, match="depth"):
        EpsilonResNet(depth=depth)


@pytest.mark.parametrize("depth", [18, 34, 100, "101", None])
def test_bad_imagenet_depth(depth):
    with pytest.raises(ValueError, match="depth"):
        EpsilonResNetImageNet(depth=depth)


@pytest.mark.parametrize(
    "kwargs, arg",
    [({"epsilon": -0.5}, "epsilon"), ({"epsilon": "2.5"}, "epsilon"),
     ({"side_position": 2}, "side_position"), ({"side_position": -1}, "side_position"),
     ({"side_position": "stage4_block1"}, "side_position"),
     ({"side_position": True}, "side_position"), ({"side_output": "yes"}, "side_output"),
     ({"classes": 0}, "classes"), ({"input_shape": (30, 30, 3)}, "input_shape"),
     ({"width": 15}, "width"), ({"pooling": "sum", "include_top": False}, "pooling")],
)
def test_bad_arguments(kwargs, arg):
    with pytest.raises(ValueError, match=arg):
        EpsilonResNet(depth=14, **{"input_shape": (8, 8, 3), **kwargs})


@pytest.mark.parametrize(
    "kwargs, arg",
    [({"epsilon": -1.0}, "epsilon"), ({"side_position": 2}, "side_position"),
     ({"side_position": "stage5_block1"}, "side_position"),
     ({"stage_blocks": (1, 1, 1)}, "stage_blocks"), ({"stage_blocks": (1, 0, 1, 1)}, "stage_blocks")],
)
def test_bad_imagenet_arguments(kwargs, arg):
    with pytest.raises(ValueError, match=arg):
        EpsilonResNetImageNet(**{**TINY_IMAGENET, **kwargs})


def test_set_epsilon_validation():
    model = EpsilonResNet(depth=8, input_shape=(8, 8, 3))
    with pytest.raises(ValueError, match="epsilon"):
        model.set_epsilon(-1)
    model.set_epsilon(1.5)
    assert [g.get_epsilon() for g in model.gate_layers] == [1.5] * 3


def test_recipes():
    from keras_lrn import recipes

    r = recipes.EPSILON_CIFAR10
    assert (r.batch_size, r.momentum, r.nesterov, r.weight_decay) == (128, 0.9, False, 2e-4)
    assert r.weight_decay_exclude == recipes.KERNELS_ONLY
    assert r.schedule == ((0, 0.1), (82, 0.01), (123, 0.001), (300, 2e-4))
    assert r.lr_policy == "epsilon_adaptive" and r.extra == {"lr_preset": "cifar", "epsilon": 2.5}
    assert r.loss_weights == {"logits": 1.0, "side_logits": 0.1}
    assert recipes.EPSILON_CIFAR100.dataset == "cifar100"
    assert recipes.EPSILON_SVHN.extra == {"lr_preset": "svhn", "epsilon": 1.5}
    assert recipes.EPSILON_SVHN.augment == "svhn" and recipes.EPSILON_SVHN.dataset == "svhn"
    r = recipes.EPSILON_IMAGENET
    assert (r.batch_size, r.nesterov, r.weight_decay, r.epochs) == (256, True, 1e-4, 110)
    assert r.schedule == ((0, 0.1), (30, 0.01), (60, 0.001), (85, 1e-4), (95, 1e-5))
    assert get_entry("epsilon_resnet110").recipe is recipes.EPSILON_CIFAR10
    assert get_entry("epsilon_resnet110").command == "python train/cifar10.py --model epsilon_resnet110"


SLOW = [n for n in models.list_models("epsilon_resnet*") if get_entry(n).slow]


@pytest.mark.slow
@pytest.mark.parametrize("name", SLOW)
def test_slow_entries_parameter_counts(name):
    entry = get_entry(name)
    model = entry.build()
    assert trainable_params(model.inference_model()) == entry.params
    assert trainable_params(model) == entry.params + entry.extra_params["side_head"]
    assert non_trainable_params(model.inference_model()) == entry.non_trainable


@pytest.mark.slow
def test_deep_model_save_reload():
    model = EpsilonResNet(depth=752, input_shape=(8, 8, 3))
    x = random_images((1, 8, 8, 3))
    reloaded = save_and_reload(model)
    np.testing.assert_allclose(to_numpy(reloaded(x)["logits"]), to_numpy(model(x)["logits"]),
                               atol=1e-5)
