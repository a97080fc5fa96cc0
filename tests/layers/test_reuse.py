import keras
import numpy as np
import pytest

from keras_lrn.layers import ChannelShuffle, LRUBlock, reuse
from keras_lrn.layers.reuse import channel_shuffle, lru_channel_shuffle, lru_channel_unshuffle
from keras_lrn.testing import (
    assert_config_round_trip,
    count_params,
    run_model_test,
    to_numpy,
    trainable_params,
)


def _channels(c):
    return np.arange(c, dtype="float32").reshape(1, 1, 1, c)


@pytest.mark.parametrize("formulation", ["auto", "stack", "flip"])
def test_lru_shuffle_order(formulation):
    out = to_numpy(lru_channel_shuffle(_channels(8), formulation)).ravel().tolist()
    assert out == [4, 0, 5, 1, 6, 2, 7, 3]
    # Every formulation is the same exact permutation on a full NHWC tensor.
    x = np.random.default_rng(0).standard_normal((2, 3, 3, 16)).astype("float32")
    perm = np.empty(16, int)
    perm[0::2], perm[1::2] = np.arange(8, 16), np.arange(8)
    np.testing.assert_array_equal(to_numpy(lru_channel_shuffle(x, formulation)), x[..., perm])


def test_lru_shuffle_bad_formulation():
    with pytest.raises(ValueError):
        lru_channel_shuffle(_channels(8), "gather")


def test_standard_shuffle_order():
    assert to_numpy(channel_shuffle(_channels(9), 3)).ravel().tolist() == [0, 3, 6, 1, 4, 7, 2,
                                                                           5, 8]
    assert to_numpy(channel_shuffle(_channels(8), 2)).ravel().tolist() == [0, 4, 1, 5, 2, 6, 3,
                                                                           7]
    layer = ChannelShuffle(mode="lru")
    assert to_numpy(layer(_channels(4))).ravel().tolist() == [2, 0, 3, 1]
    assert_config_round_trip(layer)


def _np_bn(out, params, eps, train, stats=None):
    g, be, mu, var = params
    if train:  # batch statistics (biased variance), as PyTorch/Keras training mode
        mu, var = out.mean((0, 1, 2)), out.var((0, 1, 2))
        if stats is not None:
            stats.append((mu, var))
    return (out - mu) / np.sqrt(var + eps) * g + be


def np_block(x, dw, pw, bns, n_iter, groups=8, eps=1e-5, train=False, stats=None):
    """Independent numpy LRU block: dw (3,3,P,2), pw (1,1,2P/8,P); `train`: batch stats
    (appended to `stats` in call order: dw_bn 0, pw_bn 0, dw_bn 1, ...)."""
    for i in range(n_iter):
        xp = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
        h, w = x.shape[1:3]
        out = np.zeros(x.shape + (dw.shape[-1],))
        for a in range(3):
            for b in range(3):
                out += xp[:, a:a + h, b:b + w, :, None] * dw[a, b]
        out = out.reshape(x.shape[:3] + (-1,))
        out = _np_bn(out, bns[i][0], eps, train, stats)
        cin_g, cout = pw.shape[2], pw.shape[3]
        cout_g = cout // groups
        out = np.concatenate([out[..., j * cin_g:(j + 1) * cin_g]
                              @ pw[0, 0, :, j * cout_g:(j + 1) * cout_g] for j in range(groups)],
                             -1)
        out = _np_bn(out, bns[i][1], eps, train, stats)
        x = np.maximum(out + x, 0)
        if i < n_iter - 1:
            c = x.shape[-1]
            x = np.stack([x[..., c // 2:], x[..., :c // 2]], -1).reshape(x.shape)
    return x


@pytest.mark.parametrize("unroll", [True, False])
@pytest.mark.parametrize("training", [False, True])
@pytest.mark.parametrize("n_iter", [1, 3])
def test_lru_block_matches_numpy(n_iter, training, unroll):
    """Outputs and, in training, every BN's moving-average update equal an independent numpy
    block, for the unrolled reuses and for the single loop body."""
    rng = np.random.default_rng(0)
    planes = 16
    block = LRUBlock(planes, n_iter=n_iter, unroll=unroll)
    x = rng.standard_normal((2, 5, 5, planes)).astype("float32")
    block(x)
    bns = []
    for dbn, pbn in zip(block.dw_bns, block.pw_bns):
        pair = []
        for bn in (dbn, pbn):
            vals = [rng.uniform(0.5, 1.5, bn.gamma.shape), rng.standard_normal(bn.beta.shape),
                    rng.standard_normal(bn.gamma.shape) * 0.1,
                    rng.uniform(0.5, 2.0, bn.gamma.shape)]
            for var, v in zip((bn.gamma, bn.beta, bn.moving_mean, bn.moving_variance), vals):
                var.assign(v.astype("float32"))
            pair.append(vals)
        bns.append(pair)
    got = to_numpy(block(x, training=training))
    stats = []
    want = np_block(x.astype("float64"), to_numpy(block.dw.kernel), to_numpy(block.pw.kernel),
                    bns, n_iter, train=training, stats=stats)
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=1e-4)
    layers = [bn for pair in zip(block.dw_bns, block.pw_bns) for bn in pair]
    old = [bn_vals for pair in bns for bn_vals in pair]
    for k, bn in enumerate(layers):
        mean, var = (old[k][2], old[k][3]) if not training else (
            0.9 * old[k][2] + 0.1 * stats[k][0], 0.9 * old[k][3] + 0.1 * stats[k][1])
        np.testing.assert_allclose(to_numpy(bn.moving_mean), mean, atol=1e-5, rtol=1e-5)
        np.testing.assert_allclose(to_numpy(bn.moving_variance), var, atol=1e-5, rtol=1e-5)


def test_lru_loop_and_unrolled_train_alike():
    """One SGD step of the loop-body block and of the unrolled block: the same weights and
    moving statistics afterwards (so the same gradients), and the loop is the default on
    TensorFlow, the unrolled copies on JAX."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal((4, 6, 6, 16)).astype("float32")
    y = rng.standard_normal((4, 6, 6, 16)).astype("float32")
    models = []
    for unroll in (True, False):
        keras.utils.set_random_seed(3)
        inp = keras.Input((6, 6, 16))
        model = keras.Model(inp, LRUBlock(16, n_iter=4, unroll=unroll)(inp))
        model.compile(optimizer=keras.optimizers.SGD(0.5), loss="mse")
        model.train_on_batch(x, y)
        models.append(model)
    for a, b in zip(models[0].weights, models[1].weights):
        np.testing.assert_allclose(to_numpy(a), to_numpy(b), atol=1e-5, rtol=1e-5,
                                   err_msg=a.path)
    assert reuse._AUTO_UNROLL == {"jax": True, "tensorflow": False}


def test_lru_unshuffle_inverts_shuffle():
    x = _channels(8)
    back = to_numpy(lru_channel_unshuffle(lru_channel_shuffle(x)))
    np.testing.assert_array_equal(back, to_numpy(x))


def test_lru_block_weights_are_shared():
    block = LRUBlock(16, n_iter=14)
    block(np.zeros((1, 4, 4, 16), "float32"))
    assert block.dw.kernel.shape == (3, 3, 16, 2)
    assert block.pw.kernel.shape == (1, 1, 4, 16)
    # 288 + 64 conv weights once, plus 14 BN pairs of (32 + 16) * 2 params.
    assert trainable_params(block) == 288 + 64 + 14 * 2 * (32 + 16)
    assert count_params(block.non_trainable_weights) == 14 * 2 * (32 + 16)


def test_lru_block_serialization_keeps_sharing():
    block = LRUBlock(16, n_iter=3, name="stage")
    assert_config_round_trip(block)
    inp = keras.Input((6, 6, 16))
    model = keras.Model(inp, block(inp))
    x = np.random.default_rng(1).standard_normal((2, 6, 6, 16)).astype("float32")
    reloaded = run_model_test(model, x, atol=1e-5, check_class=False)
    assert len(reloaded.weights) == len(model.weights) == 2 + 3 * 8


def test_lru_block_trains_both_backends():
    block_in = keras.Input((4, 4, 16))
    model = keras.Model(block_in, LRUBlock(16, n_iter=4)(block_in))
    model.compile(optimizer="sgd", loss="mse")
    x = np.random.default_rng(2).standard_normal((4, 4, 4, 16)).astype("float32")
    before = to_numpy(model.weights[0])
    model.train_on_batch(x, np.zeros_like(x))
    assert not np.allclose(before, to_numpy(model.weights[0]))


@pytest.mark.parametrize("kwargs", [dict(planes=0), dict(planes=12), dict(planes=16, n_iter=0),
                                    dict(planes=16, groups=3), dict(planes=16, unroll="yes")])
def test_lru_block_bad_args(kwargs):
    with pytest.raises(ValueError):
        LRUBlock(**kwargs)


def test_lru_block_wrong_input_channels():
    with pytest.raises(ValueError, match="needs 16 input channels"):
        LRUBlock(16)(np.zeros((1, 4, 4, 8), "float32"))
