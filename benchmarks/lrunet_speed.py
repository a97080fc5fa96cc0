"""LruNet speed on the current backend (KERAS_BACKEND=tensorflow|jax).

Prints, measured in ONE process with alternating A/B rounds (so that load from
other processes on a shared machine hits every candidate alike):

1. per-formulation training-step times of the depthwise (x2) and grouped 1x1
   (groups=8) layers of an LRU block, of its BatchNormalization
   (`FastBatchNormalization` "native" = Keras' code vs "matmul") and of the LRU
   channel shuffle, at the LruNet-14 stage-1 size (batch 128, 16x16, 64 -> 128
   -> 64 channels);
2. compile time (first train step), median s/step and train images/s at batch
   128 (SGD, `train_on_batch`), and inference images/s (batch 500) of LruNet-14
   vs LruNet-1 and the baselines, with the per-backend "auto" formulations;
3. optionally, in the same alternating rounds, the original PyTorch code's
   training step (spec section 4 protocol: forward + backward, cross-entropy on
   random labels, `p.grad = None`, `torch.set_num_threads(2)`; median of 3 steps
   after 2 warm-up steps in a fresh process per round) for the LruNet models:

       python benchmarks/lrunet_speed.py --skip-layers --models lrunet14_cifar10 \\
           --torch-ref /path/to/CNN-layer-reuse/models/lrunet.py \\
           --torch-python /path/to/venv-with-torch/bin/python

   (the reference code is not part of this repository; fetch it yourself).

`jit_compile="auto"` (Keras' default) resolves to XLA on JAX and to *no* XLA for
these models on TensorFlow-CPU (`model.jit_compile` is printed). Do not force
XLA on TensorFlow: XLA:CPU's depthwise-conv gradient makes an LruNet training
step ~100x slower.

The original PyTorch code takes 3.1 s per LruNet-14 training step at batch 128
on this 2-core CPU at load 2-5 (spec section 4); under heavier load it slows down
much more than the Keras port, so only same-moment ratios are meaningful.

Usage: python benchmarks/lrunet_speed.py [--rounds 5] [--skip-models] [--skip-layers]
       [--torch-ref FILE --torch-python PYTHON] [--results FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import keras  # noqa: E402
import numpy as np  # noqa: E402
from _torch_reference import torch_steps  # noqa: E402

from keras_lrn.layers import fast_conv  # noqa: E402

JIT = "auto"



def torch_step_fn(python, path, factory, batch=128, warm=2, steps=3):
    """A candidate for `ab`: one fresh reference process, returns its median s/step."""
    def run():
        return statistics.median(torch_steps(python, path, factory, batch, warm, steps))
    return run


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


def ab(cands, rounds, external=None):
    """cands: {name: fn}. Warm up (compile) each, then alternate; return medians.

    `external`: {name: fn returning its own seconds/step} (e.g. the PyTorch
    reference in a subprocess), run first in every round and not warmed up here.
    """
    external = external or {}
    compile_t = {k: timed(f) for k, f in cands.items()}
    for f in cands.values():
        f()
    times = {k: [] for k in list(external) + list(cands)}
    for _ in range(rounds):
        for k, f in external.items():
            times[k].append(f())
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


def bench_batch_norm(rounds):
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((128, 16, 16, 128)) * 2 + 1).astype("float32")
    cands = {}
    for f in ("native", "matmul"):
        bn = fast_conv.FastBatchNormalization(momentum=0.9, epsilon=1e-5, formulation=f)
        cands[f"batch norm {f}"] = _step_fn(_layer_model(bn, x.shape), x, x)
    c, t = ab(cands, rounds)
    for k in cands:
        print(f"{k:28s} compile+1st {c[k]:7.2f} s   step {1000 * t[k]:8.1f} ms", flush=True)


def bench_models(rounds, names, torch_ref=None, torch_python=None, results=None):
    from keras_lrn import models
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (128, 32, 32, 3)).astype("float32")
    y = rng.integers(0, 10, 128)
    xi = rng.uniform(0, 1, (500, 32, 32, 3)).astype("float32")
    train, infer, external = {}, {}, {}
    for name in names:
        m = models.get_model(name)
        train[name] = _step_fn(m, x, y)
        print(f"{name}: jit_compile={m.jit_compile}", flush=True)
        infer[name] = (lambda m=m: m.predict_on_batch(xi))
        cfg = m.get_config()
        if torch_ref and type(m).__name__ == "LruNet" and cfg["classes"] == 10 and (
                cfg["input_shape"][-1] == 3):
            factory = (f"LruNet(num_classes=10, width_mult={cfg['width_mult']:g}, "
                       f"layer_reuse={cfg['layer_reuse']}, drop={cfg['dropout']:g})")
            external[f"torch {name}"] = torch_step_fn(torch_python, torch_ref, factory)
    c, t = ab(train, rounds, external)
    ci, ti = ab(infer, rounds)
    load = os.getloadavg()
    print(f"median of {rounds} steps, load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}")
    print(f"{'model':28s} {'compile s':>9s} {'s/step@128':>11s} {'train img/s':>12s} "
          f"{'infer img/s':>12s}")
    for k in names:
        print(f"{k:28s} {c[k]:9.1f} {t[k]:11.3f} {128 / t[k]:12.1f} {500 / ti[k]:12.1f}",
              flush=True)
    for k in external:
        name = k.split(" ", 1)[1]
        print(f"{k:28s} {'':9s} {t[k]:11.3f} {128 / t[k]:12.1f}   "
              f"(ours/original train images/s: {t[k] / t[name]:.2f})", flush=True)
    print("reference (PyTorch, spec section 4, load 2-5): LruNet-14 3.1 s/step, "
          "LruNet-1 0.245 s/step")
    if results:
        with open(results, "a") as f:
            for k in list(external) + names:
                row = {"benchmark": "lrunet_speed", "model": k, "batch_size": 128,
                       "backend": "torch" if k in external else keras.backend.backend(),
                       "s_per_step": t[k], "train_img_s": 128 / t[k],
                       "jit_compile": str(JIT), "load_avg": load[0],
                       "date": time.strftime("%Y-%m-%d")}
                if k in names:
                    row.update(compile_s=c[k], infer_img_s=500 / ti[k])
                f.write(json.dumps(row) + "\n")


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
    p.add_argument("--torch-ref", default=None,
                   help="path of CNN-layer-reuse models/lrunet.py: also time the original code")
    p.add_argument("--torch-python", default=sys.executable,
                   help="interpreter with torch for --torch-ref")
    p.add_argument("--results", default=os.path.join(os.path.dirname(__file__), "results.jsonl"),
                   help="model timings are appended here as JSON lines ('' to skip)")
    a = p.parse_args()
    global JIT
    JIT = {"auto": "auto", "true": True, "false": False}[a.jit]
    print(f"backend: {keras.backend.backend()}  (timings: medians of alternating A/B rounds "
          f"in one process; the machine is shared, compare ratios; jit_compile={JIT}; "
          f"load average {os.getloadavg()[0]:.1f})")
    if not a.skip_layers:
        bench_layers(a.rounds)
        bench_batch_norm(a.rounds)
        bench_shuffle(a.rounds)
    if not a.skip_models:
        bench_models(a.rounds, a.models.split(","), a.torch_ref, a.torch_python, a.results)


if __name__ == "__main__":
    main()
