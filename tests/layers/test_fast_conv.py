import keras
import numpy as np
import pytest

from keras_lrn.layers import (
    FastBatchNormalization,
    FastDepthwiseConv2D,
    GroupedPointwiseConv2D,
    fast_conv,
)
from keras_lrn.testing import assert_config_round_trip, run_model_test, to_numpy


def gradients(fn, *args):
    """Gradients of the scalar `fn(*args)` with respect to every (numpy) argument.

    Runs on the current backend (TensorFlow's `GradientTape` or `jax.grad`) so the test
    can compare a custom gradient with autodiff (test code: the library is keras.ops only).
    """
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        return [np.asarray(g) for g in jax.grad(fn, argnums=tuple(range(len(args))))(*args)]
    if backend == "tensorflow":
        import tensorflow as tf

        tensors = [tf.constant(a) for a in args]
        with tf.GradientTape() as tape:
            tape.watch(tensors)
            value = fn(*tensors)
        return [np.asarray(g) for g in tape.gradient(value, tensors)]
    raise NotImplementedError(f"gradients() supports tensorflow and jax, not {backend!r}")


def np_depthwise(x, k, stride, pad):
    """Independent numpy reference: NHWC x, (kh, kw, C, M) kernel, symmetric pad."""
    x = np.pad(x, ((0, 0), pad[0], pad[1], (0, 0)))
    kh, kw, c, m = k.shape
    n, h, w, _ = x.shape
    ho, wo = (h - kh) // stride + 1, (w - kw) // stride + 1
    out = np.zeros((n, ho, wo, c, m), np.float64)
    for i in range(kh):
        for j in range(kw):
            tap = x[:, i:i + stride * (ho - 1) + 1:stride, j:j + stride * (wo - 1) + 1:stride]
            out += tap[..., None] * k[i, j]
    return out.reshape(n, ho, wo, c * m)


def np_grouped(x, k, groups):
    cin_g, cout = k.shape[2], k.shape[3]
    cout_g = cout // groups
    outs = [x[..., g * cin_g:(g + 1) * cin_g] @ k[0, 0, :, g * cout_g:(g + 1) * cout_g]
            for g in range(groups)]
    return np.concatenate(outs, -1)


@pytest.mark.parametrize("formulation", ["native", "shift", "auto"])
@pytest.mark.parametrize("mult,stride,padding", [(1, 1, "same"), (2, 1, "same"), (1, 2, 1),
                                                  (2, 2, 1), (1, 1, "valid"), (1, 2, "same"),
                                                  (3, 1, "same"), (3, 2, "valid")])
def test_depthwise_matches_reference(formulation, mult, stride, padding):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 8, 8, 4)).astype("float32")
    layer = FastDepthwiseConv2D(3, strides=stride, padding=padding, depth_multiplier=mult,
                                formulation=formulation)
    y = to_numpy(layer(x))
    k = to_numpy(layer.kernel)
    assert k.shape == (3, 3, 4, mult)
    if padding == "same" and stride == 2:
        pad = ((0, 1), (0, 1))  # Keras/TF 'same' on an even input
    elif padding == "valid":
        pad = ((0, 0), (0, 0))
    else:
        pad = ((1, 1), (1, 1))
    np.testing.assert_allclose(y, np_depthwise(x, k, stride, pad), atol=1e-5)
    # Same layout and outputs as keras.layers.DepthwiseConv2D.
    if padding in ("same", "valid"):
        ref = keras.layers.DepthwiseConv2D(3, strides=stride, padding=padding,
                                           depth_multiplier=mult, use_bias=False)
        ref.build(x.shape)
        ref.kernel.assign(k)
        np.testing.assert_allclose(y, to_numpy(ref(x)), atol=1e-5)


@pytest.mark.parametrize("formulation", ["native", "einsum", "blockdiag", "batched", "auto"])
@pytest.mark.parametrize("groups", [1, 3, 8])
def test_grouped_pointwise_matches_reference(formulation, groups):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 4, 4, 24)).astype("float32")
    layer = GroupedPointwiseConv2D(48, groups=groups, use_bias=True, bias_initializer="ones",
                                   formulation=formulation)
    y = to_numpy(layer(x))
    k = to_numpy(layer.kernel)
    assert k.shape == (1, 1, 24 // groups, 48)
    np.testing.assert_allclose(y, np_grouped(x, k, groups) + 1.0, atol=1e-5)


def test_gradients_agree_across_formulations():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 6, 6, 16)).astype("float32")
    results = {}
    for dwf, pwf in (("native", "native"), ("shift", "einsum"), ("shift", "blockdiag"),
                     ("shift", "batched")):
        keras.utils.set_random_seed(0)
        inp = keras.Input((6, 6, 16))
        h = FastDepthwiseConv2D(3, depth_multiplier=2, formulation=dwf)(inp)
        out = GroupedPointwiseConv2D(16, groups=8, formulation=pwf)(h)
        model = keras.Model(inp, out)
        model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
        model.train_on_batch(x, np.zeros((2, 6, 6, 16), "float32"))
        results[(dwf, pwf)] = [to_numpy(w) for w in model.weights]
    base = results[("native", "native")]
    for other in results.values():
        for a, b in zip(base, other):
            np.testing.assert_allclose(a, b, atol=1e-5)


@pytest.mark.parametrize("batch,mult,chunk_bytes", [(6, 2, 2 << 20), (6, 2, 1), (7, 1, 5040),
                                                     (5, 3, 1)])
def test_shift_depthwise_custom_gradient_matches_autodiff(monkeypatch, batch, mult, chunk_bytes):
    """The stride-1 "shift" depthwise has its own gradient (input: flipped-kernel correlation;
    kernel: summed in batch chunks, zero-padded when the batch has no fitting divisor). It equals
    autodiff of the plain shifted multiply-adds, with one chunk, many chunks and padded chunks."""
    monkeypatch.setattr(fast_conv, "_KERNEL_GRAD_CHUNK_BYTES", chunk_bytes)
    rng = np.random.default_rng(3)
    x = rng.standard_normal((batch, 7, 9, 4)).astype("float32")
    k = rng.standard_normal((3, 3, 4, mult)).astype("float32")
    upstream = rng.standard_normal((batch, 5, 7, 4 * mult)).astype("float32")

    def loss(conv):
        return lambda x, k: keras.ops.sum(conv(x, k, (1, 1)) * upstream)

    custom = gradients(loss(fast_conv._depthwise), x, k)
    plain = gradients(loss(fast_conv._shifted_depthwise), x, k)
    for a, b in zip(custom, plain):
        assert a.shape == b.shape
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
    # and autodiff of the plain formulation is the numpy reference's adjoint (dx . x = loss)
    np.testing.assert_allclose(np.sum(custom[1] * k), np.sum(
        np_depthwise(x, k, 1, ((0, 0), (0, 0))) * upstream), rtol=1e-4)


def test_auto_formulation_per_backend():
    assert fast_conv.resolve_depthwise_formulation("auto", "jax") == "shift"
    assert fast_conv.resolve_depthwise_formulation("auto", "tensorflow") == "native"
    assert fast_conv.resolve_pointwise_formulation("auto", "jax", group_channels=64) == "batched"
    assert fast_conv.resolve_pointwise_formulation("auto", "jax", group_channels=16) == "blockdiag"
    assert fast_conv.resolve_pointwise_formulation("auto", "jax") == "blockdiag"
    assert fast_conv.resolve_pointwise_formulation("auto", "tensorflow",
                                                   group_channels=32) == "blockdiag"
    assert fast_conv.resolve_pointwise_formulation("auto", "tensorflow",
                                                   group_channels=64) == "batched"
    assert fast_conv.resolve_depthwise_formulation("shift", "tensorflow") == "shift"


def test_config_round_trip_and_saving():
    dw = FastDepthwiseConv2D(3, strides=2, padding=1, depth_multiplier=2, use_bias=True,
                             formulation="shift", name="dw")
    pw = GroupedPointwiseConv2D(16, groups=4, formulation="einsum", name="pw")
    assert_config_round_trip(dw)
    assert_config_round_trip(pw)
    inp = keras.Input((8, 8, 8))
    model = keras.Model(inp, pw(dw(inp)))
    assert model.output_shape == (None, 4, 4, 16)
    x = np.random.default_rng(3).standard_normal((2, 8, 8, 8)).astype("float32")
    run_model_test(model, x, atol=1e-5, check_class=False)


@pytest.mark.parametrize("kwargs", [
    dict(kernel_size=0), dict(padding="full"), dict(padding=-1), dict(depth_multiplier=0),
    dict(formulation="fft"), dict(strides=(1, 2, 3)),
])
def test_depthwise_bad_args(kwargs):
    with pytest.raises(ValueError):
        FastDepthwiseConv2D(**kwargs)


@pytest.mark.parametrize("kwargs", [
    dict(filters=10, groups=3), dict(filters=0), dict(filters=8, groups=0),
    dict(filters=8, formulation="conv"),
])
def test_pointwise_bad_args(kwargs):
    with pytest.raises(ValueError):
        GroupedPointwiseConv2D(**kwargs)


def test_pointwise_input_not_divisible():
    with pytest.raises(ValueError, match="multiple of `groups`"):
        GroupedPointwiseConv2D(8, groups=4)(np.zeros((1, 2, 2, 6), "float32"))


def test_shift_depthwise_x2_matches_native_layer_at_lrunet_size():
    """The repeat-then-shift depthwise (x2) equals keras.layers.DepthwiseConv2D (<= 1e-5)."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((4, 16, 16, 64)).astype("float32")
    layer = FastDepthwiseConv2D(3, padding="same", depth_multiplier=2, formulation="shift")
    y = to_numpy(layer(x))
    ref = keras.layers.DepthwiseConv2D(3, padding="same", depth_multiplier=2, use_bias=False)
    ref.build(x.shape)
    ref.kernel.assign(to_numpy(layer.kernel))
    assert np.max(np.abs(y - to_numpy(ref(x)))) <= 1e-5


def _bn_model(layer, shape):
    inp = keras.Input(shape)
    model = keras.Model(inp, keras.layers.ReLU()(layer(inp)))
    model.compile(optimizer=keras.optimizers.SGD(0.5), loss="mse")
    return model


# "native" (and "auto" where it resolves to native) *is* Keras' BN; only the matmul
# formulation has code of its own to check (the resolution is tested below).
@pytest.mark.parametrize("formulation", ["matmul"])
def test_fast_batch_norm_matches_keras_and_numpy(formulation):
    rng = np.random.default_rng(4)
    x = (rng.standard_normal((3, 5, 4, 16)) * 2 + 1).astype("float32")
    target = rng.standard_normal((3, 5, 4, 16)).astype("float32")
    gamma = rng.uniform(0.5, 1.5, 16).astype("float32")
    beta = rng.standard_normal(16).astype("float32")
    layers = {"keras": keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-5),
              "fast": FastBatchNormalization(momentum=0.9, epsilon=1e-5, formulation=formulation)}
    models = {k: _bn_model(v, x.shape[1:]) for k, v in layers.items()}
    for layer in layers.values():
        layer.gamma.assign(gamma)
        layer.beta.assign(beta)
    # training-mode forward against numpy (biased batch variance, as PyTorch/Keras)
    mean, var = x.mean((0, 1, 2)), x.var((0, 1, 2))
    expect = (x - mean) / np.sqrt(var + 1e-5) * gamma + beta
    np.testing.assert_allclose(to_numpy(layers["fast"](x, training=True)), expect, atol=2e-5)
    np.testing.assert_allclose(to_numpy(layers["fast"].moving_mean), 0.1 * mean, atol=1e-6)
    np.testing.assert_allclose(to_numpy(layers["fast"].moving_variance), 0.9 + 0.1 * var,
                               atol=1e-5)
    layers["keras"](x, training=True)
    # one SGD step: gamma/beta gradients and moving statistics agree with Keras' own BN
    for model in models.values():
        model.train_on_batch(x, target)
    for a, b in zip(models["keras"].weights, models["fast"].weights):
        np.testing.assert_allclose(to_numpy(a), to_numpy(b), atol=2e-5)
    # the input gradient: one more layer in front of the BN
    grads = {}
    for k in layers:
        keras.utils.set_random_seed(0)
        inp = keras.Input(x.shape[1:])
        bn = (keras.layers.BatchNormalization(epsilon=1e-5) if k == "keras"
              else FastBatchNormalization(epsilon=1e-5, formulation=formulation))
        model = keras.Model(inp, bn(keras.layers.Dense(16)(inp)))
        model.compile(optimizer=keras.optimizers.SGD(0.5), loss="mse")
        model.train_on_batch(x, target)
        grads[k] = [to_numpy(w) for w in model.weights]
    for a, b in zip(grads["keras"], grads["fast"]):
        np.testing.assert_allclose(a, b, atol=2e-5)
    # inference uses the moving statistics, exactly as Keras
    np.testing.assert_allclose(to_numpy(models["fast"].predict_on_batch(x)),
                               to_numpy(models["keras"].predict_on_batch(x)), atol=1e-6)


def test_fast_batch_norm_config_and_args():
    bn = FastBatchNormalization(momentum=0.9, epsilon=1e-5, formulation="matmul", name="bn")
    assert_config_round_trip(bn)
    assert fast_conv.resolve_batch_norm_formulation("auto", "tensorflow") == "matmul"
    assert fast_conv.resolve_batch_norm_formulation("auto", "jax") == "native"
    with pytest.raises(ValueError, match="formulation"):
        FastBatchNormalization(formulation="fused")
    inp = keras.Input((4, 4, 8))
    model = keras.Model(inp, FastBatchNormalization(formulation="matmul")(inp))
    x = np.random.default_rng(5).standard_normal((2, 4, 4, 8)).astype("float32")
    run_model_test(model, x, atol=1e-5, check_class=False)


class _BatchNormThenMatmul(keras.layers.Layer):
    """BN followed by a (16 -> 8) matmul, folded (`fold_into_matmul`) or not."""

    def __init__(self, fold, formulation="auto", groups=1, matmul_formulation="blockdiag",
                 **kwargs):
        super().__init__(**kwargs)
        self.fold = fold
        self.groups = groups
        self.matmul_formulation = matmul_formulation
        self.bn = FastBatchNormalization(momentum=0.9, epsilon=1e-5, formulation=formulation,
                                         gamma_initializer="random_normal",
                                         beta_initializer="random_normal")

    def build(self, input_shape):
        self.bn.build(input_shape)
        self.kernel = self.add_weight(shape=(input_shape[-1] // self.groups, 8),
                                      initializer="random_normal")

    def call(self, z, training=None):
        if self.fold:
            assert self.bn.can_fold(z)
            return self.bn.fold_into_matmul(z, self.kernel, training, self.groups,
                                            self.matmul_formulation)
        return keras.ops.matmul(self.bn(z, training=training),
                                fast_conv.block_diagonal_kernel(self.kernel, self.groups))


@pytest.mark.parametrize("formulation,groups,matmul_formulation", [
    ("native", 1, "blockdiag"), ("matmul", 1, "blockdiag"), ("native", 4, "batched"),
    ("native", 4, "einsum"), ("matmul", 4, "blockdiag"), ("native", 4, "blockdiag"),
    ("matmul", 4, "batched"), ("matmul", 4, "einsum")])
def test_batch_norm_folded_into_matmul(formulation, groups, matmul_formulation):
    """`fold_into_matmul` = BN then matmul: outputs (training and inference), moving
    statistics, and after one SGD step every weight (input-side Dense, gamma, beta, kernel),
    so every gradient, agree with the unfolded layers."""
    rng = np.random.default_rng(4)
    x = (rng.standard_normal((3, 5, 5, 16)) * 2 + 1).astype("float32")
    target = rng.standard_normal((3, 5, 5, 8)).astype("float32")
    models = []
    for fold in (True, False):
        keras.utils.set_random_seed(7)
        inp = keras.Input((5, 5, 16))
        out = _BatchNormThenMatmul(fold, formulation, groups, matmul_formulation)(keras.layers.Dense(16, use_bias=False)(inp))
        model = keras.Model(inp, out)
        model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
        models.append(model)
    folded, plain = models
    for a, b in zip(folded.weights, plain.weights):
        np.testing.assert_array_equal(to_numpy(a), to_numpy(b))
    for training in (True, False):
        np.testing.assert_allclose(to_numpy(folded(x, training=training)),
                                   to_numpy(plain(x, training=training)), rtol=1e-5, atol=1e-5)
    before = [to_numpy(w) for w in folded.trainable_weights]
    for model in models:
        model.train_on_batch(x, target)
    for a, b in zip(folded.weights, plain.weights):
        np.testing.assert_allclose(to_numpy(a), to_numpy(b), rtol=1e-5, atol=1e-5,
                                   err_msg=a.path)
    for w, old in zip(folded.trainable_weights, before):  # every weight got a gradient
        assert not np.allclose(to_numpy(w), old), w.path
