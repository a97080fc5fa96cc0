"""The training loop behind the CLI: data, model, recipe, callbacks, `model.fit`.

Everything here is importable from a notebook: `train(args, recipe, entry,
model_kwargs)` is what `train/cifar10.py` runs once the flags are resolved
(`keras_lrn.training.cli.resolve`).
"""

from __future__ import annotations

import csv
import os

import keras
import numpy as np

from keras_lrn import data as kdata
from keras_lrn.export import atomic_path, export, load_model, save_model
from keras_lrn.training import imagenet
from keras_lrn.training.cli import now, write_json
from keras_lrn.training.schedules import piecewise
from keras_lrn.training.weight_decay import apply_weight_decay
from keras_lrn.utils import module_available, tensorflow_available

HISTORY = "history.csv"
BEST = "best.keras"
FINAL = "final.keras"
ARGS = "args.json"
RESULTS = "results.json"
NORMALIZER = "normalizer.npz"
BACKUP = "backup"


class AtomicModelCheckpoint(keras.callbacks.ModelCheckpoint):
    """`ModelCheckpoint` whose writes never leave a half-written file in place.

    Its best value is part of its state, so a resumed run keeps the best model
    of the epochs before the interruption.
    """

    def _save_model(self, epoch, batch, logs):
        filepath = self._get_file_path(epoch, batch, logs)
        if self._should_save_model(epoch, batch, logs, filepath):
            save_model(self.model, filepath)

    def get_state(self):
        best = None if self.best is None else float(self.best)
        return {"best": best}

    def set_state(self, state):
        if state.get("best") is not None:
            self.best = state["best"]


class _Phase(keras.callbacks.Callback):
    """Runs one phase of `inner`: its restore at train begin ("begin"), or its
    epoch/batch/train-end work ("end"). Placing the two halves first and last in
    the callback list makes a backup restore before anything else starts, and save
    only after every other callback has finished the epoch (history row, best
    model): a kill at any moment then loses nothing that resuming cannot redo."""

    def __init__(self, inner, phase):
        super().__init__()
        self.inner, self.phase = inner, phase

    def set_model(self, model):
        super().set_model(model)
        self.inner.set_model(model)

    def set_params(self, params):
        super().set_params(params)
        self.inner.set_params(params)

    def on_train_begin(self, logs=None):
        if self.phase == "begin":
            self.inner.on_train_begin(logs)

    def on_epoch_end(self, epoch, logs=None):
        if self.phase == "end":
            self.inner.on_epoch_end(epoch, logs)

    def on_train_batch_end(self, batch, logs=None):
        if self.phase == "end":
            self.inner.on_train_batch_end(batch, logs)

    def on_train_end(self, logs=None):
        if self.phase == "end":
            self.inner.on_train_end(logs)


class HistoryTrimmer(keras.callbacks.Callback):
    """On resume, drop CSV rows of epochs that the restored backup does not include."""

    def __init__(self, path):
        super().__init__()
        self.path = path

    def on_train_begin(self, logs=None):
        initial = getattr(self.model, "_initial_epoch", None) or 0
        if not os.path.exists(self.path):
            return
        with open(self.path, newline="") as f:
            rows = list(csv.reader(f))
        if not rows:
            return
        kept = [rows[0]] + [r for r in rows[1:] if r and int(r[0]) < initial]
        if len(kept) != len(rows):
            with atomic_path(self.path) as tmp, open(tmp, "w", newline="") as f:
                csv.writer(f).writerows(kept)


def configure_backend(args):
    keras.utils.set_random_seed(args.seed)
    if args.mixed_precision:
        keras.config.set_dtype_policy(f"mixed_{args.mixed_precision}")
    else:
        keras.config.set_dtype_policy("float32")


def load_data(args, recipe):
    """(train, val, test) as (x, y) uint8/int64 numpy pairs; val may be None."""
    if recipe.dataset == "imagenet":  # streamed from files: `ImageFiles`, val is the test set
        return imagenet.load_data(args, recipe)
    info = kdata.get_info(recipe.dataset)
    if args.smoke or args.data_source == "synthetic":
        n_train = 8 * recipe.batch_size if args.smoke else 2048
        train = kdata.synthetic(recipe.dataset, num_examples=n_train, seed=args.seed, split="train")
        test = kdata.synthetic(recipe.dataset, num_examples=max(recipe.batch_size * 2, info.num_classes),
                               seed=args.seed + 1, split="test")
    else:
        train, test = kdata.load(recipe.dataset, data_dir=args.data_dir, source=args.data_source)
    if args.train_subset:
        rng = np.random.default_rng(args.seed)
        idx = rng.permutation(len(train[0]))[: args.train_subset]
        train = (train[0][idx], train[1][idx])
    val = None
    if recipe.val_split:
        train, val = kdata.train_val_split(*train, val_fraction=recipe.val_split, seed=args.seed)
    return info, train, val, test


def output_names(model):
    """Names of the outputs if the model returns a dict, else None."""
    out = model.output
    return tuple(out.keys()) if isinstance(out, dict) else None


def main_output(model):
    names = output_names(model)
    if names is None:
        return None
    return "logits" if "logits" in names else names[0]


def compile_model(model, recipe, jit_compile="auto"):
    from_logits = not _has_softmax(model)
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=from_logits)
    names = output_names(model)
    if names:
        loss = {n: keras.losses.SparseCategoricalCrossentropy(from_logits=from_logits) for n in names}
        weights = dict(recipe.loss_weights or {})
        loss_weights = {n: float(weights.get(n, 1.0 if n == main_output(model) else 0.1))
                        for n in names}
        metrics = {n: ["accuracy"] + imagenet.top5_metrics(model, recipe.dataset) for n in names}
    else:
        loss, loss_weights = loss_fn, None
        metrics = ["accuracy"] + imagenet.top5_metrics(model, recipe.dataset)
    optimizer = keras.optimizers.SGD(learning_rate=recipe.lr, momentum=recipe.momentum,
                                     nesterov=recipe.nesterov)
    jit = {"auto": "auto", "true": True, "false": False}[str(jit_compile).lower()]
    model.compile(optimizer=optimizer, loss=loss, loss_weights=loss_weights, metrics=metrics,
                  jit_compile=jit)
    return model


def _has_softmax(model):
    act = getattr(model, "classifier_activation", None)
    return act in ("softmax", keras.activations.softmax)


def accuracy_key(model, prefix=""):
    main = main_output(model)
    return f"{prefix}{main}_accuracy" if main else f"{prefix}accuracy"


def _check_output_dir(args):
    out = args.output_dir
    if out and os.path.isdir(out) and os.listdir(out) and not args.resume:
        raise ValueError(
            f"`--output-dir` {out!r} already holds a run. Pass --resume to continue it, or choose "
            "an empty folder: nothing in it is overwritten."
        )
    if args.resume and not (os.path.isdir(out) and os.path.exists(os.path.join(out, ARGS))):
        raise ValueError(f"`--resume`: {out!r} holds no run to continue (no {ARGS}).")


class LogLearningRate(keras.callbacks.Callback):
    """Writes the learning rate the epoch trained with into `logs["lr"]`."""

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["lr"] = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))


def build_callbacks(args, model, recipe):
    """The recipe's callbacks, in the order their `logs` depend on each other.

    epsilon schedule -> side supervision -> discarded counter -> LR policy ->
    best checkpoint -> CSV/TensorBoard; a backup restores first and saves last.
    """
    from keras_lrn import callbacks as kcb

    extra = recipe.extra or {}
    gates = getattr(model, "gate_layers", None)
    cbs = [LogLearningRate()]
    if gates and extra.get("epsilon_warmup"):
        cbs.append(kcb.EpsilonScheduler(extra["epsilon_warmup"]))
    if "side_logits" in (output_names(model) or ()):
        cbs.append(kcb.SideSupervision())
    if gates:
        cbs.append(kcb.DiscardedLayerCounter())
    if recipe.lr_policy == "epsilon_adaptive":
        cbs.append(kcb.AdaptiveLRSetter(preset=extra.get("lr_preset", "cifar")))
    elif recipe.lr_policy == "piecewise":
        cbs.append(keras.callbacks.LearningRateScheduler(piecewise(recipe.schedule)))
    if not args.output_dir:
        return cbs
    out = args.output_dir
    history = os.path.join(out, HISTORY)
    ckpt = AtomicModelCheckpoint(os.path.join(out, BEST), monitor=accuracy_key(model, "val_"),
                                 mode="max", save_best_only=True)
    cbs += [ckpt, keras.callbacks.CSVLogger(history, append=True)]
    if tensorflow_available() and module_available("tensorboard"):  # writes via tf.summary
        cbs.append(keras.callbacks.TensorBoard(os.path.join(out, "tensorboard"),
                                               write_graph=False, profile_batch=0))
    stateful = [c for c in cbs if hasattr(c, "get_state")]
    backup = kcb.BackupAndRestore(os.path.join(out, BACKUP), stateful_callbacks=stateful,
                                  delete_checkpoint=False)
    return [_Phase(backup, "begin"), HistoryTrimmer(history)] + cbs + [_Phase(backup, "end")]


def restored_epoch(output_dir):
    """The epoch a `--resume` continues from (0 when there is no backup yet)."""
    import json

    path = os.path.join(output_dir, BACKUP, "training_metadata.json")
    try:
        with open(path) as f:
            return int(json.load(f)["epoch"])
    except (OSError, ValueError, KeyError):
        return 0


def make_datasets(args, recipe, model, train, val, test, initial_epoch=0):
    if recipe.dataset == "imagenet":
        return imagenet.make_datasets(args, recipe, output_names(model), train, val, test,
                                      initial_epoch)
    normalizer = kdata.Normalizer(recipe.normalize).fit(train[0])
    targets = output_names(model)
    common = dict(normalizer=normalizer, seed=args.seed, targets=targets, pipeline=args.pipeline)
    train_ds = kdata.make_dataset(*train, batch_size=recipe.batch_size, training=True,
                                  augment=recipe.augment, post_augment=recipe.post_augment,
                                  initial_epoch=initial_epoch, **common)
    eval_kw = dict(batch_size=recipe.batch_size, training=False, augment="none",
                   post_augment="none", **common)
    val_ds = kdata.make_dataset(*val, **eval_kw) if val is not None else None
    test_ds = kdata.make_dataset(*test, **eval_kw)
    return normalizer, train_ds, val_ds, test_ds


def _param_counts(model):
    from keras_lrn.export import inference_network
    from keras_lrn.testing import count_params

    net = inference_network(model)
    return count_params(net.trainable_weights), count_params(net.non_trainable_weights)


def train(args, recipe, entry, model_kwargs):
    """Train `entry` with `recipe`; returns a dict of results with a `summary` line."""
    from keras_lrn.training import distribute

    args = distribute.for_this_process(args)  # multi-host: only process 0 writes files
    _check_output_dir(args)
    plan = distribute.setup(args)  # before anything touches a device
    plan.check_batch_size(recipe.batch_size)
    configure_backend(args)
    info, train_data, val_data, test_data = load_data(args, recipe)
    kwargs = dict(model_kwargs)
    if entry.family != "imagenet_only":
        kwargs.setdefault("classes", info.num_classes)
        kwargs.setdefault("input_shape", info.image_shape)
    with plan.scope():  # tf.distribute: variables and optimizer under the strategy
        try:
            model = entry.build(**kwargs)
        except TypeError as e:
            raise ValueError(f"Bad model arguments for {entry.name!r}: {e}") from e
        plan.prepare_model(model)
        apply_weight_decay(model, recipe.weight_decay, recipe.weight_decay_exclude)
        compile_model(model, recipe, args.jit_compile)
    initial_epoch = restored_epoch(args.output_dir) if args.resume else 0
    normalizer, train_ds, val_ds, test_ds = make_datasets(args, recipe, model, train_data,
                                                          val_data, test_data, initial_epoch)
    out = args.output_dir
    if out:
        os.makedirs(out, exist_ok=True)
        if not args.resume:
            write_json(os.path.join(out, ARGS), {
                "model": entry.name, "model_kwargs": model_kwargs, "recipe": recipe.to_dict(),
                "args": vars(args), "backend": keras.backend.backend(),
                "keras": keras.__version__, "started": now(),
            })
            normalizer.save(os.path.join(out, NORMALIZER))
    validation = val_ds if val_ds is not None else test_ds
    skip_log = imagenet.SkippedFilesLogger(train_ds, test_ds) if recipe.dataset == "imagenet" else None
    cbs = [kdata.EpochSync(train_ds)] + [skip_log] * bool(skip_log) + build_callbacks(args, model,
                                                                                       recipe)
    verbose = args.verbose if args.verbose is not None else ("auto" if not args.smoke else 2)
    steps = args.steps_per_epoch or (2 if args.smoke else None)
    # shuffle=False: the pipeline shuffles itself, from (seed, epoch), so that a resumed
    # run sees the same batches in the same order (Keras's own batch-order shuffle of a
    # PyDataset draws from Python's global RNG, which no backup restores).
    batch = recipe.batch_size  # global; `plan.dataset` drops/cuts/slices batches as needed
    val_size = _num_examples(val_data if val_ds is not None else test_data)
    history = model.fit(
        plan.dataset(train_ds, _num_examples(train_data), batch, training=True),
        epochs=recipe.epochs, callbacks=cbs, steps_per_epoch=steps, verbose=verbose,
        validation_data=plan.dataset(validation, val_size, batch, training=False), shuffle=False)
    results = model.evaluate(plan.dataset(test_ds, _num_examples(test_data), batch,
                                          training=False),
                             return_dict=True, verbose=0)
    test_acc = float(results[accuracy_key(model)])
    trainable, non_trainable = _param_counts(model)
    summary = (f"{entry.name} on {recipe.dataset} [{keras.backend.backend()}]: test accuracy "
               f"{test_acc:.4f} | trainable params {trainable:,} | non-trainable {non_trainable:,}")
    report = _final_report(args, model, history, results, skip_log)
    summary += report.pop("text")
    payload = {"model": entry.name, "test_accuracy": test_acc, "test": results,
               "trainable_params": trainable, "non_trainable_params": non_trainable,
               "epochs": recipe.epochs, "finished": now(), "summary": summary, **report}
    if out:
        save_model(model, os.path.join(out, FINAL))
        write_json(os.path.join(out, RESULTS), payload)
    if args.export:
        export(model, args.export)  # format from the path: .keras, .onnx, else SavedModel
        payload["export"] = args.export
    payload["model_object"] = model
    return payload


def _num_examples(data):
    """Size of an `(x, y)` pair or of an `ImageFiles` split (ImageNet)."""
    return len(data[0]) if isinstance(data, tuple) else len(data)


def _final_report(args, model, history, results, skip_log):
    """Top-5, the best epoch (the reference's best.py) and skipped files, for the summary."""
    top1 = accuracy_key(model)
    top5 = top1.replace("accuracy", imagenet.TOP5)
    best = imagenet.best_epoch_report(args.output_dir, history, "val_" + top1, "val_" + top5)
    text = f" | test top-5 {float(results[top5]):.4f}" if top5 in results else ""
    report = {"best": best, "text": text + imagenet.describe_best(best)}
    if skip_log is not None:
        skipped = skip_log.skipped()
        report.update(skipped_files=len(skipped), skipped_file_list=skipped[:1000])
        report["text"] += f" | skipped files {len(skipped)}"
    return report


def evaluate_path(args, recipe, entry, model_kwargs):
    """`--evaluate PATH`: top-1 of a saved model on the test set."""
    if recipe.dataset == "imagenet":
        return imagenet.evaluate_path(args, recipe, entry, model_kwargs)
    path = args.evaluate
    configure_backend(args)
    if str(path).endswith((".t7", ".pth", ".pt")):
        from keras_lrn import models

        loader = getattr(models, "load_reference_checkpoint", None)
        if loader is None:
            raise ValueError(f"Reading reference checkpoints ({path!r}) is not available yet.")
        model = loader(path)
    else:
        model = load_model(path)
    info, _, _, test = load_data(args, recipe)
    norm_path = os.path.join(os.path.dirname(os.path.abspath(path)), NORMALIZER)
    if os.path.exists(norm_path):  # written next to the model by the training run
        normalizer = kdata.Normalizer.load(norm_path)
    else:
        normalizer = kdata.Normalizer(recipe.normalize)
        if not normalizer.fitted:  # statistics of the training set (per-pixel mean, channel)
            if args.smoke or args.data_source == "synthetic":
                train = test
            else:
                train, _ = kdata.load(recipe.dataset, data_dir=args.data_dir,
                                      source=args.data_source)
            normalizer.fit(train[0])
    expected = tuple(model.input_shape[1:])
    if tuple(test[0].shape[1:]) != expected and None not in expected:
        raise ValueError(f"The model at {path!r} takes images of shape {expected}, but "
                         f"{recipe.dataset} images are {test[0].shape[1:]}.")
    compile_model(model, recipe, args.jit_compile)
    ds = kdata.make_dataset(*test, batch_size=recipe.batch_size, training=False, augment="none",
                            normalizer=normalizer, targets=output_names(model),
                            pipeline=args.pipeline)
    results = model.evaluate(ds, return_dict=True, verbose=0)
    acc = float(results[accuracy_key(model)])
    trainable, _ = _param_counts(model)
    summary = (f"{os.path.basename(path)} on {recipe.dataset} test ({len(test[0])} images) "
               f"[{keras.backend.backend()}]: top-1 accuracy {acc:.4f} | trainable params {trainable:,}")
    if args.export:
        export(model, args.export)  # format from the path: .keras, .onnx, else SavedModel
    return {"test_accuracy": acc, "test": results, "summary": summary, "model_object": model}
