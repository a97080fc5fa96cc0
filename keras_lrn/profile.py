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

`profile(model, convention="thop_readme")` counts "MACs" as RLA-Net's README
does (spec §2.4, a reconstruction of an old `thop.profile` run in train mode):
the conv/dense MACs above plus 2 per BatchNormalization output element, 1 per
(local) AveragePooling2D output element and, in an ECA layer, its global
pooling as thop's `count_adap_avgpool` ((H*W + 1) per pooled channel);
activations, max-pooling and the head's global pooling are not counted.
`Profile.binary_units()` then prints parameters / 2^20 and MACs / 2^30 (the
README's "M" and "G", thop's `clever_format`): RLA-ResNet-50 "24.67M / 4.17G".
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
    convention: str = "fcm"

    def binary_units(self, digits=2):
        """`"24.67M / 4.17G"`: trainable params / 2^20, MACs / 2^20 ("M") or 2^30 ("G")."""
        big = self.macs >= 2**30
        macs = self.macs / 2**30 if big else self.macs / 2**20
        return f"{self.trainable / 2**20:.{digits}f}M / {macs:.{digits}f}{'G' if big else 'M'}"

    def to_dict(self):
        return {"name": self.name, "trainable": self.trainable,
                "non_trainable": self.non_trainable, "macs": self.macs,
                "convention": self.convention,
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
    if len(kshape) == 1 and hasattr(layer, "k_size"):
        # ECA: a Conv1d(1, 1, k) over the pooled (batch, channels) vector, as
        # FlopCounterMode counts it: batch * channels * k.
        return out[0] * out[-1] * kshape[0]
    return 0


CONVENTIONS = ("fcm", "thop_readme")


def thop_readme_extra(layer, input_shapes, output_shapes):
    """What `convention="thop_readme"` adds to `layer_macs` for one call (see the docstring)."""
    if not output_shapes:
        return 0
    out = output_shapes[0]
    if isinstance(layer, keras.layers.BatchNormalization):
        return 2 * _numel(out)
    if isinstance(layer, keras.layers.AveragePooling2D):
        return _numel(out)
    kernel = getattr(layer, "kernel", None)
    if kernel is not None and len(kernel.shape) == 1 and hasattr(layer, "k_size") and len(
            out) == 4:  # ECA's AdaptiveAvgPool2d(1): (H*W + 1) ops per pooled channel
        return out[0] * out[-1] * (out[1] * out[2] + 1)
    return 0


def _walk(model, calls, seen_vars, prefix="", convention="fcm"):
    macs = act = 0
    for depth in sorted(model._nodes_by_depth, reverse=True):
        for node in model._nodes_by_depth[depth]:
            op = node.operation
            if node.is_input or isinstance(op, keras.layers.InputLayer):
                continue
            ins = [_shape(t) for t in node.input_tensors]
            outs = [_shape(t) for t in node.output_tensors]
            if isinstance(op, keras.Model) and hasattr(op, "_nodes_by_depth"):
                m, a = _walk(op, calls, seen_vars, prefix=f"{prefix}{op.name}/",
                             convention=convention)
                macs, act = macs + m, act + a
                continue
            new = [v for v in op.weights if id(v) not in seen_vars]
            seen_vars.update(id(v) for v in new)
            params = sum(_numel(v.shape) for v in new if v.trainable)
            m = layer_macs(op, ins, outs)
            if convention == "thop_readme":
                m += thop_readme_extra(op, ins, outs)
            itemsize = np.dtype(getattr(op, "compute_dtype", "float32") or "float32").itemsize
            a = sum(_numel(s) for s in outs) * itemsize
            calls.append(LayerCall(f"{prefix}{op.name}", type(op).__name__,
                                   outs[0] if len(outs) == 1 else tuple(outs), params, m))
            macs, act = macs + m, act + a
    return macs, act


def profile(model, convention="fcm"):
    """Profile a functional Keras model (see the module docstring for conventions).

    Args:
        model: a functional `keras.Model`.
        convention: "fcm" (conv + dense MACs, PyTorch FlopCounterMode's; the
            default) or "thop_readme" (RLA-Net's README figures).
    """
    if convention not in CONVENTIONS:
        raise ValueError(f"`convention` must be one of {', '.join(map(repr, CONVENTIONS))}. "
                         f"Received: convention={convention!r}")
    if not hasattr(model, "_nodes_by_depth"):
        raise ValueError("`model` must be a functional keras.Model (built from keras.Input). "
                         f"Received: model={type(model).__name__}")
    from keras_lrn.testing import count_params

    calls = []
    macs, act = _walk(model, calls, set(), convention=convention)
    return Profile(model.name, count_params(model.trainable_weights),
                   count_params(model.non_trainable_weights), macs, act, calls, convention)


def registry_table(pattern="*", include_slow=False):
    """The README's Markdown table of the registry, with every number measured here.

    Builds each model (the `slow` ones only with `include_slow`) and reports its
    trainable/non-trainable parameters and MACs; the "spec" column names the
    numbers the registry also records from the reference code (equal, by test).
    """
    from keras_lrn import models
    from keras_lrn.models import table

    names = [n for n in models.list_models(pattern)
             if include_slow or not models.get_entry(n).slow]
    return table.markdown_table(names=names, measured={n: table.measure(n) for n in names})


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m keras_lrn.profile", description=__doc__.split("\n")[0])
    parser.add_argument("--model", help="registry name")
    parser.add_argument("--all", action="store_true", help="the registry table")
    parser.add_argument("--pattern", default="*")
    parser.add_argument("--include-slow", action="store_true")
    parser.add_argument("--rows", type=int, default=None, help="layer rows to print")
    parser.add_argument("--convention", choices=CONVENTIONS, default="fcm",
                        help="MAC convention (thop_readme: RLA-Net README's, in binary units)")
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
    result = profile(model, convention=args.convention)
    result.print(args.rows)
    if args.convention == "thop_readme":
        print(f"README units (2^20 / 2^30): {result.binary_units()}")
    return 0


class _CallableModule(types.ModuleType):
    """`keras_lrn.profile(model)` works although `keras_lrn.profile` is also this module."""

    def __call__(self, model, convention="fcm"):
        return profile(model, convention=convention)


sys.modules[__name__].__class__ = _CallableModule

if __name__ == "__main__":
    sys.exit(main())
