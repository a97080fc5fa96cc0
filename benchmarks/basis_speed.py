"""Training speed of ResNet56-S16U1 (shared bases) vs its unshared twin and the plain ResNet-56.

The *unshared twin* is `BasisResNet(56, "non_shared", 0, 17)`: the same
architecture with each stage's shared basis replaced by per-layer unique
filters (u = 16 + 1), so it has exactly the MACs of S16U1 (145,932,928 at
32x32; the plain ResNet-56 has 125,485,696). `shared / twin` is what the
sharing itself costs in training speed.

Each round times `--steps` training steps (`train_on_batch`, SGD) of every
model, one model after the other, so all of them see the same machine state
(the machine is shared: compare ratios). Medians over `--rounds` are printed
with the load average and appended as JSON lines to `--results`.

Optionally the original PyTorch code is timed in the same rounds (spec section 4
protocol: forward + backward, cross-entropy on random labels, `p.grad = None`,
`torch.set_num_threads(2)`), in a separate process per round:

    python benchmarks/basis_speed.py --torch-ref /path/to/Net_RL2/models/cifar10/resnet.py \\
        --torch-python /path/to/venv-with-torch/bin/python

(the reference code is not part of this repository; fetch it yourself).

    python benchmarks/basis_speed.py --batch-size 128 --rounds 3 --steps 3
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

from keras_lrn import models  # noqa: E402
from keras_lrn.testing import count_params  # noqa: E402


def _step_fn(model, x, y, jit):
    model.compile(keras.optimizers.SGD(0.1, momentum=0.9),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  jit_compile=jit)

    def step():
        t = time.perf_counter()
        model.train_on_batch(x, y)
        return time.perf_counter() - t

    return step


def build(name):
    if name == "twin":
        return models.BasisResNet(56, "non_shared", 0, 17, name="resnet56_twin_s0u17")
    return models.get_model(name)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=3, help="train steps per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--models", default="resnet56_s16u1,twin,resnet56",
                        help="registered names, or 'twin' for BasisResNet(56, 'non_shared', 0, "
                        "17); the first is compared with the others")
    parser.add_argument("--jit", default="auto", choices=("auto", "true", "false"))
    parser.add_argument("--torch-ref", default=None,
                        help="path of Net_RL2 models/cifar10/resnet.py (optional)")
    parser.add_argument("--torch-python", default=sys.executable,
                        help="interpreter with torch for --torch-ref")
    parser.add_argument("--torch-factory", default="ResNet56_SingleShared(16, 1)")
    parser.add_argument("--results", default=os.path.join(os.path.dirname(__file__),
                                                          "results.jsonl"))
    args = parser.parse_args(argv)
    jit = {"auto": "auto", "true": True, "false": False}[args.jit]
    rng = np.random.default_rng(0)
    x = rng.standard_normal((args.batch_size, 32, 32, 3)).astype("float32")
    y = rng.integers(0, 10, size=args.batch_size)
    names = args.models.split(",")
    built = {n: build(n) for n in names}
    steps = {}
    compile_s = {}
    for n, m in built.items():
        steps[n] = _step_fn(m, x, y, jit)
        compile_s[n] = steps[n]()
        steps[n]()  # warm-up
    times = {n: [] for n in names}
    if args.torch_ref:
        times["torch"] = []
    print(f"backend {keras.backend.backend()}, batch {args.batch_size}, {args.steps} steps/round, "
          f"jit_compile={jit}")
    for r in range(args.rounds):
        if args.torch_ref:
            ts = torch_steps(args.torch_python, args.torch_ref, args.torch_factory,
                             args.batch_size, 2, args.steps)
            times["torch"].append(statistics.median(ts))
        for n in names:
            times[n].append(statistics.median(steps[n]() for _ in range(args.steps)))
        print(f"round {r + 1} (load {os.getloadavg()[0]:.1f}): "
              + ", ".join(f"{k} {v[-1]:.3f} s" for k, v in times.items()), flush=True)
    med = {k: statistics.median(v) for k, v in times.items()}
    load = os.getloadavg()
    first = names[0]
    print(f"{'model':28s} {'s/step':>8s} {'train img/s':>12s} {'compile s':>10s} {'params':>10s}")
    for n in names:
        print(f"{built[n].name:28s} {med[n]:8.3f} {args.batch_size / med[n]:12.1f} "
              f"{compile_s[n]:10.1f} {count_params(built[n].trainable_weights):10,}")
    if args.torch_ref:
        print(f"{'original PyTorch (' + args.torch_factory + ')':28s} {med['torch']:8.3f} "
              f"{args.batch_size / med['torch']:12.1f}")
    for n in names[1:] + (["torch"] if args.torch_ref else []):
        print(f"train images/s ratio {first}/{n} = {med[n] / med[first]:.3f}")
    print(f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    with open(args.results, "a") as f:
        for n in names:
            row = {"benchmark": "basis_speed", "model": built[n].name,
                   "backend": keras.backend.backend(), "batch_size": args.batch_size,
                   "s_per_step": med[n], "train_img_s": args.batch_size / med[n],
                   "rounds_s": times[n], "compile_s": compile_s[n], "jit_compile": str(jit),
                   "trainable_params": count_params(built[n].trainable_weights),
                   "load_avg": load[0], "date": time.strftime("%Y-%m-%d")}
            if n != first:
                row["ratio_first_over_this"] = med[n] / med[first]
            f.write(json.dumps(row) + "\n")
        if args.torch_ref:
            f.write(json.dumps({"benchmark": "basis_speed", "model": "torch:" + args.torch_factory,
                                "batch_size": args.batch_size, "s_per_step": med["torch"],
                                "rounds_s": times["torch"], "load_avg": load[0],
                                "date": time.strftime("%Y-%m-%d")}) + "\n")
    return med


if __name__ == "__main__":
    main()
