"""Markdown tables of a `benchmarks/gpu.sh` run: throughput and the CIFAR-10 training run.

    python benchmarks/gpu_report.py OUT_DIR > OUT_DIR/gpu.md

Reads `OUT_DIR/throughput.jsonl` (benchmarks/throughput.py) and
`OUT_DIR/train/efficiency.jsonl` (benchmarks/efficiency.py).
"""

from __future__ import annotations

import json
import os
import sys


def _lines(path):
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def _mb(value):
    return "-" if value is None else f"{value:,.0f}"


def report(out_dir):
    lines = []
    rows = _lines(os.path.join(out_dir, "throughput.jsonl"))
    done = [r for r in rows if "train_img_s" in r]
    if done:
        r0 = done[0]
        lines += [f"## Throughput ({r0['backend']}, {r0.get('device', '?')}, batch "
                  f"{r0['batch_size']}, {r0['date']})", "",
                  "| model | input | policy | train img/s | inference img/s | compile s | "
                  "params | peak device MB | peak host RSS MB |",
                  "|---|---|---|---:|---:|---:|---:|---:|---:|"]
        for r in done:
            shape = "x".join(map(str, r.get("input_shape", []))) or "?"
            lines.append(f"| {r['model']} | {shape} | {r['dtype_policy']} | {r['train_img_s']:,.0f} | "
                         f"{r['infer_img_s']:,.0f} | {r['compile_s']:.1f} | "
                         f"{r['trainable_params']:,} | {_mb(r.get('peak_device_mb'))} | "
                         f"{_mb(r.get('peak_rss_mb'))} |")
    for r in rows:
        if "skipped" in r:
            lines.append(f"\n{r['model']}: skipped ({r['skipped']}).")
        elif r.get("failed"):
            lines.append(f"\n{r['model']} {r.get('policy', '')}: failed (see the log).")
    train = _lines(os.path.join(out_dir, "train", "efficiency.jsonl"))
    if train:
        lines += ["", "## CIFAR-10 training", "",
                  "| model | backend | device | train images | epochs | test images | "
                  "test top-1 | train wall s |", "|---|---|---|---:|---:|---:|---:|---:|"]
        for r in train:
            lines.append(f"| {r['model']} | {r['backend']} | {r['device']} | {r['train_subset']:,} | "
                         f"{r['epochs']} | {r['test_subset']:,} | {100 * r['test_top1']:.2f}% | "
                         f"{r['train_wall_s']:,.1f} |")
        lines += ["", f"Command: `{train[-1]['command']}`"]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.stdout.write(report(sys.argv[1] if len(sys.argv) > 1 else "gpu_out"))
