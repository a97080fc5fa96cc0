"""keras_lrn.models.compress (spec §1.9, §4): drop gated-off blocks, same predictions."""

import keras
import numpy as np
import pytest

from keras_lrn.models import (
    CompressedEpsilonResNet,
    CompressionReport,
    EpsilonResNet,
    EpsilonResNetImageNet,
    compress,
)
from keras_lrn.testing import (
    assert_config_round_trip,
    random_images,
    run_model_test,
    to_numpy,
    trainable_params,
)

TINY_IMAGENET = {"stage_blocks": (1, 2, 2, 1), "width": 4, "input_shape": (32, 32, 3),
                 "classes": 5}


def gate_off(model, dropped):
    """epsilon 1e3 on the dropped blocks (gate 0), 0 on the others (gate 1)."""
    for name, gate in zip(model.block_names, model.gate_layers):
        gate.set_epsilon(1e3 if name in dropped else 0.0)


def block_params(model, block):
    return sum(int(np.prod(w.shape)) for layer in model.layers
               if layer.name.startswith(f"{block}_") for w in layer.trainable_weights)


def check_equivalent(model, dropped, x):
    gate_off(model, dropped)
    expected = to_numpy(model.inference_model()(x, training=False))
    compressed, report = compress(model, dropped)
    got = to_numpy(compressed(x, training=False))
    np.testing.assert_allclose(got, expected, atol=1e-5, rtol=0)
    # Not vacuous: with every block on, the gated network computes something else.
    model.set_epsilon(0.0)
    full = to_numpy(model.inference_model()(x, training=False))
    assert np.abs(full - expected).max() > 1e-4
    return compressed, report, expected


def test_cifar_compress_with_first_block_stand_ins():
    model = EpsilonResNet(depth=14, input_shape=(8, 8, 3))  # 2 blocks per stage
    x = random_images((3, 8, 8, 3), high=4.0)
    dropped = ["stage1_block1", "stage2_block1", "stage3_block2"]
    compressed, report, expected = check_equivalent(model, dropped, x)
    assert isinstance(compressed, CompressedEpsilonResNet) and isinstance(report, CompressionReport)
    assert compressed.blocks == ((2,), (2,), (1,))
    assert compressed.block_names == ["stage1_block2", "stage2_block2", "stage3_block1"]
    assert report.dropped == dropped and report.stand_ins == ["stage2_block1"]
    assert (report.blocks_before, report.blocks_after) == (6, 3)
    # The stand-in is the parameter-free avgpool + zero-pad shortcut.
    stand_in = compressed.get_layer("stage2_block1_shortcut")
    assert stand_in.pool == "average" and not stand_in.weights
    # Parameters: the original minus the dropped blocks' (CIFAR blocks lose everything).
    before = trainable_params(model.inference_model())
    assert report.params_before == before
    assert report.params_after == trainable_params(compressed)
    for block in dropped:
        assert report.params_removed[block] == block_params(model, block)
    assert report.params_after == before - sum(block_params(model, b) for b in dropped)
    assert 0 < report.compression_ratio < 1
    assert report.to_dict()["kept"] == [[2], [2], [1]]
    assert not [layer for layer in compressed.layers if "gate" in layer.name or "side" in layer.name]
    # Serialisable: .keras round trip to the same class, same outputs and config.
    reloaded = run_model_test(compressed, x, atol=1e-6)
    np.testing.assert_allclose(to_numpy(reloaded(x, training=False)), expected, atol=1e-5)
    assert_config_round_trip(compressed)


def test_cifar_compress_from_gate_state_and_indices():
    model = EpsilonResNet(depth=14, input_shape=(8, 8, 3))
    x = random_images((3, 8, 8, 3), high=4.0)
    dropped = ["stage1_block2", "stage3_block1"]
    gate_off(model, dropped)
    model(x, training=True)  # one training call updates the gates
    expected = to_numpy(model.inference_model()(x, training=False))
    assert model.discarded_blocks() == dropped
    compressed, report = compress(model, ema=False)  # last-step gate values
    assert report.dropped == dropped and report.rule == "last"
    np.testing.assert_allclose(to_numpy(compressed(x)), expected, atol=1e-5, rtol=0)
    # The EMA rule (the reference's: EMA prints as 1) needs ~240 gated steps; one
    # step gives EMA 0.9, so the default drops nothing yet ...
    _, report = compress(model)
    assert report.dropped == [] and report.params_after == report.params_before
    # ... unless the cut-off is lowered.
    _, report = compress(model, threshold=0.5)
    assert report.dropped == dropped and report.rule.startswith("ema")
    # Explicit indices into block_names (order and duplicates do not matter).
    _, report = compress(model, [4, 1, "stage1_block2"])
    assert report.dropped == dropped and report.rule == "explicit"


def test_imagenet_compress_keeps_preactivation_and_projection():
    model = EpsilonResNetImageNet(**TINY_IMAGENET)
    x = random_images((2, 32, 32, 3), high=4.0)
    dropped = ["stage1_block1", "stage2_block1", "stage3_block2", "stage4_block1"]
    compressed, report, expected = check_equivalent(model, dropped, x)
    assert compressed.blocks == ((), (2,), (1,), ())
    assert report.stand_ins == ["stage1_block1", "stage2_block1", "stage4_block1"]
    # The stand-in of a dropped first block keeps its pre-activation BN (stages 2-4)
    # and 1x1 projection, with the trained weights.
    for layer_name in ["stage1_block1_shortcut", "stage2_block1_preact_bn",
                       "stage2_block1_shortcut", "stage4_block1_preact_bn"]:
        for a, b in zip(compressed.get_layer(layer_name).get_weights(),
                        model.get_layer(layer_name).get_weights()):
            np.testing.assert_array_equal(a, b)
    kept_parts = {"stage1_block1": ["shortcut"], "stage2_block1": ["preact_bn", "shortcut"],
                  "stage3_block2": [], "stage4_block1": ["preact_bn", "shortcut"]}
    for block, parts in kept_parts.items():
        kept = sum(trainable_params(model.get_layer(f"{block}_{p}")) for p in parts)
        assert report.params_removed[block] == block_params(model, block) - kept
    assert report.params_after == report.params_before - sum(report.params_removed.values())
    assert report.params_after == trainable_params(compressed)
    reloaded = run_model_test(compressed, x, atol=1e-6)
    np.testing.assert_allclose(to_numpy(reloaded(x, training=False)), expected, atol=1e-5)


def test_compress_nothing_dropped_is_the_same_network():
    model = EpsilonResNetImageNet(**TINY_IMAGENET)
    model.set_epsilon(0.0)
    x = random_images((2, 32, 32, 3), high=4.0)
    compressed, report = compress(model, [])
    assert report.dropped == [] and report.params_after == report.params_before
    np.testing.assert_allclose(to_numpy(compressed(x)), to_numpy(model.inference_model()(x)),
                               atol=1e-5, rtol=0)


@pytest.mark.parametrize("discarded", [["stage9_block1"], [6], [-1], [True], 2.5])
def test_bad_discarded(discarded):
    model = EpsilonResNet(depth=8, input_shape=(8, 8, 3))
    with pytest.raises(ValueError, match="discarded"):
        compress(model, discarded)


def test_bad_model():
    plain = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.ReLU()])
    with pytest.raises(ValueError, match="model"):
        compress(plain)


@pytest.mark.parametrize(
    "kwargs, arg",
    [({"variant": "svhn"}, "variant"), ({"blocks": ((1,), (1,))}, "blocks"),
     ({"blocks": ((2, 1), (1,), (1,))}, "blocks"), ({"blocks": ((0,), (1,), (1,))}, "blocks")],
)
def test_compressed_bad_arguments(kwargs, arg):
    with pytest.raises(ValueError, match=arg):
        CompressedEpsilonResNet(**{"input_shape": (8, 8, 3), **kwargs})
