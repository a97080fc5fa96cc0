"""`DiscardedLayerCounter`: epsilon-ResNet's `discarded_cnt`, written into the epoch logs."""

from __future__ import annotations

import warnings

import keras
import numpy as np
from keras_lrn.callbacks._utils import (
    EMA_DISCARD_THRESHOLD,
    find_gate_layers,
    print_msg,
    to_float,
)


@keras.saving.register_keras_serializable(package="keras_lrn")
class DiscardedLayerCounter(keras.callbacks.Callback):
    """Count the residual blocks an epsilon-ResNet discards and log the counts.

    At the end of each epoch it reads the gate variables of the model's
    `EpsilonGate` layers (`model.gate_layers`, or any layer that has `gate` and
    `discarded_ema` variables) and writes into `logs`, so that `History`,
    `CSVLogger`, `TensorBoard` and later callbacks see them:

    * `discarded_count`: the exact number of blocks whose gate `S` was 0.0 on
      the last training step of the epoch (the reference's
      `is_discarded = 1.0 if S == 0.0 else 0.0`, summed in float32).
    * `discarded_count_ema`: the sum of the gates' `discarded_ema`, which is
      the reference's `discarded_cnt` summary: tensorpack's moving average of
      the count (decay `min(0.95, (1 + t) / (10 + t))`, updated every step, read
      once per epoch). `AdaptiveLRSetter` monitors this one.
    * `discarded_ratio`: `discarded_count / number of gated blocks`. The
      CIFAR/SVHN reference divided by `3n + 2` instead of the `3n` blocks;
      `reference_ratio()` returns that variant.
    * with `log_blocks=True`, one key per block, `discarded/<block_name>`: 1.0
      if that block was discarded on the last step, else 0.0.

    Place it **before** the callbacks that read these keys (`AdaptiveLRSetter`,
    `CSVLogger`, `TensorBoard`, `BackupAndRestore`) in the `callbacks` list:
    Keras passes one `logs` dict through the callbacks in list order.

    The variables are read on the host at epoch boundaries only, where the JAX
    trainer has synced its state back into them. If the model has no gates the
    callback warns once per `fit` and logs nothing.

    Args:
        verbose: int. 0: quiet, 1: print the counts at the end of each epoch.
            Defaults to 0.
        log_blocks: bool. Also log one `discarded/<block_name>` key per block.
            Defaults to False.

    Attributes:
        history: list of dicts, one per epoch of the last `fit`:
            `{"epoch", "discarded_count", "discarded_count_ema",
            "blocks" (tuple of 0/1 per block), "blocks_ema" (tuple of floats)}`.
        block_names: names of the gated blocks, in block order.

    Example:
    ```python
    counter = keras_lrn.callbacks.DiscardedLayerCounter(log_blocks=True)
    lr = keras_lrn.callbacks.AdaptiveLRSetter(preset="cifar")
    model.fit(ds, epochs=1000,
              callbacks=[counter, lr, keras.callbacks.CSVLogger("log.csv")])
    counter.discarded_blocks()  # e.g. ["res1.3", "res2.7", ...]
    ```

    Reference:
    - Yu, Yu and Ramalingam, "Learning Strict Identity Mappings in Deep
      Residual Networks", CVPR 2018 (arXiv:1804.01661); `discarded_cnt` in the
      authors' `cifarEpsilonResnet.py`.
    """

    def __init__(self, verbose=0, log_blocks=False):
        super().__init__()
        if isinstance(verbose, bool) or not isinstance(verbose, int) or verbose < 0:
            raise ValueError(f"`verbose` must be an int >= 0. Received: verbose={verbose!r}")
        if not isinstance(log_blocks, bool):
            raise ValueError(f"`log_blocks` must be a bool. Received: log_blocks={log_blocks!r}")
        self.verbose = verbose
        self.log_blocks = log_blocks
        self.history = []
        self.block_names = []
        self._gates = None

    def _reset(self):
        self.history = []
        self._gates, self.block_names = find_gate_layers(self.model)
        if not self._gates:
            warnings.warn(
                "DiscardedLayerCounter found no gate layers in the model (no `gate_layers` "
                "attribute and no layer with `gate` and `discarded_ema` variables); it will "
                "log nothing.",
                stacklevel=2,
            )

    def on_train_begin(self, logs=None):
        self._reset()

    @property
    def num_blocks(self):
        """Number of gated blocks found in the model."""
        return len(self._gates or [])

    def read(self):
        """Read the gates now: `(blocks, blocks_ema)` as float32 arrays (host reads)."""
        if self._gates is None:
            self._gates, self.block_names = find_gate_layers(self.model)
        gates = np.array([to_float(g.gate) for g in self._gates], dtype="float32")
        emas = np.array([to_float(g.discarded_ema) for g in self._gates], dtype="float32")
        return (gates == 0.0).astype("float32"), emas

    def on_epoch_end(self, epoch, logs=None):
        if not self._gates:
            return
        logs = logs if logs is not None else {}
        blocks, emas = self.read()
        count = float(np.sum(blocks, dtype="float32"))
        count_ema = float(np.sum(emas, dtype="float32"))
        logs["discarded_count"] = count
        logs["discarded_count_ema"] = count_ema
        logs["discarded_ratio"] = count / len(blocks)
        if self.log_blocks:
            for name, d in zip(self.block_names, blocks):
                logs[f"discarded/{name}"] = float(d)
        self.history.append(
            {
                "epoch": int(epoch),
                "discarded_count": count,
                "discarded_count_ema": count_ema,
                "blocks": tuple(int(d) for d in blocks),
                "blocks_ema": tuple(float(e) for e in emas),
            }
        )
        if self.verbose > 0:
            print_msg(
                f"\nEpoch {epoch + 1}: DiscardedLayerCounter: {count:g}/{len(blocks)} blocks "
                f"discarded (EMA {count_ema:.5g})."
            )

    def discarded_blocks(self, ema=False, epoch=-1):
        """Names of the blocks discarded at the end of a recorded epoch.

        Args:
            ema: bool. False: the gate was 0 on the epoch's last step. True: the
                EMA of `is_discarded` is at least 0.999995 (prints as 1 with the
                reference's `{:.5g}`, the rule of its `compressModel.py`).
                Defaults to False.
            epoch: int. Index into `history`. Defaults to -1 (the last epoch).

        Returns:
            A list of block names; empty if nothing has been recorded.
        """
        if not self.history:
            return []
        entry = self.history[epoch]
        if ema:
            flags = [e >= EMA_DISCARD_THRESHOLD for e in entry["blocks_ema"]]
        else:
            flags = [bool(d) for d in entry["blocks"]]
        return [name for name, f in zip(self.block_names, flags) if f]

    def reference_ratio(self, ema=True, epoch=-1):
        """The reference's CIFAR/SVHN `discarded_ratio`: count / (blocks + 2).

        The authors divided by `3n + 2` (the depth's "6n + 2" halved) rather than
        by the `3n` gated blocks. With `ema=True` this is the value their
        summary printed (the EMA of the ratio). Returns None before the first
        recorded epoch.
        """
        if not self.history:
            return None
        entry = self.history[epoch]
        count = entry["discarded_count_ema"] if ema else entry["discarded_count"]
        return count / (len(entry["blocks"]) + 2)

    def get_config(self):
        return {"verbose": self.verbose, "log_blocks": self.log_blocks}
