"""LruNet speed on the current backend (KERAS_BACKEND=tensorflow|jax).

Prints, measured in ONE process with alternating A/B rounds (so that load from
other processes on a shared machine hits every candidate alike):

1. per-formulation training-step times of the depthwise (x2) and grouped 1x1
   (groups=8) layers of an LRU block and of the LRU channel shuffle, at the
   LruNet-14 stage-1 size (batch 128, 16x16, 64 -> 128 -> 64 channels);
2. compile time (first train step), median s/step and train images/s at batch
   128 (SGD, `train_on_batch`), and inference images/s (batch 500) of LruNet-14
   vs LruNet-1 and the baselines, with the per-backend "auto" formulations.

`jit_compile="auto"` (Keras' default) resolves to XLA on JAX and to *no* XLA for
these models on TensorFlow-CPU (`model.jit_compile` is printed). Do not force
XLA on TensorFlow: XLA:CPU's depthwise-conv gradient makes an LruNet training
step ~100x slower.

The original PyTorch code takes 3.1 s per LruNet-14 training step at batch 128
on this 2-core CPU (spec section 4).

Usage: python benchmarks/lrunet_speed.py [--rounds 5] [--skip-models] [--skip-layers]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import keras  # noqa: E402
import numpy as np  # noqa: E402

from keras_lrn.layers import fast_conv  # noqa: E402

JIT = "auto"


def _step_fn(model, x, y):
    model.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True)
                  if y.ndim == 1 else "mse", jit_compile=JIT)
    return lambda: model.train_on_batch(x, y)


def _layer_model(layer, shape):
    inp = keras.Input(shape[1:])
    return keras.Model(inp, layer(inp))


def timed(fn):
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def ab(cands, rounds):
    """cands: {name: fn}. Warm up (compile) each, then alternate; return medians."""
    compile_t = {k: timed(f) for k, f in cands.items()}
    for f in cands.values():
        f()
    times = {k: [] for k in cands}
    for _ in range(rounds):
        for k, f in cands.items():
            times[k].append(timed(f))
    return compile_t, {k: float(np.median(v)) for k, v in times.items()}


def bench_layers(rounds):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((128, 16, 16, 64)).astype("float32")
    y = rng.standard_normal((128, 16, 16, 128)).astype("float32")
    cands = {}
    for f in ("native", "shift"):
        m = _layer_model(fast_conv.FastDepthwiseConv2D(3, depth_multiplier=2, formulation=f),
                         x.shape)
        cands[f"depthwise x2 {f}"] = _step_fn(m, x, y)
    c, t = ab(cands, rounds)
    for k in cands:
        print(f"{k:28s} compile+1st {c[k]:7.2f} s   step {1000 * t[k]:8.1f} ms", flush=True)
    x2 = rng.standard_normal((128, 16, 16, 128)).astype("float32")
    y2 = rng.standard_normal((128, 16, 16, 64)).astype("float32")
    cands = {}
    for f in ("native", "einsum", "blockdiag"):
        m = _layer_model(fast_conv.GroupedPointwiseConv2D(64, groups=8, formulation=f), x2.shape)
        cands[f"grouped1x1 g8 {f}"] = _step_fn(m, x2, y2)
    c, t = ab(cands, rounds)
    for k in cands:
        print(f"{k:28s} compile+1st {c[k]:7.2f} s   step {1000 * t[k]:8.1f} ms", flush=True)


def bench_shuffle(rounds):
    from keras_lrn.layers import reuse
    rng = np.random.default_rng(0)
    x = rng.standard_normal((128, 16, 16, 64)).astype("float32")
    cands = {}
    for f in ("stack", "flip"):
        inp = keras.Input(x.shape[1:])
        out = keras.layers.Lambda(lambda t, f=f: reuse.lru_channel_shuffle(t, f))(
            keras.layers.Dense(64)(inp))
        cands[f"lru shuffle {f}"] = _step_fn(keras.Model(inp, out), x, x)
    c, t = ab(cands, rounds)
    for k in cands:
        print(f"{k:28s} compile+1st {c[k]:7.2f} s   step {1000 * t[k]:8.1f} ms", flush=True)
    bench_shuffle(rounds)


def bench_models(rounds, names):
    from keras_lrn import models
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (128, 32, 32, 3)).astype("float32")
    y = rng.integers(0, 10, 128)
    xi = rng.uniform(0, 1, (500, 32, 32, 3)).astype("float32")
    train, infer = {}, {}
    for name in names:
        m = models.get_model(name)
        train[name] = _step_fn(m, x, y)
        print(f"{name}: jit_compile={m.jit_compile}", flush=True)
        infer[name] = (lambda m=m: m.predict_on_batch(xi))
    c, t = ab(train, rounds)
    ci, ti = ab(infer, rounds)
    print(f"median of {rounds} steps, load average {os.getloadavg()[0]:.1f}")
    print(f"{'model':28s} {'compile s':>9s} {'s/step@128':>11s} {'train img/s':>12s} "
          f"{'infer img/s':>12s}")
    for k in names:
        print(f"{k:28s} {c[k]:9.1f} {t[k]:11.3f} {128 / t[k]:12.1f} {500 / ti[k]:12.1f}",
              flush=True)
    print("reference (PyTorch, spec section 4): LruNet-14 3.1 s/step, LruNet-1 0.245 s/step")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--skip-layers", action="store_true")
    p.add_argument("--skip-models", action="store_true")
    p.add_argument("--models", default="lrunet14_cifar10,lrunet1_cifar10,mobilenet_0.25x_cifar10,"
                   "mobilenetv2_0.25x_cifar10,shufflenet_0.5x_g3_cifar10,"
                   "shufflenetv2_0.25x_cifar10")
    p.add_argument("--jit", default="auto", choices=("auto", "true", "false"),
                   help="model.compile(jit_compile=...); Keras' default 'auto' is XLA on JAX "
                   "and no XLA on TensorFlow-CPU")
    a = p.parse_args()
    global JIT
    JIT = {"auto": "auto", "true": True, "false": False}[a.jit]
    print(f"backend: {keras.backend.backend()}  (timings: medians of alternating A/B rounds "
          f"in one process; the machine is shared, compare ratios; jit_compile={JIT}; "
          f"load average {os.getloadavg()[0]:.1f})")
    if not a.skip_layers:
        bench_layers(a.rounds)
    if not a.skip_models:
        bench_models(a.rounds, a.models.split(","))


if __name__ == "__main__":
    main()
