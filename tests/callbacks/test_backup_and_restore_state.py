"""BackupAndRestore: callback state across an interruption, atomic backup files."""

import hashlib
import json
import os

import keras
import numpy as np
import pytest
from keras_lrn.callbacks import AdaptiveLRSetter, BackupAndRestore
from lrn_callback_fakes import Interrupt, Recorder, ScriptedMonitor, regression_data, tiny_model

# Triggers after 1-based epoch 2 (0.0 -> 2.0) and after epoch 6 (2.0 -> 5.0).
VALUES = [0.0, 2.0, 2.0, 2.0, 2.0, 5.0, 5.0]
BASE = [(0, 0.1), (3, 0.05), (5, 0.01)]
TEMPLATE = [(0, 0.2), (2, 0.02)]
EPOCHS = len(VALUES)


def _setter():
    return AdaptiveLRSetter(base_schedule=BASE, adaptive_schedule=TEMPLATE)


def _fit(model, callbacks, **kwargs):
    x, y = regression_data()
    return model.fit(
        x, y, epochs=EPOCHS, batch_size=8, shuffle=False, verbose=0, callbacks=callbacks, **kwargs
    )


def _uninterrupted():
    model, rec, lr = tiny_model(lr=0.3), Recorder(), _setter()
    _fit(model, [ScriptedMonitor(VALUES), lr, rec])
    return model, rec, lr


def test_resume_continues_with_restored_state(tmp_path):
    ref_model, ref_rec, ref_lr = _uninterrupted()
    want = [ref_rec.lr[k] for k in range(EPOCHS)]
    assert want == list(np.float32([0.1, 0.1, 0.2, 0.2, 0.02, 0.02, 0.2]))

    backup_dir = str(tmp_path / "backup")
    model, rec, lr = tiny_model(lr=0.3), Recorder(), _setter()
    with pytest.raises(RuntimeError, match="Interrupted"):
        _fit(
            model,
            [
                ScriptedMonitor(VALUES),
                lr,
                rec,
                BackupAndRestore(backup_dir, stateful_callbacks=[lr]),
                Interrupt(3),
            ],
        )
    saved = json.loads(open(os.path.join(backup_dir, "callback_state.json")).read())
    assert (
        saved["epoch"] == 3 and saved["callbacks"]["AdaptiveLRSetter_0"]["last_changed_epoch"] == 2
    )

    # A new process: fresh model, fresh callbacks.
    keras.backend.clear_session()
    model2, rec2, lr2 = tiny_model(lr=0.3), Recorder(), _setter()
    hist = _fit(
        model2,
        [
            ScriptedMonitor(VALUES),
            lr2,
            rec2,
            BackupAndRestore(backup_dir, stateful_callbacks=[lr2]),
        ],
    )
    assert hist.epoch == [3, 4, 5, 6]
    got = [rec.lr[k] for k in range(3)] + [rec2.lr[k] for k in range(3, EPOCHS)]
    assert got == want
    assert lr2.history == ref_lr.history and lr2.schedule == ref_lr.schedule
    assert lr2.last_changed_epoch == ref_lr.last_changed_epoch == 6
    for a, b in zip(model2.get_weights(), ref_model.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-6)
    assert not os.path.exists(backup_dir)  # delete_checkpoint=True at the end

    # Without the callback state the resumed run would follow the lost base schedule.
    keras.backend.clear_session()
    model3, rec3, lr3 = tiny_model(lr=0.3), Recorder(), _setter()
    with pytest.raises(RuntimeError):
        _fit(
            model3,
            [
                ScriptedMonitor(VALUES),
                lr3,
                rec3,
                keras.callbacks.BackupAndRestore(backup_dir),
                Interrupt(3),
            ],
        )
    model4, rec4, lr4 = tiny_model(lr=0.3), Recorder(), _setter()
    _fit(model4, [ScriptedMonitor(VALUES), lr4, rec4, keras.callbacks.BackupAndRestore(backup_dir)])
    assert rec4.lr[3] == np.float32(0.05) != want[3]


def _sha(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def test_kill_during_save_keeps_previous_backup(tmp_path):
    backup_dir = str(tmp_path / "backup")
    model, lr = tiny_model(lr=0.3), _setter()
    backup = BackupAndRestore(backup_dir, stateful_callbacks=[lr], delete_checkpoint=False)
    x, y = regression_data()
    model.fit(
        x, y, epochs=2, batch_size=8, verbose=0, callbacks=[ScriptedMonitor(VALUES), lr, backup]
    )
    files = {
        n: _sha(os.path.join(backup_dir, n))
        for n in ("latest.weights.h5", "training_metadata.json", "callback_state.json")
    }

    def dying_save_weights(filepath, overwrite=True, **kwargs):
        with open(filepath, "wb") as f:  # a partial file, then the process "dies"
            f.write(b"\x89HDF\r\n partial")
        raise KeyboardInterrupt

    model.save_weights = dying_save_weights
    with pytest.raises(KeyboardInterrupt):
        backup._save_model()
    for name, digest in files.items():
        assert _sha(os.path.join(backup_dir, name)) == digest, name
    # Keras' own callback writes in place: the same crash destroys its only backup.
    stock = keras.callbacks.BackupAndRestore(backup_dir, delete_checkpoint=False)
    stock.set_model(model)
    with pytest.raises(KeyboardInterrupt):
        stock._save_model()
    assert _sha(os.path.join(backup_dir, "latest.weights.h5")) != files["latest.weights.h5"]
    del model.save_weights
    backup._save_model()  # a good save again

    keras.backend.clear_session()
    model2, lr2 = tiny_model(lr=0.3), _setter()
    hist = model2.fit(
        x,
        y,
        epochs=3,
        batch_size=8,
        verbose=0,
        callbacks=[
            ScriptedMonitor(VALUES),
            lr2,
            BackupAndRestore(backup_dir, stateful_callbacks=[lr2]),
        ],
    )
    assert hist.epoch == [2] and lr2.history == VALUES[:3]
    assert lr2.get_state()["epoch"] == 3


def test_double_checkpoint_falls_back_with_matching_state(tmp_path):
    backup_dir = str(tmp_path / "backup")
    x, y = regression_data()
    model, lr = tiny_model(lr=0.3), _setter()
    model.fit(
        x,
        y,
        epochs=3,
        batch_size=8,
        verbose=0,
        callbacks=[
            ScriptedMonitor(VALUES),
            lr,
            BackupAndRestore(
                backup_dir, stateful_callbacks=[lr], double_checkpoint=True, delete_checkpoint=False
            ),
        ],
    )
    for name in ("latest.weights.h5", "training_metadata.json", "callback_state.json"):
        assert os.path.exists(os.path.join(backup_dir, name + ".bkp"))
    with open(os.path.join(backup_dir, "latest.weights.h5"), "wb") as f:
        f.write(b"garbage")  # e.g. disk corruption
    keras.backend.clear_session()
    model2, lr2 = tiny_model(lr=0.3), _setter()
    hist = model2.fit(
        x,
        y,
        epochs=4,
        batch_size=8,
        verbose=0,
        callbacks=[
            ScriptedMonitor(VALUES),
            lr2,
            BackupAndRestore(backup_dir, stateful_callbacks=[lr2]),
        ],
    )
    assert hist.epoch == [2, 3]  # resumed from the previous backup (after epoch 2)
    assert lr2.history == VALUES[:4]


def test_warns_when_listed_before_a_stateful_callback(tmp_path):
    x, y = regression_data()
    model, lr = tiny_model(), _setter()
    with pytest.warns(UserWarning, match="put BackupAndRestore after it"):
        model.fit(
            x,
            y,
            epochs=1,
            batch_size=8,
            verbose=0,
            callbacks=[
                ScriptedMonitor(VALUES),
                BackupAndRestore(str(tmp_path / "b"), stateful_callbacks=[lr]),
                lr,
            ],
        )


def test_validation(tmp_path):
    with pytest.raises(ValueError, match="get_state"):
        BackupAndRestore(str(tmp_path), stateful_callbacks=[keras.callbacks.History()])
    with pytest.raises(ValueError, match="backup_dir"):
        BackupAndRestore("")
    cb = BackupAndRestore(str(tmp_path), double_checkpoint=True)
    assert BackupAndRestore(**cb.get_config()).get_config() == cb.get_config()
