"""Data-parallel and multi-host training (`--distribute`, keras_lrn.training.distribute).

The device tests run in subprocesses (this file is also their worker script), so that
the device flags take effect before the backend starts: JAX with
`--xla_force_host_platform_device_count=2`, TensorFlow with two logical CPU devices.
Tolerances: one device vs two (the same global batch, seed and data) agree to
rtol 1e-5 on losses and atol 1e-5 on weights; the only difference is the order of
float reductions (the cross-device sums of gradients and of the BatchNorm moments,
which TensorFlow computes as E[x^2] - E[x]^2 when synchronised). Discarded counts
are exact (max and 0/1 sums do not depend on order).
"""

import argparse
import contextlib
import csv
import io
import json
import os
import socket
import subprocess
import sys
import zipfile

import keras
import numpy as np
import pytest

from keras_lrn import data as kdata
from keras_lrn.layers import EpsilonGate
from keras_lrn.training import cli
from keras_lrn.training.distribute import Plan, synchronize_batch_norm

HERE = os.path.abspath(__file__)
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(HERE)))
FAST_XLA = "--xla_backend_optimization_level=0"
# Epsilon-ResNet-8 (3 gated blocks, BN, a side head) on 41 synthetic images: val-split
# leaves 32 training images (two global batches of 16) and 9 validation images (odd:
# the last evaluation batch is cut to 8 under distribution); 32 test images.
RUN = ["--model", "epsilon_resnet20", "--depth", "8", "--data-source", "synthetic",
       "--train-subset", "41", "--val-split", "0.22", "--batch-size", "16", "--epochs", "2",
       "--schedule", "constant", "--pipeline", "numpy", "--seed", "1", "--verbose", "0",
       "--epsilon", "6.0"]


# ---------------------------------------------------------------------------- workers


def _two_devices():
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * 2)


def _history(out):
    with open(os.path.join(out, "history.csv"), newline="") as f:
        rows = list(csv.DictReader(f))
    return {"loss": [float(r["loss"]) for r in rows],
            "count": [float(r["discarded_count"]) for r in rows]}


def worker_one_vs_two(out):
    """Train RUN on one device, then data-parallel on two, in this process."""
    _two_devices()
    from keras_lrn.layers import fast_conv
    from keras_lrn.training.core import train

    # A synchronised (cross-replica) BN runs Keras' own BN code; let the single device run it
    # too, so the comparison sees the distribution alone and not TF's matmul-sum BN formulation
    # (equal to Keras' BN within float rounding, tested in tests/layers/test_fast_conv.py).
    fast_conv._AUTO_BATCH_NORM["tensorflow"] = "native"
    result, weights = {}, {}
    for name, extra in (("one", []), ("two", ["--distribute", "data-parallel"])):
        path = os.path.join(out, name)
        args, kwargs, entry, recipe = cli.resolve(RUN + extra + ["--output-dir", path])
        payload = train(args, recipe, entry, kwargs)
        model = payload["model_object"]
        weights[name] = [np.asarray(w) for w in model.get_weights()]
        bns = [la for la in model._flatten_layers() if isinstance(la, keras.layers.BatchNormalization)]
        result[name] = dict(_history(path), test_loss=float(payload["test"]["loss"]),
                            sync_bn=sorted({bool(la.synchronized) for la in bns}),
                            saved_sync_bn=sorted({la.get_config()["synchronized"] for la in bns}))
    result["max_weight_diff"] = max(float(np.max(np.abs(a - b)))
                                    for a, b in zip(weights["one"], weights["two"]))
    return result


def _gate_step(x, y, sync_max):
    inputs = keras.Input((x.shape[1],))
    gate = EpsilonGate(epsilon=1.0, sync_max=sync_max)
    outputs = keras.layers.Dense(1, use_bias=False, kernel_initializer="ones")(gate(inputs))
    model = keras.Model(inputs, outputs)
    model.compile(optimizer=keras.optimizers.SGD(0.01), loss="mse")
    hist = model.fit(x, y, batch_size=len(x), epochs=1, shuffle=False, verbose=0)
    return {"loss": hist.history["loss"][0], "gate": float(keras.ops.convert_to_numpy(gate.gate))}


def worker_gate_and_batch():
    """The gate of one device vs two (global and per-replica max); an indivisible batch."""
    _two_devices()
    from keras_lrn.training import distribute

    x = np.random.default_rng(0).uniform(-0.5, 0.5, (8, 4)).astype("float32")
    x[6, 1] = 2.0  # only the second replica's half (rows 4..7) has |F| > epsilon = 1
    y = np.zeros((8, 1), "float32")
    result = {"one": _gate_step(x, y, True)}
    plan = distribute.setup(argparse.Namespace(distribute="data-parallel", gate_max="global"))
    result["replicas"] = plan.num_replicas
    for name, sync in (("global", True), ("per_replica", False)):
        with plan.scope():
            result[name] = _gate_step(x, y, sync)
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = cli.main(["--model", "resnet20", "--depth", "8", "--smoke", "--batch-size", "15",
                         "--distribute", "data-parallel"])
    result["bad_batch"] = {"code": code, "stderr": err.getvalue()}
    return result


def _run_worker(name, out=None, timeout=420):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", KERAS_BACKEND=keras.backend.backend(),
               XLA_FLAGS=f"--xla_force_host_platform_device_count=2 {FAST_XLA}")
    cmd = [sys.executable, HERE, name] + ([str(out)] if out else [])
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-4000:]
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")][-1]
    return json.loads(line[len("RESULT "):])


# ---------------------------------------------------------------------------- device tests


def test_two_devices_match_one_device(tmp_path):
    r = _run_worker("one_vs_two", tmp_path)
    one, two = r["one"], r["two"]
    np.testing.assert_allclose(two["loss"], one["loss"], rtol=1e-5)
    np.testing.assert_allclose(two["test_loss"], one["test_loss"], rtol=1e-5)
    assert r["max_weight_diff"] < 1e-5, r["max_weight_diff"]
    # (b) the gates use the global batch's max: the same blocks are discarded.
    assert two["count"] == one["count"]
    assert one["sync_bn"] == [False]
    if keras.backend.backend() == "tensorflow":  # synchronised BN, saved as plain BN
        assert two["sync_bn"] == [True]
    else:  # JAX's jit-compiled BN sees the global batch as it is
        assert two["sync_bn"] == [False]
    assert two["saved_sync_bn"] == [False]


def test_gate_global_or_per_replica_max_and_bad_batch_size():
    r = _run_worker("gate_and_batch")
    assert r["replicas"] == 2
    x = np.random.default_rng(0).uniform(-0.5, 0.5, (8, 4)).astype("float32")
    x[6, 1] = 2.0
    rows = x.astype(np.float64).sum(axis=1)  # Dense(ones) of the gated input
    kept = np.mean(rows**2)  # max over the whole batch is 2 > 1: gate 1
    first_off = np.mean(np.concatenate([np.zeros(4), rows[4:]]) ** 2)  # replica 0 gated off
    np.testing.assert_allclose(r["one"]["loss"], kept, rtol=1e-5)
    assert r["one"]["gate"] == 1.0
    np.testing.assert_allclose(r["global"]["loss"], kept, rtol=1e-5)
    assert r["global"]["gate"] == 1.0
    np.testing.assert_allclose(r["per_replica"]["loss"], first_off, rtol=1e-5)
    assert r["per_replica"]["gate"] == 0.0  # the first replica's gate, as the reference logs
    bad = r["bad_batch"]
    assert bad["code"] == 2
    assert "--batch-size" in bad["stderr"] and "(2)" in bad["stderr"], bad["stderr"]


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _weights(path):
    import h5py

    with zipfile.ZipFile(path) as z, z.open("model.weights.h5") as f, h5py.File(
            io.BytesIO(f.read()), "r") as h5:
        out = {}
        h5.visititems(lambda k, v: out.__setitem__(k, np.asarray(v))
                      if isinstance(v, h5py.Dataset) else None)
    return out


@pytest.mark.slow  # three processes at once: 115 s wall here under load (about 35 CPU-s)
@pytest.mark.skipif(keras.backend.backend() != "jax", reason="multi-host is JAX only")
def test_two_processes_match_one_process(tmp_path):
    port = _free_port()
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", KERAS_BACKEND="jax", XLA_FLAGS=FAST_XLA)
    script = os.path.join(ROOT, "train", "cifar10.py")
    procs = []
    for name, extra in (
        ("single", []),
        *((f"p{i}", ["--distribute", "data-parallel", "--coordinator", f"127.0.0.1:{port}",
                     "--num-processes", "2", "--process-id", str(i)]) for i in range(2)),
    ):
        cmd = [sys.executable, script, *RUN, *extra, "--output-dir", str(tmp_path / name)]
        procs.append(subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, text=True))
    logs = []
    try:
        for p in procs:
            logs.append(p.communicate(timeout=420)[0])
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    for p, log in zip(procs, logs):
        assert p.returncode == 0, log[-4000:]
    assert not (tmp_path / "p1").exists()  # process 1 writes into a scratch folder only
    single, multi = _history(tmp_path / "single"), _history(tmp_path / "p0")
    np.testing.assert_allclose(multi["loss"], single["loss"], rtol=1e-5)
    assert multi["count"] == single["count"]
    a, b = _weights(tmp_path / "single" / "final.keras"), _weights(tmp_path / "p0" / "final.keras")
    assert a.keys() == b.keys() and len(a) > 10
    for k in a:
        np.testing.assert_allclose(b[k], a[k], atol=1e-5, err_msg=k)


# ---------------------------------------------------------------------------- in-process


def test_unknown_distribute_is_an_argparse_error(capsys):
    with pytest.raises(SystemExit):
        cli.resolve(["--distribute", "pmap"])
    err = capsys.readouterr().err
    assert "--distribute" in err and "'none'" in err and "'data-parallel'" in err


@pytest.mark.parametrize(
    "argv, match",
    [
        (["--coordinator", "localhost:1234", "--distribute", "data-parallel"], "--num-processes"),
        (["--coordinator", "localhost", "--num-processes", "2", "--process-id", "0",
          "--distribute", "data-parallel"], "HOST:PORT"),
        (["--coordinator", "localhost:1", "--num-processes", "2", "--process-id", "2",
          "--distribute", "data-parallel"], "process-id"),
        (["--coordinator", "localhost:1", "--num-processes", "2", "--process-id", "0"],
         "data-parallel"),
        (["--distribute", "data-parallel", "--evaluate", "m.keras"], "evaluate"),
    ],
)
def test_bad_multi_host_flags(argv, match):
    if keras.backend.backend() != "jax" and "--coordinator" in argv:
        match = "JAX backend only"
    with pytest.raises(ValueError, match=match):
        cli.resolve(["--model", "resnet20"] + argv)


@pytest.mark.parametrize("pipeline", ["numpy", "tf"])
def test_plan_drops_cuts_and_slices_batches(pipeline):
    pytest.importorskip("tensorflow")
    x = np.arange(46 * 2 * 2, dtype="uint8").reshape(46, 2, 2, 1)
    y = np.arange(46)

    def batches(ds):
        if isinstance(ds, keras.utils.PyDataset):
            return [ds[i] for i in range(len(ds))]
        return [tuple(np.asarray(t) for t in b) for b in ds]

    def make(training):
        return kdata.make_dataset(x, y, batch_size=8, training=training, augment="none",
                                  pipeline=pipeline, seed=3)

    full_train, full_eval = batches(make(True)), batches(make(False))  # last batch: 6 images
    for pid in (0, 1):
        plan = Plan("data-parallel", num_replicas=4, num_processes=2, process_id=pid)
        train = batches(plan.dataset(make(True), 46, 8, training=True))
        assert len(train) == 5  # the partial batch is dropped
        for got, want in zip(train, full_train):  # this process's half of each batch
            np.testing.assert_array_equal(got[1], want[1][pid * 4:(pid + 1) * 4])
            np.testing.assert_array_equal(got[0], want[0][pid * 4:(pid + 1) * 4])
        with pytest.warns(UserWarning, match="2 of the 46 evaluation images"):
            ev = batches(plan.dataset(make(False), 46, 8, training=False))
        assert len(ev) == 6
        np.testing.assert_array_equal(ev[-1][1], full_eval[-1][1][:4][pid * 2:(pid + 1) * 2])
    ds = make(False)
    one_device = Plan("data-parallel", num_replicas=1)
    assert one_device.dataset(ds, 46, 8, training=False) is ds  # nothing to change
    assert Plan().dataset(ds, 45, 8, training=True) is ds  # no distribution: untouched
    with pytest.raises(ValueError, match="--batch-size"):
        Plan("data-parallel", num_replicas=4).check_batch_size(30)


def test_dropped_batch_still_advances_the_numpy_epoch():
    x = np.zeros((20, 2, 2, 1), "uint8")
    inner = kdata.make_dataset(x, np.zeros(20), batch_size=8, pipeline="numpy")
    ds = Plan("data-parallel", num_replicas=2).dataset(inner, 20, 8, training=True)
    assert len(ds) == 2
    for i in range(len(ds)):
        ds[i]
    ds.on_epoch_end()
    assert inner.epoch == 1


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="synchronized is TF only")
def test_synchronized_batch_norm_saves_as_plain():
    bn = keras.layers.BatchNormalization()
    synchronize_batch_norm(bn)
    assert bn.synchronized is True
    config = bn.get_config()
    assert config["synchronized"] is False
    assert keras.layers.BatchNormalization.from_config(config).synchronized is False


def test_gate_sync_max_config():
    gate = EpsilonGate(epsilon=1.5, sync_max=False)
    config = gate.get_config()
    assert config["sync_max"] is False
    assert EpsilonGate.from_config(config).sync_max is False
    assert EpsilonGate().get_config()["sync_max"] is True
    with pytest.raises(ValueError, match="sync_max"):
        EpsilonGate(sync_max="yes")


if __name__ == "__main__":  # the device tests' worker: `python test_distribute.py NAME [OUT]`
    worker = {"one_vs_two": worker_one_vs_two, "gate_and_batch": worker_gate_and_batch}
    print("RESULT " + json.dumps(worker[sys.argv[1]](*sys.argv[2:])), flush=True)
