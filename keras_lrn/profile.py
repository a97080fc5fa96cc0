"""Parameters, multiply-accumulates and activation memory of a Keras model.

    keras_lrn.profile.profile(model).print()
    python -m keras_lrn.profile --model resnet56
    python -m keras_lrn.profile --all            # the registry table

Conventions (those of the specs' reference numbers, PyTorch's FlopCounterMode):

* parameters: every variable once, also when a layer is reused or a kernel is
  shared by many layers;
* MACs: convolutions and dense layers only (no BN, activations, pooling, bias
  adds), counted at every *call* -- a reused layer or shared kernel counts each
  time it runs; at batch size 1;
* activation memory: the bytes of every layer call's outputs at batch size 1
  (an upper bound on what a forward pass keeps for the backward pass).

A custom layer whose MACs the generic rules cannot see (one that calls its
sub-layers several times) defines `compute_macs(input_shape) -> int`.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
import types

import keras
import numpy as np


@dataclasses.dataclass
class LayerCall:
    name: str
    kind: str
    output_shape: tuple
    params: int
    macs: int


@dataclasses.dataclass
class Profile:
    """What `profile` measured; `print()` shows it as a table, `to_dict()` as data."""

    name: str
    trainable: int
    non_trainable: int
    macs: int
    activation_bytes: int
    calls: list

    def to_dict(self):
        return {"name": self.name, "trainable": self.trainable,
                "non_trainable": self.non_trainable, "macs": self.macs,
                "activation_bytes": self.activation_bytes,
                "layers": [dataclasses.asdict(c) for c in self.calls]}

    def table(self, max_rows=None):
        rows = [f"{'layer':<36}{'type':<26}{'output':<22}{'params':>12}{'MACs':>16}"]
        calls = self.calls if max_rows is None else self.calls[:max_rows]
        for c in calls:
            rows.append(f"{c.name[:35]:<36}{c.kind[:25]:<26}{str(c.output_shape)[:21]:<22}"
                        f"{c.params:>12,}{c.macs:>16,}")
        if max_rows is not None and len(self.calls) > max_rows:
            rows.append(f"... {len(self.calls) - max_rows} more calls")
        rows.append(f"{self.name}: trainable {self.trainable:,} | non-trainable "
                    f"{self.non_trainable:,} | MACs {self.macs:,} ({self.macs / 1e6:.2f} M) | "
                    f"activations {self.activation_bytes / 2**20:.1f} MiB at batch 1")
        return "\n".join(rows)

    def print(self, max_rows=None):
        print(self.table(max_rows))


def _numel(shape):
    return int(math.prod(int(d) for d in shape))


def _shape(t):
    return tuple(1 if d is None else int(d) for d in t.shape)


def layer_macs(layer, input_shapes, output_shapes):
    """MACs of one call of `layer` (batch dimension included in the shapes)."""
    if hasattr(layer, "compute_macs"):
        return int(layer.compute_macs(input_shapes[0] if len(input_shapes) == 1 else input_shapes))
    kernel = getattr(layer, "kernel", None)
    if kernel is None or not output_shapes:
        return 0
    kshape = tuple(int(d) for d in kernel.shape)
    out = output_shapes[0]
    if len(kshape) == 4:  # conv-like: (kh, kw, in per group, out) or depthwise (kh, kw, c, mult)
        kh, kw, kin, _ = kshape
        depthwise = isinstance(layer, keras.layers.DepthwiseConv2D) or hasattr(
            layer, "depth_multiplier")
        return _numel(out) * kh * kw * (1 if depthwise else kin)
    if len(kshape) == 2 and isinstance(layer, keras.layers.Dense):
        return _numel(out) * kshape[0]
    return 0


def _walk(model, calls, seen_vars, prefix=""):
    macs = act = 0
    for depth in sorted(model._nodes_by_depth, reverse=True):
        for node in model._nodes_by_depth[depth]:
            op = node.operation
            if node.is_input or isinstance(op, keras.layers.InputLayer):
                continue
            ins = [_shape(t) for t in node.input_tensors]
            outs = [_shape(t) for t in node.output_tensors]
            if isinstance(op, keras.Model) and hasattr(op, "_nodes_by_depth"):
                m, a = _walk(op, calls, seen_vars, prefix=f"{prefix}{op.name}/")
                macs, act = macs + m, act + a
                continue
            new = [v for v in op.weights if id(v) not in seen_vars]
            seen_vars.update(id(v) for v in new)
            params = sum(_numel(v.shape) for v in new if v.trainable)
            m = layer_macs(op, ins, outs)
            itemsize = np.dtype(getattr(op, "compute_dtype", "float32") or "float32").itemsize
            a = sum(_numel(s) for s in outs) * itemsize
            calls.append(LayerCall(f"{prefix}{op.name}", type(op).__name__,
                                   outs[0] if len(outs) == 1 else tuple(outs), params, m))
            macs, act = macs + m, act + a
    return macs, act


def profile(model):
    """Profile a functional Keras model (see the module docstring for conventions)."""
    if not hasattr(model, "_nodes_by_depth"):
        raise ValueError("`model` must be a functional keras.Model (built from keras.Input). "
                         f"Received: model={type(model).__name__}")
    from keras_lrn.testing import count_params

    calls = []
    macs, act = _walk(model, calls, set())
    return Profile(model.name, count_params(model.trainable_weights),
                   count_params(model.non_trainable_weights), macs, act, calls)


def registry_table(pattern="*", include_slow=False):
    """Markdown table of the registry: params and MACs measured, with the spec's numbers."""
    from keras_lrn import models
    from keras_lrn.export import inference_network

    rows = ["| model | trainable | spec | MACs | spec MACs | paper |", "|---|---:|---:|---:|---:|---|"]
    for name in models.list_models(pattern):
        entry = models.get_entry(name)
        if entry.slow and not include_slow:
            continue
        p = profile(inference_network(entry.build()))
        keras.backend.clear_session()

        def fmt(v):
            return "—" if v is None else f"{v:,}"

        rows.append(f"| `{name}` | {p.trainable:,} | {fmt(entry.params)} | {p.macs:,} | "
                    f"{fmt(entry.macs)} | {entry.paper.split(',')[0]} |")
    return "\n".join(rows)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m keras_lrn.profile", description=__doc__.split("\n")[0])
    parser.add_argument("--model", help="registry name")
    parser.add_argument("--all", action="store_true", help="the registry table")
    parser.add_argument("--pattern", default="*")
    parser.add_argument("--include-slow", action="store_true")
    parser.add_argument("--rows", type=int, default=None, help="layer rows to print")
    args = parser.parse_args(argv)
    if args.all:
        print(registry_table(args.pattern, args.include_slow))
        return 0
    if not args.model:
        parser.error("give --model NAME or --all")
    from keras_lrn import models
    from keras_lrn.export import inference_network

    try:
        model = inference_network(models.get_model(args.model))
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    profile(model).print(args.rows)
    return 0


class _CallableModule(types.ModuleType):
    """`keras_lrn.profile(model)` works although `keras_lrn.profile` is also this module."""

    def __call__(self, model):
        return profile(model)


sys.modules[__name__].__class__ = _CallableModule

if __name__ == "__main__":
    sys.exit(main())
