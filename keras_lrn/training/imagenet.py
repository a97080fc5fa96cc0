"""ImageNet in the training CLI: streaming data, skipped-file logging, best-epoch report.

`keras_lrn.training.core` calls these when the data set is `"imagenet"`
(`train/imagenet.py`); `best_epoch_report` serves every data set.

ImageNet has no separate test set here: as in the reference codes, the
validation split is evaluated every epoch and at the end (the "test" numbers).
"""

from __future__ import annotations

import atexit
import csv
import os
import shutil
import tempfile

import keras
import numpy as np

from keras_lrn.data import imagenet as dimagenet
from keras_lrn.data.normalization import Normalizer

TOP5 = "top5_accuracy"
# Sizes of the generated ImageFolder tree of `--smoke` / `--data-source synthetic`.
_SYNTHETIC = dict(classes=5, val_per_class=4, size_range=(40, 96))


def imagenet_recipe(recipe):
    """Map a recipe onto what the streaming pipeline can do.

    A recipe written for in-memory data (`augment="cifar"`, a fitted
    normalisation, cutout) falls back to the ImageNet transform and statistics,
    so any registered model can be trained by `train/imagenet.py`.
    """
    changes = {}
    if recipe.augment not in dimagenet.IMAGENET_AUGMENTS:
        changes["augment"] = "imagenet"
    fixed = recipe.normalize in ("imagenet", "scale", "none") or (
        recipe.normalize == "channel" and "mean" in (recipe.extra or {})
    )
    if not fixed:
        changes["normalize"] = "imagenet"
    if recipe.post_augment not in (None, "none"):
        changes["post_augment"] = "none"
    return recipe.replace(**changes) if changes else recipe


def check_args(args, recipe):
    if recipe.val_split:
        raise ValueError(
            "`--val-split` is not supported for imagenet: the val/ split is the held-out set. "
            f"Received: val_split={recipe.val_split}"
        )
    if args.data_source == "keras":
        raise ValueError(
            "`--data-source keras` has no ImageNet; use auto, local, tfds or synthetic. "
            "Received: data_source='keras'"
        )
    for name in ("image_size", "workers"):
        value = getattr(args, name, None)
        if value is not None and value < 1:
            raise ValueError(f"`--{name.replace('_', '-')}` must be a positive integer. "
                             f"Received: {name}={value}")  # fmt: skip


def image_size(args):
    return getattr(args, "image_size", None) or dimagenet.IMAGE_SIZE


def _synthetic_tree(batch_size, seed):
    root = tempfile.mkdtemp(prefix="keras_lrn_imagenet_smoke_")
    atexit.register(shutil.rmtree, root, True)
    per_class = max(2, -(-8 * batch_size // _SYNTHETIC["classes"]))
    return dimagenet.write_synthetic_imagefolder(root, train_per_class=per_class, seed=seed,
                                                 **_SYNTHETIC)  # fmt: skip


def load_data(args, recipe):
    """`(info, train files, None, val files)` for `core.train` (val is the test set)."""
    check_args(args, recipe)
    if args.data_source == "synthetic" or (args.smoke and not args.data_dir):
        root = _synthetic_tree(recipe.batch_size, args.seed)
        train, val = dimagenet.find_imagefolder(root)
    else:
        source = "local" if args.data_source == "local" else args.data_source
        train, val = dimagenet.load_imagenet(args.data_dir, source=source)
    rng = np.random.default_rng([args.seed, 11])
    if args.smoke and train.tfds_builder is None:  # a real tree: a few batches of it only
        if len(train) > 8 * recipe.batch_size:
            train = train.subset(np.sort(rng.permutation(len(train))[: 8 * recipe.batch_size]))
        if len(val) > 2 * recipe.batch_size:
            val = val.subset(np.sort(rng.permutation(len(val))[: 2 * recipe.batch_size]))
    if args.train_subset and args.train_subset < len(train):
        train = train.subset(np.sort(rng.permutation(len(train))[: args.train_subset]))
    info = dimagenet.dataset_info(train, image_size(args))
    return info, train, None, val


def normalizer_for(recipe):
    extra = recipe.extra or {}
    if recipe.normalize == "channel":
        return Normalizer("channel", mean=extra["mean"], std=extra["std"])
    return Normalizer(recipe.normalize)


def make_datasets(args, recipe, targets, train, val, test, initial_epoch=0):
    """`(normalizer, train_ds, None, val_ds)` streaming pipelines for `core.train`."""
    normalizer = normalizer_for(recipe)
    workers = getattr(args, "workers", None) or min(8, os.cpu_count() or 1)
    common = dict(image_size=image_size(args), normalizer=normalizer, seed=args.seed,
                  targets=targets, pipeline=args.pipeline, workers=workers)  # fmt: skip
    train_ds = dimagenet.make_imagenet_dataset(
        train, batch_size=recipe.batch_size, training=True, augment=recipe.augment,
        drop_remainder=len(train) >= recipe.batch_size, initial_epoch=initial_epoch, **common,
    )  # fmt: skip
    test_ds = dimagenet.make_imagenet_dataset(test, batch_size=recipe.batch_size,
                                              training=False, augment="none", **common)
    return normalizer, train_ds, None, test_ds


def top5_metrics(model, dataset):
    """`[SparseTopKCategoricalAccuracy(5)]` for ImageNet models with >= 5 classes, else `[]`."""
    if dataset != "imagenet":
        return []
    out = model.output
    if isinstance(out, dict):
        out = out.get("logits", next(iter(out.values())))
    classes = out.shape[-1]
    if classes is None or classes < 5:
        return []
    return [keras.metrics.SparseTopKCategoricalAccuracy(k=5, name=TOP5)]


class SkippedFilesLogger(keras.callbacks.Callback):
    """Writes the number of distinct undecodable files met so far into `logs["skipped_files"]`.

    It warns once per file for the tf.data pipeline (the numpy pipeline warns
    when it meets the file). Place it before `CSVLogger`.

    Args:
        *datasets: pipelines from `make_imagenet_dataset` (None entries are ignored).
    """

    def __init__(self, *datasets):
        super().__init__()
        self.datasets = [d for d in datasets if d is not None]
        self._warned = set()

    def skipped(self):
        """Sorted distinct paths skipped by any of the pipelines (warns about new ones)."""
        paths, tf_paths = set(), set()
        for ds in self.datasets:
            found = dimagenet.skipped_files(ds)
            paths.update(found)
            if not isinstance(ds, keras.utils.PyDataset):
                tf_paths.update(found)
        new = sorted(tf_paths - self._warned)
        if new:
            import warnings

            shown = "\n  ".join(new[:20])
            warnings.warn(
                f"Skipped {len(new)} image file(s) that TensorFlow could not decode:\n  "
                f"{shown}{' ...' if len(new) > 20 else ''}",
                stacklevel=2,
            )
        self._warned.update(paths)
        return sorted(paths)

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["skipped_files"] = len(self.skipped())


def _history_rows(output_dir, history):
    path = os.path.join(output_dir, "history.csv") if output_dir else None
    if path and os.path.exists(path):  # every epoch, also those before a --resume
        with open(path, newline="") as f:
            return [{k: _float(v) for k, v in row.items()} for row in csv.DictReader(f)]
    logs = getattr(history, "history", None) or {}
    epochs = getattr(history, "epoch", None) or list(range(len(next(iter(logs.values()), []))))
    return [dict({k: float(v[i]) for k, v in logs.items()}, epoch=e) for i, e in enumerate(epochs)]


def _float(text):
    try:
        return float(text)
    except (TypeError, ValueError):
        return float("nan")


def best_epoch_report(output_dir, history, top1_key, top5_key=None):
    """The reference's `best.py` on the history: best validation top-1 and its epoch.

    Args:
        output_dir: str or None. The run folder (its `history.csv` holds every
            epoch, also those before a resume); else `history` is used.
        history: the `keras.callbacks.History` that `fit` returned.
        top1_key: str. E.g. `"val_accuracy"`.
        top5_key: str or None. E.g. `"val_top5_accuracy"`.

    Returns:
        dict with `best_epoch` (0-based, as in history.csv), `best_val_top1`,
        `val_top5_at_best`, and `best_val_top5`/`best_val_top5_epoch` (the
        maximum top-5 over epochs, which `best.py` reported independently);
        empty when the history has no `top1_key`.
    """
    rows = [r for r in _history_rows(output_dir, history) if np.isfinite(r.get(top1_key, np.nan))]
    if not rows:
        return {}
    best = max(rows, key=lambda r: r[top1_key])  # first epoch among ties
    out = {"best_epoch": int(best["epoch"]), "best_val_top1": float(best[top1_key])}
    if top5_key and all(np.isfinite(r.get(top5_key, np.nan)) for r in rows):
        out["val_top5_at_best"] = float(best[top5_key])
        best5 = max(rows, key=lambda r: r[top5_key])
        out["best_val_top5"] = float(best5[top5_key])
        out["best_val_top5_epoch"] = int(best5["epoch"])
    return out


def describe_best(report):
    if not report:
        return ""
    text = (f" | best val top-1 {report['best_val_top1']:.4f} at epoch {report['best_epoch']}")
    if "val_top5_at_best" in report:
        text += (f" (top-5 there {report['val_top5_at_best']:.4f}; best top-5 "
                 f"{report['best_val_top5']:.4f} at epoch {report['best_val_top5_epoch']})")
    return text


def evaluate_path(args, recipe, entry, model_kwargs):
    """`train/imagenet.py --evaluate PATH`: top-1 and top-5 of a saved model on val/."""
    from keras_lrn.export import load_model
    from keras_lrn.training import core

    path = args.evaluate
    core.configure_backend(args)
    model = load_model(path)
    _, _, _, val = load_data(args, recipe)
    size = model.input_shape[1]
    if size is not None:
        args.image_size = int(size)
    core.compile_model(model, recipe, args.jit_compile)
    norm_path = os.path.join(os.path.dirname(os.path.abspath(path)), core.NORMALIZER)
    normalizer = Normalizer.load(norm_path) if os.path.exists(norm_path) else normalizer_for(recipe)
    ds = dimagenet.make_imagenet_dataset(
        val, batch_size=recipe.batch_size, training=False, augment="none",
        image_size=image_size(args), normalizer=normalizer, seed=args.seed,
        targets=core.output_names(model), pipeline=args.pipeline,
        workers=getattr(args, "workers", None) or min(8, os.cpu_count() or 1),
    )  # fmt: skip
    results = model.evaluate(ds, return_dict=True, verbose=0)
    acc = float(results[core.accuracy_key(model)])
    top5_key = core.accuracy_key(model).replace("accuracy", TOP5)
    skipped = dimagenet.skipped_files(ds)
    summary = (f"{os.path.basename(path)} on imagenet val ({len(val)} images) "
               f"[{keras.backend.backend()}]: top-1 accuracy {acc:.4f}")
    if top5_key in results:
        summary += f" | top-5 accuracy {float(results[top5_key]):.4f}"
    summary += f" | skipped files {len(skipped)}"
    if args.export:
        from keras_lrn.export import export

        export(model, args.export)  # format from the path: .keras, .onnx, else SavedModel
    return {"test_accuracy": acc, "test": results, "skipped_files": len(skipped),
            "summary": summary, "model_object": model}  # fmt: skip


__all__ = [
    "SkippedFilesLogger",
    "best_epoch_report",
    "describe_best",
    "evaluate_path",
    "imagenet_recipe",
    "load_data",
    "make_datasets",
    "top5_metrics",
]
