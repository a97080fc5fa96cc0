"""The sparsity-promoting gate of epsilon-ResNet (Yu et al., CVPR 2018)."""

from __future__ import annotations

import math

import keras
from keras import ops

#: The reference's `L`: large enough that the gate is exactly 0 or 1 in float32.
GATE_SCALE = 1e6

#: A block counts as discarded by the EMA rule when its EMA of "S == 0" is at
#: least this: the reference prints the EMA with `{:.5g}` and drops a block iff
#: the printed value is 1 (about the last 240 steps all gated off).
EMA_DISCARD_THRESHOLD = 0.999995


def _check_epsilon(value, arg="epsilon"):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(
        value
    ) or value < 0:
        raise ValueError(f"`{arg}` must be a finite number >= 0. Received: {arg}={value!r}")
    return float(value)


def sparsity_gate(f, epsilon, scale=GATE_SCALE):
    """The scalar gate S(F) of epsilon-ResNet, in float32, without gradient.

    `s = max over the whole tensor of relu(F - eps) + relu(-F - eps)` (that is
    `relu(max|F| - eps)`), then `S = relu(1 - L * relu(1 - L * s))` with
    `L = 1e6`: 0 when every element of `f` has `|F| <= eps`, 1 once
    `max|F| >= eps + 1e-6`. Returns a float32 scalar.

    `s` is computed as `relu(float32(max|F|) - eps)`: bit-identical (for
    `eps >= 0` one of the two ReLUs is 0 and rounding is monotonic; casting a
    float16/bfloat16 value to float32 is exact) without two float32 copies of F.
    """
    return _gate_from_max(ops.cast(ops.max(ops.abs(f)), "float32"), epsilon, scale)


def _gate_from_max(max_abs, epsilon, scale=GATE_SCALE):
    """S from the float32 `max|F|` (a scalar, or one value per replica)."""
    eps = ops.cast(epsilon, "float32")
    s = ops.relu(max_abs - eps)
    gate = ops.relu(1.0 - scale * ops.relu(1.0 - scale * s))
    return ops.stop_gradient(gate)


def _tf_cross_replica_max(x):
    """TensorFlow only: the max of scalar `x` over the replicas of a `tf.distribute`
    strategy (`x` unchanged outside one, or with a single replica). `ReduceOp`
    has no MAX, so the replicas' values are all-gathered and reduced; the max is
    exact, hence the same on every replica and the same as on one device."""
    import tensorflow as tf

    ctx = tf.distribute.get_replica_context()
    if ctx is None or ctx.num_replicas_in_sync == 1:
        return x
    return tf.reduce_max(ctx.all_gather(tf.reshape(x, [1]), axis=0))


def _data_parallel_size():
    """JAX only: the number of batch shards of the `keras.distribution` in effect (1 if none)."""
    dist = keras.distribution.distribution()
    mesh = getattr(dist, "device_mesh", None)
    name = getattr(dist, "batch_dim_name", None)
    if mesh is None or name not in mesh.axis_names:
        return 1
    return int(mesh.shape[list(mesh.axis_names).index(name)])


@keras.saving.register_keras_serializable(package="keras_lrn")
class EpsilonGate(keras.layers.Layer):
    """Epsilon-ResNet's sparsity-promoting gate on a residual branch: `S * F`.

    `S` is one scalar per call: the four-ReLU function of the reference
    (`strict_identity`) of the branch output `F` over the *whole batch*,

    `S = relu(1 - L*relu(1 - L*s))`, `s = max(relu(F - eps) + relu(-F - eps))`,
    `L = 1e6`,

    so `S = 0` (the block is "discarded") iff `|F| <= eps` everywhere in the
    batch, otherwise `S = 1` (exactly binary in float32 for `eps >~ 1`). `S` is
    computed in float32 whatever the dtype policy (`1e6` overflows float16)
    and passes no gradient, so `d(S*F)/dF = S`. The output has the layer's
    compute dtype. `S` is computed in inference too: an uncompressed
    epsilon-ResNet gates on its test batch as the reference does.

    State, in non-trainable float32 scalar variables (attributes of the same
    name, not autocast), updated only by calls with `training=True`:

    * `epsilon`: the threshold; set it with `set_epsilon` (callbacks schedule it).
    * `gate`: `S` of the last training call (1.0 kept, 0.0 discarded). Starts at 1.
    * `discarded_ema`: tensorpack's moving average of `is_discarded = (S == 0)`,
      decay `min(ema_decay, (1 + t) / (10 + t))` with `t = num_updates` before
      the update, starting from 0 (`tf.train.ExponentialMovingAverage` with
      `num_updates=global_step`, as the reference's `add_moving_summary`).
    * `num_updates`: how many training calls updated the EMA.

    Data parallelism: with `sync_max=True` (the default) the max is taken
    over the *global* batch, so `S`, the outputs and the discarded counts are
    the same on one device or several. Under JAX's `keras.distribution`
    (`DataParallel`) the jit-compiled max over the batch-sharded `F` is global
    as it is; under a TensorFlow `tf.distribute` strategy the layer
    all-gathers each replica's `max|F|` (a TensorFlow-only branch: Keras ops
    have no cross-replica reduction). Outside a strategy, or with one replica,
    the computation is the single-device one. With `sync_max=False` each
    replica gates on its own sub-batch, as the reference's towers did; on JAX
    the batch is then split into the distribution's batch shards. Either way
    the variables keep the first replica's values (the reference monitors
    tower 0 only).

    Args:
        epsilon: float. The threshold, `>= 0`. Defaults to 2.5.
        ema_decay: float. Decay of `discarded_ema`, in `[0, 1)`. Defaults to 0.95.
        sync_max: bool. Under data parallelism, gate on the max over the global
            batch (True) or over each replica's sub-batch (False, the
            reference's per-tower behaviour). No effect on one device.
            Defaults to True.
        **kwargs: `keras.layers.Layer` arguments (`name`, `dtype`, ...).

    Example:
    ```python
    gate = keras_lrn.layers.EpsilonGate(epsilon=2.5)
    y = gate(keras.ops.ones((2, 4, 4, 8)), training=True)  # all zeros: |F| <= 2.5
    gate.is_discarded()  # True
    ```

    Reference:
    - Yu, Yu and Ramalingam, "Learning Strict Identity Mappings in Deep
      Residual Networks", CVPR 2018 (arXiv:1804.01661).
    """

    def __init__(self, epsilon=2.5, ema_decay=0.95, sync_max=True, **kwargs):
        super().__init__(**kwargs)
        epsilon = _check_epsilon(epsilon)
        if isinstance(ema_decay, bool) or not isinstance(ema_decay, (int, float)) or not (
            0.0 <= ema_decay < 1.0
        ):
            raise ValueError(f"`ema_decay` must be in [0, 1). Received: ema_decay={ema_decay!r}")
        if not isinstance(sync_max, bool):
            raise ValueError(f"`sync_max` must be a bool. Received: sync_max={sync_max!r}")
        self._initial_epsilon = epsilon
        self.ema_decay = float(ema_decay)
        self.sync_max = sync_max
        self.supports_masking = True

    def build(self, input_shape):
        def scalar(name, value, aggregation="only_first_replica"):
            return self.add_weight(
                shape=(), initializer=keras.initializers.Constant(value), dtype="float32",
                trainable=False, autocast=False, aggregation=aggregation, name=name,
            )

        self.epsilon = scalar("epsilon", self._initial_epsilon, aggregation="none")
        self.gate = scalar("gate", 1.0)
        self.discarded_ema = scalar("discarded_ema", 0.0)
        self.num_updates = scalar("num_updates", 0.0)
        self.built = True

    def call(self, inputs, training=None):
        backend = keras.backend.backend()
        shards = _data_parallel_size() if backend == "jax" and not self.sync_max else 1
        batch = inputs.shape[0]
        if shards > 1 and batch is not None and batch % shards == 0:
            # JAX, per replica: one gate per batch shard; the variables track shard 0.
            split = ops.reshape(inputs, (shards, -1))
            gates = _gate_from_max(ops.cast(ops.max(ops.abs(split), axis=1), "float32"),
                                   self.epsilon)
            gate = gates[0]
            scale = ops.reshape(gates, (shards,) + (1,) * len(inputs.shape))
            outputs = ops.reshape(
                ops.reshape(inputs, (shards, batch // shards) + tuple(inputs.shape[1:]))
                * ops.cast(scale, inputs.dtype),
                ops.shape(inputs),
            )
        else:
            max_abs = ops.cast(ops.max(ops.abs(inputs)), "float32")
            if backend == "tensorflow" and self.sync_max:
                max_abs = _tf_cross_replica_max(max_abs)
            gate = _gate_from_max(max_abs, self.epsilon)
            outputs = inputs * ops.cast(gate, inputs.dtype)
        if training:
            discarded = ops.cast(ops.equal(gate, 0.0), "float32")
            t = self.num_updates.value
            decay = ops.minimum(self.ema_decay, (1.0 + t) / (10.0 + t))
            self.gate.assign(gate)
            self.discarded_ema.assign(decay * self.discarded_ema.value + (1.0 - decay) * discarded)
            self.num_updates.assign(t + 1.0)
        return outputs

    def compute_output_shape(self, input_shape):
        return input_shape

    # Host-side helpers (read the variables; on JAX during `fit` the variables
    # are in sync at epoch boundaries and in callbacks).
    def set_epsilon(self, value):
        """Set the threshold (a float `>= 0`); before `build` it sets the initial value."""
        value = _check_epsilon(value)
        if self.built:
            self.epsilon.assign(value)
        else:
            self._initial_epsilon = value

    def get_epsilon(self) -> float:
        """The current threshold as a Python float."""
        if not self.built:
            return self._initial_epsilon
        return float(ops.convert_to_numpy(self.epsilon))

    def is_discarded(self, ema=False, threshold=EMA_DISCARD_THRESHOLD) -> bool:
        """Whether the block was gated off.

        Args:
            ema: bool. False: the last training step's gate was 0. True: the
                EMA of "gate == 0" is `>= threshold` (the reference's rule).
                Defaults to False.
            threshold: float. EMA cut-off. Defaults to 0.999995 (prints as 1
                with the reference's `{:.5g}`).
        """
        if not self.built:
            return False
        if ema:
            return float(ops.convert_to_numpy(self.discarded_ema)) >= threshold
        return float(ops.convert_to_numpy(self.gate)) == 0.0

    def reset_state(self):
        """Gate back to 1, EMA and update count back to 0 (epsilon unchanged)."""
        if self.built:
            self.gate.assign(1.0)
            self.discarded_ema.assign(0.0)
            self.num_updates.assign(0.0)

    def get_config(self):
        config = super().get_config()
        config.update(epsilon=self._initial_epsilon, ema_decay=self.ema_decay,
                      sync_max=self.sync_max)
        return config
