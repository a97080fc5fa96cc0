"""Basis convolution pieces: orthogonal init, concat order, sharing through save/load."""

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

from keras_lrn.layers import (
    BasisCoefficients,
    FastBatchNormalization,
    OrthogonalBasis,
    SharedBasisConv2D,
    UniqueBasis,
    basis_conv,
    filter_basis,
    make_shared_bases,
    shared_basis,
)
from keras_lrn.profile import profile
from keras_lrn.testing import (
    assert_config_round_trip,
    count_params,
    run_model_test,
    save_and_reload,
    to_numpy,
)


def rows(kernel):
    k = to_numpy(kernel)
    return np.transpose(k, (3, 2, 0, 1)).reshape(k.shape[-1], -1)


def test_orthogonal_basis_rows_orthonormal():
    b = rows(OrthogonalBasis(seed=1)((3, 3, 4, 8)))
    np.testing.assert_allclose(b @ b.T, np.eye(8), atol=1e-5)


def test_joint_parts_are_mutually_orthogonal():
    k1 = OrthogonalBasis(parts=2, part=0, seed=7)((3, 3, 2, 6))
    k2 = OrthogonalBasis(parts=2, part=1, seed=7)((3, 3, 2, 6))
    b = np.concatenate([rows(k1), rows(k2)])
    np.testing.assert_allclose(b @ b.T, np.eye(12), atol=1e-5)
    config = OrthogonalBasis(parts=2, part=1, seed=7).get_config()
    assert OrthogonalBasis.from_config(config).get_config() == config


def test_orthogonal_basis_bad_arguments():
    with pytest.raises(ValueError, match="part"):
        OrthogonalBasis(parts=2, part=2, seed=1)
    with pytest.raises(ValueError, match="seed"):
        OrthogonalBasis(parts=2, part=0)
    with pytest.raises(ValueError, match="parts"):
        OrthogonalBasis(parts=0)


def test_variants():
    s1, s2 = make_shared_bases("single", 4, "b")
    assert s1 is s2 and s1.name == "b"
    d1, d2 = make_shared_bases("double", 4, "b")
    assert d1 is not d2 and (d1.name, d2.name) == ("b_1", "b_2")
    assert make_shared_bases("non_shared", 4, "b") == (None, None)
    with pytest.raises(ValueError, match="variant"):
        make_shared_bases("triple", 4, "b")
    with pytest.raises(ValueError, match="rank"):
        shared_basis(0, "b")


def _two_block_model(unique_rank=1):
    inp = keras.Input((6, 6, 4))
    basis = shared_basis(3, "basis")
    y, layers = basis_conv(inp, 4, "c1", shared=basis, unique_rank=unique_rank,
                           return_layers=True)
    y = basis_conv(keras.layers.ReLU()(y), 4, "c2", shared=basis, unique_rank=unique_rank)
    return keras.Model(inp, y), basis, layers


def test_basis_conv_structure_and_counts():
    model, basis, layers = _two_block_model()
    # basis 9*4*3 once; per conv: unique 9*4*1 + BN 2*(1+3) + coeff (1+3)*4
    assert count_params(model.trainable_weights) == 108 + 2 * (36 + 8 + 16)
    assert count_params(model.non_trainable_weights) == 2 * 8
    assert len(basis._inbound_nodes) == 2
    # unique first: one conv with cat[unique, shared] kernels = the two convs, concatenated
    node = basis._inbound_nodes[0]
    assert node.input_tensors[1]._keras_history.operation is layers["unique"]
    probe = keras.Model(model.input, node.output_tensors[0])
    x = np.random.default_rng(0).standard_normal((1, 6, 6, 4)).astype("float32")
    out = to_numpy(probe(x))
    conv = keras.layers.Conv2D(1, 3, padding="same", use_bias=False)
    conv.build((None, 6, 6, 4))
    conv.kernel.assign(layers["unique"].kernel)
    np.testing.assert_allclose(out[..., 1:], to_numpy(basis(x)), atol=1e-5)
    np.testing.assert_allclose(out[..., :1], to_numpy(conv(x)), atol=1e-5)
    # MACs: the merged conv counts the unique and the shared filters, UniqueBasis none
    calls = {c.name: c for c in profile(model).calls}
    assert calls["c1_unique"].macs == 0 and calls["basis"].macs == 36 * 9 * 4 * (1 + 3)


@pytest.mark.parametrize("merge", [True, False])
def test_merged_basis_conv_gradients_equal_two_convs(merge, monkeypatch):
    """`SharedBasisConv2D([x, unique_kernel])`, as one conv with cat[Ku, Ks] (merge) or as
    two convs: same outputs and, after one SGD step, the same unique and shared kernels as
    two separate Conv2D layers and a concat."""
    monkeypatch.setitem(filter_basis._MERGE, keras.backend.backend(), merge)
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 6, 6, 4)).astype("float32")
    target = rng.standard_normal((2, 6, 6, 5)).astype("float32")
    ku = rng.standard_normal((3, 3, 4, 2)).astype("float32")
    ks = rng.standard_normal((3, 3, 4, 3)).astype("float32")
    models = []
    for merged in (True, False):
        inp = keras.Input((6, 6, 4))
        basis = shared_basis(3, "basis")
        if merged:
            unique = UniqueBasis(2, name="unique")
            y = basis([inp, unique(inp)])
        else:
            unique = keras.layers.Conv2D(2, 3, padding="same", use_bias=False, name="unique")
            y = keras.layers.Concatenate()([unique(inp), basis(inp)])
        model = keras.Model(inp, y)
        unique.kernel.assign(ku)
        basis.kernel.assign(ks)
        model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
        models.append((model, unique, basis))
    (merged, mu, mb), (plain, pu, pb) = models
    np.testing.assert_allclose(to_numpy(merged(x)), to_numpy(plain(x)), atol=1e-5)
    merged.train_on_batch(x, target)
    plain.train_on_batch(x, target)
    np.testing.assert_allclose(to_numpy(mu.kernel), to_numpy(pu.kernel), atol=1e-5)
    np.testing.assert_allclose(to_numpy(mb.kernel), to_numpy(pb.kernel), atol=1e-5)
    assert not np.allclose(to_numpy(mu.kernel), ku) and not np.allclose(to_numpy(mb.kernel), ks)
    assert_config_round_trip(UniqueBasis(2, kernel_size=3))
    with pytest.raises(ValueError, match="rank"):
        UniqueBasis(0)
    inp = keras.Input((6, 6, 4))
    with pytest.raises(ValueError, match="use_bias"):
        SharedBasisConv2D(3, 3, padding="same", use_bias=True)([inp, UniqueBasis(2)(inp)])


def test_shared_basis_stays_shared_after_save_load():
    model, _, _ = _two_block_model()
    x = np.random.default_rng(1).standard_normal((2, 6, 6, 4)).astype("float32")
    reloaded = save_and_reload(model)
    np.testing.assert_allclose(to_numpy(reloaded(x)), to_numpy(model(x)), atol=1e-6)
    bases = [layer for layer in reloaded.layers if layer.name == "basis"]
    assert len(bases) == 1 and len(bases[0]._inbound_nodes) == 2
    assert count_params(reloaded.weights) == count_params(model.weights)


def test_shared_only_and_unique_only():
    inp = keras.Input((6, 6, 4))
    basis = shared_basis(3, "basis")
    assert basis_conv(inp, 5, "a", shared=basis).shape == (None, 6, 6, 5)
    y = basis_conv(inp, 5, "b", unique_rank=2, strides=2)
    assert y.shape == (None, 3, 3, 5)


def test_basis_conv_bad_arguments():
    inp = keras.Input((6, 6, 4))
    with pytest.raises(ValueError, match="unique_rank"):
        basis_conv(inp, 4, "a", unique_rank=-1)
    with pytest.raises(ValueError, match="unique_rank"):
        basis_conv(inp, 4, "a")
    with pytest.raises(ValueError, match="strides"):
        basis_conv(inp, 4, "a", shared=shared_basis(2, "s"), strides=2)


def _coefficient_model(folded):
    """Conv2D -> [basis BN -> 1x1 coeff], as `BasisCoefficients` or as the two layers."""
    keras.utils.set_random_seed(3)
    inp = keras.Input((5, 5, 4))
    z = keras.layers.Conv2D(6, 3, padding="same", use_bias=False)(inp)
    if folded:
        out = BasisCoefficients(8, name="coeff")(z)
    else:
        z = FastBatchNormalization(momentum=0.9, epsilon=1e-5, name="bn")(z)
        out = keras.layers.Conv2D(8, 1, use_bias=False, name="conv")(z)
    model = keras.Model(inp, out)
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    return model


def test_basis_coefficients_equal_bn_then_1x1_conv():
    """Same weights (in the same order), outputs in training and inference, moving
    statistics, and every weight after one SGD step (so every gradient)."""
    folded, plain = _coefficient_model(True), _coefficient_model(False)
    assert [w.shape for w in folded.weights] == [w.shape for w in plain.weights]
    for a, b in zip(folded.weights, plain.weights):
        np.testing.assert_array_equal(to_numpy(a), to_numpy(b))
    rng = np.random.default_rng(5)
    x = (rng.standard_normal((3, 5, 5, 4)) * 2 + 1).astype("float32")
    target = rng.standard_normal((3, 5, 5, 8)).astype("float32")
    for training in (True, False):
        np.testing.assert_allclose(to_numpy(folded(x, training=training)),
                                   to_numpy(plain(x, training=training)), rtol=1e-5, atol=1e-5)
    before = [to_numpy(w) for w in folded.trainable_weights]
    for model in (folded, plain):
        model.train_on_batch(x, target)
    for a, b in zip(folded.weights, plain.weights):
        np.testing.assert_allclose(to_numpy(a), to_numpy(b), rtol=1e-5, atol=1e-5,
                                   err_msg=a.path)
    for w, old in zip(folded.trainable_weights, before):
        assert not np.allclose(to_numpy(w), old), w.path
    layer = folded.get_layer("coeff")
    assert not np.allclose(to_numpy(layer.bn.moving_mean), 0)  # the update ran
    assert profile(folded).macs == profile(plain).macs == 25 * (9 * 4 * 6 + 6 * 8)


def test_basis_coefficients_config_save_and_bad_args():
    clone = assert_config_round_trip(BasisCoefficients(8, momentum=0.8, epsilon=1e-3))
    assert (clone.bn.momentum, clone.bn.epsilon, clone.filters) == (0.8, 1e-3, 8)
    model = _coefficient_model(True)
    model.fit(np.ones((2, 5, 5, 4), "float32"), np.zeros((2, 5, 5, 8), "float32"), verbose=0)
    run_model_test(model, np.random.default_rng(0).random((2, 5, 5, 4)).astype("float32"))
    with pytest.raises(ValueError, match="filters"):
        BasisCoefficients(0)


_SAVE_ON_OTHER_BACKEND = """
import sys
import keras
import numpy as np
from keras_lrn.models import BasisResNet

keras.utils.set_random_seed(0)
model = BasisResNet(20, "single")
model.save_weights(sys.argv[1])
x = np.random.default_rng(0).random((2, 32, 32, 3)).astype("float32")
np.save(sys.argv[2], keras.ops.convert_to_numpy(model(x, training=False)))
"""


@pytest.mark.skipif(
    not all(importlib.util.find_spec(m) for m in ("tensorflow", "jax")),
    reason="needs both backends")
def test_basis_weights_load_across_backends(tmp_path):
    """Same layers and weights on both backends although the basis conv is computed
    differently (one conv on TF, two on JAX): weights saved on the other backend load here
    and give the same outputs."""
    other = "jax" if keras.backend.backend() == "tensorflow" else "tensorflow"
    weights, expect = tmp_path / "w.weights.h5", tmp_path / "out.npy"
    env = dict(os.environ, KERAS_BACKEND=other, PYTHONPATH=str(Path(__file__).parents[2]))
    subprocess.run([sys.executable, "-c", _SAVE_ON_OTHER_BACKEND, str(weights), str(expect)],
                   check=True, env=env, capture_output=True, timeout=600)
    from keras_lrn.models import BasisResNet

    model = BasisResNet(20, "single")
    model.load_weights(weights)
    x = np.random.default_rng(0).random((2, 32, 32, 3)).astype("float32")
    ref = np.load(expect)
    np.testing.assert_allclose(to_numpy(model(x, training=False)), ref, rtol=1e-4,
                               atol=1e-5 * np.abs(ref).max())
