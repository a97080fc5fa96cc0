"""SideSupervision: scheduled side-loss weight (both backends), side validation error."""

import keras
import numpy as np
import pytest
from keras_lrn.callbacks import ScaledLoss, SideSupervision

pytestmark = pytest.mark.filterwarnings("ignore:SideSupervision. no .val_side_logits_accuracy")

CE = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def two_headed():
    inp = keras.Input((4,))
    h = keras.layers.Dense(8, activation="relu", name="trunk")(inp)
    return keras.Model(
        inp,
        {
            "logits": keras.layers.Dense(3, name="main")(h),
            "side_logits": keras.layers.Dense(3, name="side")(h),
        },
    )


def data(n=24, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4)).astype("float32")
    return x, rng.integers(0, 3, size=(n,))


def test_scheduled_weight_is_used_by_training_and_validation_loss():
    x, y = data()
    model = two_headed()
    side = SideSupervision(loss_weight_schedule=[(0, 0.1), (1, 1.0), (2, 0.0)])
    model.compile(keras.optimizers.SGD(0.0), loss={"logits": CE, "side_logits": side.wrap_loss(CE)})
    ys = {"logits": y, "side_logits": y}
    hist = model.fit(
        x, ys, batch_size=8, epochs=3, verbose=0, validation_data=(x, ys), callbacks=[side]
    )
    pred = model.predict(x, verbose=0)
    side_ce = float(keras.ops.convert_to_numpy(CE(y, pred["side_logits"])))
    main_ce = float(keras.ops.convert_to_numpy(CE(y, pred["logits"])))
    weights = [0.1, 1.0, 0.0]
    assert hist.history["side_loss_weight"] == pytest.approx(weights)
    np.testing.assert_allclose(
        hist.history["side_logits_loss"], [w * side_ce for w in weights], rtol=1e-4, atol=1e-6
    )
    np.testing.assert_allclose(
        hist.history["loss"], [main_ce + w * side_ce for w in weights], rtol=1e-4
    )
    np.testing.assert_allclose(
        hist.history["val_loss"], [main_ce + w * side_ce for w in weights], rtol=1e-4
    )
    # Keras computed no side accuracy, and the callback has no validation_data.
    assert "val_side_error" not in hist.history


def test_weight_changes_gradients():
    """With weight 0 the side head gets no gradient; with weight > 0 it trains."""
    x, y = data()
    model = two_headed()
    side = SideSupervision(loss_weight_schedule=[(0, 0.0), (1, 1.0)])
    model.compile(keras.optimizers.SGD(0.1), loss={"logits": CE, "side_logits": side.wrap_loss(CE)})
    snaps = []
    snap = keras.callbacks.LambdaCallback(
        on_epoch_end=lambda e, logs: snaps.append(np.array(model.get_layer("side").kernel))
    )
    start = np.array(model.get_layer("side").kernel)
    model.fit(
        x,
        {"logits": y, "side_logits": y},
        batch_size=8,
        epochs=2,
        verbose=0,
        callbacks=[side, snap],
    )
    np.testing.assert_array_equal(snaps[0], start)
    assert not np.array_equal(snaps[1], snaps[0])


def test_val_side_error_from_keras_metrics_or_own_evaluation():
    x, y = data()
    ys = {"logits": y, "side_logits": y}
    model = two_headed()
    model.compile(
        keras.optimizers.SGD(0.05),
        loss={"logits": CE, "side_logits": CE},
        loss_weights={"logits": 1.0, "side_logits": 0.1},
        metrics={"side_logits": ["accuracy"]},
    )
    side = SideSupervision()
    hist = model.fit(
        x, ys, batch_size=8, epochs=2, verbose=0, validation_data=(x, ys), callbacks=[side]
    )
    np.testing.assert_allclose(
        hist.history["val_side_error"], 1.0 - np.array(hist.history["val_side_logits_accuracy"])
    )
    assert hist.history["side_loss_weight"] == [0.1, 0.1]

    # No Keras metric: the callback predicts the side head on its validation data
    # (arrays with one-hot labels, or an iterable of batches).
    model = two_headed()
    model.compile(keras.optimizers.SGD(0.05), loss={"logits": CE, "side_logits": CE})
    onehot = np.eye(3, dtype="float32")[y]
    side = SideSupervision(validation_data=(x, onehot), batch_size=10)
    batches = [(x[i : i + 8], {"side_logits": y[i : i + 8]}) for i in range(0, 24, 8)]
    side_batches = SideSupervision(validation_data=batches)
    hist = model.fit(x, ys, batch_size=8, epochs=1, verbose=0, callbacks=[side, side_batches])
    pred = model.predict(x, verbose=0)["side_logits"]
    want = float(np.mean(np.argmax(pred, -1) != y))
    assert hist.history["val_side_error"] == [pytest.approx(want)]
    assert side.evaluate_side_error() == pytest.approx(want)
    assert side_batches.evaluate_side_error() == pytest.approx(want)


def test_warns_when_schedule_is_not_wired():
    x, y = data()
    model = two_headed()
    model.compile(
        "sgd",
        loss={"logits": CE, "side_logits": CE},
        loss_weights={"logits": 1.0, "side_logits": 0.3},
    )
    side = SideSupervision(loss_weight_schedule=[(0, 0.1), (1, 0.0)])
    with pytest.warns(UserWarning, match="no effect"):
        hist = model.fit(x, {"logits": y, "side_logits": y}, epochs=1, verbose=0, callbacks=[side])
    assert hist.history["side_loss_weight"] == [0.3]


def test_adopts_a_compiled_scaled_loss():
    model = two_headed()
    scaled = ScaledLoss(CE, weight=0.25)
    model.compile("sgd", loss={"logits": CE, "side_logits": scaled})
    side = SideSupervision(loss_weight_schedule=[(1, 0.5)])
    side.set_model(model)
    side.on_train_begin()
    assert side.loss_weight is scaled.weight
    side.on_epoch_begin(0)
    assert float(keras.ops.convert_to_numpy(scaled.weight)) == 0.25
    side.on_epoch_begin(1)
    assert float(keras.ops.convert_to_numpy(scaled.weight)) == 0.5


def test_scaled_loss_save_and_load(tmp_path):
    x, y = data()
    model = two_headed()
    side = SideSupervision(loss_weight_schedule=[(0, 0.4)])
    model.compile("sgd", loss={"logits": CE, "side_logits": side.wrap_loss(CE)})
    model.fit(x, {"logits": y, "side_logits": y}, epochs=1, verbose=0, callbacks=[side])
    path = str(tmp_path / "m.keras")
    model.save(path)
    again = keras.saving.load_model(path)
    loss = again._compile_loss._user_loss["side_logits"] if again._compile_loss else None
    if loss is None:  # compile config restored lazily
        loss = again.loss["side_logits"]
    assert isinstance(loss, ScaledLoss)
    assert float(keras.ops.convert_to_numpy(loss.weight)) == pytest.approx(0.4)
    value = ScaledLoss(CE, weight=0.5)(y, again.predict(x, verbose=0)["side_logits"])
    want = 0.5 * float(
        keras.ops.convert_to_numpy(CE(y, again.predict(x, verbose=0)["side_logits"]))
    )
    assert float(keras.ops.convert_to_numpy(value)) == pytest.approx(want, rel=1e-5)


def test_validation():
    with pytest.raises(ValueError, match="side_output"):
        SideSupervision(side_output="")
    with pytest.raises(ValueError, match="loss_weight_schedule"):
        SideSupervision(loss_weight_schedule=[(0, -1.0)])
    with pytest.raises(ValueError, match="validation_data"):
        SideSupervision(validation_data=(1, 2, 3, 4))
    with pytest.raises(ValueError, match="loss_weight_schedule"):
        SideSupervision(loss_weight_schedule=lambda e: -1.0).weight_at(0)
    with pytest.raises(ValueError, match="weight"):
        ScaledLoss(CE, weight=-0.1)
    with pytest.raises(ValueError, match="loss"):
        ScaledLoss(lambda a, b: a)
    cb = SideSupervision(loss_weight_schedule=[(5, 0.0), (0, 0.1)], verbose=1)
    assert cb.get_config()["loss_weight_schedule"] == [[0, 0.1], [5, 0.0]]
    assert SideSupervision(**cb.get_config()).get_config() == cb.get_config()
    assert float(keras.ops.convert_to_numpy(cb.loss_weight)) == pytest.approx(0.1)
    assert SideSupervision(loss_weight_schedule=lambda e: 0.2 * e).weight_at(2) == pytest.approx(
        0.4
    )
