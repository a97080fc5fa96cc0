"""The original PyTorch code's training-step timer (spec section 4 protocol), shared by the
benchmarks that compare against it. Runs under an interpreter that has torch; the reference
code itself is not part of this repository."""

from __future__ import annotations

import subprocess

# Spec section 4 protocol, run with the interpreter that has torch. argv: file, factory
# expression, batch, warm-up steps, timed steps. Prints "STEP <seconds>" per timed step (the
# reference code prints its own lines too).
TORCH_TIMER = r"""
import importlib.util, sys, time
import torch
import torch.nn.functional as F
torch.set_num_threads(2)
spec = importlib.util.spec_from_file_location("reference", sys.argv[1])
ref = importlib.util.module_from_spec(spec)
spec.loader.exec_module(ref)
model = eval(sys.argv[2], vars(ref))
model.train()
batch, warm, steps = (int(a) for a in sys.argv[3:6])
x = torch.randn(batch, 3, 32, 32)
y = torch.randint(0, 10, (batch,))
for i in range(warm + steps):
    for p in model.parameters():
        p.grad = None
    t = time.perf_counter()
    F.cross_entropy(model(x), y).backward()
    if i >= warm:
        print("STEP", time.perf_counter() - t, flush=True)
"""


def torch_steps(python, path, factory, batch=128, warm=2, steps=3):
    """Per-step seconds of `factory` (an expression over the reference module `path`),
    measured in a fresh `python` process."""
    out = subprocess.run([python, "-c", TORCH_TIMER, path, factory, str(batch), str(warm),
                          str(steps)], check=True, capture_output=True, text=True).stdout
    return [float(line.split()[1]) for line in out.splitlines() if line.startswith("STEP ")]
