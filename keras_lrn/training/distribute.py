"""Data-parallel training on several devices or hosts, with Keras's own machinery.

`--distribute data-parallel` trains one model on every local device:

* JAX: `keras.distribution.DataParallel` over all devices
  (`keras.distribution.set_distribution`). The jit-compiled step sees the
  global batch as one batch-sharded array, so BatchNormalization statistics
  and the epsilon-ResNet gate's max are global with no extra code; XLA inserts
  the all-reduces.
* TensorFlow: `tf.distribute.MirroredStrategy` over the GPUs (or, without
  GPUs, the logical CPU devices); the model is built and compiled inside
  `strategy.scope()`. Its BatchNormalization layers are switched to
  `synchronized=True` (cross-replica statistics) when there is more than one
  replica, and stay plain on one device. The switch is a training-time setting:
  a saved model's config still says `synchronized=False`, so a `.keras` file
  saved under TensorFlow loads under JAX (which rejects `synchronized=True`).

Multi-host (JAX only): start one process per host with the same flags plus
`--coordinator HOST:PORT --num-processes N --process-id I`; that calls
`keras.distribution.initialize` before anything touches a device, then
`DataParallel` spans the devices of every process. Each process builds the
same global batches (same seed) and feeds only its own `1/N` slice of each
(`jax.make_array_from_process_local_data` assembles the global batch), so the
run matches a one-process run with the same `--batch-size`. Every process saves
checkpoints in step (saving reads the global arrays collectively), but only
process 0 writes into `--output-dir` and `--export`; the others write to a
scratch folder removed at exit. TensorFlow multi-worker training
(`MultiWorkerMirroredStrategy`, configured through `TF_CONFIG`) is not wired up:
those flags are an error there.

`--batch-size` is always the **global** batch: it must be divisible by the
number of devices (all processes together). In training the last partial batch
of an epoch is dropped. Evaluation batches must divide evenly too: the last
validation/test batch is cut to a multiple of the device count (at most
`devices - 1` images left out, with a warning; none when the set size is a
multiple of the device count).

With `--gate-max per-replica` the epsilon-ResNet gates use each replica's
sub-batch maximum (the reference's per-tower behaviour) instead of the global
one (`EpsilonGate(sync_max=False)`).

Example:
```bash
python train/cifar10.py --model resnet56 --distribute data-parallel --batch-size 256
# two hosts (JAX):
python train/cifar10.py ... --distribute data-parallel --coordinator 10.0.0.1:1234 \\
    --num-processes 2 --process-id 0      # and --process-id 1 on the other host
```
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import math
import os
import shutil
import tempfile
import warnings

import keras

DISTRIBUTE_MODES = ("none", "data-parallel")
GATE_MAX_MODES = ("global", "per-replica")


def add_arguments(parser):
    """Add the distribution flags to the training command line `parser`."""
    g = parser.add_argument_group("distribution (see keras_lrn.training.distribute)")
    g.add_argument("--distribute", default="none", choices=DISTRIBUTE_MODES,
                   help="data-parallel: train on all local devices (JAX: keras.distribution."
                   "DataParallel; TensorFlow: MirroredStrategy with synchronised BatchNorm). "
                   "--batch-size is the global batch and must be divisible by the device count; "
                   "the last partial training batch of an epoch is dropped")
    g.add_argument("--coordinator", default=None, metavar="HOST:PORT",
                   help="multi-host (JAX): address of process 0; with --num-processes and "
                   "--process-id, and --distribute data-parallel. Each process feeds its "
                   "1/N slice of every global batch; only process 0 writes --output-dir/--export")
    g.add_argument("--num-processes", type=int, default=None, metavar="N",
                   help="multi-host: number of processes")
    g.add_argument("--process-id", type=int, default=None, metavar="I",
                   help="multi-host: this process's index, 0..N-1")
    g.add_argument("--gate-max", default="global", choices=GATE_MAX_MODES,
                   help="epsilon-ResNet under data parallelism: gate on the global batch's "
                   "max (same as one device) or on each replica's (the reference's towers)")
    return parser


def multi_host(args):
    return any(getattr(args, n, None) is not None
               for n in ("coordinator", "num_processes", "process_id"))


def check_args(args, backend=None):
    """Validate the distribution flags of `args` (before anything is built)."""
    backend = backend or keras.backend.backend()
    mode = getattr(args, "distribute", "none")
    if mode not in DISTRIBUTE_MODES:
        raise ValueError(f"`--distribute` must be one of {DISTRIBUTE_MODES}. "
                         f"Received: distribute={mode!r}")
    if getattr(args, "gate_max", "global") not in GATE_MAX_MODES:
        raise ValueError(f"`--gate-max` must be one of {GATE_MAX_MODES}. "
                         f"Received: gate_max={args.gate_max!r}")
    if not multi_host(args):
        if mode != "none" and getattr(args, "evaluate", None):
            raise ValueError("`--evaluate` runs on one device: drop `--distribute "
                             f"{mode}`.")
        return
    if backend != "jax":
        raise ValueError(
            "Multi-host training (`--coordinator`) is implemented for the JAX backend only. "
            "On TensorFlow it needs MultiWorkerMirroredStrategy configured through TF_CONFIG, "
            f"which this trainer does not set up. Received: backend={backend!r}")
    missing = [f"--{n.replace('_', '-')}" for n in ("coordinator", "num_processes", "process_id")
               if getattr(args, n, None) is None]
    if missing:
        raise ValueError("Multi-host training needs `--coordinator`, `--num-processes` and "
                         f"`--process-id` together; missing: {', '.join(missing)}.")
    if mode != "data-parallel":
        raise ValueError("`--coordinator/--num-processes/--process-id` need `--distribute "
                         f"data-parallel`. Received: distribute={mode!r}")
    host, _, port = str(args.coordinator).rpartition(":")
    if not host or not port.isdigit():
        raise ValueError("`--coordinator` must be HOST:PORT. "
                         f"Received: coordinator={args.coordinator!r}")
    if args.num_processes < 1:
        raise ValueError("`--num-processes` must be a positive integer. "
                         f"Received: num_processes={args.num_processes}")
    if not 0 <= args.process_id < args.num_processes:
        raise ValueError(f"`--process-id` must be in [0, {args.num_processes - 1}]. "
                         f"Received: process_id={args.process_id}")
    if getattr(args, "resume", False):
        raise ValueError("`--resume` is not supported with multi-host training (only process "
                         "0 keeps a backup). Received: --resume with --num-processes "
                         f"{args.num_processes}")
    if getattr(args, "evaluate", None):
        raise ValueError("`--evaluate` runs on one device: drop the multi-host flags. "
                         f"Received: evaluate={args.evaluate!r} with --num-processes "
                         f"{args.num_processes}")


class Plan:
    """How one training run is spread over devices; `setup(args)` makes it.

    Attributes:
        mode: `"none"` or `"data-parallel"`.
        backend: the Keras backend.
        num_replicas: devices the global batch is split over (all processes).
        num_processes, process_id: the multi-host layout (1 and 0 on one host).
        strategy: the `tf.distribute` strategy (TensorFlow) or None.
        distribution: the `keras.distribution.DataParallel` (JAX) or None.
        gate_max: `"global"` or `"per-replica"`.
    """

    def __init__(self, mode="none", backend=None, num_replicas=1, num_processes=1, process_id=0,
                 strategy=None, distribution=None, gate_max="global"):
        self.mode = mode
        self.backend = backend or keras.backend.backend()
        self.num_replicas = int(num_replicas)
        self.num_processes = int(num_processes)
        self.process_id = int(process_id)
        self.strategy = strategy
        self.distribution = distribution
        self.gate_max = gate_max

    @property
    def active(self):
        return self.mode != "none"

    @property
    def is_chief(self):
        """Whether this process writes the run's files (process 0)."""
        return self.process_id == 0

    def __repr__(self):
        return (f"Plan(mode={self.mode!r}, backend={self.backend!r}, "
                f"num_replicas={self.num_replicas}, num_processes={self.num_processes}, "
                f"process_id={self.process_id})")

    def scope(self):
        """The context to build and compile the model in (`strategy.scope()` on TensorFlow)."""
        if self.strategy is not None:
            return self.strategy.scope()
        return contextlib.nullcontext()

    def check_batch_size(self, batch_size):
        if self.active and batch_size % self.num_replicas:
            raise ValueError(
                f"`--batch-size` ({batch_size}, the global batch) must be divisible by the number "
                f"of devices ({self.num_replicas}) under `--distribute {self.mode}`. "
                f"Received: batch_size={batch_size}")

    def prepare_model(self, model):
        """Switch BatchNorm to cross-replica statistics (TensorFlow, several replicas) and set
        the epsilon-ResNet gates' `sync_max`. Returns `model`."""
        from keras_lrn.layers.epsilon_gate import EpsilonGate

        # Recursive: BatchNorm layers also live inside custom layers (filter bases, reuse).
        for layer in model._flatten_layers(include_self=False, recursive=True):
            if isinstance(layer, EpsilonGate):
                layer.sync_max = self.gate_max == "global"
            if (self.strategy is not None and self.num_replicas > 1
                    and isinstance(layer, keras.layers.BatchNormalization)):
                synchronize_batch_norm(layer)
        return model

    def dataset(self, ds, num_examples, batch_size, training):
        """What `fit`/`evaluate` should read instead of `ds` (a `make_dataset` pipeline
        of `num_examples` images in batches of `batch_size`, the global batch).

        Training drops the last partial batch. Every batch is cut to a
        multiple of the device count (JAX shards need equal pieces; Keras's
        TensorFlow trainer averages the replicas' pieces of the first batch to
        build the model), and with several processes each process keeps its
        own slice of every batch. `ds` itself is unchanged
        (callbacks such as `EpochSync` keep working on it).
        """
        if not self.active:
            return ds
        batches = math.ceil(num_examples / batch_size)
        last = num_examples - (batches - 1) * batch_size
        keep, trim = batches, False
        if training:
            if last != batch_size:
                keep -= 1
        elif last % self.num_replicas:
            left_out = last % self.num_replicas
            if last < self.num_replicas:
                keep -= 1
            else:
                trim = True
            warnings.warn(
                f"{left_out} of the {num_examples} evaluation images are left out: with "
                f"{self.num_replicas} devices every batch must divide evenly.", stacklevel=2)
        if keep < 1:
            raise ValueError(
                f"`--batch-size` {batch_size} leaves no full batch of the {num_examples} "
                f"{'training' if training else 'evaluation'} images under `--distribute "
                f"{self.mode}`.")
        # Cut every batch, not only a known last one: a pipeline may yield a short batch
        # mid-epoch (the ImageNet reader skips files that fail to decode).
        slicing = trim or self.num_replicas > 1 or self.num_processes > 1
        if keep == batches and not slicing:
            return ds
        if hasattr(ds, "element_spec"):  # tf.data
            return _tf_slices(ds, keep, batches, slicing, self.num_replicas, self.num_processes,
                              self.process_id)
        return _BatchSlices(ds, keep, self.num_replicas if slicing else 1,
                            self.num_processes, self.process_id)


def synchronize_batch_norm(layer):
    """Make `layer` (a Keras BatchNormalization) use cross-replica statistics in training
    (`synchronized=True`, TensorFlow only) while its saved config keeps `synchronized=False`,
    so that the saved model stays loadable on every backend."""
    layer.synchronized = True
    cls_get_config = type(layer).get_config

    def get_config():
        config = cls_get_config(layer)
        config["synchronized"] = False
        return config

    layer.get_config = get_config
    return layer


def _slice_bounds(b, replicas, processes, pid):
    used = (b // replicas) * replicas
    per = used // processes
    return pid * per, (pid + 1) * per


class _BatchSlices(keras.utils.PyDataset):
    """A `PyDataset` view of the first `keep` batches of `inner`, each cut to a multiple of
    `replicas` rows and sliced to this process's share.

    Meant for `core.train`, where `keras_lrn.data.EpochSync` sets the inner pipeline's
    epoch at every epoch start. The served-batch bookkeeping below only advances the
    epoch on its own when `__getitem__` runs in this process (threads, not worker
    processes); used elsewhere with `use_multiprocessing=True`, pair it with `EpochSync`.
    """

    def __init__(self, inner, keep, replicas, processes, pid):
        super().__init__(workers=getattr(inner, "workers", 1),
                         use_multiprocessing=getattr(inner, "use_multiprocessing", False),
                         max_queue_size=getattr(inner, "max_queue_size", 10))
        self.inner, self.keep = inner, keep
        self.replicas, self.processes, self.pid = replicas, processes, pid
        self._served = set()

    def __len__(self):
        return self.keep

    @property
    def num_batches(self):
        return self.keep

    def __getitem__(self, index):
        if index < 0 or index >= self.keep:
            raise IndexError(f"batch index {index} out of range [0, {self.keep})")
        self._served.add(index)
        batch = self.inner[index]
        b = int(keras.tree.flatten(batch)[0].shape[0])
        start, stop = _slice_bounds(b, self.replicas, self.processes, self.pid)
        if (start, stop) == (0, b):
            return batch
        return keras.tree.map_structure(lambda t: t[start:stop], batch)

    def on_epoch_end(self):
        done = len(self._served) >= self.keep
        self._served = set()
        if done and self.keep < len(self.inner) and hasattr(self.inner, "set_epoch"):
            # The inner pipeline never served its dropped batch: advance its epoch for it.
            self.inner.set_epoch(self.inner.epoch + 1)
        else:
            self.inner.on_epoch_end()


def _tf_slices(ds, keep, batches, slicing, replicas, processes, pid):
    import tensorflow as tf

    if keep < batches:
        ds = ds.take(keep)
    if slicing:
        def cut(*batch):
            batch = batch[0] if len(batch) == 1 else batch
            b = tf.shape(tf.nest.flatten(batch)[0])[0]
            per = (b // replicas) * replicas // processes
            return tf.nest.map_structure(lambda t: t[pid * per:(pid + 1) * per], batch)

        ds = ds.map(cut)
    return ds


def for_this_process(args):
    """`args` for this process. With multi-host flags, processes other than 0 write their
    `--output-dir` and `--export` into a scratch folder (removed at exit): on JAX, saving
    a model reads the global arrays collectively, so every process must save in step,
    but only process 0's files are the run's."""
    if not (multi_host(args) and getattr(args, "process_id", None)):
        return args
    scratch = tempfile.mkdtemp(prefix=f"keras_lrn_process{args.process_id}_")
    atexit.register(shutil.rmtree, scratch, True)
    changes = {"output_dir": os.path.join(scratch, "run") if args.output_dir else None,
               "export": os.path.join(scratch, "export") if getattr(args, "export", None)
               else None}
    return argparse.Namespace(**{**vars(args), **changes})


def _tf_devices():
    import tensorflow as tf

    gpus = tf.config.list_logical_devices("GPU")
    devices = gpus or tf.config.list_logical_devices("CPU")
    return [d.name for d in devices]


def setup(args):
    """Make the `Plan` for `args` and put it in effect; call it before anything touches a
    device (it starts the multi-host runtime on JAX)."""
    backend = keras.backend.backend()
    check_args(args, backend)
    mode = getattr(args, "distribute", "none")
    gate_max = getattr(args, "gate_max", "global")
    if mode == "none":
        return Plan(mode, backend, gate_max=gate_max)
    if backend == "jax":
        processes, pid = 1, 0
        if multi_host(args):
            keras.distribution.initialize(args.coordinator, args.num_processes, args.process_id)
            processes, pid = args.num_processes, args.process_id
        devices = keras.distribution.list_devices()
        # The trainer feeds each process its own slice (see `Plan.dataset`): Keras's
        # auto-sharding would need a tf.data pipeline.
        dist = keras.distribution.DataParallel(devices=devices, auto_shard_dataset=False)
        keras.distribution.set_distribution(dist)
        return Plan(mode, backend, len(devices), processes, pid, distribution=dist,
                    gate_max=gate_max)
    if backend == "tensorflow":
        import tensorflow as tf

        strategy = tf.distribute.MirroredStrategy(devices=_tf_devices())
        return Plan(mode, backend, strategy.num_replicas_in_sync, strategy=strategy,
                    gate_max=gate_max)
    raise ValueError("`--distribute data-parallel` supports the JAX and TensorFlow backends. "
                     f"Received: backend={backend!r}")


__all__ = ["DISTRIBUTE_MODES", "GATE_MAX_MODES", "Plan", "add_arguments", "check_args",
           "for_this_process", "setup", "synchronize_batch_norm"]
