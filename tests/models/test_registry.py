import keras
import pytest

from keras_lrn import models
from keras_lrn.testing import non_trainable_params, trainable_params

FAST = [n for n in models.list_models() if not models.get_entry(n).slow]
SLOW = [n for n in models.list_models() if models.get_entry(n).slow]


def test_list_models_pattern():
    names = models.list_models("resnet*", family="resnet")
    assert "resnet56" in names and "resnet20" in names
    assert names.index("resnet20") < names.index("resnet110")
    assert models.list_models("no_such_*") == []


def test_unknown_model_names_close_matches():
    with pytest.raises(ValueError, match="resnet56"):
        models.get_model("resnet57")


def test_get_model_ignores_none_overrides():
    m = models.get_model("resnet20", classes=None, input_shape=(16, 16, 3))
    assert m.output_shape == (None, 10)
    assert m.input_shape == (None, 16, 16, 3)


@pytest.mark.parametrize(
    "name", FAST + [pytest.param(n, marks=pytest.mark.slow) for n in SLOW])
def test_registered_parameter_counts(name):
    """Every registered configuration has exactly the reference code's parameter count."""
    entry = models.get_entry(name)
    model = entry.build()
    # Models with training-only outputs (side heads) are counted as their
    # inference network; the training-only parts are `extra_params`.
    counted = model.inference_model() if hasattr(model, "inference_model") else model
    if entry.params is not None:
        assert trainable_params(counted) == entry.params
        extra = entry.extra_params or {}
        if "side_head" in extra:
            assert trainable_params(model) == entry.params + extra["side_head"]
    if entry.non_trainable is not None:
        assert non_trainable_params(counted) == entry.non_trainable
    assert isinstance(model, keras.Model)
    assert entry.recipe is not None
    assert entry.command.startswith("python train/")
