"""Fakes for the callback tests: stub gate layers, tiny models, scripted callbacks."""

import keras
import numpy as np
from keras import ops


class StubGate(keras.layers.Layer):
    """Follows the `EpsilonGate` contract: `epsilon`, `gate`, `discarded_ema`, `num_updates`."""

    def __init__(self, epsilon=0.0, **kwargs):
        super().__init__(**kwargs)
        self._eps0 = float(epsilon)

    def build(self, input_shape):
        def scalar(name, value):
            return self.add_weight(
                shape=(),
                initializer=keras.initializers.Constant(value),
                dtype="float32",
                trainable=False,
                autocast=False,
                name=name,
            )

        self.epsilon = scalar("epsilon", self._eps0)
        self.gate = scalar("gate", 1.0)
        self.discarded_ema = scalar("discarded_ema", 0.0)
        self.num_updates = scalar("num_updates", 0.0)

    def call(self, x, training=None):
        s = ops.cast(ops.max(ops.abs(x)) > self.epsilon, "float32")
        if training:
            t = self.num_updates.value
            decay = ops.minimum(0.95, (1.0 + t) / (10.0 + t))
            self.gate.assign(s)
            self.discarded_ema.assign(decay * self.discarded_ema.value + (1.0 - decay) * (1.0 - s))
            self.num_updates.assign(t + 1.0)
        return x * s

    def set_epsilon(self, value):
        self.epsilon.assign(value)


def gated_model(epsilons, with_attributes=False):
    """`len(epsilons)` residual "blocks" x + gate(Dense(x)), each gate with its own epsilon."""
    inp = keras.Input((4,))
    h = keras.layers.Dense(4, kernel_initializer="ones", name="stem")(inp)
    gates = []
    for i, eps in enumerate(epsilons):
        f = keras.layers.Dense(4, kernel_initializer="ones", name=f"branch{i}")(h)
        g = StubGate(eps, name=f"gate{i}")
        gates.append(g)
        h = keras.layers.Add(name=f"add{i}")([h, g(f)])
    out = keras.layers.Dense(2, name="head")(h)
    model = keras.Model(inp, out)
    if with_attributes:
        model.gate_layers = gates
        model.block_names = [f"res{i}" for i in range(len(epsilons))]
    return model


def tiny_model(lr=0.05, **compile_kwargs):
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1, kernel_initializer="ones")])
    model.compile(keras.optimizers.SGD(lr), loss="mse", **compile_kwargs)
    return model


def read_lr(model):
    return np.float32(ops.convert_to_numpy(model.optimizer.learning_rate))


class ScriptedMonitor(keras.callbacks.Callback):
    """Writes `values[epoch]` into `logs[key]` (stands in for DiscardedLayerCounter)."""

    def __init__(self, values, key="discarded_count_ema"):
        super().__init__()
        self.values, self.key = list(values), key

    def on_epoch_end(self, epoch, logs=None):
        logs[self.key] = float(self.values[epoch])


class Recorder(keras.callbacks.Callback):
    """Records the learning rate (at epoch begin) and the model's weights (at epoch end)."""

    def __init__(self):
        super().__init__()
        self.lr, self.weights = {}, {}

    def on_epoch_begin(self, epoch, logs=None):
        self.lr[epoch] = read_lr(self.model)

    def on_epoch_end(self, epoch, logs=None):
        self.weights[epoch] = [np.array(w) for w in self.model.get_weights()]


class Interrupt(keras.callbacks.Callback):
    def __init__(self, at_epoch):
        super().__init__()
        self.at_epoch = at_epoch

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.at_epoch:
            raise RuntimeError("Interrupted")


def regression_data(n=16, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 2)).astype("float32")
    return x, (x @ np.array([[0.5], [-1.0]], "float32")).astype("float32")
