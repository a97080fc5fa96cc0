"""Build the wheel, install it into a clean venv and import every subpackage from outside."""

import os
import pathlib
import subprocess
import sys
import sysconfig
import zipfile

import keras
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
SUBPACKAGES = ["keras_lrn", "keras_lrn.layers", "keras_lrn.models", "keras_lrn.data",
               "keras_lrn.training", "keras_lrn.testing", "keras_lrn.callbacks"]

pytestmark = [
    pytest.mark.packaging,
    pytest.mark.skipif(keras.backend.backend() != "tensorflow",
                       reason="backend-independent; run once (TensorFlow job)"),
]


def test_wheel_installs_and_imports_from_outside(tmp_path):
    dist = tmp_path / "dist"
    subprocess.run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir",
                    str(dist), str(ROOT)], check=True, capture_output=True)
    (wheel,) = dist.glob("keras_lrn-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names}
    assert "callbacks" not in tops, "a top-level `callbacks` package must not be installed"
    for pkg in SUBPACKAGES:
        assert f"{pkg.replace('.', '/')}/__init__.py" in names, pkg
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    py = venv / "bin" / "python"
    site = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True).stdout.strip()
    # Dependencies come from the test environment; keras_lrn itself only from the wheel.
    (pathlib.Path(site) / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--quiet", "--target",
                    site, str(wheel)], check=True)
    code = ("import importlib, keras_lrn; "
            f"[importlib.import_module(m) for m in {SUBPACKAGES!r}]; "
            "print(keras_lrn.__file__)")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    out = subprocess.run([str(py), "-c", code], cwd=tmp_path, env=env, check=True,
                         capture_output=True, text=True).stdout
    assert str(venv) in out, out
