"""The training command line shared by `train/*.py` (and `keras-lrn-train`).

`python train/cifar10.py --model resnet56 --epochs 1 --data-dir ../shared/datasets/cifar10`

Flags that are not the trainer's own (`--depth 110`, `--epsilon 2.5`,
`--width-mult 0.5`) are passed to the model builder as keyword arguments; an
argument the builder does not take is a `ValueError` listing the ones it does.
Every hyper-parameter flag defaults to the registered model's `Recipe`.
`--distribute data-parallel` (and `--coordinator/--num-processes/--process-id`
for several hosts) trains on several devices with `--batch-size` as the global
batch: see `keras_lrn.training.distribute`.
"""

from __future__ import annotations

import argparse
import ast
import inspect
import json
import sys
import time

DATASETS = ("cifar10", "cifar100", "fashion_mnist", "svhn", "imagenet")
SCHEDULE_POLICIES = ("piecewise", "epsilon_adaptive", "constant")


def _bool(text):
    if isinstance(text, bool):
        return text
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true/false, got {text!r}")


def build_parser(dataset="cifar10"):
    p = argparse.ArgumentParser(
        allow_abbrev=False,  # unknown flags are model arguments: never guess a trainer flag
        prog=f"train/{dataset}.py",
        description=f"Train or evaluate a keras_lrn model on {dataset}. Unrecognised "
        "--flags are passed to the model builder (e.g. --depth 110 --epsilon 2.5).",
    )
    p.add_argument("--model", default="resnet20", help="registry name (keras_lrn.models.list_models())")
    p.add_argument("--list-models", action="store_true", help="print the registered names and exit")
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--lr", type=float, default=None, help="initial learning rate (rescales the schedule)")
    p.add_argument("--momentum", type=float, default=None)
    p.add_argument("--nesterov", type=_bool, default=None, nargs="?", const=True)
    p.add_argument("--weight-decay", type=float, default=None,
                   help="coupled L2: loss += wd/2*sum(w^2) (PyTorch SGD convention)")
    p.add_argument("--weight-decay-exclude", action="append", default=None, metavar="REGEX",
                   help="variable paths exempt from weight decay (repeatable)")
    p.add_argument("--schedule", default=None,
                   help="'epoch:lr,...' (0-based epochs), 'constant', or 'epsilon_adaptive'")
    p.add_argument("--epsilon-warmup", type=int, default=None, metavar="EPOCHS",
                   help="epsilon-ResNet: train with epsilon = 0 for the first EPOCHS epochs "
                   "(the reference's 2020 schedule used 150)")
    p.add_argument("--data-dir", default=None, help="local copy of the data set (see README)")
    p.add_argument("--data-source", default="auto",
                   choices=("auto", "local", "tfds", "keras", "synthetic"))
    p.add_argument("--val-split", type=float, default=None,
                   help="fraction of the training set held out for validation (seeded)")
    p.add_argument("--train-subset", type=int, default=None,
                   help="train on the first N (shuffled, seeded) training images only")
    p.add_argument("--output-dir", default=None, help="where logs, checkpoints and args go")
    p.add_argument("--resume", action="store_true", help="continue the run in --output-dir")
    p.add_argument("--evaluate", default=None, metavar="PATH",
                   help="evaluate a saved model (.keras) on the test set and exit")
    p.add_argument("--export", default=None, metavar="PATH", help="export the trained model here at the end: PATH.keras, PATH.onnx (the onnx extra), else a SavedModel folder")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--mixed-precision", nargs="?", const="bfloat16", default=None,
                   choices=("bfloat16", "float16"))
    p.add_argument("--jit-compile", default="auto", choices=("auto", "true", "false"))
    p.add_argument("--pipeline", default="auto", choices=("auto", "tf", "numpy"))
    p.add_argument("--steps-per-epoch", type=int, default=None)
    p.add_argument("--smoke", action="store_true",
                   help="a few steps on tiny synthetic data (checks the whole path)")
    p.add_argument("--verbose", type=int, default=None, choices=(0, 1, 2))
    if dataset == "imagenet":
        p.add_argument("--image-size", type=int, default=None, metavar="S",
                       help="training crop size (default 224); validation resizes the shorter "
                       "side to round(S*256/224) and centre-crops S")
        p.add_argument("--workers", type=int, default=None,
                       help="decoding workers of the numpy (Pillow) pipeline (default min(8, CPUs))")
    from keras_lrn.training.distribute import add_arguments

    add_arguments(p)  # --distribute, multi-host, --gate-max
    return p


def _parse_model_kwargs(extra):
    """`['--depth', '110', '--epsilon=2.5', '--flag']` -> {'depth': 110, 'epsilon': 2.5, 'flag': True}."""
    out, i = {}, 0
    while i < len(extra):
        token = extra[i]
        if not token.startswith("--") or len(token) < 3:
            raise ValueError(f"Unexpected argument {token!r}: model arguments look like --name value.")
        key, _, value = token[2:].partition("=")
        if not _:
            if i + 1 < len(extra) and not extra[i + 1].startswith("--"):
                value = extra[i + 1]
                i += 1
            else:
                value = "True"
        try:
            parsed = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            parsed = value
        out[key.replace("-", "_")] = parsed
        i += 1
    return out


def _check_model_kwargs(entry, kwargs):
    params = inspect.signature(entry.builder).parameters
    allowed = sorted(n for n, p in params.items()
                     if n not in ("self", "kwargs", "input_tensor", "weights", "name", "dtype")
                     and p.kind is not inspect.Parameter.VAR_KEYWORD)
    for key in kwargs:
        if key not in params:
            raise ValueError(
                f"Unknown argument --{key.replace('_', '-')} for model {entry.name!r}. "
                f"Allowed model arguments: {', '.join('--' + a.replace('_', '-') for a in allowed)} "
                "(and the trainer's own flags, see --help)."
            )


def _check_args(args):
    for name in ("epochs", "batch_size", "steps_per_epoch", "train_subset", "epsilon_warmup"):
        v = getattr(args, name)
        if v is not None and v < 1:
            raise ValueError(f"`--{name.replace('_', '-')}` must be a positive integer. "
                             f"Received: {name}={v}")
    for name in ("lr",):
        v = getattr(args, name)
        if v is not None and v <= 0:
            raise ValueError(f"`--lr` must be > 0. Received: lr={v}")
    for name in ("momentum", "weight_decay"):
        v = getattr(args, name)
        if v is not None and v < 0:
            raise ValueError(f"`--{name.replace('_', '-')}` must be >= 0. Received: {name}={v}")
    if args.val_split is not None and not 0.0 <= args.val_split < 1.0:
        raise ValueError(f"`--val-split` must be in [0, 1). Received: val_split={args.val_split}")
    if args.resume and not args.output_dir:
        raise ValueError("`--resume` needs `--output-dir` (the run to continue).")


def resolve(argv=None, dataset="cifar10"):
    """Parse `argv` into (args, model_kwargs, entry, recipe); raise ValueError on bad input."""
    from keras_lrn import models
    from keras_lrn.training.schedules import check_schedule, parse_schedule

    if dataset not in DATASETS:
        raise ValueError(f"`dataset` must be one of {DATASETS}. Received: dataset={dataset!r}")
    parser = build_parser(dataset)
    args, extra = parser.parse_known_args(argv)
    if args.list_models:
        return args, {}, None, None
    _check_args(args)
    from keras_lrn.training.distribute import check_args as check_distribute_args

    check_distribute_args(args)
    model_kwargs = _parse_model_kwargs(extra)
    entry = models.get_entry(args.model)
    _check_model_kwargs(entry, model_kwargs)
    recipe = entry.recipe_for(dataset)
    changes = {}
    for flag in ("epochs", "batch_size", "momentum", "nesterov", "weight_decay", "val_split"):
        value = getattr(args, flag)
        if value is not None:
            changes[flag] = value
    if args.weight_decay_exclude is not None:
        changes["weight_decay_exclude"] = tuple(args.weight_decay_exclude)
    if args.schedule is not None:
        if args.schedule in ("constant", "epsilon_adaptive"):
            changes["lr_policy"] = args.schedule
        else:
            changes["schedule"] = parse_schedule(args.schedule)
            changes["lr_policy"] = "piecewise"
    schedule = check_schedule(changes.get("schedule", recipe.schedule))
    if args.lr is not None:
        factor = args.lr / schedule[0][1]
        schedule = tuple((e, v * factor) for e, v in schedule)
        changes["lr"] = args.lr
    else:
        changes["lr"] = schedule[0][1]
    changes["schedule"] = schedule
    extra = dict(recipe.extra or {})
    if "epsilon" in extra and "epsilon" in inspect.signature(entry.builder).parameters:
        model_kwargs.setdefault("epsilon", extra["epsilon"])
    if args.epsilon_warmup is not None:
        if "epsilon" not in inspect.signature(entry.builder).parameters:
            raise ValueError(f"`--epsilon-warmup` applies to epsilon-ResNets; {entry.name!r} has "
                             "no epsilon.")
        eps = model_kwargs.get("epsilon", 2.5)
        extra["epsilon_warmup"] = [(0, 0.0), (args.epsilon_warmup, float(eps))]
    changes["extra"] = extra
    if args.smoke:
        changes.setdefault("epochs", 1)
        changes.setdefault("batch_size", 16)
        changes["epochs"] = min(changes["epochs"], 2)
        changes["batch_size"] = min(changes["batch_size"], 32)
    recipe = recipe.replace(**changes)
    if dataset == "imagenet":  # streamed from files: the ImageNet transform and statistics
        from keras_lrn.training.imagenet import check_args, imagenet_recipe

        recipe = imagenet_recipe(recipe)
        check_args(args, recipe)
    if recipe.lr_policy not in SCHEDULE_POLICIES:
        raise ValueError(f"`lr_policy` must be one of {SCHEDULE_POLICIES}. "
                         f"Received: {recipe.lr_policy!r}")
    return args, model_kwargs, entry, recipe


def main(argv=None, dataset="cifar10"):
    """Entry point of `train/<dataset>.py`: returns a process exit code."""
    try:
        args, model_kwargs, entry, recipe = resolve(argv, dataset)
        if args.list_models:
            from keras_lrn import models

            print("\n".join(models.list_models()))
            return 0
        from keras_lrn.training.core import evaluate_path, train

        if args.evaluate:
            result = evaluate_path(args, recipe, entry, model_kwargs)
        else:
            result = train(args, recipe, entry, model_kwargs)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(result["summary"])
    return 0


def write_json(path, payload):
    from keras_lrn.export import atomic_path

    with atomic_path(path) as tmp, open(tmp, "w") as f:
        json.dump(payload, f, indent=2, sort_keys=True, default=str)


def now():
    return time.strftime("%Y-%m-%d %H:%M:%S")


__all__ = ["build_parser", "main", "resolve", "write_json", "now"]
