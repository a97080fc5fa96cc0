import keras
import numpy as np
import pytest

from keras_lrn.models import CifarResNet
from keras_lrn.training import apply_weight_decay, decayed_variables


def _total(model):
    return float(sum(keras.ops.convert_to_numpy(t) for t in model.losses))


def test_penalty_is_half_wd_sum_squares_with_exemptions():
    model = CifarResNet(depth=8, input_shape=(8, 8, 3))
    exclude = (r"gamma$", r"beta$", r"bias$")
    decayed = apply_weight_decay(model, 2e-4, exclude)
    paths = [v.path for v in decayed]
    assert paths and all(p.endswith("kernel") for p in paths)
    expected = sum(0.5 * 2e-4 * float(np.sum(np.square(keras.ops.convert_to_numpy(v))))
                   for v in model.trainable_variables if v.path.endswith("kernel"))
    np.testing.assert_allclose(_total(model), expected, rtol=1e-5)
    # decay on everything
    apply_weight_decay(model, 1e-3)
    expected = sum(0.5 * 1e-3 * float(np.sum(np.square(keras.ops.convert_to_numpy(v))))
                   for v in model.trainable_variables)
    np.testing.assert_allclose(_total(model), expected, rtol=1e-5)
    apply_weight_decay(model, 0.0)
    assert model.losses == []


def test_gradient_is_wd_times_w():
    layer = keras.layers.Dense(3, use_bias=False)
    model = keras.Sequential([keras.Input((4,)), layer])
    apply_weight_decay(model, 0.1)
    w = keras.ops.convert_to_numpy(layer.kernel)
    model.compile(optimizer=keras.optimizers.SGD(1.0), loss=lambda y, p: 0.0 * keras.ops.sum(p))
    model.train_on_batch(np.zeros((2, 4), "float32"), np.zeros((2, 3), "float32"))
    np.testing.assert_allclose(keras.ops.convert_to_numpy(layer.kernel), w - 0.1 * w, rtol=1e-5)


def test_bad_inputs():
    model = CifarResNet(depth=8, input_shape=(8, 8, 3))
    with pytest.raises(ValueError, match="weight_decay"):
        apply_weight_decay(model, -1.0)
    with pytest.raises(ValueError, match="weight_decay_exclude"):
        apply_weight_decay(model, 1e-4, ["(unclosed"])
    assert len(decayed_variables(model, [r".*"])) == 0
