import keras
import numpy as np
import pytest

from keras_lrn.models import CifarResNet, get_entry
from keras_lrn.testing import (
    assert_config_round_trip,
    random_images,
    run_model_test,
    trainable_params,
)


def test_spec_counts():
    # Net_RL2 plain ResNets (spec §2.4): ResNet32 464,154, ResNet56 853,018 trainable.
    assert get_entry("resnet32").params == 464_154
    assert get_entry("resnet56").params == 853_018
    assert trainable_params(CifarResNet(depth=32)) == 464_154


def test_forward_save_reload():
    model = CifarResNet(depth=8, input_shape=(16, 16, 3), classes=5)
    assert model.output_shape == (None, 5)
    x = random_images((2, 16, 16, 3))
    run_model_test(model, x)
    assert_config_round_trip(model)


def test_headless_and_activation():
    model = CifarResNet(depth=8, include_top=False, pooling="avg", input_shape=(16, 16, 3))
    assert model.output_shape == (None, 64)
    model = CifarResNet(depth=8, classifier_activation="softmax", input_shape=(16, 16, 3))
    out = keras.ops.convert_to_numpy(model(random_images((2, 16, 16, 3))))
    np.testing.assert_allclose(out.sum(-1), 1.0, rtol=1e-5)


@pytest.mark.parametrize("depth", [21, 0, -4, 7.5, "56", True])
def test_bad_depth(depth):
    with pytest.raises(ValueError, match="depth"):
        CifarResNet(depth=depth)


@pytest.mark.parametrize(
    "kwargs, arg",
    [({"classes": 0}, "classes"), ({"input_shape": (32, 32)}, "input_shape"),
     ({"pooling": "sum", "include_top": False}, "pooling"), ({"width": (16, 32)}, "width")],
)
def test_bad_arguments(kwargs, arg):
    with pytest.raises(ValueError, match=arg):
        CifarResNet(depth=8, **kwargs)
