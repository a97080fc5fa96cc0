import json
import os

import keras
import numpy as np
import pytest

from keras_lrn.training import cli

SMOKE = ["--model", "resnet20", "--depth", "8", "--smoke", "--pipeline", "numpy"]


@pytest.mark.parametrize(
    "argv, match",
    [
        (["--model", "resnet57"], "resnet56"),
        (["--model", "resnet20", "--epochs", "0"], "epochs"),
        (["--model", "resnet20", "--batch-size", "-3"], "batch-size"),
        (["--model", "resnet20", "--lr", "0"], "lr"),
        (["--model", "resnet20", "--val-split", "1.5"], "val-split"),
        (["--model", "resnet20", "--schedule", "0:0.1,x"], "schedule"),
        (["--model", "resnet20", "--schedule", "5:0.1"], "schedule"),
        (["--model", "resnet20", "--no-such-arg", "3"], "no-such-arg"),
        (["--model", "resnet20", "--resume"], "output-dir"),
    ],
)
def test_bad_arguments_are_value_errors(argv, match):
    with pytest.raises(ValueError, match=match):
        cli.resolve(argv)


def test_bad_depth_reaches_the_user_as_an_error(capsys, tmp_path):
    code = cli.main(["--model", "resnet20", "--depth", "21", "--smoke",
                     "--output-dir", str(tmp_path / "run")])
    assert code == 2
    assert "depth" in capsys.readouterr().err


def test_recipe_defaults_and_overrides():
    args, kwargs, entry, recipe = cli.resolve(["--model", "resnet56", "--depth", "20",
                                               "--lr", "0.05", "--epochs", "3"])
    assert kwargs == {"depth": 20}
    assert recipe.epochs == 3
    assert recipe.schedule == ((0, 0.05), (150, 0.005), (225, 0.0005)) or np.allclose(
        [v for _, v in recipe.schedule], [0.05, 0.005, 0.0005])
    assert recipe.weight_decay == entry.recipe.weight_decay


def test_smoke_run_writes_everything_and_evaluates(tmp_path, capsys):
    out = tmp_path / "run"
    assert cli.main(SMOKE + ["--output-dir", str(out)]) == 0
    summary = capsys.readouterr().out
    assert "test accuracy" in summary and "trainable params" in summary
    for name in ("args.json", "history.csv", "best.keras", "final.keras", "results.json",
                 "normalizer.npz"):
        assert (out / name).exists(), name
    args = json.loads((out / "args.json").read_text())
    assert args["model"] == "resnet20" and args["model_kwargs"] == {"depth": 8}
    assert os.path.isdir(out / "tensorboard")
    # --evaluate accepts the saved model
    assert cli.main(SMOKE + ["--evaluate", str(out / "best.keras")]) == 0
    assert "top-1 accuracy" in capsys.readouterr().out


def test_existing_output_dir_is_not_overwritten(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "history.csv").write_text("precious")
    assert cli.main(SMOKE + ["--output-dir", str(out)]) == 2
    assert "already holds a run" in capsys.readouterr().err
    assert (out / "history.csv").read_text() == "precious"


def test_evaluate_rejects_a_file_that_is_not_a_model(tmp_path, capsys):
    bogus = tmp_path / "model.keras"
    bogus.write_text("not a model")
    assert cli.main(SMOKE + ["--evaluate", str(bogus)]) == 2
    assert "not a Keras model" in capsys.readouterr().err
    assert cli.main(SMOKE + ["--evaluate", str(tmp_path / "missing.keras")]) == 2
    assert "No such model" in capsys.readouterr().err


def test_list_models(capsys):
    assert cli.main(["--list-models"]) == 0
    assert "resnet56" in capsys.readouterr().out.split()


def test_mixed_precision_smoke_and_backend_in_summary(capsys):
    assert cli.main(SMOKE + ["--mixed-precision"]) == 0
    assert keras.backend.backend() in capsys.readouterr().out
    assert keras.config.dtype_policy().name == "mixed_bfloat16"
