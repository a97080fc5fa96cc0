"""`EpsilonScheduler`: a step schedule for epsilon-ResNet's threshold."""

from __future__ import annotations

import warnings

import keras
from keras_lrn.callbacks._utils import (
    check_schedule,
    exact_value,
    find_gate_layers,
    piecewise_value,
    print_msg,
    to_float,
)


@keras.saving.register_keras_serializable(package="keras_lrn")
class EpsilonScheduler(keras.callbacks.Callback):
    """Set the epsilon of an epsilon-ResNet's gates on a step schedule.

    The authors' 2020 "schedule epsilon" commit trains CIFAR models with
    `epsilon = 0` (nothing discarded) for 150 epochs and then with the
    configured value: `EpsilonScheduler([(0, 0.0), (150, 2.5)])`. The
    paper-era code used a constant epsilon from the first step.

    Epoch indexing is tensorpack's (`ScheduledHyperParamSetter`): an entry
    `(e, v)` sets epsilon from the 0-based Keras epoch `e` on, in
    `on_epoch_begin(e)`; `(0, v)` applies before the first epoch. At the
    first epoch of every `fit` the latest entry at or before that epoch is
    applied, so a run resumed at `initial_epoch > 0` gets the right value;
    after that only entries whose epoch equals the current one change
    epsilon. Before the first entry the model keeps its own epsilon. The
    callback has no other state (nothing to save for a resume).

    Epsilon is set with `model.set_epsilon(v)` when the model has it, else
    with each gate layer's `set_epsilon` (or by assigning its `epsilon`
    variable). The value in effect during each epoch is written into
    `logs["epsilon"]`.

    Args:
        schedule: list of `(epoch, epsilon)` pairs, epsilon `>= 0`.
        verbose: int. 0: quiet, 1: print each change. Defaults to 0.

    Example:
    ```python
    model = keras_lrn.models.EpsilonResNet(depth=110, epsilon=2.5)
    warm_up = keras_lrn.callbacks.EpsilonScheduler([(0, 0.0), (150, 2.5)])
    model.fit(ds, epochs=1000, callbacks=[warm_up, ...])
    ```

    Reference:
    - Yu, Yu and Ramalingam, "Learning Strict Identity Mappings in Deep
      Residual Networks", CVPR 2018 (arXiv:1804.01661); the authors' commit
      "schedule epsilon" (2020-09-27) of `cifarEpsilonResnet.py`.
    """

    def __init__(self, schedule, verbose=0):
        super().__init__()
        self._schedule = check_schedule(schedule, "schedule")
        if isinstance(verbose, bool) or not isinstance(verbose, int) or verbose < 0:
            raise ValueError(f"`verbose` must be an int >= 0. Received: verbose={verbose!r}")
        self.schedule = [list(ev) for ev in self._schedule]
        self.verbose = verbose
        self._started = False
        self._gates = []

    def _targets(self):
        model = self.model
        if callable(getattr(model, "set_epsilon", None)):
            return model, []
        return None, self._gates

    def on_train_begin(self, logs=None):
        self._started = False
        self._gates, _ = find_gate_layers(self.model)
        if not callable(getattr(self.model, "set_epsilon", None)) and not self._gates:
            warnings.warn(
                "EpsilonScheduler found no `set_epsilon` method and no gate layers in the "
                "model; it will do nothing.",
                stacklevel=2,
            )

    def _set_epsilon(self, value):
        model, gates = self._targets()
        if model is not None:
            model.set_epsilon(value)
            return
        for gate in gates:
            if callable(getattr(gate, "set_epsilon", None)):
                gate.set_epsilon(value)
            else:
                gate.epsilon.assign(value)

    def get_epsilon(self):
        """The model's current epsilon (a host read), or None if it has none."""
        model = self.model
        if callable(getattr(model, "get_epsilon", None)):
            return to_float(model.get_epsilon())
        if self._gates:
            return to_float(self._gates[0].epsilon)
        return None

    def on_epoch_begin(self, epoch, logs=None):
        if not self._started:
            self._started = True
            value = piecewise_value(self._schedule, epoch)
        else:
            value = exact_value(self._schedule, epoch)
        if value is None:
            return
        self._set_epsilon(value)
        if self.verbose > 0:
            print_msg(f"\nEpoch {epoch + 1}: EpsilonScheduler setting epsilon to {value:g}.")

    def on_epoch_end(self, epoch, logs=None):
        value = self.get_epsilon()
        if value is not None and logs is not None:
            logs["epsilon"] = value

    def get_config(self):
        return {"schedule": self.schedule, "verbose": self.verbose}
