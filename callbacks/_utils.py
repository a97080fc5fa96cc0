"""Helpers shared by the keras_lrn callbacks (host-side reads, schedule checks)."""

from __future__ import annotations

import math
import numbers

import keras
import numpy as np

#: The reference drops a block when its EMA of `is_discarded` prints as 1 with
#: `{:.5g}`, i.e. when the EMA is at least this (same value as
#: `keras_lrn.layers.epsilon_gate.EMA_DISCARD_THRESHOLD`).
EMA_DISCARD_THRESHOLD = 0.999995


def print_msg(message):
    """Print like Keras' callbacks do: stdout, or absl logging when interactive logging is off."""
    if keras.config.is_interactive_logging_enabled():
        print(message, flush=True)
    else:
        import logging

        logging.getLogger("keras_lrn").info(message)


def to_float(value):
    """A Python float from a variable, tensor, NumPy or Python scalar (a host read)."""
    return float(np.asarray(keras.ops.convert_to_numpy(value)).reshape(()))


def _is_variable(obj):
    return isinstance(obj, keras.Variable)


def is_gate_layer(layer):
    """Whether `layer` looks like an `EpsilonGate`: has `gate` and `discarded_ema` variables."""
    return _is_variable(getattr(layer, "gate", None)) and _is_variable(
        getattr(layer, "discarded_ema", None)
    )


def _iter_layers(model):
    flatten = getattr(model, "_flatten_layers", None)
    if callable(flatten):
        # Finds gates nested in custom block layers too, not only in `.layers`.
        yield from flatten(include_self=False, recursive=True)
        return
    for layer in getattr(model, "layers", []):  # pragma: no cover - Keras 3 always has it
        yield layer
        yield from _iter_layers(layer)


def find_gate_layers(model):
    """The gate layers of `model` in block order and one name per gate.

    Uses `model.gate_layers` (and `model.block_names` when it has one name per
    gate) when the model exposes them; otherwise scans the layers recursively
    for layers having `gate` and `discarded_ema` variables and names the blocks
    after the gate layers. Returns `(gates, names)`; both empty if none.
    """
    gates = getattr(model, "gate_layers", None)
    if gates:
        gates = list(gates)
    else:
        gates, seen = [], set()
        for layer in _iter_layers(model):
            if id(layer) not in seen and is_gate_layer(layer):
                seen.add(id(layer))
                gates.append(layer)
    names = getattr(model, "block_names", None)
    if not names or len(names) != len(gates):
        names = [getattr(g, "name", f"block{i}") for i, g in enumerate(gates)]
    return gates, [str(n) for n in names]


def check_schedule(schedule, arg, allow_empty=False, positive=False):
    """Validate `[(epoch, value), ...]`; return it as a sorted list of `(int, float)`.

    The sort is stable, like the reference's `sorted(..., key=itemgetter(0))`.
    """
    if schedule is None or isinstance(schedule, (str, bytes, dict)):
        raise ValueError(
            f"`{arg}` must be a list of (epoch, value) pairs. Received: {arg}={schedule!r}"
        )
    try:
        entries = list(schedule)
    except TypeError:
        raise ValueError(
            f"`{arg}` must be a list of (epoch, value) pairs. Received: {arg}={schedule!r}"
        ) from None
    if not entries and not allow_empty:
        raise ValueError(f"`{arg}` must not be empty. Received: {arg}={schedule!r}")
    out = []
    for entry in entries:
        ok = isinstance(entry, (list, tuple)) and len(entry) == 2
        if ok:
            e, v = entry
            ok = (
                isinstance(e, numbers.Integral)
                and not isinstance(e, bool)
                and e >= 0
                and isinstance(v, numbers.Real)
                and not isinstance(v, bool)
                and math.isfinite(v)
                and (v > 0 if positive else v >= 0)
            )
        if not ok:
            bound = "> 0" if positive else ">= 0"
            raise ValueError(
                f"Each entry of `{arg}` must be a pair (epoch: int >= 0, value: finite float "
                f"{bound}). Received: {arg}={schedule!r}"
            )
        out.append((int(e), float(v)))
    return sorted(out, key=lambda ev: ev[0])


def piecewise_value(schedule, epoch):
    """The value of the last entry with `entry_epoch <= epoch`, or None before the first."""
    value = None
    for e, v in schedule:
        if e <= epoch:
            value = v
        else:
            break
    return value


def exact_value(schedule, epoch):
    """tensorpack's `ScheduledHyperParamSetter` lookup: the first entry with `entry_epoch == epoch`."""
    for e, v in schedule:
        if e == epoch:
            return v
    return None
