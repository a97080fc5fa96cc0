"""EpsilonScheduler: tensorpack epoch indexing, through fit, resumed fits, both model kinds."""

import keras
import numpy as np
import pytest
from keras_lrn.callbacks import EpsilonScheduler
from lrn_callback_fakes import gated_model


class EpsilonProbe(keras.callbacks.Callback):
    """Reads every gate's epsilon at epoch begin (after the scheduler ran)."""

    def __init__(self):
        super().__init__()
        self.seen = {}

    def on_epoch_begin(self, epoch, logs=None):
        gates = [layer for layer in self.model.layers if hasattr(layer, "discarded_ema")]
        self.seen[epoch] = sorted({float(keras.ops.convert_to_numpy(g.epsilon)) for g in gates})


def _fit(model, callbacks, epochs, initial_epoch=0):
    model.compile(keras.optimizers.SGD(0.0), loss="mse")
    x, y = np.ones((8, 4), "float32"), np.zeros((8, 2), "float32")
    return model.fit(
        x,
        y,
        batch_size=4,
        epochs=epochs,
        initial_epoch=initial_epoch,
        verbose=0,
        callbacks=callbacks,
    )


def test_sets_epsilon_at_tensorpack_epochs():
    model = gated_model([0.7, 0.7, 0.7])
    probe = EpsilonProbe()
    hist = _fit(model, [EpsilonScheduler([(0, 0.0), (2, 2.5), (4, 1e6)]), probe], epochs=6)
    assert [probe.seen[k] for k in range(6)] == [[0.0], [0.0], [2.5], [2.5], [1e6], [1e6]]
    assert hist.history["epsilon"] == [0.0, 0.0, 2.5, 2.5, 1e6, 1e6]
    # The gates used the new epsilon from epoch 4 on (JAX: picked up at the next epoch).
    assert all(
        float(keras.ops.convert_to_numpy(g.gate)) == 0.0
        for g in model.layers
        if hasattr(g, "discarded_ema")
    )


def test_before_first_entry_keeps_model_value_and_resume_uses_latest_entry():
    model = gated_model([0.75, 0.75])
    probe = EpsilonProbe()
    hist = _fit(model, [EpsilonScheduler([(2, 3.0), (5, 4.0)]), probe], epochs=3)
    assert [probe.seen[k] for k in range(3)] == [[0.75], [0.75], [3.0]]
    assert hist.history["epsilon"] == [0.75, 0.75, 3.0]
    # A fit resumed at epoch 4 starts with the entry of epoch 2; epoch 5 sets 4.0.
    model = gated_model([0.75, 0.75])
    probe = EpsilonProbe()
    _fit(model, [EpsilonScheduler([(2, 3.0), (5, 4.0)]), probe], epochs=6, initial_epoch=4)
    assert probe.seen == {4: [3.0], 5: [4.0]}


def test_prefers_model_set_epsilon():
    calls = []
    model = gated_model([0.5])

    def set_epsilon(v):
        calls.append(v)

    model.set_epsilon = set_epsilon
    model.get_epsilon = lambda: 0.25
    cb = EpsilonScheduler([(0, 1.0), (1, 2.0)])
    cb.set_model(model)
    cb.on_train_begin()
    logs = {}
    for k in range(3):
        cb.on_epoch_begin(k)
        cb.on_epoch_end(k, logs)
    assert calls == [1.0, 2.0] and logs["epsilon"] == 0.25


def test_warns_without_gates_and_validates():
    cb = EpsilonScheduler([(0, 1.0)])
    cb.set_model(keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)]))
    with pytest.warns(UserWarning, match="no `set_epsilon`"):
        cb.on_train_begin()
    for bad in ([], [(0, -1.0)], [(1.5, 1.0)], None, [(0, float("nan"))]):
        with pytest.raises(ValueError, match="schedule"):
            EpsilonScheduler(bad)
    cb = EpsilonScheduler([(150, 2.5), (0, 0.0)])
    assert cb.schedule == [[0, 0.0], [150, 2.5]]
    assert EpsilonScheduler(**cb.get_config()).get_config() == cb.get_config()
