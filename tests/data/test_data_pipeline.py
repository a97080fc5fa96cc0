import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
from _data_helpers import HAS_TF, REPO

from keras_lrn import data
from keras_lrn.data import pipeline as pipeline_module

PIPES = ["numpy"] + (["tf"] if HAS_TF else [])


@pytest.fixture(scope="module")
def arrays():
    return data.synthetic("cifar10", 100, seed=0)


def _batches(ds):
    """All batches of one pass, as numpy."""
    if isinstance(ds, keras.utils.PyDataset):
        out = [ds[i] for i in range(len(ds))]
        ds.on_epoch_end()
        return out
    return [keras.tree.map_structure(np.asarray, b) for b in ds]


def _cat(batches, i):
    return np.concatenate([b[i] for b in batches])


@pytest.mark.parametrize("pipe", PIPES)
def test_eval_pipeline_is_plain(pipe, arrays):
    x, y = arrays
    norm = data.Normalizer("channel").fit(x)
    ds = data.make_dataset(x, y, batch_size=32, training=False, normalizer=norm, pipeline=pipe)
    batches = _batches(ds)
    assert [len(b[0]) for b in batches] == [32, 32, 32, 4]
    assert batches[0][0].dtype == np.float32 and batches[0][1].dtype == np.int64
    np.testing.assert_allclose(_cat(batches, 0), norm(x), rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(_cat(batches, 1), y)


@pytest.mark.parametrize("pipe", PIPES)
def test_training_pipeline_epochs(pipe, arrays):
    x, y = arrays
    kwargs = dict(batch_size=32, augment="cifar", normalizer="none", seed=7, pipeline=pipe)
    ds = data.make_dataset(x, y, **kwargs)
    first, second = _batches(ds), _batches(ds)
    for batches in (first, second):
        assert sorted(_cat(batches, 1)) == sorted(y)  # each epoch is one full pass
    # A new shuffle each epoch.
    assert not np.array_equal(_cat(first, 1), _cat(second, 1))
    # Reproducible from the seed, and epoch by epoch (a resumed run).
    again = data.make_dataset(x, y, **kwargs)
    np.testing.assert_array_equal(_cat(_batches(again), 0), _cat(first, 0))
    resumed = data.make_dataset(x, y, initial_epoch=1, **kwargs)
    np.testing.assert_array_equal(_cat(_batches(resumed), 0), _cat(second, 0))
    data.set_epoch(again, 0)
    np.testing.assert_array_equal(_cat(_batches(again), 1), _cat(first, 1))
    # Augmented: every output is a pad-4 window of its source image.
    xb, yb = first[0]
    assert (xb == 0).any() and not np.array_equal(np.sort(xb.ravel()), np.sort(x[:32].ravel()))


@pytest.mark.parametrize("pipe", PIPES)
def test_cutout_after_normalisation(pipe, arrays):
    x, y = arrays
    norm = data.Normalizer("channel", mean=[0.50001] * 3, std=[0.25] * 3)
    ds = data.make_dataset(
        x, y, batch_size=50, augment="none", normalizer=norm, post_augment="cutout16", pipeline=pipe
    )
    from test_data_augment import _check_cutout

    z = _cat(_batches(ds), 0)
    _check_cutout(z, 16)
    # Outside the square the values are the normalised pixels (no shuffle without
    # augment? training shuffles: compare per image through the labels' order).
    zero = (z == 0).all(-1)
    ref = norm(x)
    assert np.isin(z[~zero], ref).all()


@pytest.mark.parametrize("pipe", PIPES)
def test_targets_dict_and_no_labels(pipe, arrays):
    x, y = arrays
    ds = data.make_dataset(
        x, y, batch_size=40, targets=("logits", "side_logits"), normalizer="scale", pipeline=pipe
    )
    xb, yb = _batches(ds)[0]
    assert set(yb) == {"logits", "side_logits"}
    np.testing.assert_array_equal(yb["logits"], yb["side_logits"])
    ds = data.make_dataset(x, batch_size=40, training=False, pipeline=pipe, drop_remainder=True)
    batches = _batches(ds)
    assert len(batches) == 2 and len(batches[0]) == 1 and batches[0][0].shape == (40, 32, 32, 3)


@pytest.mark.parametrize("augment", ["lrunet", "svhn", "mnist"])
def test_other_augments(augment, arrays):
    x, y = arrays
    for pipe in PIPES:
        ds = data.make_dataset(
            x, y, batch_size=50, augment=augment, normalizer="scale", pipeline=pipe
        )
        xb = _batches(ds)[0][0]
        assert xb.shape == (50, 32, 32, 3) and xb.dtype == np.float32
        assert 0 <= xb.min() and xb.max() <= 1.0 + 1e-6


def test_bad_arguments(arrays, monkeypatch):
    x, y = arrays
    for kwargs, match in [
        (dict(augment="randaugment"), "augment.*'cifar'"),
        (dict(post_augment="mixup"), "post_augment.*'cutout16'"),
        (dict(pipeline="grain"), "pipeline.*'auto', 'tf', 'numpy'"),
        (dict(normalizer="zscore"), "kind.*'per_pixel_mean'"),
        (dict(batch_size=0), "batch_size"),
        (dict(targets="logits"), "targets"),
    ]:
        with pytest.raises(ValueError, match=match):
            data.make_dataset(x, y, **kwargs)
    with pytest.raises(ValueError, match="not fitted"):
        data.make_dataset(x, y, training=False, normalizer="channel")
    with pytest.raises(ValueError, match="same length"):
        data.make_dataset(x, y[:-1])
    monkeypatch.setattr(pipeline_module, "_tf_importable", lambda: False)
    with pytest.raises(ValueError, match="pipeline='tf'.*needs tensorflow"):
        data.make_dataset(x, y, pipeline="tf")
    assert isinstance(data.make_dataset(x, y), data.ArrayDataset)


def test_auto_pipeline(arrays):
    ds = data.make_dataset(*arrays)
    if keras.backend.backend() == "tensorflow" and HAS_TF:
        assert not isinstance(ds, keras.utils.PyDataset)
    else:
        assert isinstance(ds, data.ArrayDataset)


def test_string_normaliser_is_fitted_on_x(arrays):
    x, y = arrays
    ds = data.make_dataset(x, y, normalizer="per_pixel_mean", pipeline="numpy")
    np.testing.assert_allclose(ds.normalizer.mean, x.mean(0), rtol=1e-6)


@pytest.mark.parametrize("pipe", PIPES)
def test_fit_one_epoch(pipe, arrays):
    x, y = arrays
    norm = data.Normalizer("channel").fit(x)
    train = data.make_dataset(
        x, y, batch_size=50, normalizer=norm, post_augment="cutout16", pipeline=pipe,
        targets=("logits", "aux"),
    )  # fmt: skip
    test = data.make_dataset(
        x,
        y,
        batch_size=50,
        training=False,
        normalizer=norm,
        pipeline=pipe,
        targets=("logits", "aux"),
    )
    inputs = keras.Input((32, 32, 3))
    h = keras.layers.GlobalAveragePooling2D()(inputs)
    model = keras.Model(
        inputs,
        {
            "logits": keras.layers.Dense(10, name="logits")(h),
            "aux": keras.layers.Dense(10, name="aux")(h),
        },
    )
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    model.compile("sgd", loss={"logits": loss, "aux": loss})
    history = model.fit(
        train,
        validation_data=test,
        epochs=1,
        verbose=0,
        shuffle=False,
        callbacks=[data.EpochSync(train)],
    )
    assert np.isfinite(history.history["loss"][0]) and "val_loss" in history.history


@pytest.mark.skipif(not HAS_TF, reason="tf.data pipeline")
def test_tf_pipeline_runs_without_the_autotuner(arrays):
    # With the tuner on, dropping an iterator (fit does at every epoch end) can
    # block for seconds; the options must survive to the dataset fit receives.
    ds = data.make_dataset(*arrays, batch_size=32, pipeline="tf")
    assert ds.options().autotune.enabled is False
    data.set_epoch(ds, 3)  # raises if `with_options` lost the epoch counter
    assert len(_batches(ds)) == 4


def test_benchmark_pipeline(arrays):
    x, y = arrays
    for pipe in PIPES:
        ds = data.make_dataset(x, y, batch_size=32, pipeline=pipe)
        assert data.benchmark_pipeline(ds, steps=5) > 0
    with pytest.raises(ValueError, match="steps"):
        data.benchmark_pipeline(ds, steps=0)


_NO_TF = textwrap.dedent(
    """
    import importlib.abc, sys

    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("tensorflow", "tensorflow_datasets"):
                raise ModuleNotFoundError(f"No module named {name!r}")

    sys.meta_path.insert(0, Block())
    import keras
    import numpy as np
    from keras_lrn import data

    (x, y), (xt, yt) = data.load("cifar10", source="synthetic")
    norm = data.Normalizer("per_pixel_mean").fit(x)
    ds = data.make_dataset(x[:64], y[:64], batch_size=32, augment="lrunet", normalizer=norm,
                           post_augment="cutout16")
    assert isinstance(ds, data.ArrayDataset)
    inputs = keras.Input((32, 32, 3))
    h = data.RandomPadCrop(4, seed=0)(inputs)
    out = keras.layers.Dense(10)(keras.layers.GlobalAveragePooling2D()(h))
    model = keras.Model(inputs, out)
    model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(ds, epochs=1, verbose=0)
    try:
        data.make_dataset(x, y, pipeline="tf")
    except ValueError as e:
        assert "needs tensorflow" in str(e)
    else:
        raise AssertionError("pipeline='tf' worked without tensorflow")
    try:
        data.load("cifar10", source="tfds", data_dir=".")
    except ValueError as e:
        assert "tensorflow_datasets" in str(e)
    assert "tensorflow" not in sys.modules
    print("NO_TF_OK")
    """
)


@pytest.mark.skipif(keras.backend.backend() != "jax", reason="simulates the JAX-only GPU machine")
def test_works_without_tensorflow():
    env = dict(os.environ, KERAS_BACKEND="jax", PYTHONPATH=str(REPO))
    result = subprocess.run(
        [sys.executable, "-c", _NO_TF],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )
    assert "NO_TF_OK" in result.stdout, result.stderr[-3000:]
