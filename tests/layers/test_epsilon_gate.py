"""EpsilonGate: the epsilon-ResNet sparsity-promoting function (spec §1.3, §1.4, §3.4-3.5).

F is fed directly with max|F| well away from epsilon (spec §3.5: the gate flips
within a few ulp of the threshold, which differs across backends).
"""

import keras
import numpy as np
import pytest

from keras_lrn.layers import EpsilonGate
from keras_lrn.testing import assert_config_round_trip, to_numpy


def reference_gate(f, eps, scale=1e6):
    """The reference's four ReLUs in float64 numpy."""
    relu = lambda v: np.maximum(v, 0.0)  # noqa: E731
    f = f.astype(np.float64)
    s = np.max(relu(f - eps) + relu(-f - eps))
    return relu(1.0 - scale * relu(1.0 - scale * s))


def branch(max_abs, shape=(2, 4, 4, 3), seed=0, negative=False):
    """Random F whose largest magnitude is exactly `max_abs` (at a negative entry if asked)."""
    rng = np.random.default_rng(seed)
    f = rng.uniform(-1.0, 1.0, size=shape).astype("float32") * np.float32(max_abs * 0.9)
    f.flat[5] = -max_abs if negative else max_abs
    return f


def value(v):
    return float(to_numpy(v))


@pytest.mark.parametrize(
    "max_abs, eps, negative, expected",
    [
        (2.6, 2.5, False, 1.0),
        (2.4, 2.5, False, 0.0),
        (2.501, 2.5, False, 1.0),  # eps + 1e-3: well away from the ulp-level switch
        (2.499, 2.5, True, 0.0),
        (2.6, 2.5, True, 1.0),  # the negative side of the two-sided threshold
        (0.5, 0.0, False, 1.0),
        (3.0, 1e3, False, 0.0),
    ],
)
def test_gate_matches_numpy(max_abs, eps, negative, expected):
    f = branch(max_abs, negative=negative)
    gate = EpsilonGate(epsilon=eps)
    out = to_numpy(gate(f))
    s = reference_gate(f, eps)
    assert s == expected
    np.testing.assert_array_equal(out, f * np.float32(s))
    assert out.dtype == np.float32


def test_gate_is_binary_in_float32():
    rng = np.random.default_rng(1)
    gate = EpsilonGate(epsilon=2.5)
    values = set()
    for i in range(40):
        eps = float(rng.uniform(1.0, 3.0))
        gate.set_epsilon(eps)
        f = branch(float(rng.uniform(0.5, 4.0)), seed=i)
        gate(f, training=True)
        values.add(value(gate.gate))
        expected = 1.0 if np.abs(f).max() > eps + 1e-5 else 0.0
        if abs(np.abs(f).max() - eps) > 1e-5:
            assert value(gate.gate) == expected
    assert values == {0.0, 1.0}


def test_one_scalar_over_the_whole_batch():
    # One image above epsilon keeps the block for every image of the batch.
    f = np.full((3, 2, 2, 1), 0.1, "float32")
    f[2, 1, 1, 0] = 5.0
    out = to_numpy(EpsilonGate(epsilon=2.5)(f))
    np.testing.assert_array_equal(out, f)
    out = to_numpy(EpsilonGate(epsilon=2.5)(f[:2]))
    np.testing.assert_array_equal(out, np.zeros_like(f[:2]))


def _grad_of_sum(gate, f):
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        x = tf.constant(f)
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = tf.reduce_sum(gate(x) * 1.7)
        return tape.gradient(y, x).numpy()
    if backend == "jax":
        import jax
        import jax.numpy as jnp

        return np.asarray(jax.grad(lambda x: jnp.sum(gate(x) * 1.7))(jnp.asarray(f)))
    pytest.skip(f"no gradient helper for {backend}")


@pytest.mark.parametrize("max_abs, s", [(3.0, 1.0), (2.0, 0.0)])
def test_no_gradient_through_gate(max_abs, s):
    """d(S*F)/dF = S: S is a constant for the gradient."""
    f = branch(max_abs)
    gate = EpsilonGate(epsilon=2.5)
    gate.build(f.shape)
    grad = _grad_of_sum(gate, f)
    np.testing.assert_array_equal(grad, np.full_like(f, 1.7 * s))


def test_mixed_float16_computes_the_gate_in_float32():
    gate = EpsilonGate(epsilon=2.5, dtype="mixed_float16")
    f16 = branch(2.0).astype("float16")  # s = 0: 1e6 * ... would be inf * 0 = NaN in float16
    out = to_numpy(gate(f16, training=True))
    assert out.dtype == np.float16
    assert np.all(np.isfinite(out)) and not np.any(out)
    assert value(gate.gate) == 0.0
    for v in (gate.epsilon, gate.gate, gate.discarded_ema, gate.num_updates):
        assert v.dtype == "float32" and not v.trainable
    f16 = branch(3.0).astype("float16")
    out = to_numpy(gate(f16, training=True))
    np.testing.assert_array_equal(out, f16)
    assert value(gate.gate) == 1.0


def test_variables_update_only_in_training():
    gate = EpsilonGate(epsilon=2.5)
    f = branch(1.0)  # gated off
    gate(f)
    gate(f, training=False)
    assert value(gate.gate) == 1.0
    assert value(gate.num_updates) == 0.0 and value(gate.discarded_ema) == 0.0
    assert not gate.is_discarded()
    gate(f, training=True)
    assert value(gate.gate) == 0.0 and value(gate.num_updates) == 1.0
    assert gate.is_discarded() and not gate.is_discarded(ema=True)
    gate(branch(4.0), training=False)  # inference does not touch the state
    assert value(gate.gate) == 0.0 and value(gate.num_updates) == 1.0
    assert [w.name for w in gate.weights] == ["epsilon", "gate", "discarded_ema", "num_updates"]
    assert gate.trainable_weights == []


def test_ema_warm_up_formula():
    """tensorpack EMA: decay min(0.95, (1+t)/(10+t)), t = previous updates, starts at 0."""
    gate = EpsilonGate(epsilon=2.5, ema_decay=0.95)
    pattern = [1, 1, 0, 1, 1, 1, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1]
    ema = 0.0
    for t, discarded in enumerate(pattern):
        gate(branch(1.0 if discarded else 4.0, seed=t), training=True)
        decay = min(0.95, (1.0 + t) / (10.0 + t))
        ema = decay * ema + (1.0 - decay) * discarded
        np.testing.assert_allclose(value(gate.discarded_ema), ema, rtol=1e-6)
    assert value(gate.num_updates) == len(pattern)
    assert gate.is_discarded(ema=True, threshold=0.5)
    assert not gate.is_discarded(ema=True)  # the reference's ~1.0 cut-off
    gate.reset_state()
    assert value(gate.discarded_ema) == 0.0 and value(gate.gate) == 1.0


def test_set_epsilon_and_config():
    gate = EpsilonGate(epsilon=1.5, ema_decay=0.9, name="g")
    assert gate.get_epsilon() == 1.5
    gate.set_epsilon(0.25)  # before build: the initial value
    gate.build((None, 2))
    assert value(gate.epsilon) == 0.25
    gate.set_epsilon(3)
    assert gate.get_epsilon() == 3.0
    with pytest.raises(ValueError, match="epsilon"):
        gate.set_epsilon(-0.1)
    clone = assert_config_round_trip(gate)
    assert clone.ema_decay == 0.9


@pytest.mark.parametrize(
    "kwargs, arg",
    [({"epsilon": -1.0}, "epsilon"), ({"epsilon": float("nan")}, "epsilon"),
     ({"epsilon": "2.5"}, "epsilon"), ({"ema_decay": 1.0}, "ema_decay")],
)
def test_bad_arguments(kwargs, arg):
    with pytest.raises(ValueError, match=arg):
        EpsilonGate(**kwargs)


def test_threshold_in_ulps_matches_the_four_relus():
    """Spec §1.3, measured: at eps=2.5 the gate switches on 5 ulp above eps, never fractional."""
    eps = np.float32(2.5)
    gate = EpsilonGate(epsilon=2.5)
    for k in range(-3, 9):
        m = eps
        for _ in range(abs(k)):
            m = np.nextafter(m, np.float32(np.inf if k > 0 else -np.inf), dtype=np.float32)
        f = np.zeros((2, 3, 3, 2), "float32")
        f[1, 2, 0, 1] = -m
        # The reference's four ReLUs in float32 numpy.
        s = np.max(np.maximum(f - eps, 0) + np.maximum(-f - eps, 0))
        one = np.float32(1.0)
        scale = np.float32(1e6)
        expected = np.maximum(one - scale * np.maximum(one - scale * s, 0), 0)
        gate(f, training=True)
        assert value(gate.gate) == expected == (1.0 if k >= 5 else 0.0), k
