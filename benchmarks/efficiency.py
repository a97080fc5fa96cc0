"""Parameter efficiency: test accuracy against parameters and MACs, same training budget.

    python benchmarks/efficiency.py --subset 2000 --epochs 2 --test-subset 2000
    KERAS_BACKEND=jax python benchmarks/efficiency.py --models resnet56 --epochs 15 \\
        --subset 0 --data-dir /path/to/cifar10 --pipeline numpy      # a GPU run

Trains one small configuration of each family on real CIFAR-10 (loaded with
`keras_lrn.data.load`, default `../shared/datasets/cifar10`) with one recipe for
all: SGD (momentum 0.9, Nesterov), learning rate 0.1 with a one-epoch linear
warm-up and cosine decay to 0, coupled L2 5e-4, batch 128, pad-4 crop + flip,
per-channel normalisation, side heads (epsilon-ResNet) weighted 0.1. Everything
is seeded (`--seed`): the subset drawn, the initial weights, the batch order and
the augmentations.

Each model's row (model, family, params, MACs, epochs, train subset size, test
top-1, training wall time, backend, seed, exact command) is written to
`OUT/efficiency.csv` (rewritten after each model; also appended to
`OUT/efficiency.jsonl`) and the plot of test top-1
against parameters and against MACs to `OUT/efficiency.png`.

A model is a registry name, optionally with builder overrides:
`swrn28_4_6_cifar10:depth=16,bank_size=2` (shown as `swrn16_4_2`, see
`DEFAULT_MODELS`). An RLA CIFAR ResNet is added when one is registered (the
registry names matching `rla*cifar*`). Parameters are trainable parameters of
the inference network, MACs those of `keras_lrn.profile` (batch 1).

Defaults: on a CPU, 2,000 training images for 2 epochs and 2,000 test images;
with a GPU, the full 50,000 / 10,000 for 15 epochs.
"""

from __future__ import annotations

import argparse
import ast
import csv
import json
import math
import os
import shlex
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_DATA_DIR = os.path.normpath(os.path.join(HERE, "..", "..", "shared", "datasets", "cifar10"))
# (label, registry name, builder overrides)
DEFAULT_MODELS = [
    ("resnet56", "resnet56", {}),
    ("resnet56_s16u1", "resnet56_s16u1", {}),
    ("swrn16_4_2", "swrn28_4_6_cifar10", {"depth": 16, "width": 4, "bank_size": 2}),
    ("lrunet14", "lrunet14_cifar10", {}),
    ("epsilon_resnet56", "epsilon_resnet56", {}),
]
RLA_PATTERN = "rla*cifar*"
CSV_FIELDS = ("model", "registry_name", "overrides", "family", "params", "macs", "epochs",
              "train_subset", "test_subset", "batch_size", "steps_per_epoch", "test_top1",
              "train_wall_s", "backend", "device", "seed", "command")


def parse_model(spec):
    """`name` or `name:key=value,...` -> (label, name, overrides)."""
    name, _, rest = spec.partition(":")
    overrides = {}
    for item in filter(None, rest.split(",")):
        key, eq, value = item.partition("=")
        if not eq:
            raise ValueError(f"`--models` items are NAME or NAME:key=value,... Received: {spec!r}")
        try:
            overrides[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            overrides[key] = value
    return spec if overrides else name, name, overrides


def default_models(models):
    chosen = [m for m in DEFAULT_MODELS if m[1] in models.list_models()]
    rla = models.list_models(RLA_PATTERN)
    if rla:
        # The one closest to ResNet-56, to compare with it.
        pick = next((n for n in rla if "56" in n), rla[0])
        chosen.append((pick, pick, {}))
    else:
        print(f"note: no registered model matches {RLA_PATTERN!r}; RLA-Net is left out")
    return chosen


def has_gpu():
    import keras

    if keras.backend.backend() == "jax":
        import jax

        return any(d.platform == "gpu" for d in jax.devices())
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        return bool(tf.config.list_physical_devices("GPU"))
    return False


def device_name():
    import keras

    if keras.backend.backend() == "jax":
        import jax

        return str(jax.devices()[0].device_kind)
    return "gpu" if has_gpu() else "cpu"


def subset(x, y, n, seed):
    if not n or n >= len(x):
        return x, y
    idx = np.random.default_rng(seed).permutation(len(x))[:n]
    return x[idx], y[idx]


def build_model(name, overrides, seed):
    import keras

    from keras_lrn import models

    keras.utils.set_random_seed(seed)
    return models.get_entry(name).build(**overrides)


def compile_for_budget(model, steps_total, warmup_steps, args):
    import keras

    from keras_lrn.training.weight_decay import apply_weight_decay

    apply_weight_decay(model, args.weight_decay)
    schedule = keras.optimizers.schedules.CosineDecay(
        0.0, max(steps_total - warmup_steps, 1), alpha=0.0, warmup_target=args.lr,
        warmup_steps=warmup_steps)
    names = tuple(model.output.keys()) if isinstance(model.output, dict) else None
    if names:
        main = "logits" if "logits" in names else names[0]
        loss = {n: keras.losses.SparseCategoricalCrossentropy(from_logits=True) for n in names}
        loss_weights = {n: 1.0 if n == main else 0.1 for n in names}
        metrics = {main: ["accuracy"]}
    else:
        main, loss, loss_weights, metrics = None, keras.losses.SparseCategoricalCrossentropy(
            from_logits=True), None, ["accuracy"]
    model.compile(keras.optimizers.SGD(schedule, momentum=0.9, nesterov=True), loss=loss,
                  loss_weights=loss_weights, metrics=metrics)
    return names, (f"{main}_accuracy" if main else "accuracy")


def run_one(label, name, overrides, data, args, command):
    import keras

    from keras_lrn import data as kdata
    from keras_lrn import models
    from keras_lrn.export import inference_network
    from keras_lrn.profile import profile

    (x_train, y_train), (x_test, y_test) = data
    entry = models.get_entry(name)
    model = build_model(name, overrides, args.seed)
    net = inference_network(model)
    prof = profile(net)
    batches = math.ceil(len(x_train) / args.batch_size)
    steps = min(batches, args.steps_per_epoch) if args.steps_per_epoch else batches
    names, acc_key = compile_for_budget(model, steps * args.epochs, steps, args)
    norm = kdata.Normalizer("channel").fit(x_train)
    train_ds = kdata.make_dataset(x_train, y_train, batch_size=args.batch_size, training=True,
                                  augment="cifar", normalizer=norm, seed=args.seed,
                                  targets=names, pipeline=args.pipeline)
    test_ds = kdata.make_dataset(x_test, y_test, batch_size=args.batch_size, training=False,
                                 augment="none", normalizer=norm, targets=names,
                                 pipeline=args.pipeline)
    callbacks = [kdata.EpochSync(train_ds)]
    t0 = time.perf_counter()
    model.fit(train_ds, epochs=args.epochs, steps_per_epoch=steps, callbacks=callbacks,
              verbose=2 if args.verbose else 0, shuffle=False)
    wall = time.perf_counter() - t0
    result = model.evaluate(test_ds, return_dict=True, verbose=0)
    row = {
        "model": label, "registry_name": name,
        "overrides": json.dumps(overrides, sort_keys=True) if overrides else "",
        "family": entry.family, "params": prof.trainable, "macs": prof.macs,
        "epochs": args.epochs, "train_subset": len(x_train), "test_subset": len(x_test),
        "batch_size": args.batch_size, "steps_per_epoch": steps,
        "test_top1": round(float(result[acc_key]), 4), "train_wall_s": round(wall, 1),
        "backend": keras.backend.backend(), "device": device_name(), "seed": args.seed,
        "command": command,
    }
    del model, net
    keras.backend.clear_session()
    return row


def write_csv(rows, path):
    tmp = path + ".tmp"
    with open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=CSV_FIELDS)
        w.writeheader()
        w.writerows(rows)
    os.replace(tmp, path)


def plot(rows, path, command):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.6))
    for ax, key, xlabel in ((axes[0], "params", "trainable parameters"),
                            (axes[1], "macs", "MACs (batch 1)")):
        for r in rows:
            ax.scatter(r[key], 100 * r["test_top1"], s=30)
            ax.annotate(r["model"], (r[key], 100 * r["test_top1"]), fontsize=7,
                        xytext=(3, 3), textcoords="offset points")
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())  # no overlapping labels
        ax.set_xlabel(xlabel)
        ax.set_ylabel("CIFAR-10 test top-1 (%)")
        ax.grid(alpha=0.3, which="both")
    r0 = rows[0]
    fig.suptitle(f"{r0['train_subset']} training images, {r0['epochs']} epochs, "
                 f"{r0['test_subset']} test images, seed {r0['seed']}, {r0['backend']} "
                 f"({r0['device']})\n{command}", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--models", nargs="+", default=None,
                   help="registry names, NAME:key=value,... for builder overrides "
                        "(default: one small configuration per family)")
    p.add_argument("--subset", type=int, default=None,
                   help="training images (0: all; default 2000 on CPU, all with a GPU)")
    p.add_argument("--test-subset", type=int, default=None,
                   help="test images (0: all; default 2000 on CPU, all with a GPU)")
    p.add_argument("--epochs", type=int, default=None, help="default 2 on CPU, 15 with a GPU")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--steps-per-epoch", type=int, default=None,
                   help="cap on steps per epoch (the same for every model)")
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--weight-decay", type=float, default=5e-4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-dir", default=DEFAULT_DATA_DIR)
    p.add_argument("--pipeline", default="auto", choices=("auto", "tf", "numpy"))
    p.add_argument("--out", default=os.path.join(HERE, "efficiency"))
    p.add_argument("--no-plot", action="store_true")
    p.add_argument("--verbose", action="store_true")
    args = p.parse_args(argv)
    command = "python benchmarks/efficiency.py " + " ".join(
        shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv))

    import keras

    from keras_lrn import data as kdata
    from keras_lrn import models

    gpu = has_gpu()
    args.subset = (0 if gpu else 2000) if args.subset is None else args.subset
    args.test_subset = (0 if gpu else 2000) if args.test_subset is None else args.test_subset
    args.epochs = (15 if gpu else 2) if args.epochs is None else args.epochs
    specs = [parse_model(m) for m in args.models] if args.models else default_models(models)
    for _, name, _ in specs:
        models.get_entry(name)  # unknown names fail before any training
    (x_train, y_train), (x_test, y_test) = kdata.load("cifar10", data_dir=args.data_dir)
    train = subset(x_train, y_train, args.subset, args.seed)
    test = subset(x_test, y_test, args.test_subset, args.seed + 1)
    print(f"backend {keras.backend.backend()} ({device_name()}), {len(train[0])} training and "
          f"{len(test[0])} test images, {args.epochs} epochs, batch {args.batch_size}, "
          f"seed {args.seed}")
    os.makedirs(args.out, exist_ok=True)
    csv_path = os.path.join(args.out, "efficiency.csv")
    rows = []
    for label, name, overrides in specs:
        row = run_one(label, name, overrides, (train, test), args, command)
        rows.append(row)
        write_csv(rows, csv_path)
        with open(os.path.join(args.out, "efficiency.jsonl"), "a") as f:
            f.write(json.dumps(row) + "\n")
        print(f"{row['model']:<22}{row['family']:<16}{row['params']:>11,}{row['macs']:>14,}"
              f"  top-1 {row['test_top1']:.4f}  {row['train_wall_s']:>7.1f} s", flush=True)
    if not args.no_plot:
        plot(rows, os.path.join(args.out, "efficiency.png"), command)
    print_table(rows)
    return rows


def print_table(rows):
    print("\n| model | family | params | MACs | test top-1 | train wall s |")
    print("|---|---|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['model']} | {r['family']} | {r['params']:,} | {r['macs']:,} | "
              f"{100 * r['test_top1']:.2f}% | {r['train_wall_s']} |")


if __name__ == "__main__":
    main()
