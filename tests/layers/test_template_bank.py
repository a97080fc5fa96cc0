import keras
import numpy as np
import pytest

from keras_lrn.layers import OrthogonalRows, SharedConv2D, TemplateBank
from keras_lrn.testing import assert_config_round_trip, random_images, save_and_reload, to_numpy


def _two_layer_model(num_templates=3, channels=4, seed=11):
    x = keras.Input((6, 6, channels), name="image")
    templates = TemplateBank(num_templates, channels, channels, name="bank")(x)
    y = SharedConv2D(channels, coefficients_initializer=OrthogonalRows(2, 0, seed),
                     name="conv_a")([x, templates])
    y = keras.layers.ReLU()(y)
    y = SharedConv2D(channels, coefficients_initializer=OrthogonalRows(2, 1, seed),
                     name="conv_b")([y, templates])
    return keras.Model(x, y)


def _banks_and_convs(model):
    banks = [layer for layer in model.layers if isinstance(layer, TemplateBank)]
    convs = [layer for layer in model.layers if isinstance(layer, SharedConv2D)]
    return banks, convs


def _bank_of(conv):
    (node,) = conv._inbound_nodes
    return node.input_tensors[1]._keras_history.operation


def test_kernel_is_the_coefficient_mix_and_conv_matches_keras_conv():
    model = _two_layer_model()
    bank = model.get_layer("bank")
    conv = model.get_layer("conv_a")
    conv.coefficients.assign(np.array([0.5, -2.0, 1.5], "float32"))
    t = to_numpy(bank.templates)
    kernel = np.tensordot(np.array([0.5, -2.0, 1.5]), t, axes=1)
    np.testing.assert_allclose(to_numpy(conv.mix(bank.templates)), kernel, rtol=1e-5, atol=1e-6)
    ref = keras.layers.Conv2D(4, 3, padding="same", use_bias=False)
    ref.build((None, 6, 6, 4))
    ref.set_weights([kernel])
    x = random_images((2, 6, 6, 4))
    got = to_numpy(conv([x, bank.templates]))
    np.testing.assert_allclose(got, to_numpy(ref(x)), rtol=1e-5, atol=1e-5)


def test_bank_stored_once_and_shared_after_keras_round_trip():
    model = _two_layer_model()
    assert len(model.trainable_weights) == 3  # templates + 2 x coefficients
    x = random_images((2, 6, 6, 4))
    expected = to_numpy(model(x))
    reloaded = save_and_reload(model)
    banks, convs = _banks_and_convs(reloaded)
    assert len(banks) == 1 and len(convs) == 2
    assert all(_bank_of(c) is banks[0] for c in convs)
    assert [w.path for w in reloaded.weights].count("bank/templates") == 1
    np.testing.assert_allclose(to_numpy(reloaded(x)), expected, atol=1e-6)
    # Training updates the one shared variable, seen by both convolutions.
    banks[0].templates.assign(banks[0].templates * 0.0)
    np.testing.assert_allclose(to_numpy(reloaded(x)), 0.0)


def test_gradients_reach_templates_and_coefficients():
    model = _two_layer_model()
    model.compile(keras.optimizers.SGD(0.1), "mse")
    before = [to_numpy(w) for w in model.trainable_weights]
    x = random_images((2, 6, 6, 4))
    model.fit(x, np.ones((2, 6, 6, 4), "float32"), epochs=1, verbose=0)
    for b, w in zip(before, model.trainable_weights):
        assert not np.allclose(b, to_numpy(w)), w.path


def test_configs_round_trip():
    assert_config_round_trip(TemplateBank(3, 4, 8, kernel_size=(3, 1), name="b"))
    assert_config_round_trip(SharedConv2D(8, 3, strides=2, padding="valid", use_bias=True,
                                          coefficients_initializer=OrthogonalRows(4, 1, 3)))
    init = OrthogonalRows(5, 2, 9)
    assert OrthogonalRows.from_config(init.get_config()).get_config() == init.get_config()


def test_template_init_is_kaiming_normal_fan_in():
    bank = TemplateBank(8, 64, 64)
    bank.build()
    t = to_numpy(bank.templates)
    assert t.shape == (8, 3, 3, 64, 64)
    assert abs(t.std() - np.sqrt(2 / (9 * 64))) < 0.003


@pytest.mark.parametrize("rows,cols", [(6, 6), (6, 2), (2, 6), (2, 1)])
def test_orthogonal_rows_are_jointly_orthogonal(rows, cols):
    c = np.stack([to_numpy(OrthogonalRows(rows, r, 5)((cols,))) for r in range(rows)])
    if rows <= cols:
        np.testing.assert_allclose(c @ c.T, np.eye(rows), atol=1e-5)  # C C^T = I
    else:
        np.testing.assert_allclose(c.T @ c, np.eye(cols), atol=1e-5)  # C^T C = I


def test_bad_inputs():
    x = keras.Input((6, 6, 4))
    templates = TemplateBank(2, 4, 8)(x)
    with pytest.raises(ValueError, match="templates"):
        SharedConv2D(4)([x, templates])  # filters 4 vs the bank's 8
    with pytest.raises(ValueError, match="templates"):
        SharedConv2D(8, kernel_size=5)([x, templates])
    y = keras.Input((6, 6, 3))
    with pytest.raises(ValueError, match="templates"):
        SharedConv2D(8)([y, templates])  # 3 input channels, bank made for 4
    with pytest.raises(ValueError, match="num_templates"):
        TemplateBank(0, 4, 4)
    with pytest.raises(ValueError, match="padding"):
        SharedConv2D(4, padding="causal")
    with pytest.raises(ValueError, match="row"):
        OrthogonalRows(2, 2, 0)
