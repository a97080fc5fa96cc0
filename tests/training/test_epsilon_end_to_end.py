"""epsilon-ResNet through the CLI as a user runs it: train, count, adapt LR, compress, export."""

import csv

import keras
import numpy as np
import pytest

import keras_lrn
from keras_lrn.training import cli
from keras_lrn.utils import tensorflow_available


def test_large_epsilon_train_compress_export(tmp_path, capsys):
    out, exported = tmp_path / "run", tmp_path / "saved_model"
    argv = ["--model", "epsilon_resnet20", "--depth", "8", "--epsilon", "1000", "--smoke",
            "--epochs", "2", "--pipeline", "numpy", "--output-dir", str(out)]
    if tensorflow_available():
        argv += ["--export", str(exported)]
    assert cli.main(argv) == 0, capsys.readouterr().err
    assert "test accuracy" in capsys.readouterr().out

    with open(out / "history.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2
    for row in rows:  # every |F| is far below 1000: all three blocks are off at once
        assert float(row["discarded_count"]) == 3.0
        assert float(row["discarded_ratio"]) == 1.0
        assert float(row["lr"]) == pytest.approx(0.1)  # the count rose: the adaptive LR restarts
        assert "val_side_error" in row
    assert float(rows[1]["discarded_count_ema"]) > float(rows[0]["discarded_count_ema"]) > 0

    model = keras_lrn.export.load_model(out / "final.keras")
    assert isinstance(model, keras_lrn.models.EpsilonResNet)
    assert model.discarded_count() == model.num_blocks == 3
    compressed, report = keras_lrn.models.compress(model, ema=False)
    assert report.blocks_before == 3 and report.blocks_after == 0
    assert report.params_after < report.params_before
    assert keras_lrn.testing.trainable_params(compressed) == report.params_after

    x = np.random.default_rng(0).normal(size=(8, 32, 32, 3)).astype("float32")
    gated = keras.ops.convert_to_numpy(model.inference_model()(x, training=False))
    small = keras.ops.convert_to_numpy(compressed(x, training=False))
    np.testing.assert_allclose(small, gated, atol=1e-5)

    if tensorflow_available():
        import tensorflow as tf

        loaded = tf.saved_model.load(str(exported))  # keep a reference while serving
        np.testing.assert_allclose(loaded.serve(tf.constant(x)).numpy(), gated, atol=1e-5)
        keras_lrn.export.export(compressed, tmp_path / "compressed_sm")
        loaded_small = tf.saved_model.load(str(tmp_path / "compressed_sm"))
        np.testing.assert_allclose(loaded_small.serve(tf.constant(x)).numpy(), small, atol=1e-5)


def test_svhn_recipe_and_epsilon_default():
    _, kwargs, _, recipe = cli.resolve(["--model", "epsilon_resnet110"], dataset="svhn")
    assert kwargs["epsilon"] == 1.5 and recipe.extra["lr_preset"] == "svhn"
    assert recipe.augment == "svhn"
    _, kwargs, _, recipe = cli.resolve(["--model", "epsilon_resnet110", "--epsilon-warmup", "150"])
    assert kwargs["epsilon"] == 2.5
    assert recipe.extra["epsilon_warmup"] == [(0, 0.0), (150, 2.5)]
    with pytest.raises(ValueError, match="epsilon-warmup"):
        cli.resolve(["--model", "resnet20", "--epsilon-warmup", "5"])
