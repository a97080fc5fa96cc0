"""What soft sharing costs in training speed: SWRN vs the identical plain-Conv2D WRN.

    python benchmarks/sharing_cost.py                       # SWRN-16-2-2 vs WRN-16-2, 32x32
    KERAS_BACKEND=jax python benchmarks/sharing_cost.py --depth 28 --width 10 --bank-size 6

Both networks have the same MACs (a template has the shape of one conv); the
SWRN additionally mixes T templates into each shared kernel once per step
(`tensordot`, independent of the batch). Compilation and warm-up are excluded;
the two models train in alternating rounds of `--steps` steps in one process
(the fair comparison on a noisy machine) and the ratio of the median images/s
is printed with the load average.

Optionally the original PyTorch SWRN (lolemacs/soft-sharing, made importable
under Python 3: `num_blocks` as an int, no tuple-unpacking lambda; not part of
this repository) is timed in the same rounds, spec section 4 protocol (forward +
backward, no optimizer step, 2 threads), in a fresh process per round:

    python benchmarks/sharing_cost.py --depth 28 --width 10 --bank-size 6 \\
        --torch-ref /path/to/swrn_py3.py --torch-python /path/to/venv-with-torch/bin/python
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import keras
import numpy as np
from _fit_input import fit_input  # benchmarks/ is the script's folder
from _torch_reference import torch_steps

from keras_lrn.models import SWRN, WRN
from keras_lrn.testing import trainable_params


def _compiled(model):
    model.compile(keras.optimizers.SGD(0.1, momentum=0.9, nesterov=True),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


def _round(model, x, y, batch_size):
    start = time.perf_counter()
    model.fit(**fit_input(x, y, batch_size), epochs=1, verbose=0, shuffle=False)
    return len(x) / (time.perf_counter() - start)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--depth", type=int, default=16)
    p.add_argument("--width", type=int, default=2)
    p.add_argument("--bank-size", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--image-size", type=int, default=32)
    p.add_argument("--steps", type=int, default=5, help="training steps per round")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--torch-ref", default=None, help="the original swrn.py (see above)")
    p.add_argument("--torch-python", default=sys.executable,
                   help="interpreter with torch for --torch-ref")
    args = p.parse_args(argv)

    shape = (args.image_size, args.image_size, 3)
    shared = _compiled(SWRN(args.depth, args.width, args.bank_size, input_shape=shape))
    plain = _compiled(WRN(args.depth, args.width, input_shape=shape))
    rng = np.random.default_rng(0)
    n = args.batch_size * args.steps
    x = rng.standard_normal((n, *shape)).astype("float32")
    y = rng.integers(0, 10, size=(n,))
    for model in (shared, plain):  # compile + warm up
        model.fit(**fit_input(x[: 2 * args.batch_size], y[: 2 * args.batch_size],
                              args.batch_size), epochs=1, verbose=0)
    speeds = {"swrn": [], "wrn": []}
    if args.torch_ref:
        speeds["torch"] = []
        factory = f"swrn({args.depth}, {args.width}, {args.bank_size})"
    for _ in range(args.rounds):
        if args.torch_ref:
            ts = torch_steps(args.torch_python, args.torch_ref, factory, args.batch_size, 1,
                             args.steps)
            speeds["torch"].append(args.batch_size / statistics.median(ts))
        speeds["swrn"].append(_round(shared, x, y, args.batch_size))
        speeds["wrn"].append(_round(plain, x, y, args.batch_size))
    med = {k: statistics.median(v) for k, v in speeds.items()}
    load = os.getloadavg()
    print(f"backend={keras.backend.backend()} depth={args.depth} width={args.width} "
          f"bank_size={args.bank_size} batch={args.batch_size} image={args.image_size} "
          f"steps/round={args.steps} rounds={args.rounds}")
    print(f"SWRN-{args.depth}-{args.width}-{args.bank_size}: {trainable_params(shared):,} params, "
          f"{med['swrn']:.1f} train images/s (rounds: "
          f"{', '.join(f'{s:.1f}' for s in speeds['swrn'])})")
    print(f"WRN-{args.depth}-{args.width}: {trainable_params(plain):,} params, "
          f"{med['wrn']:.1f} train images/s (rounds: "
          f"{', '.join(f'{s:.1f}' for s in speeds['wrn'])})")
    if args.torch_ref:
        print(f"original PyTorch {factory}: {med['torch']:.1f} images/s forward+backward, "
              f"{args.batch_size / med['torch']:.2f} s/step (rounds: "
              f"{', '.join(f'{s:.1f}' for s in speeds['torch'])}); ratio SWRN (ours, with the "
              f"SGD step) / original = {med['swrn'] / med['torch']:.3f}")
    print(f"ratio SWRN/WRN train images/s = {med['swrn'] / med['wrn']:.3f}  "
          f"(load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f})")
    return med["swrn"] / med["wrn"]


if __name__ == "__main__":
    main()
