"""Basis convolution pieces: orthogonal init, concat order, sharing through save/load."""

import keras
import numpy as np
import pytest

from keras_lrn.layers import OrthogonalBasis, basis_conv, make_shared_bases, shared_basis
from keras_lrn.testing import count_params, save_and_reload, to_numpy


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
    concat = model.get_layer("c1_concat")
    # unique first: the concat's first input comes from the unique conv.
    assert concat._inbound_nodes[0].input_tensors[0]._keras_history.operation is layers["unique"]
    x = np.random.default_rng(0).standard_normal((1, 6, 6, 4)).astype("float32")
    probe = keras.Model(model.input, concat.output)
    out = to_numpy(probe(x))
    np.testing.assert_allclose(out[..., 1:], to_numpy(basis(x)), atol=1e-5)
    np.testing.assert_allclose(out[..., :1], to_numpy(layers["unique"](x)), atol=1e-5)


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
