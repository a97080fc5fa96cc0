import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
if os.environ["KERAS_BACKEND"] == "jax":
    # Tests build many small models: XLA:CPU's compile time (each new weight shape's
    # initializer is compiled) dominates their run time, not execution. Unoptimised
    # code compiles about 3x faster here and computes the same values.
    os.environ.setdefault("XLA_FLAGS", "--xla_backend_optimization_level=0")

import keras  # noqa: E402
import pytest  # noqa: E402


def pytest_report_header(config):
    return f"keras {keras.__version__}, backend: {keras.backend.backend()}"


@pytest.fixture(autouse=True)
def _clear_session():
    keras.backend.clear_session()
    keras.config.set_dtype_policy("float32")
    yield


@pytest.fixture
def backend():
    return keras.backend.backend()
