import keras
import numpy as np
import pytest

from keras_lrn.layers import (
    RLAInitialState,
    rla_conv_out,
    rla_join,
    rla_pool,
    rla_recurrent_conv,
    rla_update,
)
from keras_lrn.testing import assert_config_round_trip, to_numpy


def _conv3x3_same(x, w):
    """numpy NHWC 3x3 stride-1 conv, zero padding 1; w (3, 3, cin, cout)."""
    xp = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    hgt, wid = x.shape[1:3]
    out = np.zeros(x.shape[:3] + (w.shape[-1],), "float64")
    for i in range(3):
        for j in range(3):
            out += np.einsum("bhwc,cd->bhwd", xp[:, i:i + hgt, j:j + wid], w[i, j])
    return out


def _depthwise3x3_same(x, w):
    """w (3, 3, c, 1)."""
    xp = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    hgt, wid = x.shape[1:3]
    out = np.zeros(x.shape, "float64")
    for i in range(3):
        for j in range(3):
            out += xp[:, i:i + hgt, j:j + wid] * w[i, j, :, 0]
    return out


def _randomise_bn(layer, rng):
    c = layer.gamma.shape[0]
    layer.set_weights([rng.uniform(0.5, 1.5, c), rng.normal(size=c), rng.normal(size=c),
                       rng.uniform(0.5, 2.0, c)])
    return [np.asarray(w, "float64") for w in layer.get_weights()]


def _bn(x, gamma, beta, mean, var, eps=1e-5):
    return gamma * (x - mean) / np.sqrt(var + eps) + beta


@pytest.mark.parametrize("recurrent", ["dense", "depthwise"])
def test_update_matches_numpy_and_shares_convs(recurrent):
    """Two blocks' updates with ONE conv_out and ONE recurrent conv, per-block BNs."""
    k, c = 4, 6
    rng = np.random.default_rng(0)
    h_in = keras.Input((5, 5, k))
    y1_in, y2_in = keras.Input((5, 5, c)), keras.Input((5, 5, c))
    conv_out = rla_conv_out(k, "conv_out")
    rec = rla_recurrent_conv(k, "rec", recurrent=recurrent)
    h1 = rla_update(h_in, y1_in, conv_out, rec, "bn_a")
    h2 = rla_update(h1, y2_in, conv_out, rec, "bn_b")
    model = keras.Model([h_in, y1_in, y2_in], h2)
    # Weights once: conv_out c*k, recurrent 9k^2 or 9k, two BNs of 2k (+2k statistics).
    n_rec = 9 * k * k if recurrent == "dense" else 9 * k
    assert sum(int(np.prod(w.shape)) for w in model.trainable_weights) == c * k + n_rec + 4 * k
    assert len(conv_out._inbound_nodes) == 2 and len(rec._inbound_nodes) == 2
    bn_a = _randomise_bn(model.get_layer("bn_a"), rng)
    bn_b = _randomise_bn(model.get_layer("bn_b"), rng)
    h, y1, y2 = (rng.normal(size=(2, 5, 5, n)).astype("float32") for n in (k, c, c))
    got = to_numpy(model([h, y1, y2], training=False))

    w_out = to_numpy(conv_out.kernel)[0, 0].astype("float64")
    w_rec = to_numpy(rec.kernel).astype("float64")
    conv = _conv3x3_same if recurrent == "dense" else _depthwise3x3_same

    def step(hh, yy, bn):
        return conv(np.tanh(_bn(hh + yy @ w_out, *bn)), w_rec)

    expected = step(step(h.astype("float64"), y1, bn_a), y2, bn_b)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)


def test_initial_state_is_zeros_with_input_spatial_size():
    layer = RLAInitialState(7, name="h0")
    h = to_numpy(layer(np.ones((3, 5, 4, 2), "float32")))
    assert h.shape == (3, 5, 4, 7) and not h.any()
    clone = assert_config_round_trip(layer)
    assert clone.channels == 7 and clone.name == "h0"


def test_pool_and_join_match_numpy():
    rng = np.random.default_rng(1)
    x_in, h_in = keras.Input((4, 4, 3)), keras.Input((8, 8, 2))
    h = rla_pool(h_in, "pool")
    for act, cap in (("relu", np.inf), ("relu6", 6.0)):
        out = rla_join(x_in, h, f"bn_{act}", activation=act)
        model = keras.Model([x_in, h_in], out)
        bn = _randomise_bn(model.get_layer(f"bn_{act}"), rng)
        x = rng.normal(size=(2, 4, 4, 3)).astype("float32")
        hv = (8 * rng.normal(size=(2, 8, 8, 2))).astype("float32")
        got = to_numpy(model([x, hv], training=False))
        pooled = hv.reshape(2, 4, 2, 4, 2, 2).mean(axis=(2, 4))
        expected = np.concatenate([x, np.clip(_bn(pooled, *bn), 0, cap)], axis=-1)
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_pool_rejects_odd_maps():
    with pytest.raises(ValueError, match="even sizes"):
        rla_pool(keras.Input((7, 8, 4)), "pool")


@pytest.mark.parametrize("bad", [0, -3, 2.0, True, None])
def test_bad_rla_channels(bad):
    with pytest.raises(ValueError, match="rla_channels"):
        rla_conv_out(bad, "c")
    with pytest.raises(ValueError, match="rla_channels"):
        rla_recurrent_conv(bad, "r")
    with pytest.raises(ValueError, match="channels"):
        RLAInitialState(bad)


def test_bad_recurrent_and_activation():
    with pytest.raises(ValueError, match="recurrent.*'dense', 'depthwise'.*Received: recurrent="):
        rla_recurrent_conv(4, "r", recurrent="grouped")
    with pytest.raises(ValueError, match="activation"):
        rla_join(keras.Input((2, 2, 3)), keras.Input((2, 2, 4)), "bn", activation="tanh")
