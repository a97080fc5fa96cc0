"""`train/imagenet.py` end to end on a tiny generated ImageFolder tree (either backend)."""

import csv
import json
import runpy
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

from keras_lrn.training import cli
from keras_lrn.training.imagenet import best_epoch_report

pytest.importorskip("PIL")
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    """6 classes (so top-5 is not trivially 1) x 4 train + 2 val JPEGs, one corrupt file."""
    from keras_lrn.data.imagenet import write_synthetic_imagefolder

    return write_synthetic_imagefolder(tmp_path_factory.mktemp("imagenet"), classes=6,
                                       train_per_class=4, val_per_class=2, corrupt=1, seed=1)


def test_train_imagenet_script_end_to_end(tree, tmp_path, capsys, monkeypatch):
    """tf.data under TensorFlow, the Pillow PyDataset under JAX (`--pipeline auto`)."""
    out = tmp_path / "run"
    argv = ["train/imagenet.py", "--model", "resnet20", "--depth", "8", "--data-dir", str(tree),
            "--epochs", "2", "--batch-size", "6", "--image-size", "32", "--output-dir", str(out),
            "--verbose", "0", "--workers", "2"]  # fmt: skip
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(SystemExit) as exit_info, pytest.warns(UserWarning, match="corrupt_0"):
        runpy.run_path(str(REPO / "train" / "imagenet.py"), run_name="__main__")
    assert exit_info.value.code == 0
    summary = capsys.readouterr().out
    for name in ("args.json", "history.csv", "best.keras", "final.keras", "results.json",
                 "normalizer.npz"):  # fmt: skip
        assert (out / name).exists(), name
    with open(out / "history.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2
    assert {"top5_accuracy", "val_accuracy", "val_top5_accuracy", "skipped_files"} <= set(rows[0])
    assert [int(float(r["skipped_files"])) for r in rows] == [1, 1]
    results = json.loads((out / "results.json").read_text())
    assert results["skipped_files"] == 1 and "corrupt_0" in results["skipped_file_list"][0]
    assert "skipped files 1" in summary and "test top-5" in summary
    # The best-epoch report is the argmax of the CSV's val top-1 (first among ties).
    top1 = [float(r["val_accuracy"]) for r in rows]
    best = int(np.argmax(top1))
    assert results["best"]["best_epoch"] == best
    assert results["best"]["best_val_top1"] == pytest.approx(top1[best])
    assert results["best"]["val_top5_at_best"] == pytest.approx(float(rows[best]["val_top5_accuracy"]))
    assert f"best val top-1 {top1[best]:.4f} at epoch {best}" in summary
    # Top-5 of the final model, recomputed in numpy from its predictions on val/.
    from keras_lrn.data import imagenet as dimagenet
    from keras_lrn.export import load_model

    model = load_model(out / "final.keras")
    _, val = dimagenet.find_imagefolder(tree)
    ds = dimagenet.make_imagenet_dataset(val, batch_size=6, training=False, image_size=32)
    batches = list(ds) if hasattr(ds, "element_spec") else [ds[i] for i in range(len(ds))]
    logits = np.concatenate([keras.ops.convert_to_numpy(model(np.asarray(x), training=False))
                             for x, _ in batches])  # fmt: skip
    labels = np.concatenate([np.asarray(y) for _, y in batches])
    top5 = np.mean([y in np.argsort(-p)[:5] for p, y in zip(logits, labels)])
    assert results["test"]["top5_accuracy"] == pytest.approx(top5, abs=1e-6)
    assert results["test"]["accuracy"] == pytest.approx(np.mean(logits.argmax(1) == labels))
    # `--evaluate` of the saved model reports the same top-1 and exports it (`.keras` here).
    exported = tmp_path / "exported.keras"
    argv = ["train/imagenet.py", "--model", "resnet20", "--data-dir", str(tree),
            "--batch-size", "6", "--evaluate", str(out / "final.keras"), "--export",
            str(exported), "--workers", "2"]  # fmt: skip
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(SystemExit) as exit_info, pytest.warns(UserWarning, match="corrupt_0"):
        runpy.run_path(str(REPO / "train" / "imagenet.py"), run_name="__main__")
    assert exit_info.value.code == 0
    assert f"top-1 accuracy {np.mean(logits.argmax(1) == labels):.4f}" in capsys.readouterr().out
    reloaded = load_model(exported)
    x0 = np.asarray(batches[0][0])
    np.testing.assert_allclose(keras.ops.convert_to_numpy(reloaded(x0, training=False)),
                               logits[: len(x0)], rtol=1e-5, atol=1e-5)


def test_imagenet_flags_and_recipe_mapping():
    args, kwargs, entry, recipe = cli.resolve(
        ["--model", "resnet20", "--image-size", "64", "--workers", "3"], dataset="imagenet")
    assert args.image_size == 64 and args.workers == 3 and kwargs == {}
    # A CIFAR recipe gets the streaming ImageNet transform; epsilon-ResNet's keeps its own.
    assert entry.recipe.augment == "cifar" and recipe.augment == "imagenet"
    assert recipe.normalize == "imagenet" and recipe.dataset == "imagenet"
    _, _, _, eps = cli.resolve(["--model", "epsilon_resnet50_imagenet"], dataset="imagenet")
    assert (eps.augment, eps.normalize, eps.epochs, eps.nesterov) == ("imagenet", "imagenet", 110,
                                                                      True)  # fmt: skip
    with pytest.raises(ValueError, match="val-split"):
        cli.resolve(["--model", "resnet20", "--val-split", "0.1"], dataset="imagenet")
    with pytest.raises(ValueError, match="image-size"):
        cli.resolve(["--model", "resnet20", "--image-size", "0"], dataset="imagenet")
    with pytest.raises(SystemExit):  # an ImageNet-only flag
        cli.build_parser("cifar10").parse_args(["--image-size", "64"])


def test_best_epoch_report_from_a_history():
    class History:
        epoch = [0, 1, 2, 3]
        history = {"val_accuracy": [0.2, 0.5, 0.5, 0.4],
                   "val_top5_accuracy": [0.6, 0.7, 0.9, 0.95]}  # fmt: skip

    report = best_epoch_report(None, History(), "val_accuracy", "val_top5_accuracy")
    # best.py: max top-1 (first of the tied epochs 1 and 2) and, independently, max top-5
    assert report == {"best_epoch": 1, "best_val_top1": 0.5, "val_top5_at_best": 0.7,
                      "best_val_top5": 0.95, "best_val_top5_epoch": 3}  # fmt: skip
    assert best_epoch_report(None, History(), "val_logits_accuracy") == {}
