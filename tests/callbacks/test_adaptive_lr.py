"""AdaptiveLRSetter against an independent re-statement of the reference rule (spec §1.7)."""

import json
import math

import keras
import numpy as np
import pytest
from keras_lrn.callbacks import AdaptiveLRSetter
from keras_lrn.callbacks.adaptive_lr import PRESETS
from lrn_callback_fakes import Recorder, ScriptedMonitor, read_lr, regression_data, tiny_model

INITIAL_LR = 0.05  # the optimizer's own rate, in effect until a schedule entry sets one

CIFAR = (
    [(0, 0.1), (82, 0.01), (123, 0.001), (300, 2e-4)],
    [(0, 0.1), (41, 0.01), (61, 0.001), (150, 2e-4)],
)
SVHN = (
    [(1, 0.1), (20, 0.01), (28, 0.001), (50, 1e-4)],
    [(1, 0.1), (10, 0.01), (14, 0.001), (25, 1e-4)],
)


def reference_lrs(values, base, template, threshold=1.0, last_k=1, initial_lr=INITIAL_LR):
    """The rate of each 0-based epoch under tensorpack 0.2.0 + the authors' LearningRateSetter.

    Written from the spec text: the setter is asked once before training with
    epoch_num 0 and after each finished (1-based) epoch e with epoch_num e, the
    history then ending with epoch e's value; a returned value applies from the
    next epoch on. It follows the exact-epoch entries of its schedule unless the
    last last_k+1 values rose by >= threshold (and at least last_k epochs passed
    since the last change): then the template, shifted by e, replaces the
    schedule for good and its first value is returned.
    """
    state = {"schedule": list(base), "changed": 0}
    hist = []

    def ask(e):
        due = [v for ep, v in state["schedule"] if ep == e]
        plain = due[0] if due else None
        if len(hist) <= last_k or e - state["changed"] < last_k:
            return plain
        window = hist[len(hist) - last_k - 1 :]
        if not max(window) >= window[0] + threshold:
            return plain
        state["changed"] = e
        state["schedule"] = [(ep + e, v) for ep, v in template]
        return template[0][1]

    lr = initial_lr
    first = ask(0)
    lr = lr if first is None else first
    out = []
    for k, value in enumerate(values):
        out.append(lr)
        hist.append(value)
        v = ask(k + 1)
        lr = lr if v is None else v
    return out


def drive(cb, model, values, start=0, begin=True):
    """Feed `values[start:]` through the callback as Keras would; return the rates used."""
    lrs = []
    if begin:
        cb.set_model(model)
        cb.on_train_begin()
    for k in range(start, len(values)):
        cb.on_epoch_begin(k)
        lrs.append(read_lr(model))
        logs = {"loss": 1.0, "discarded_count_ema": values[k]}
        cb.on_epoch_end(k, logs)
        assert logs["lr"] == lrs[-1]
    return lrs


def step(n, at, low=3.25, rise=1.0):
    return [low + (rise if k >= at else 0.0) for k in range(n)]


def sequences(n):
    rng = np.random.default_rng(0)
    seqs = {
        "no_rise": [0.0] * n,
        "flat_high": [7.5] * n,
        "rise_exactly_1": step(n, 10),
        "rise_0.99": step(n, 10, rise=0.99),
        "creeping_0.99": [0.99 * k for k in range(n)],
        "decrease": [20.0 - 5.0 * (k >= 10) for k in range(n)],
        "two_triggers": [3.25 + (k >= 10) + (k >= 30) for k in range(n)],
        "after_base_drops": [3.25 + (k >= 100) + (k >= 200) + 2 * (k >= 260) for k in range(n)],
        "rise_every_epoch": [1.5 * k for k in range(n)],
        "up_then_down": [3.25 + (k >= 5) - (k >= 6) + (k >= 7) for k in range(n)],
    }
    for seed in range(3):  # EMA-like random walks with rises of all sizes
        inc = rng.choice([-0.5, 0.0, 0.0, 0.0, 0.3, 0.99, 1.0, 1.7], size=n)
        seqs[f"random_walk_{seed}"] = list(np.maximum(np.cumsum(inc), 0.0))
    return seqs


@pytest.mark.parametrize("preset,n", [("cifar", 420), ("svhn", 130)])
def test_matches_reference_rule(preset, n):
    base, template = CIFAR if preset == "cifar" else SVHN
    assert PRESETS[preset]["base_schedule"] == base
    assert PRESETS[preset]["adaptive_schedule"] == template
    model = tiny_model()
    for name, values in sequences(n).items():
        model.optimizer.learning_rate = INITIAL_LR
        cb = AdaptiveLRSetter(preset=preset)
        got = drive(cb, model, values)
        want = np.float32(reference_lrs(values, base, template))
        np.testing.assert_array_equal(np.float32(got), want, err_msg=f"{preset}/{name}")


def test_reference_facts():
    """Spot checks of §1.7's consequences on the CIFAR preset."""
    base, template = CIFAR
    # No rise: the base schedule, (82, .01) applies from 0-based epoch 82.
    lrs = reference_lrs([0.0] * 130, base, template)
    assert lrs[81] == 0.1 and lrs[82] == 0.01 and lrs[123] == 0.001
    # A rise of exactly 1.0 at the end of 1-based epoch N=11: 0.1 for epochs N+1..N+41.
    values = step(200, 10)
    got = drive(AdaptiveLRSetter(preset="cifar"), tiny_model(), values)
    assert got[11:52] == [np.float32(0.1)] * 41 and got[52] == np.float32(0.01)
    assert got[72] == np.float32(0.001)
    # 0.99 never triggers; the base schedule's drop at 82 happens.
    got = drive(AdaptiveLRSetter(preset="cifar"), tiny_model(), step(100, 10, rise=0.99))
    assert got[82] == np.float32(0.01)
    # SVHN: the trigger's 0.1 is returned at N although the template starts at N+1.
    got = drive(AdaptiveLRSetter(preset="svhn"), tiny_model(), step(40, 30))
    assert got[0] == np.float32(INITIAL_LR) and got[1] == np.float32(0.1)
    assert got[29] == np.float32(0.001) and got[31] == np.float32(0.1)


@pytest.mark.parametrize("threshold,last_k", [(1.0, 2), (2.0, 1), (0.5, 3)])
def test_matches_reference_rule_other_arguments(threshold, last_k):
    base, template = [(0, 0.2), (7, 0.02), (15, 0.002)], [(0, 0.3), (4, 0.03), (9, 0.003)]
    model = tiny_model()
    for name, values in sequences(40).items():
        model.optimizer.learning_rate = INITIAL_LR
        cb = AdaptiveLRSetter(
            base_schedule=base, adaptive_schedule=template, threshold=threshold, last_k=last_k
        )
        got = drive(cb, model, values)
        want = reference_lrs(values, base, template, threshold=threshold, last_k=last_k)
        np.testing.assert_array_equal(np.float32(got), np.float32(want), err_msg=name)


@pytest.mark.parametrize("preset,n", [("cifar", 320), ("svhn", 90)])
def test_resume_from_state_equals_uninterrupted(preset, n):
    values = [3.25 + (k >= 20) + (k >= 45) + (k >= 130) for k in range(n)]
    full_cb = AdaptiveLRSetter(preset=preset)
    full = drive(full_cb, tiny_model(), values)
    model = tiny_model()
    for k in (1, 19, 20, 21, 46, 83, 150):
        first = AdaptiveLRSetter(preset=preset)
        model.optimizer.learning_rate = INITIAL_LR
        head = drive(first, model, values[:k])
        state = json.loads(json.dumps(first.get_state()))  # JSON-able
        again = AdaptiveLRSetter(preset=preset)
        again.set_state(state)
        model.optimizer.learning_rate = 0.5  # the state brings the rate back
        tail = drive(again, model, values, start=k)
        assert head + tail == full, f"resumed at {k}"
        assert again.history == full_cb.history and again.schedule == full_cb.schedule
        # set_state after on_train_begin (BackupAndRestore listed after the setter).
        late = AdaptiveLRSetter(preset=preset)
        model.optimizer.learning_rate = 0.5
        late.set_model(model)
        late.on_train_begin()
        late.set_state(state)
        assert drive(late, model, values, start=k, begin=False) == tail


def test_state_is_json_and_complete():
    cb = AdaptiveLRSetter(preset="cifar")
    drive(cb, tiny_model(), step(15, 5))
    state = cb.get_state()
    assert json.loads(json.dumps(state)) == state
    assert state["last_changed_epoch"] == 6 and state["epoch"] == 15
    assert state["schedule"][0] == [6, 0.1] and len(state["history"]) == 15
    with pytest.raises(ValueError, match="lacks"):
        cb.set_state({"schedule": []})


def test_fit_applies_rates_on_both_backends():
    """In a real fit the rate set at an epoch end is the one the next epoch trains with."""
    values = [0.0, 0.0, 0.0, 2.0, 2.0, 2.0]
    base, template = [(0, 0.01), (2, 0.0)], [(0, 0.02), (2, 0.0)]
    model = tiny_model(lr=0.3)
    x, y = regression_data()
    rec = Recorder()
    cb = AdaptiveLRSetter(base_schedule=base, adaptive_schedule=template)
    hist = model.fit(
        x,
        y,
        epochs=6,
        batch_size=8,
        shuffle=False,
        verbose=0,
        callbacks=[ScriptedMonitor(values), cb, rec],
    )
    want = reference_lrs(values, base, template, initial_lr=0.3)
    np.testing.assert_allclose(hist.history["lr"], want, rtol=1e-6)
    assert [rec.lr[k] for k in range(6)] == list(np.float32(want))
    assert want == [0.01, 0.01, 0.0, 0.0, 0.02, 0.02]  # trigger after epoch 4 (1-based)
    w = rec.weights
    # lr 0 in epochs 2 and 3: no update; lr > 0 in epochs 4 and 5: updates.
    np.testing.assert_array_equal(w[1][0], w[2][0])
    np.testing.assert_array_equal(w[2][0], w[3][0])
    assert not np.array_equal(w[3][0], w[4][0]) and not np.array_equal(w[4][0], w[5][0])


def test_missing_monitor_warns_and_follows_schedule():
    model = tiny_model()
    cb = AdaptiveLRSetter(base_schedule=[(0, 0.1), (2, 0.01)], adaptive_schedule=[(0, 0.5)])
    cb.set_model(model)
    cb.on_train_begin()
    for k in range(3):
        cb.on_epoch_begin(k)
        with pytest.warns(UserWarning, match="discarded_count_ema"):
            cb.on_epoch_end(k, {"loss": 1.0})
    assert cb.history == [] and read_lr(model) == np.float32(0.01)


def test_validation():
    with pytest.raises(ValueError, match=r"preset.*'cifar', 'svhn'.*preset='imagenet'"):
        AdaptiveLRSetter(preset="imagenet")
    with pytest.raises(ValueError, match="adaptive_schedule"):
        AdaptiveLRSetter()
    for bad in (0, -1.0, math.nan, math.inf, "1", True):
        with pytest.raises(ValueError, match="threshold"):
            AdaptiveLRSetter(preset="cifar", threshold=bad)
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="last_k"):
            AdaptiveLRSetter(preset="cifar", last_k=bad)
    for bad in ([(0.5, 0.1)], [(0, -0.1)], [(-1, 0.1)], [(0,)], "x", [(0, math.nan)]):
        with pytest.raises(ValueError, match="adaptive_schedule"):
            AdaptiveLRSetter(adaptive_schedule=bad)
    with pytest.raises(ValueError, match="monitor"):
        AdaptiveLRSetter(preset="cifar", monitor="")
    # Explicit schedules override the preset's, and the schedule is sorted.
    cb = AdaptiveLRSetter(preset="svhn", base_schedule=[(5, 0.2), (0, 0.3)])
    assert cb.schedule == [(0, 0.3), (5, 0.2)]
    assert cb.adaptive_schedule == [list(ev) for ev in SVHN[1]]
    assert AdaptiveLRSetter(**cb.get_config()).get_config() == cb.get_config()


def test_rejects_learning_rate_schedules():
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    sched = keras.optimizers.schedules.ExponentialDecay(0.1, 10, 0.9)
    model.compile(keras.optimizers.SGD(sched), loss="mse")
    cb = AdaptiveLRSetter(preset="cifar")
    cb.set_model(model)
    with pytest.raises(ValueError, match="LearningRateSchedule"):
        cb.on_train_begin()
