"""DiscardedLayerCounter on a fake gated model and, when it exists, on EpsilonResNet."""

import csv
import importlib

import keras
import numpy as np
import pytest
from keras_lrn.callbacks import AdaptiveLRSetter, DiscardedLayerCounter
from lrn_callback_fakes import gated_model


def _set_gates(model, gates, emas):
    for layer, g, e in zip(model.gate_layers, gates, emas):
        layer.gate.assign(g)
        layer.discarded_ema.assign(e)


@pytest.mark.parametrize("with_attributes", [True, False])
def test_counts_from_gate_variables(with_attributes):
    model = gated_model([0.0] * 4, with_attributes=True)
    if not with_attributes:  # found by scanning the layers; named after the gate layers
        gates = model.gate_layers
        model = keras.Model(model.inputs, model.outputs)
        model.gate_layers = None
    else:
        gates = model.gate_layers
    names = ["res0", "res1", "res2", "res3"] if with_attributes else [g.name for g in gates]
    for layer, g, e in zip(gates, [1.0, 0.0, 0.0, 1.0], [0.1, 0.9, 1.0, 0.0]):
        layer.gate.assign(g)
        layer.discarded_ema.assign(e)
    cb = DiscardedLayerCounter(log_blocks=True)
    cb.set_model(model)
    cb.on_train_begin()
    logs = {"loss": 1.0}
    cb.on_epoch_end(0, logs)
    assert logs["discarded_count"] == 2.0
    assert logs["discarded_count_ema"] == pytest.approx(2.0, abs=1e-6)
    assert logs["discarded_ratio"] == 0.5
    assert [logs[f"discarded/{n}"] for n in names] == [0.0, 1.0, 1.0, 0.0]
    assert cb.block_names == names and cb.num_blocks == 4
    assert cb.history[-1]["blocks"] == (0, 1, 1, 0) and cb.history[-1]["epoch"] == 0
    assert cb.discarded_blocks() == names[1:3]
    assert cb.discarded_blocks(ema=True) == [names[2]]
    assert cb.reference_ratio() == pytest.approx(2.0 / 6.0)
    assert cb.reference_ratio(ema=False) == pytest.approx(2.0 / 6.0)


def test_no_per_block_keys_by_default_and_history_resets():
    model = gated_model([0.0] * 2, with_attributes=True)
    cb = DiscardedLayerCounter()
    cb.set_model(model)
    cb.on_train_begin()
    logs = {}
    cb.on_epoch_end(0, logs)
    assert sorted(logs) == ["discarded_count", "discarded_count_ema", "discarded_ratio"]
    assert logs["discarded_count"] == 0.0 and len(cb.history) == 1
    cb.on_train_begin()
    assert cb.history == [] and cb.discarded_blocks() == []


def test_warns_without_gates():
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    cb = DiscardedLayerCounter()
    cb.set_model(model)
    with pytest.warns(UserWarning, match="no gate layers"):
        cb.on_train_begin()
    logs = {"loss": 1.0}
    cb.on_epoch_end(0, logs)
    assert logs == {"loss": 1.0}


def test_validation():
    with pytest.raises(ValueError, match="verbose"):
        DiscardedLayerCounter(verbose=-1)
    with pytest.raises(ValueError, match="log_blocks"):
        DiscardedLayerCounter(log_blocks="yes")
    cb = DiscardedLayerCounter(verbose=1, log_blocks=True)
    assert DiscardedLayerCounter(**cb.get_config()).get_config() == cb.get_config()


def _ema_of_ones(steps, decay=0.95):
    ema = 0.0
    for t in range(steps):
        d = min(decay, (1.0 + t) / (10.0 + t))
        ema = d * ema + (1.0 - d) * 1.0
    return ema


def test_fit_reads_synced_gates(tmp_path):
    """Through `fit` (JAX syncs the gate variables at the epoch end) into History and CSV."""
    model = gated_model([0.0, 1e6, 0.0, 1e6, 1e6], with_attributes=True)
    model.compile(keras.optimizers.SGD(0.0), loss="mse")
    x = np.ones((12, 4), "float32")
    y = np.zeros((12, 2), "float32")
    cb = DiscardedLayerCounter(log_blocks=True)
    csv_path = tmp_path / "log.csv"
    hist = model.fit(
        x,
        y,
        batch_size=4,
        epochs=2,
        verbose=0,
        callbacks=[cb, keras.callbacks.CSVLogger(str(csv_path))],
    )
    assert hist.history["discarded_count"] == [3.0, 3.0]
    np.testing.assert_allclose(
        hist.history["discarded_count_ema"], [3 * _ema_of_ones(3), 3 * _ema_of_ones(6)], rtol=1e-5
    )
    assert hist.history["discarded/res1"] == [1.0, 1.0]
    assert hist.history["discarded/res0"] == [0.0, 0.0]
    with open(csv_path) as f:
        rows = list(csv.DictReader(f))
    assert float(rows[1]["discarded_count"]) == 3.0 and "discarded/res4" in rows[0]
    assert cb.discarded_blocks() == ["res1", "res3", "res4"]


def _epsilon_resnet():
    try:
        models = importlib.import_module("keras_lrn.models")
    except ImportError:
        return None
    return getattr(models, "EpsilonResNet", None)


@pytest.mark.skipif(
    _epsilon_resnet() is None, reason="keras_lrn.models.EpsilonResNet not there yet"
)
def test_epsilon_resnet_integration(tmp_path):
    EpsilonResNet = _epsilon_resnet()
    model = EpsilonResNet(depth=8, input_shape=(16, 16, 3), epsilon=1e3)
    model.set_epsilon(1e3)
    ce = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    outputs = model.output
    loss = {k: ce for k in outputs} if isinstance(outputs, dict) else ce
    model.compile(keras.optimizers.SGD(0.1, momentum=0.9), loss=loss)
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(16, 16, 16, 3)).astype("float32")
    y = rng.integers(0, 10, size=(16,))
    if isinstance(outputs, dict):
        y = {k: y for k in outputs}
    counter = DiscardedLayerCounter(log_blocks=True)
    csv_path = tmp_path / "log.csv"
    hist = model.fit(
        x,
        y,
        batch_size=8,
        epochs=1,
        verbose=0,
        callbacks=[
            counter,
            AdaptiveLRSetter(preset="cifar"),
            keras.callbacks.CSVLogger(str(csv_path)),
        ],
    )
    n = model.num_blocks
    assert n == 3 and counter.num_blocks == n
    assert hist.history["discarded_count"] == [float(n)]
    assert hist.history["discarded_ratio"] == [1.0]
    assert hist.history["lr"] == [pytest.approx(0.1)]
    assert model.discarded_count() == n
    assert counter.block_names == list(model.block_names)
    assert counter.discarded_blocks() == list(model.block_names)
    with open(csv_path) as f:
        header = next(csv.reader(f))
    for key in [
        "discarded_count",
        "discarded_count_ema",
        "discarded_ratio",
        "lr",
        *(f"discarded/{b}" for b in model.block_names),
    ]:
        assert key in header
