"""Fixtures of the data tests."""

import pytest


@pytest.fixture
def isolated_env(tmp_path, monkeypatch):
    """No default data anywhere: empty TFDS dir, keras home and cache; no network."""
    from keras_lrn.data import loading

    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("TFDS_DATA_DIR", str(empty))
    monkeypatch.setenv("KERAS_HOME", str(empty))
    monkeypatch.setenv("KERAS_LRN_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("KERAS_LRN_DATA_DIR", raising=False)
    monkeypatch.setattr(loading, "_network_available", lambda *a, **k: False)
    return tmp_path


@pytest.fixture(autouse=True)
def _clear_session():
    """Override tests/conftest.py's fixture for the data tests: no `clear_session()`.

    These tests build at most one tiny model each, and under the JAX backend (with
    TensorFlow imported by the tf.data tests) `clear_session()` costs about 0.5 s per
    test, which made up half of this folder's run time.
    """
    import keras

    keras.config.set_dtype_policy("float32")
    yield
