"""Training and inference throughput (images/s) of registered models on this backend.

    python benchmarks/throughput.py --backend jax --model resnet56 --batch-size 128
    python benchmarks/throughput.py --model epsilon_resnet110 --vs resnet110
    python benchmarks/throughput.py --model lrunet14_cifar10 --mixed-precision bfloat16

Compilation and warm-up are excluded: each round times `--steps` training steps
(`model.fit` on in-memory synthetic data; on TensorFlow fed as a `tf.data` dataset
without the autotuner, as `keras_lrn.data.make_dataset` does, since with it Keras'
own array dataset can block up to ~10 s when `fit` drops its iterator) and
`--steps` inference batches (`model.predict_on_batch`). With `--vs` the two models run in one process in
alternating rounds and the ratio of their medians is printed -- the fair way to
compare on a noisy machine. Each result is appended as a JSON line to
`--results` (default benchmarks/results.jsonl).

`--backend` sets `KERAS_BACKEND` before Keras is imported (the environment
variable works too). Peak memory: `peak_rss_mb` is the process's peak resident
host memory (`resource.getrusage`, whole run: Python, the framework, the data);
`peak_device_mb` the accelerator's peak allocation where the backend reports it
(JAX `device.memory_stats()["peak_bytes_in_use"]`, TensorFlow
`tf.config.experimental.get_memory_info("GPU:0")["peak"]`), else null.
`--input-shape 64,64,3` builds the model at another input size.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import sys
import time

import numpy as np
from _fit_input import fit_input  # benchmarks/ is the script's folder

BACKENDS = ("tensorflow", "jax", "torch")


def _inputs(model, batch_size, steps, seed=0):
    rng = np.random.default_rng(seed)
    shape = tuple(model.input_shape[1:])
    x = rng.standard_normal((batch_size * steps, *shape)).astype("float32")
    classes = (model.output["logits"] if isinstance(model.output, dict) else model.output).shape[-1]
    y = rng.integers(0, classes, size=(batch_size * steps,))
    if isinstance(model.output, dict):
        y = {k: y for k in model.output}
    return x, y


def prepare(name, args, model_kwargs=None):
    import keras

    from keras_lrn import models

    model_kwargs = dict(model_kwargs or {})
    if args.input_shape:
        model_kwargs["input_shape"] = args.input_shape
    model = models.get_model(name, **model_kwargs)
    names = tuple(model.output.keys()) if isinstance(model.output, dict) else None
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    model.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9),
                  loss={n: loss for n in names} if names else loss,
                  jit_compile={"auto": "auto", "true": True, "false": False}[args.jit_compile])
    x, y = _inputs(model, args.batch_size, args.steps)
    t0 = time.perf_counter()
    n = args.batch_size * args.warmup
    model.fit(**fit_input(x[:n], _slice(y, n), args.batch_size), epochs=1, verbose=0)
    model.predict_on_batch(x[: args.batch_size])
    compile_s = time.perf_counter() - t0
    return {"name": name, "model": model, "x": x, "y": y, "compile_s": compile_s,
            "train": [], "infer": []}


def _slice(y, n):
    return {k: v[:n] for k, v in y.items()} if isinstance(y, dict) else y[:n]


def run_round(state, args):
    import keras

    model, x, y = state["model"], state["x"], state["y"]
    t0 = time.perf_counter()
    model.fit(**fit_input(x, y, args.batch_size), epochs=1, verbose=0, shuffle=False)
    state["train"].append(len(x) / (time.perf_counter() - t0))
    t0 = time.perf_counter()
    for i in range(args.steps):
        out = model.predict_on_batch(x[i * args.batch_size:(i + 1) * args.batch_size])
    keras.ops.convert_to_numpy(out["logits"] if isinstance(out, dict) else out)
    state["infer"].append(len(x) / (time.perf_counter() - t0))


def peak_device_mb():
    """Peak accelerator memory allocated by this process (MiB), or None (CPU, unknown)."""
    import keras

    try:
        if keras.backend.backend() == "jax":
            import jax

            stats = jax.devices()[0].memory_stats()
            return stats["peak_bytes_in_use"] / 2**20 if stats else None
        if keras.backend.backend() == "tensorflow":
            import tensorflow as tf

            if tf.config.list_physical_devices("GPU"):
                return tf.config.experimental.get_memory_info("GPU:0")["peak"] / 2**20
    except (KeyError, RuntimeError, ValueError):
        return None
    return None


def summary(state, args):
    import keras

    from keras_lrn.testing import count_params

    return {
        "model": state["name"],
        "backend": keras.backend.backend(),
        "dtype_policy": keras.config.dtype_policy().name,
        "batch_size": args.batch_size,
        "train_img_s": statistics.median(state["train"]),
        "infer_img_s": statistics.median(state["infer"]),
        "train_rounds": state["train"],
        "infer_rounds": state["infer"],
        "compile_s": state["compile_s"],
        "trainable_params": count_params(state["model"].trainable_weights),
        "input_shape": list(state["model"].input_shape[1:]),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "peak_device_mb": peak_device_mb(),
        "device": _device(),
        "keras": keras.__version__,
        "machine": f"{platform.machine()} {os.cpu_count()} cpus",
        "date": time.strftime("%Y-%m-%d"),
    }


def _device():
    import keras

    if keras.backend.backend() == "jax":
        import jax

        return jax.devices()[0].device_kind
    return platform.processor() or platform.machine()


def _shape(text):
    return tuple(int(v) for v in text.split(","))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", required=True)
    p.add_argument("--backend", default=None, choices=BACKENDS,
                   help="sets KERAS_BACKEND before Keras is imported (default: the environment's)")
    p.add_argument("--input-shape", type=_shape, default=None, help="e.g. 64,64,3")
    p.add_argument("--vs", default=None, help="second model, run alternately in this process")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--steps", type=int, default=5, help="timed steps per round")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--mixed-precision", nargs="?", const="bfloat16", default=None,
                   choices=("bfloat16", "float16"))
    p.add_argument("--jit-compile", default="auto", choices=("auto", "true", "false"))
    p.add_argument("--results", default=os.path.join(os.path.dirname(__file__), "results.jsonl"))
    args = p.parse_args(argv)
    if args.backend:
        if "keras" in sys.modules and sys.modules["keras"].backend.backend() != args.backend:
            raise ValueError("`--backend` must be given before Keras is imported. "
                             f"Received: backend={args.backend!r}")
        os.environ["KERAS_BACKEND"] = args.backend
    import keras

    if args.mixed_precision:
        keras.config.set_dtype_policy(f"mixed_{args.mixed_precision}")
    states = [prepare(args.model, args)]
    if args.vs:
        states.append(prepare(args.vs, args))
    for _ in range(args.rounds):
        for s in states:
            run_round(s, args)
    rows = [summary(s, args) for s in states]
    if args.vs:
        rows[0]["vs"] = args.vs
        rows[0]["train_ratio"] = rows[0]["train_img_s"] / rows[1]["train_img_s"]
        rows[0]["infer_ratio"] = rows[0]["infer_img_s"] / rows[1]["infer_img_s"]
    print(f"{'model':<28}{'backend':<12}{'policy':<16}{'train img/s':>12}{'infer img/s':>13}"
          f"{'compile s':>11}{'params':>12}{'peak RSS MB':>13}{'peak dev MB':>13}")
    for r in rows:
        dev = f"{r['peak_device_mb']:.0f}" if r["peak_device_mb"] is not None else "-"
        print(f"{r['model']:<28}{r['backend']:<12}{r['dtype_policy']:<16}{r['train_img_s']:>12.1f}"
              f"{r['infer_img_s']:>13.1f}{r['compile_s']:>11.1f}{r['trainable_params']:>12,}"
              f"{r['peak_rss_mb']:>13.0f}{dev:>13}")
    if args.vs:
        print(f"ratio {args.model}/{args.vs}: train {rows[0]['train_ratio']:.3f}, "
              f"inference {rows[0]['infer_ratio']:.3f}")
    with open(args.results, "a") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
    return rows


if __name__ == "__main__":
    main(sys.argv[1:])
