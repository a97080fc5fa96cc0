"""`AdaptiveLRSetter`: epsilon-ResNet's adaptive learning-rate rule (`LearningRateSetter`)."""

from __future__ import annotations

import math
import numbers
import warnings

import keras
from keras_lrn.callbacks._utils import check_schedule, exact_value, print_msg, to_float

#: The reference's schedules (`cifarEpsilonResnet.py`, `svhnEpsilonResnet.py`):
#: `(epoch, learning rate)` pairs in tensorpack's epoch indexing.
PRESETS = {
    "cifar": {
        "base_schedule": [(0, 0.1), (82, 0.01), (123, 0.001), (300, 0.0002)],
        "adaptive_schedule": [(0, 0.1), (41, 0.01), (61, 0.001), (150, 0.0002)],
    },
    "svhn": {
        "base_schedule": [(1, 0.1), (20, 0.01), (28, 0.001), (50, 0.0001)],
        "adaptive_schedule": [(1, 0.1), (10, 0.01), (14, 0.001), (25, 0.0001)],
    },
}


@keras.saving.register_keras_serializable(package="keras_lrn")
class AdaptiveLRSetter(keras.callbacks.Callback):
    """Reset the learning rate whenever epsilon-ResNet discards more blocks.

    A port of the authors' tensorpack `LearningRateSetter`, decision for
    decision. It follows a base step schedule until the monitored value (by
    default the EMA of the number of discarded blocks, `discarded_count_ema`,
    written by `DiscardedLayerCounter`) has risen by at least `threshold` over
    the last `last_k` epochs; it then sets the first value of the adaptive
    template (0.1) at once and from then on follows the template shifted to
    that epoch. Every later rise restarts the template; the base schedule is
    never used again after the first rise, and a decrease never triggers.

    Epoch indexing is tensorpack's: an entry `(e, v)` sets the rate from the
    0-based Keras epoch `e` on (after `e` completed epochs); `(0, v)` is the
    rate of the first epoch. The rule runs once before the first epoch of a
    `fit` (tensorpack's `before_train`, with the number of completed epochs,
    0 for a fresh run) and after every epoch, on the value logged for that
    epoch. Only entries whose epoch equals the current one are applied; in
    between the rate is left alone (so with the SVHN preset the first epoch
    runs at the optimizer's initial rate, as in the reference).

    The optimizer's `learning_rate` must be a variable (a float at
    construction), not a `LearningRateSchedule`. The rate used during each
    epoch is written into `logs["lr"]`.

    Place this callback **after** `DiscardedLayerCounter` (which writes
    `logs["discarded_count_ema"]`) and **before** `BackupAndRestore` in the
    `callbacks` list. The state (current schedule, `last_changed_epoch`,
    history) survives a resume through `get_state()`/`set_state()`, which
    `keras_lrn.callbacks.BackupAndRestore(stateful_callbacks=[...])` calls.

    Args:
        preset: str or None. `"cifar"` or `"svhn"`: the reference's schedules
            (CIFAR: base `[(0, .1), (82, .01), (123, .001), (300, 2e-4)]`,
            template `[(0, .1), (41, .01), (61, .001), (150, 2e-4)]`; SVHN:
            base `[(1, .1), (20, .01), (28, .001), (50, 1e-4)]`, template
            `[(1, .1), (10, .01), (14, .001), (25, 1e-4)]`). Explicit
            `base_schedule`/`adaptive_schedule` override the preset's.
            Defaults to None.
        base_schedule: list of `(epoch, lr)` pairs followed until the first
            trigger. Defaults to the preset's, or `[]` (no changes).
        adaptive_schedule: list of `(epoch, lr)` pairs, shifted by the trigger
            epoch; its first value is set at the trigger. Required when
            `preset=None`.
        monitor: str. The `logs` key to monitor. Defaults to
            `"discarded_count_ema"`.
        threshold: float > 0. The rise that triggers. Defaults to 1.0.
        last_k: int >= 1. Compare with the value `last_k` epochs back; also the
            number of epochs after a trigger during which no new trigger is
            considered. Defaults to 1.
        verbose: int. 0: quiet, 1: print each change. Defaults to 0.

    Attributes:
        schedule: the schedule followed now (the base one, or the template
            shifted to the last trigger epoch).
        last_changed_epoch: the epoch (number of completed epochs) of the last
            trigger, 0 if none.
        history: the monitored value of every completed epoch.

    Example:
    ```python
    model.compile(keras.optimizers.SGD(0.1, momentum=0.9), ...)
    callbacks = [
        keras_lrn.callbacks.DiscardedLayerCounter(),
        keras_lrn.callbacks.AdaptiveLRSetter(preset="cifar"),
        keras.callbacks.CSVLogger("log.csv"),
    ]
    model.fit(ds, epochs=1000, callbacks=callbacks)
    ```

    Reference:
    - Yu, Yu and Ramalingam, "Learning Strict Identity Mappings in Deep
      Residual Networks", CVPR 2018 (arXiv:1804.01661); `LearningRateSetter.py`
      of the authors' code, on tensorpack 0.2.0's `HyperParamSetter`.
    """

    def __init__(
        self,
        preset=None,
        base_schedule=None,
        adaptive_schedule=None,
        monitor="discarded_count_ema",
        threshold=1.0,
        last_k=1,
        verbose=0,
    ):
        super().__init__()
        if preset is not None and preset not in PRESETS:
            raise ValueError(
                f"`preset` must be one of None, {', '.join(repr(p) for p in PRESETS)}. "
                f"Received: preset={preset!r}"
            )
        if preset is not None:
            if base_schedule is None:
                base_schedule = PRESETS[preset]["base_schedule"]
            if adaptive_schedule is None:
                adaptive_schedule = PRESETS[preset]["adaptive_schedule"]
        if adaptive_schedule is None:
            raise ValueError(
                "`adaptive_schedule` is required when `preset` is None. "
                "Received: preset=None, adaptive_schedule=None"
            )
        if base_schedule is None:
            base_schedule = []
        self._base = check_schedule(base_schedule, "base_schedule", allow_empty=True)
        self._adaptive = check_schedule(adaptive_schedule, "adaptive_schedule")
        if not isinstance(monitor, str) or not monitor:
            raise ValueError(f"`monitor` must be a non-empty str. Received: monitor={monitor!r}")
        if (
            isinstance(threshold, bool)
            or not isinstance(threshold, numbers.Real)
            or not math.isfinite(threshold)
            or threshold <= 0
        ):
            raise ValueError(
                f"`threshold` must be a finite number > 0. Received: threshold={threshold!r}"
            )
        if isinstance(last_k, bool) or not isinstance(last_k, numbers.Integral) or last_k < 1:
            raise ValueError(f"`last_k` must be an int >= 1. Received: last_k={last_k!r}")
        if isinstance(verbose, bool) or not isinstance(verbose, int) or verbose < 0:
            raise ValueError(f"`verbose` must be an int >= 0. Received: verbose={verbose!r}")
        self.preset = preset
        self.base_schedule = [list(ev) for ev in self._base]
        self.adaptive_schedule = [list(ev) for ev in self._adaptive]
        self.monitor = monitor
        self.threshold = float(threshold)
        self.last_k = int(last_k)
        self.verbose = verbose
        self._restored = False
        self._reset()

    # ------------------------------------------------------------------ state
    def _reset(self):
        self.schedule = list(self._base)
        self.last_changed_epoch = 0
        self.history = []
        self._epochs_done = 0  # completed epochs seen (the tensorpack `epoch_num`)
        self._lr = None  # the last rate this callback set, None if none yet
        self._started = False  # whether the "before train" call of this fit ran

    def get_state(self):
        """The callback's state as a JSON-serialisable dict (for resuming)."""
        return {
            "schedule": [[e, v] for e, v in self.schedule],
            "last_changed_epoch": self.last_changed_epoch,
            "history": [float(h) for h in self.history],
            "epoch": self._epochs_done,
            "learning_rate": self._lr,
        }

    def set_state(self, state):
        """Restore a state from `get_state()`; the next `fit` continues from it.

        Also sets the optimizer's learning rate to the one the restored run had
        set. Called before `fit` (or by `BackupAndRestore` in `on_train_begin`),
        it prevents the reset that `on_train_begin` would otherwise do.
        """
        missing = {"schedule", "last_changed_epoch", "history", "epoch", "learning_rate"} - set(
            state
        )
        if missing:
            raise ValueError(f"`state` lacks the keys {sorted(missing)}. Received: state={state!r}")
        self.schedule = check_schedule(state["schedule"], "state['schedule']", allow_empty=True)
        self.last_changed_epoch = int(state["last_changed_epoch"])
        self.history = [float(h) for h in state["history"]]
        self._epochs_done = int(state["epoch"])
        lr = state["learning_rate"]
        self._lr = None if lr is None else float(lr)
        # Consumed by `on_train_begin` (no reset) or, when this is called after
        # it (callback order), by the first `on_epoch_begin` (no "before train").
        self._restored = True
        if getattr(self, "_model", None) is not None and self._lr is not None:
            self._apply(self._lr)

    # ------------------------------------------------------------------ rule
    def _value_to_set(self, epoch_num):
        """The reference's `_get_value_to_set` at tensorpack epoch `epoch_num`."""
        if len(self.history) < self.last_k + 1 or epoch_num - self.last_changed_epoch < self.last_k:
            return exact_value(self.schedule, epoch_num)
        hist = self.history[-self.last_k - 1 :]
        if max(hist) < hist[0] + self.threshold:  # did not rise enough
            return exact_value(self.schedule, epoch_num)
        self.last_changed_epoch = epoch_num
        self.schedule = [(e + epoch_num, v) for e, v in self._adaptive]
        return self.schedule[0][1]

    def _optimizer(self):
        optimizer = getattr(self.model, "optimizer", None)
        if optimizer is None:
            raise ValueError("AdaptiveLRSetter needs a compiled model with an optimizer.")
        return optimizer

    def _apply(self, value, epoch_num=None):
        if value is None:
            return
        optimizer = self._optimizer()
        old = self._lr
        optimizer.learning_rate = value
        self._lr = float(value)
        if self.verbose > 0 and epoch_num is not None and value != old:
            print_msg(
                f"\nAdaptiveLRSetter: learning rate will be {value:.8g} from epoch {epoch_num + 1}."
            )

    # ------------------------------------------------------------------ hooks
    def on_train_begin(self, logs=None):
        optimizer = self._optimizer()
        if not isinstance(getattr(optimizer, "learning_rate", None), keras.Variable):
            raise ValueError(
                "AdaptiveLRSetter sets `optimizer.learning_rate`, which must be a variable "
                "(create the optimizer with a float learning rate, not a "
                f"LearningRateSchedule). Received: learning_rate={optimizer.learning_rate!r}"
            )
        if self._restored:
            self._restored = False
            self._started = True
            self._apply(self._lr)
        else:
            self._reset()

    def on_epoch_begin(self, epoch, logs=None):
        if self._restored:  # restored after `on_train_begin`
            self._restored = False
            self._started = True
        elif not self._started:
            # tensorpack's `before_train` call, with the number of completed
            # epochs (0 unless `fit` starts at `initial_epoch > 0`).
            self._started = True
            self._apply(self._value_to_set(epoch), epoch)

    def on_epoch_end(self, epoch, logs=None):
        logs = logs if logs is not None else {}
        logs["lr"] = to_float(self._optimizer().learning_rate)
        current = logs.get(self.monitor)
        if current is None:
            warnings.warn(
                f"AdaptiveLRSetter is conditioned on `{self.monitor}`, which is not in the "
                f"logs; put DiscardedLayerCounter before it in the callbacks list. Available "
                f"keys: {', '.join(logs.keys())}.",
                stacklevel=2,
            )
        else:
            self.history.append(float(current))
        epoch_num = epoch + 1
        self._epochs_done = epoch_num
        self._apply(self._value_to_set(epoch_num), epoch_num)

    def get_config(self):
        return {
            "preset": self.preset,
            "base_schedule": self.base_schedule,
            "adaptive_schedule": self.adaptive_schedule,
            "monitor": self.monitor,
            "threshold": self.threshold,
            "last_k": self.last_k,
            "verbose": self.verbose,
        }
