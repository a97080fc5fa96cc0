"""Training throughput of ResNet56-S16U1 (shared bases) vs the plain ResNet-56.

Alternating timed rounds in one process (so both models see the same machine
state), printing images/s per round and the median ratio shared / plain.

    python benchmarks/basis_speed.py --batch-size 64 --rounds 3 --steps 5
"""

from __future__ import annotations

import argparse
import statistics
import time

import keras
import numpy as np

from keras_lrn import models


def _train_fn(model, x, y, steps):
    model.compile(keras.optimizers.SGD(0.1, momentum=0.9),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    ds = (x, y)

    def run():
        start = time.perf_counter()
        model.fit(*ds, batch_size=len(x) // steps, epochs=1, verbose=0, shuffle=False)
        return len(x) / (time.perf_counter() - start)

    run()  # compile / warm up
    return run


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=5, help="train steps per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--shared", default="resnet56_s16u1")
    parser.add_argument("--plain", default="resnet56")
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    n = args.batch_size * args.steps
    x = rng.uniform(size=(n, 32, 32, 3)).astype("float32")
    y = rng.integers(0, 10, size=n)
    runners = {name: _train_fn(models.get_model(name), x, y, args.steps)
               for name in (args.shared, args.plain)}
    rates = {name: [] for name in runners}
    print(f"backend {keras.backend.backend()}, batch {args.batch_size}, {args.steps} steps/round")
    for r in range(args.rounds):
        for name, run in runners.items():
            rates[name].append(run())
        print(f"round {r + 1}: " + ", ".join(f"{k} {v[-1]:.1f} img/s" for k, v in rates.items()))
    shared, plain = (statistics.median(rates[k]) for k in (args.shared, args.plain))
    print(f"median train images/s: {args.shared} {shared:.1f}, {args.plain} {plain:.1f}; "
          f"ratio shared/plain = {shared / plain:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
