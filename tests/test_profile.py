import keras
import pytest

import keras_lrn
from keras_lrn import models
from keras_lrn.export import inference_network

# Every registered configuration whose MACs the spec gives (FlopCounterMode convention).
# The first of each family runs by default, the rest with -m slow.
WITH_MACS = [n for n in models.list_models()
             if models.get_entry(n).macs is not None and not models.get_entry(n).slow]
_first = {}
for _n in WITH_MACS:
    _first.setdefault(models.get_entry(_n).family, _n)
CASES = [n if n in _first.values() else pytest.param(n, marks=pytest.mark.slow)
         for n in WITH_MACS]


@pytest.mark.parametrize("name", CASES)
def test_macs_and_params_equal_the_spec(name):
    entry = models.get_entry(name)
    p = keras_lrn.profile(inference_network(entry.build()))
    assert p.macs == entry.macs
    if entry.params is not None:
        assert p.trainable == entry.params


def test_reused_layer_counted_once_for_params_every_call_for_macs():
    inp = keras.Input((8, 8, 4))
    conv = keras.layers.Conv2D(4, 3, padding="same", use_bias=False)
    y = conv(conv(inp))
    model = keras.Model(inp, y)
    p = keras_lrn.profile.profile(model)
    assert p.trainable == 3 * 3 * 4 * 4
    assert p.macs == 2 * (8 * 8 * 4) * (3 * 3 * 4)
    assert p.activation_bytes == 2 * 8 * 8 * 4 * 4
    assert "Conv2D" in p.table()
    assert p.to_dict()["macs"] == p.macs


def test_cli(capsys):
    from keras_lrn.profile import main

    assert main(["--model", "resnet20", "--rows", "3"]) == 0
    # ResNet-20: stem 32*32*16*27 = 442,368; stage 1: 6 convs of 32*32*16*144 = 14,155,776;
    # stages 2 and 3: 16*16*32*144 + 5 * 16*16*32*288 = 12,976,128 each; dense 64*10 = 640.
    assert "MACs 40,551,040" in capsys.readouterr().out
    assert main(["--model", "resnet21"]) == 2
    assert main(["--all", "--pattern", "resnet3*"]) == 0
    out = capsys.readouterr().out
    assert "| `resnet32` | resnet | 464,154 | 2,272 | 68,862,592 | params + MACs |" in out
    assert "`resnet20`" not in out


def test_not_functional():
    class Sub(keras.Model):
        def call(self, x):
            return x

    with pytest.raises(ValueError, match="functional"):
        keras_lrn.profile(Sub())
