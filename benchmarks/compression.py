"""Inference images/s of a compressed epsilon-ResNet against its gated original.

    python benchmarks/compression.py --depth 110 --drop 0.5

Drops a fraction of the blocks (every k-th, deterministic; in a trained
network `compress` would pick the gated-off ones), compresses, and times
`predict_on_batch` of both networks in alternating rounds in one process. The
expected speed-up is the ratio of the multiply-accumulates (profile of the
convolutions), printed next to the measured one.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import keras
import numpy as np

import keras_lrn
from keras_lrn.testing import count_params


def conv_macs(model):
    """Conv + dense multiply-accumulates at batch 1 (from the layers' output shapes)."""
    total = 0
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D):
            _, h, w, c = layer.output.shape
            kh, kw, cin, _ = layer.kernel.shape
            total += h * w * c * kh * kw * cin
        elif isinstance(layer, keras.layers.Dense):
            total += int(np.prod(layer.kernel.shape))
    return total


def rate(net, x):
    t0 = time.perf_counter()
    keras.ops.convert_to_numpy(net.predict_on_batch(x))
    return len(x) / (time.perf_counter() - t0)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--depth", type=int, default=110)
    p.add_argument("--drop", type=float, default=0.5, help="fraction of blocks to drop")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--results", default=os.path.join(os.path.dirname(__file__), "results.jsonl"))
    args = p.parse_args(argv)
    model = keras_lrn.models.EpsilonResNet(depth=args.depth, side_output=False)
    k = max(1, round(1 / args.drop)) if args.drop > 0 else None
    dropped = [i for i in range(model.num_blocks) if k and i % k == k - 1]
    compressed, report = keras_lrn.models.compress(model, discarded=dropped)
    x = np.random.default_rng(0).normal(size=(args.batch_size, 32, 32, 3)).astype("float32")
    rates = {"gated": [], "compressed": []}
    for net in (model, compressed):
        net.predict_on_batch(x)  # compile
    for _ in range(args.rounds):
        rates["gated"].append(rate(model, x))
        rates["compressed"].append(rate(compressed, x))
    gated, small = (statistics.median(rates[n]) for n in ("gated", "compressed"))
    expected = conv_macs(model) / conv_macs(compressed)
    row = {
        "benchmark": "compression", "backend": keras.backend.backend(), "depth": args.depth,
        "blocks_before": report.blocks_before, "blocks_after": report.blocks_after,
        "params_before": report.params_before, "params_after": report.params_after,
        "gated_img_s": gated, "compressed_img_s": small, "speedup": small / gated,
        "expected_speedup_macs": expected, "batch_size": args.batch_size,
        "date": time.strftime("%Y-%m-%d"), "params_check": count_params(compressed.weights),
    }
    print(f"epsilon-ResNet-{args.depth} [{row['backend']}], batch {args.batch_size}: "
          f"{report.blocks_before} -> {report.blocks_after} blocks, "
          f"{report.params_before:,} -> {report.params_after:,} params")
    print(f"inference: gated {gated:.0f} img/s, compressed {small:.0f} img/s, "
          f"speed-up {small / gated:.2f}x (MAC ratio {expected:.2f}x)")
    with open(args.results, "a") as f:
        f.write(json.dumps(row) + "\n")
    return row


if __name__ == "__main__":
    main(sys.argv[1:])
