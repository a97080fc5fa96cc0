"""A run killed with SIGKILL and resumed ends like an uninterrupted run."""

import csv
import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import keras
import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[2]
ARGS = ["--model", "resnet20", "--depth", "8", "--data-source", "synthetic", "--train-subset",
        "128", "--batch-size", "32", "--epochs", "6", "--schedule", "0:0.1,2:0.01,4:0.001",
        "--pipeline", "numpy", "--seed", "3", "--verbose", "0"]


def _cmd(out, *extra):
    return [sys.executable, str(ROOT / "train" / "cifar10.py"), *ARGS, "--output-dir", str(out),
            *extra]


def _env():
    return dict(os.environ, KERAS_BACKEND=keras.backend.backend(), TF_CPP_MIN_LOG_LEVEL="3")


def _history(out):
    with open(out / "history.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_sigkill_then_resume_matches_uninterrupted(tmp_path):
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    subprocess.run(_cmd(straight), check=True, env=_env(), capture_output=True, timeout=600)

    proc = subprocess.Popen(_cmd(killed), env=_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    meta = killed / "backup" / "training_metadata.json"
    deadline = time.time() + 600
    while time.time() < deadline and proc.poll() is None:
        try:
            if json.loads(meta.read_text())["epoch"] >= 3:
                break
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (killed / "results.json").exists()

    resumed = subprocess.run(_cmd(killed, "--resume"), env=_env(), capture_output=True,
                             text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    a, b = _history(straight), _history(killed)
    assert [r["epoch"] for r in b] == [str(i) for i in range(6)]
    np.testing.assert_allclose([float(r["lr"]) for r in b], [float(r["lr"]) for r in a])
    np.testing.assert_allclose([float(r["lr"]) for r in b], [0.1, 0.1, 0.01, 0.01, 0.001, 0.001],
                               rtol=1e-6)
    np.testing.assert_allclose([float(r["loss"]) for r in b], [float(r["loss"]) for r in a],
                               rtol=1e-3)
    assert json.loads((killed / "results.json").read_text())["epochs"] == 6
