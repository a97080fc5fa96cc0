import numpy as np
import pytest

from keras_lrn import models
from keras_lrn.models import mobilenet, shufflenet
from keras_lrn.testing import non_trainable_params, run_model_test, to_numpy, trainable_params

PUBLISHED = ["mobilenet_0.25x_cifar10", "mobilenetv2_0.25x_cifar10", "shufflenet_0.5x_g3_cifar10",
             "shufflenetv2_0.25x_cifar10", "mobilenet_0.4x_cifar100",
             "mobilenetv2_0.4x_cifar100", "shufflenet_0.75x_g3_cifar100",
             "shufflenetv2_0.75x_cifar100", "mobilenet_0.25x_fashion_mnist",
             "mobilenetv2_0.25x_fashion_mnist", "shufflenet_0.5x_g3_fashion_mnist",
             "shufflenetv2_0.25x_fashion_mnist"]


def test_registry_has_published_configurations():
    names = models.list_models()
    for n in PUBLISHED:
        assert n in names
        e = models.get_entry(n)
        assert not e.slow and e.params and e.non_trainable and "Published" in e.notes
        assert e.recipe.augment == "lrunet" and e.recipe.normalize == "scale"


# Configurations of spec §2.2 without published weights (slow in the registry).
UNPUBLISHED = [n for fam in ("mobilenet", "mobilenetv2", "shufflenet", "shufflenetv2")
               for n in models.list_models(family=fam) if n not in PUBLISHED and "cifar10" in n
               and "cifar100" not in n]


@pytest.mark.slow
@pytest.mark.parametrize("name", UNPUBLISHED)
def test_other_widths_counts(name):
    e = models.get_entry(name)
    m = e.build()
    assert trainable_params(m) == e.params
    assert non_trainable_params(m) == e.non_trainable


@pytest.mark.parametrize("cls,kwargs", [
    (models.MobileNet, dict(width_mult=0.25)),
    (models.MobileNetV2, dict(width_mult=0.25)),
    (models.ShuffleNet, dict(width_mult=0.5, groups=3)),
    (models.ShuffleNetV2, dict(width_mult=0.25)),
])
def test_forward_and_save_reload(cls, kwargs):
    model = cls(**kwargs, input_shape=(28, 28, 1))
    x = np.random.default_rng(0).uniform(0, 1, (2, 28, 28, 1)).astype("float32")
    assert to_numpy(model(x)).shape == (2, 10)
    reloaded = run_model_test(model, x, atol=1e-5)
    assert reloaded.get_config() == model.get_config()


def test_fashion_mnist_train_size_works():
    for cls, kw in ((models.MobileNetV2, dict(width_mult=0.25)),
                    (models.ShuffleNetV2, dict(width_mult=0.25))):
        m = cls(**kw, input_shape=(32, 32, 1))
        assert m.output_shape == (None, 10)


def test_channel_helpers():
    assert shufflenet.shufflenet_planes(0.5, 3) == [12, 120, 240, 480]
    assert mobilenet.mobilenetv2_channels(0.25) == (8, 80, 1280)
    assert mobilenet.mobilenet_channels(0.4) == (12, 204, 409)


@pytest.mark.parametrize("fn", [
    lambda: models.ShuffleNetV2(width_mult=0.3),
    lambda: models.ShuffleNet(width_mult=0.5, groups=5),
    lambda: models.MobileNet(width_mult=0),
    lambda: models.MobileNetV2(classes=0),
    lambda: models.ShuffleNet(width_mult=0.1),
])
def test_bad_arguments(fn):
    with pytest.raises(ValueError):
        fn()
