"""Load the checkpoints published with okankop/CNN-layer-reuse, without PyTorch.

The 18 files in the reference's `pretrained/` folder (MIT licence) are legacy
(pre-1.6, non-zip) `torch.save` pickles written by PyTorch 0.4.0 holding
`{'net': state_dict, 'acc': float, 'epoch': int}` with DataParallel
`module.` key prefixes. This module reads that format with a *restricted*
unpickler: only these globals may be named by the pickle, and each maps to a
small local stand-in (never to the real PyTorch object):

* `collections.OrderedDict`
* `torch._utils._rebuild_tensor_v2` / `torch._utils._rebuild_tensor`
* `torch.{Float,Double,Half,Long,Int,Short,Char,Byte,Bool}Storage`

Any other global (e.g. `os.system`, `builtins.eval`) raises `ValueError`
before anything is called, so a checkpoint that tries to run code fails with a
clear error and no code runs. Tensor bytes are read as numpy arrays.

Public API:

* `read_torch_checkpoint(path)` -> dict with numpy arrays;
* `load_reference_checkpoint(path)` -> the matching Keras model (architecture
  inferred from the tensors) with the weights in place;
* `load_checkpoint_into(model, path_or_state_dict)` -> assign into an existing
  model (used by the builders' `weights=` argument).
"""

from __future__ import annotations

import collections
import io
import os
import pickle
import struct

import numpy as np

MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
PROTOCOL_VERSION = 1001

_STORAGE_DTYPES = {
    "FloatStorage": np.float32,
    "DoubleStorage": np.float64,
    "HalfStorage": np.float16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}


class _StorageType:
    __slots__ = ("name", "dtype")

    def __init__(self, name):
        self.name = name
        self.dtype = np.dtype(_STORAGE_DTYPES[name])


class _StorageRef:
    __slots__ = ("key", "dtype", "numel", "data")

    def __init__(self, key, dtype, numel):
        self.key = key
        self.dtype = dtype
        self.numel = numel
        self.data = None


class _TensorRef:
    __slots__ = ("storage", "offset", "size", "stride")

    def __init__(self, storage, offset, size, stride):
        self.storage = storage
        self.offset = offset
        self.size = size
        self.stride = stride


def _int_tuple(value, what):
    if not isinstance(value, tuple) or not all(
            isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value):
        raise ValueError(f"Malformed checkpoint: tensor {what} must be a tuple of ints, "
                         f"got {value!r}.")
    return value


def _rebuild_tensor(storage, storage_offset, size, stride, *_ignored):
    """Stand-in for torch._utils._rebuild_tensor(_v2): records a view, runs nothing."""
    if not isinstance(storage, _StorageRef):
        raise ValueError("Malformed checkpoint: a tensor does not reference a storage.")
    if isinstance(storage_offset, bool) or not isinstance(storage_offset, int) or (
            storage_offset < 0):
        raise ValueError(f"Malformed checkpoint: bad storage offset {storage_offset!r}.")
    size = _int_tuple(size, "size")
    stride = _int_tuple(stride, "stride")
    if len(size) != len(stride):
        raise ValueError("Malformed checkpoint: tensor size and stride differ in length.")
    return _TensorRef(storage, storage_offset, size, stride)


class _OrderedDict(collections.OrderedDict):
    """OrderedDict that accepts the `_metadata` attribute PyTorch attaches."""


_ALLOWED = {
    ("collections", "OrderedDict"): _OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
}
_ALLOWED.update({("torch", name): _StorageType(name) for name in _STORAGE_DTYPES})


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that resolves only the allow-listed globals (to local stand-ins)."""

    def __init__(self, file, storages):
        super().__init__(file, encoding="latin1")
        self._storages = storages

    def find_class(self, module, name):
        key = (module, name)
        if key not in _ALLOWED:
            raise ValueError(
                f"Refusing to load checkpoint: the pickle names the forbidden global "
                f"{module}.{name}. Only {sorted('.'.join(k) for k in _ALLOWED)} are allowed; "
                "nothing was executed."
            )
        return _ALLOWED[key]

    def persistent_load(self, pid):
        if not isinstance(pid, tuple) or not pid:
            raise ValueError(f"Malformed checkpoint: bad persistent id {pid!r}.")
        if pid[0] == "module":
            raise ValueError("Refusing to load checkpoint: it pickles a whole nn.Module "
                             "(source code), not a state_dict.")
        if pid[0] != "storage" or len(pid) != 6:
            raise ValueError(f"Malformed checkpoint: unknown persistent id {pid[:1]!r}.")
        _, storage_type, key, _location, numel, view_metadata = pid
        if not isinstance(storage_type, _StorageType):
            raise ValueError("Malformed checkpoint: a storage has no known storage type.")
        if not isinstance(key, str) or isinstance(numel, bool) or not isinstance(numel, int) or (
                numel < 0):
            raise ValueError("Malformed checkpoint: bad storage key or size.")
        if view_metadata is not None:
            raise ValueError("Unsupported checkpoint: storage views are not supported.")
        ref = self._storages.get(key)
        if ref is None:
            ref = self._storages[key] = _StorageRef(key, storage_type.dtype, numel)
        elif ref.dtype != storage_type.dtype or ref.numel != numel:
            raise ValueError(f"Malformed checkpoint: storage {key} declared twice differently.")
        return ref


def _load_pickle(f, storages):
    try:
        return _RestrictedUnpickler(f, storages).load()
    except ValueError:
        raise
    except (pickle.UnpicklingError, EOFError, TypeError, AttributeError, IndexError,
            KeyError, struct.error, UnicodeDecodeError, MemoryError, OverflowError) as e:
        raise ValueError(f"Not a readable legacy torch.save checkpoint "
                         f"(truncated or corrupt pickle: {type(e).__name__}: {e}).") from None


def _materialize(obj):
    if isinstance(obj, _TensorRef):
        st = obj.storage
        if st.data is None:
            raise ValueError(f"Malformed checkpoint: storage {st.key} has no data.")
        if obj.size:
            last = obj.offset + sum((s - 1) * t for s, t in zip(obj.size, obj.stride) if s)
            if any(s == 0 for s in obj.size):
                return np.zeros(obj.size, st.dtype)
            if last >= st.numel:
                raise ValueError("Malformed checkpoint: a tensor reads past its storage.")
        elif obj.offset >= max(st.numel, 1):
            raise ValueError("Malformed checkpoint: a scalar reads past its storage.")
        view = np.lib.stride_tricks.as_strided(
            st.data[obj.offset:], shape=obj.size,
            strides=tuple(t * st.dtype.itemsize for t in obj.stride), writeable=False)
        return np.array(view, copy=True)
    if isinstance(obj, dict):
        out = collections.OrderedDict() if isinstance(obj, collections.OrderedDict) else {}
        for k, v in obj.items():
            out[k] = _materialize(v)
        return out
    if isinstance(obj, list):
        return [_materialize(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(_materialize(v) for v in obj)
    return obj


def read_torch_checkpoint(path):
    """Read a legacy `torch.save` file safely; tensors become numpy arrays.

    Returns the saved object (for the LruNet checkpoints: a dict with 'net',
    an OrderedDict of numpy arrays, 'acc' and 'epoch').

    Raises:
        ValueError: the file is not a legacy torch checkpoint, is truncated or
            corrupt, or its pickle names a class outside the allow-list.
    """
    path = os.fspath(path)
    with open(path, "rb") as fh:
        raw = fh.read()
    if raw[:4] == b"PK\x03\x04":
        raise ValueError(f"{path} is a zip-format torch.save file (PyTorch >= 1.6); only the "
                         "legacy format of the published LruNet checkpoints is supported.")
    if not raw.startswith(b"\x80\x02\x8a\x0a"):
        raise ValueError(f"{path} is not a legacy torch.save checkpoint (bad magic bytes).")
    f = io.BytesIO(raw)
    storages = {}
    magic = _load_pickle(f, storages)
    if magic != MAGIC_NUMBER:
        raise ValueError(f"{path} is not a legacy torch.save checkpoint (bad magic number).")
    version = _load_pickle(f, storages)
    if version != PROTOCOL_VERSION:
        raise ValueError(f"{path}: unsupported torch.save protocol version {version!r}.")
    sys_info = _load_pickle(f, storages)
    if not isinstance(sys_info, dict) or not sys_info.get("little_endian", False):
        raise ValueError(f"{path}: unsupported (big-endian or malformed) checkpoint header.")
    result = _load_pickle(f, storages)
    keys = _load_pickle(f, storages)
    if not isinstance(keys, list) or set(keys) != set(storages) or len(keys) != len(storages):
        raise ValueError(f"{path}: malformed checkpoint (storage table does not match).")
    view = memoryview(raw)
    pos = f.tell()
    for key in keys:
        st = storages[key]
        if pos + 8 > len(raw):
            raise ValueError(f"{path} is truncated (storage {key} header missing).")
        (numel,) = struct.unpack_from("<q", raw, pos)
        pos += 8
        if numel != st.numel:
            raise ValueError(f"{path}: malformed checkpoint (storage {key} has {numel} "
                             f"elements, {st.numel} declared).")
        nbytes = numel * st.dtype.itemsize
        if pos + nbytes > len(raw):
            raise ValueError(f"{path} is truncated (storage {key} needs {nbytes} bytes, "
                             f"{len(raw) - pos} left).")
        st.data = np.frombuffer(view[pos:pos + nbytes], dtype=st.dtype.newbyteorder("<"))
        pos += nbytes
    return _materialize(result)


def state_dict_from(checkpoint):
    """The `module.`-stripped state dict of a checkpoint dict (or of a state dict)."""
    if isinstance(checkpoint, dict) and "net" in checkpoint and isinstance(checkpoint["net"],
                                                                              dict):
        checkpoint = checkpoint["net"]
    if not isinstance(checkpoint, dict) or not checkpoint:
        raise ValueError("The checkpoint holds no state dict ('net').")
    out = collections.OrderedDict()
    for k, v in checkpoint.items():
        if not isinstance(k, str) or not isinstance(v, np.ndarray):
            raise ValueError(f"Malformed state dict entry {k!r}.")
        out[k[len("module."):] if k.startswith("module.") else k] = v
    return out


# ------------------------------------------------------------ architecture inference
def _shape(sd, key):
    if key not in sd:
        raise ValueError(f"Unrecognised checkpoint: missing tensor {key!r}.")
    return sd[key].shape


def _count(sd, fmt):
    n = 0
    while fmt.format(n) in sd:
        n += 1
    return n


def _widths():
    return sorted({round(i / 100, 2) for i in range(5, 301)},
                  key=lambda w: (w not in (0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 0.4), w))


def infer_architecture(sd):
    """(class name, constructor kwargs) of the okankop model a state dict belongs to."""
    from keras_lrn.models import mobilenet, shufflenet

    def common(stem_key, head_key):
        in_ch = _shape(sd, stem_key)[1]
        classes = _shape(sd, head_key)[0]
        shape = (32, 32, 3) if in_ch == 3 else (28, 28, in_ch)
        return {"classes": int(classes), "input_shape": shape}

    if "stage1.dw.weight" in sd:
        n = _count(sd, "stage1.dw_bn_list.{}.weight")
        cfg0 = _shape(sd, "stage1.dw.weight")[0] // 2
        kw = common("features.0.weight", "classifier.4.weight")
        kw.update(layer_reuse=n, width_mult=cfg0 / 64)
        return "LruNet", kw
    if "layer1.0.conv5.weight" in sd:
        kw = common("conv1.weight", "linear.weight")
        outs = (_shape(sd, "layer1.0.conv2.weight")[0] + _shape(sd, "layer1.0.conv5.weight")[0],
                _shape(sd, "layer2.0.conv2.weight")[0] + _shape(sd, "layer2.0.conv5.weight")[0],
                _shape(sd, "layer3.0.conv2.weight")[0] + _shape(sd, "layer3.0.conv5.weight")[0],
                _shape(sd, "conv2.weight")[0])
        for w, table in shufflenet.SHUFFLENETV2_CONFIGS.items():
            if tuple(table) == outs:
                kw.update(width_mult=w)
                return "ShuffleNetV2", kw
        raise ValueError(f"Unrecognised ShuffleNetV2 channels {outs}.")
    if "layer1.0.conv3.weight" in sd and "linear.weight" in sd:
        kw = common("conv1.weight", "linear.weight")
        mid = _shape(sd, "layer1.0.conv1.weight")[0]
        groups = mid // _shape(sd, "layer1.0.conv3.weight")[1]
        stem = _shape(sd, "conv1.weight")[0]
        last = _shape(sd, "linear.weight")[1]
        for w in _widths():
            try:
                planes = shufflenet.shufflenet_planes(w, groups)
            except ValueError:
                continue
            if planes[0] == stem and planes[-1] == last:
                kw.update(width_mult=w, groups=groups)
                return "ShuffleNet", kw
        raise ValueError("Unrecognised ShuffleNet widths.")
    if "features.1.conv.0.weight" in sd:
        kw = common("features.0.0.weight", "classifier.1.weight")
        stem = _shape(sd, "features.0.0.weight")[0]
        last_block = _shape(sd, "features.17.conv.6.weight")[0]
        head = _shape(sd, "features.18.0.weight")[0]
        for w in _widths():
            if mobilenet.mobilenetv2_channels(w) == (stem, last_block, head):
                kw.update(width_mult=w)
                return "MobileNetV2", kw
        raise ValueError("Unrecognised MobileNetV2 widths.")
    if "features.1.conv1.weight" in sd:
        kw = common("features.0.0.weight", "classifier.1.weight")
        stem = _shape(sd, "features.0.0.weight")[0]
        last = _shape(sd, "classifier.1.weight")[1]
        mid = _shape(sd, "features.6.conv2.weight")[0]
        for w in _widths():
            if mobilenet.mobilenet_channels(w) == (stem, mid, last):
                kw.update(width_mult=w)
                return "MobileNet", kw
        raise ValueError("Unrecognised MobileNet widths.")
    raise ValueError("Unrecognised checkpoint: not an LruNet, MobileNet, MobileNetV2, "
                     "ShuffleNet or ShuffleNetV2 state dict of okankop/CNN-layer-reuse.")


# ------------------------------------------------------------ weight conversion
def _torch_targets(model):
    """{torch module path: keras layer} for a model built by keras_lrn (layer names = paths)."""
    from keras_lrn.layers.reuse import LRUBlock

    targets = {}
    for layer in model.layers:
        if isinstance(layer, LRUBlock):
            p = layer.name
            targets[f"{p}.dw"] = layer.dw
            targets[f"{p}.pw"] = layer.pw
            for i, bn in enumerate(layer.dw_bns):
                targets[f"{p}.dw_bn_list.{i}"] = bn
            for i, bn in enumerate(layer.pw_bns):
                targets[f"{p}.pw_bn_list.{i}"] = bn
        elif layer.weights:
            targets[layer.name.replace("__", ".")] = layer
    return targets


def _convert(layer, param, value):
    """(keras variable, converted numpy value) for torch `param` of `layer`."""
    import keras

    from keras_lrn.layers.fast_conv import FastDepthwiseConv2D, GroupedPointwiseConv2D

    if isinstance(layer, keras.layers.BatchNormalization):
        var = {"weight": layer.gamma, "bias": layer.beta, "running_mean": layer.moving_mean,
               "running_var": layer.moving_variance}.get(param)
        return var, value
    if param == "bias":
        return getattr(layer, "bias", None), value
    if param != "weight":
        return None, value
    if isinstance(layer, FastDepthwiseConv2D) or isinstance(
            layer, keras.layers.DepthwiseConv2D):
        kh, kw, c, m = layer.kernel.shape
        if value.ndim != 4 or value.shape != (c * m, 1, kh, kw):
            return layer.kernel, None
        return layer.kernel, value.reshape(c, m, kh, kw).transpose(2, 3, 0, 1)
    if isinstance(layer, (GroupedPointwiseConv2D, keras.layers.Conv2D)):
        if value.ndim != 4:
            return layer.kernel, None
        return layer.kernel, value.transpose(2, 3, 1, 0)
    if isinstance(layer, keras.layers.Dense):
        if value.ndim != 2:
            return layer.kernel, None
        return layer.kernel, value.T
    return None, value


def load_checkpoint_into(model, checkpoint):
    """Assign a published checkpoint (path, checkpoint dict or state dict) into `model`.

    Every tensor must land in exactly one variable and every variable must be
    set (`num_batches_tracked` is ignored); otherwise `ValueError` naming the
    missing / unexpected / mis-shaped entries. Returns the list of assigned
    variables.
    """
    if isinstance(checkpoint, (str, os.PathLike)):
        checkpoint = read_torch_checkpoint(checkpoint)
    sd = state_dict_from(checkpoint)
    targets = _torch_targets(model)
    plan, unexpected, bad = [], [], []
    for key, value in sd.items():
        module, _, param = key.rpartition(".")
        if param == "num_batches_tracked":
            continue
        layer = targets.get(module)
        if layer is None:
            unexpected.append(key)
            continue
        var, converted = _convert(layer, param, value)
        if var is None:
            unexpected.append(key)
        elif converted is None or tuple(converted.shape) != tuple(var.shape):
            bad.append(f"{key}: checkpoint {tuple(value.shape)} vs model {tuple(var.shape)}")
        else:
            plan.append((var, converted))
    assigned = {id(v) for v, _ in plan}
    missing = [v.path for v in model.weights
               if id(v) not in assigned and "seed_generator" not in v.path]
    if unexpected or bad or missing or len(assigned) != len(plan):
        raise ValueError(
            f"The checkpoint does not match {model.name} ({type(model).__name__}): "
            f"{len(unexpected)} unexpected tensors {unexpected[:5]}, {len(bad)} shape "
            f"mismatches {bad[:5]}, {len(missing)} model weights not in the checkpoint "
            f"{missing[:5]}.")
    for var, value in plan:
        var.assign(value.astype(var.dtype))
    return [v for v, _ in plan]


def load_reference_checkpoint(path, **overrides):
    """Build the Keras model a published okankop/CNN-layer-reuse `.t7` file belongs to.

    The architecture (family, reuse count, width, groups, classes, input
    channels) is inferred from the tensors; `overrides` (e.g.
    `input_shape=(32, 32, 1)` for Fashion-MNIST training crops, `dropout=`)
    go to the constructor. The returned model carries `checkpoint_info`
    (`acc`, `epoch`, `path`, architecture).

    Example:
    ```python
    model = keras_lrn.models.load_reference_checkpoint(
        "/work/shared/checkpoints/lrunet/cifar10-lru14-ckpt-08934.t7")
    probs_free_logits = model.predict(x_uint8 / 255.0)   # no normalisation
    ```
    """
    from keras_lrn import models

    ckpt = read_torch_checkpoint(path)
    sd = state_dict_from(ckpt)
    cls_name, kwargs = infer_architecture(sd)
    kwargs.update(overrides)
    model = getattr(models, cls_name)(**kwargs)
    load_checkpoint_into(model, sd)
    model.checkpoint_info = {"path": os.fspath(path), "acc": ckpt.get("acc"),
                             "epoch": ckpt.get("epoch"), "architecture": cls_name,
                             "config": kwargs}
    return model


def load_weights_argument(model, weights, expected):
    """The builders' `weights=`: `.t7` → checked checkpoint load, otherwise Keras weights."""
    if weights is None:
        return
    if str(weights).endswith((".t7", ".pth", ".pt", ".tar")):
        sd = state_dict_from(read_torch_checkpoint(weights))
        cls_name, kwargs = infer_architecture(sd)
        if cls_name != expected:
            raise ValueError(f"{weights} is a {cls_name} checkpoint ({kwargs}), not a "
                             f"{expected}.")
        load_checkpoint_into(model, sd)
    else:
        model.load_weights(weights)
