"""JAX training with TensorFlow absent (the GPU machine has JAX but no TensorFlow).

Runs where TensorFlow is not installed (CI's TF-free venv). Elsewhere it is
skipped unless KERAS_LRN_BLOCK_TF=1, which runs it with TensorFlow blocked in a
subprocess, so the same check can be made in any environment.
"""

import os
import pathlib
import subprocess
import sys

import keras
import pytest

from keras_lrn.utils import tensorflow_available

ROOT = pathlib.Path(__file__).resolve().parents[1]

pytestmark = [
    pytest.mark.skipif(keras.backend.backend() != "jax", reason="JAX-only check"),
    pytest.mark.skipif(tensorflow_available() and os.environ.get("KERAS_LRN_BLOCK_TF") != "1",
                       reason="TensorFlow is installed: run in a TF-free venv or set "
                       "KERAS_LRN_BLOCK_TF=1"),
]

BLOCK = ("import sys\n"
         "for m in ('tensorflow', 'tensorflow_datasets'):\n"
         "    sys.modules[m] = None  # import raises ImportError, as if not installed\n")


def _run(code, *args, home, timeout=600):
    proc = subprocess.run([sys.executable, "-c", BLOCK + code, *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout,
                          env={"KERAS_BACKEND": "jax", "PATH": "/usr/bin:/bin", "HOME": str(home)})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


def test_fit_save_and_reload_without_tensorflow(tmp_path):
    code = f"""
import numpy as np, keras, keras_lrn
from keras_lrn import data
model = keras_lrn.models.CifarResNet(depth=8, input_shape=(16, 16, 3))
model.compile(optimizer="sgd", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
x, y = data.synthetic("cifar10", num_examples=32, seed=0)
x = x[:, :16, :16]
ds = data.make_dataset(x, y, batch_size=16, training=True, augment="cifar",
                       normalizer=data.Normalizer("scale"), pipeline="auto")
model.fit(ds, epochs=1, verbose=0)
path = r"{tmp_path / 'm.keras'}"
model.save(path)
again = keras.saving.load_model(path)
np.testing.assert_allclose(again.predict(x[:4] / 255.0, verbose=0),
                           model.predict(x[:4] / 255.0, verbose=0), atol=1e-6)
assert sys.modules.get("tensorflow") is None
print("OK")
"""
    assert "OK" in _run(code, home=tmp_path)


def test_training_cli_smoke_without_tensorflow(tmp_path):
    code = ("import runpy\n"
            "sys.argv = ['train/cifar10.py'] + sys.argv[1:]\n"
            "try:\n"
            "    runpy.run_path('train/cifar10.py', run_name='__main__')\n"
            "except SystemExit as e:\n"
            "    assert e.code == 0, e.code\n"
            "assert sys.modules.get('tensorflow') is None\n")
    out = _run(code, "--model", "resnet20", "--depth", "8", "--smoke",
               "--output-dir", str(tmp_path / "run"), home=tmp_path)
    assert "test accuracy" in out
    assert (tmp_path / "run" / "final.keras").exists()
