"""Export of every registered model family: SavedModel, `.keras` and ONNX round trips.

One small configuration per family, taken from the registry so that a new family
is covered as soon as it is registered: the smallest non-slow entry (by
trainable parameters), built with fewer blocks where the family's builder takes
a depth-like argument (`SMALLER`) and at 64x64 if the entry is an ImageNet one.
Every check compares the reloaded artifact with the live model at two batch
sizes, within 1e-5.

Time: SavedModel (and ONNX) export traces the whole graph three times, 5-15 s for
a family with a long graph, and building a model under JAX compiles every
initialiser. So the default run keeps to:

* TensorFlow: `.keras` for every family, SavedModel for all but `EXPORT_SLOW`
  (long graphs whose layer types the other families' exports already cover);
* JAX: `.keras` for all but `EXPORT_SLOW`, SavedModel (the jax2tf conversion) for
  `JAX_SAVED_MODEL`;

and runs the rest under `-m slow`. Families whose entries are all `slow=True`
are tested under `-m slow` only.
"""

import hashlib
import inspect
import json
import os

import keras
import numpy as np
import pytest

import keras_lrn.export as kexport
from keras_lrn import models
from keras_lrn.export import export, inference_network, load_model
from keras_lrn.testing import count_params, random_images, to_numpy

TOL = dict(rtol=1e-5, atol=1e-5)
BATCHES = (1, 4)
# Fewer blocks than any registered entry: the same layer types, a shorter graph.
SMALLER = {
    "resnet": {"depth": 8},
    "epsilon_resnet": {"depth": 8},
    "rla": {"depth": 8},
    "basis_resnet": {"depth": 20},
    "basis_resnet_large": {"depth": 18},
    "basis_densenet": {"blocks": (2, 2, 2, 2)},
    "swrn": {"depth": 16, "width": 1},  # N = 2: the second block of each stage is shared
    "lrunet": {"layer_reuse": 2},  # every LRU block applies its convs twice
}
LONG = {"mobilenetv2", "basis_mobilenetv2", "shufflenet", "shufflenetv2"}  # 150+ layers
# Depthwise / grouped convs (lrunet), basis convs (basis_resnet) export by default.
EXPORT_SLOW = LONG | {"mobilenet", "basis_densenet", "basis_resnet_large"}
JAX_SAVED_MODEL = {"resnet", "swrn", "epsilon_resnet"}  # template banks, a side head
# How the families known to share weights do it (see `_sharing`); new families are
# checked for whatever sharing `_sharing` finds in them.
SHARES = {"swrn": "banks", "basis_resnet": "reused", "lrunet": "internal",
          "basis_resnet_large": "reused", "basis_densenet": "reused"}
ONNX_DEFAULT = {"resnet", "swrn"}  # the other families' ONNX checks run under -m slow
JAX = keras.backend.backend() == "jax"


def _families():
    by_family = {}
    for name in models.list_models():
        entry = models.get_entry(name)
        by_family.setdefault(entry.family, []).append(entry)
    picked = {}
    for family, entries in sorted(by_family.items()):
        fast = [e for e in entries if not e.slow]
        entry = min(fast or entries, key=lambda e: (e.params is None, e.params or 0, e.name))
        picked[family] = (entry, not fast)
    return picked


FAMILIES = _families()


def _cases():
    """(family, parts) test cases: `.keras` (+ sharing) and SavedModel by default, the
    slow parts of a family as a second, slow case."""
    cases = []
    for family, (_, all_slow) in FAMILIES.items():
        parts = ["keras", "saved_model"]
        if JAX:
            slow = [p for p in parts if family in EXPORT_SLOW or all_slow
                    or (p == "saved_model" and family not in JAX_SAVED_MODEL)]
        else:
            slow = [p for p in parts if (p == "saved_model" and family in EXPORT_SLOW)
                    or all_slow]
        fast = [p for p in parts if p not in slow]
        if fast:
            cases.append(pytest.param(family, tuple(fast), id=f"{family}-{'+'.join(fast)}"))
        if slow:
            cases.append(pytest.param(family, tuple(slow), id=f"{family}-{'+'.join(slow)}",
                                      marks=pytest.mark.slow))
    return cases


def _small_kwargs(entry):
    accepted = inspect.signature(entry.builder).parameters
    kwargs = {k: v for k, v in SMALLER.get(entry.family, {}).items() if k in accepted}
    if entry.recipe is not None and entry.recipe.dataset == "imagenet" and "input_shape" in accepted:
        kwargs["input_shape"] = (64, 64, 3)
    return kwargs


def _build(family):
    """The family's small model and its inference network (what export writes)."""
    entry, _ = FAMILIES[family]
    model = entry.build(**_small_kwargs(entry))
    return model, inference_network(model)


def _inputs(net, batch, seed=0):
    return random_images((batch, *net.input_shape[1:]), seed=seed, low=-1.0)


def _plain(config):
    return json.loads(json.dumps(config, default=str))  # tuples and lists alike


@pytest.mark.parametrize("family, parts", _cases())
def test_export_round_trips(family, parts, tmp_path):
    """Reloaded `.keras` / SavedModel outputs equal the live model's at two batch sizes;
    shared weights stay shared through `.keras`."""
    model, net = _build(family)
    expected = {b: to_numpy(net(_inputs(net, b), training=False)) for b in BATCHES}
    if "keras" in parts:
        reloaded = load_model(export(model, tmp_path / "model.keras"))  # format from suffix
        assert _plain(reloaded.get_config()) == _plain(net.get_config())
        assert count_params(reloaded.weights) == count_params(net.weights)
        for batch, want in expected.items():
            got = reloaded(_inputs(net, batch), training=False)
            np.testing.assert_allclose(to_numpy(got), want, **TOL)
        sharing = _sharing(net)
        if family in SHARES:  # the detection below is not vacuous
            assert sharing[SHARES[family]], sharing
        if any(sharing.values()):
            _check_still_shared(net, reloaded, sharing)
    if "saved_model" in parts:
        tf = pytest.importorskip("tensorflow")
        loaded = tf.saved_model.load(export(model, tmp_path / "sm", format="saved_model"))
        for batch, want in expected.items():
            got = loaded.serve(tf.constant(_inputs(net, batch))).numpy()
            np.testing.assert_allclose(got, want, **TOL)
        # The variables travel as they are: nothing duplicated, nothing left out.
        assert sum(int(np.prod(v.shape)) for v in loaded.variables) == count_params(net.variables)


def _sharing(model):
    """How `model` shares weights, by layer name.

    * `reused`: layers called more than once in the graph (a shared basis conv);
    * `banks`: layers that emit one of their own weights (a template bank) and the
      layers that consume it;
    * `held`: variables that more than one top-level layer holds;
    * `internal`: layers that apply their own weights `n_iter` > 1 times (LRU blocks).
    """
    layers = model.layers
    reused = {layer.name: len(layer._inbound_nodes) for layer in layers
              if len(layer._inbound_nodes) > 1}
    banks = {}
    for layer in layers:
        weight_shapes = {tuple(w.shape) for w in layer.weights}
        if weight_shapes and tuple(layer.output.shape) in weight_shapes:
            consumers = sorted(n.operation.name for n in layer._outbound_nodes)
            if len(consumers) > 1:
                banks[layer.name] = consumers
    holders = {}
    for layer in layers:
        for w in layer.weights:
            holders.setdefault(id(w), (w.path, set()))[1].add(layer.name)
    held = sorted((path, sorted(names)) for path, names in holders.values() if len(names) > 1)
    internal = {layer.name: layer.get_config()["n_iter"] for layer in layers
                if layer.get_config().get("n_iter", 1) > 1}
    return {"reused": reused, "banks": banks, "held": held, "internal": internal}


def _shared_variables(model, sharing):
    names = set(sharing["reused"]) | set(sharing["banks"]) | set(sharing["internal"])
    names |= {n for _, group in sharing["held"] for n in group}
    return {w.path: w for layer in model.layers if layer.name in names for w in layer.weights}


def _check_still_shared(net, reloaded, sharing):
    """The `.keras` round trip keeps every shared weight one variable, read everywhere."""
    assert _sharing(reloaded) == sharing
    assert len({id(w) for w in reloaded.weights}) == len({id(w) for w in net.weights})
    # Perturb each shared variable in both models: a reloaded model whose consumers
    # read private copies of a shared weight would now disagree with the original.
    old, new = _shared_variables(net, sharing), _shared_variables(reloaded, sharing)
    assert sorted(old) == sorted(new) and old
    rng = np.random.default_rng(0)
    saved = {p: to_numpy(var) for p, var in old.items()}
    try:
        for p, value in saved.items():
            delta = (0.1 * rng.standard_normal(value.shape)).astype(value.dtype)
            old[p].assign(value + delta)
            new[p].assign(value + delta)
        x = _inputs(net, 2, seed=1)
        np.testing.assert_allclose(to_numpy(reloaded(x, training=False)),
                                   to_numpy(net(x, training=False)), **TOL)
    finally:
        for p, value in saved.items():
            old[p].assign(value)


def _onnx_session(path):
    ort = pytest.importorskip("onnxruntime")
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("family", [
    f if f in ONNX_DEFAULT and not slow else pytest.param(f, marks=pytest.mark.slow)
    for f, (_, slow) in FAMILIES.items()])
def test_onnx_matches_live_model(family, tmp_path):
    pytest.importorskip("tensorflow")  # tf2onnx runs on TensorFlow, under JAX in a subprocess
    pytest.importorskip("tf2onnx")
    pytest.importorskip("onnxruntime")
    model, net = _build(family)
    session = _onnx_session(export(model, tmp_path / "model.onnx"))
    (name,) = [i.name for i in session.get_inputs()]
    for batch in BATCHES:
        (got,) = session.run(None, {name: _inputs(net, batch)})
        np.testing.assert_allclose(got, to_numpy(net(_inputs(net, batch), training=False)), **TOL)


# --- atomic writes ----------------------------------------------------------------------

def _tiny():
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, name="conv")(inputs)
    return keras.Model(inputs, keras.layers.Dense(3, name="fc")(keras.layers.Flatten()(x)))


def _snapshot(path):
    """Relative path -> sha256 of every file under `path` (or of the file `path`)."""
    if os.path.isfile(path):
        return {"": hashlib.sha256(open(path, "rb").read()).hexdigest()}
    out = {}
    for root, _, files in os.walk(path):
        for f in files:
            full = os.path.join(root, f)
            out[os.path.relpath(full, path)] = hashlib.sha256(open(full, "rb").read()).hexdigest()
    return out


def _failing_writer(is_dir):
    def write(target, *args, **kwargs):
        # Write part of an artifact, then fail as a full disk or a bad op would.
        if is_dir:
            os.makedirs(os.path.join(target, "variables"))
            open(os.path.join(target, "saved_model.pb"), "wb").write(b"partial")
        else:
            open(target, "wb").write(b"partial")
        raise OSError("disk full (simulated)")
    return write


@pytest.mark.parametrize("fmt, name, method", [
    ("keras", "model.keras", "save"),
    ("saved_model", "sm", "export"),
    ("onnx", "model.onnx", "export"),
])
def test_failed_export_keeps_the_previous_one(fmt, name, method, tmp_path, monkeypatch):
    model = _tiny()
    target = tmp_path / name
    if fmt == "keras":
        export(model, target, format=fmt)
    else:
        # The previous artifact stands in for a finished export (each format's own
        # writer is tested above; this test is about the file system).
        if fmt == "saved_model":
            os.makedirs(target / "variables")
            (target / "saved_model.pb").write_bytes(b"the previous export")
        else:
            target.write_bytes(b"the previous export")
    before = _snapshot(target)
    monkeypatch.setattr(model, method, _failing_writer(fmt == "saved_model"))
    monkeypatch.setattr(kexport, "_require", lambda *a: None)  # no TF / tf2onnx needed here
    if fmt == "onnx":
        monkeypatch.setattr(kexport, "_export_onnx", lambda net, path, verbose: net.export(path))
    with pytest.raises(OSError, match="simulated"):
        export(model, target, format=fmt)
    assert _snapshot(target) == before
    assert sorted(os.listdir(tmp_path)) == [name]  # no temporary folder left behind


def test_export_replaces_a_previous_saved_model(tmp_path):
    tf = pytest.importorskip("tensorflow")
    path = tmp_path / "sm"
    first, second = _tiny(), _tiny()
    export(first, path)
    export(second, path)
    x = random_images((2, 8, 8, 3))
    loaded = tf.saved_model.load(str(path))  # keep a reference while serving
    np.testing.assert_allclose(loaded.serve(x).numpy(), to_numpy(second(x)), **TOL)
    assert sorted(os.listdir(tmp_path)) == ["sm"]


def test_format_argument(tmp_path):
    assert kexport.infer_format("a/b.keras") == "keras"
    assert kexport.infer_format("a/b.onnx") == "onnx"
    assert kexport.infer_format("a/exported") == "saved_model"
    with pytest.raises(ValueError, match="`format` must be one of 'saved_model', 'keras', 'onnx'"):
        export(_tiny(), tmp_path / "x", format="tflite")
    with pytest.raises(ValueError, match="must end in '.keras'"):
        export(_tiny(), tmp_path / "x.h5", format="keras")


def test_missing_tensorflow_is_a_clear_error(tmp_path, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name.split(".")[0] in ("tensorflow", "jax2onnx")
                        else real(name, *a))
    with pytest.raises(ImportError, match=r"keras_lrn\[tensorflow\]"):
        export(_tiny(), tmp_path / "sm", format="saved_model")
    if keras.backend.backend() == "jax":
        with pytest.raises(ImportError, match="format='keras'"):
            export(_tiny(), tmp_path / "m.onnx")
    assert os.listdir(tmp_path) == []
