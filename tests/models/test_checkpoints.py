"""The published okankop/CNN-layer-reuse checkpoints, read without PyTorch."""

import glob
import io
import os
import pickle
import tarfile

import numpy as np
import pytest

from keras_lrn import models
from keras_lrn.models import checkpoints
from keras_lrn.testing import to_numpy

CKPT_DIR = "/work/shared/checkpoints/lrunet"
DATA_DIR = "/work/shared/datasets/cifar10"
FILES = sorted(glob.glob(os.path.join(CKPT_DIR, "*.t7")))
needs_ckpts = pytest.mark.skipif(len(FILES) != 18, reason="published checkpoints not present")

EXPECTED = {  # file -> (class, constructor kwargs)   (spec §3)
    "cifar10-lru1-ckpt-08391.t7": ("LruNet", dict(layer_reuse=1, width_mult=1.0, classes=10)),
    "cifar10-lru14-ckpt-08934.t7": ("LruNet", dict(layer_reuse=14, width_mult=1.0, classes=10)),
    "cifar10-mobilenet-025x-ckpt-08472.t7": ("MobileNet", dict(width_mult=0.25, classes=10)),
    "cifar10-mobilenetv2-025x-ckpt-08957.t7": ("MobileNetV2", dict(width_mult=0.25, classes=10)),
    "cifar10-shufflenet-05x-ckpt-090320.t7": ("ShuffleNet", dict(width_mult=0.5, groups=3,
                                                                 classes=10)),
    "cifar10-shufflenetv2-025x-ckpt-089310.t7": ("ShuffleNetV2", dict(width_mult=0.25,
                                                                      classes=10)),
    "cifar100-lru1-2x-ckpt-06322.t7": ("LruNet", dict(layer_reuse=1, width_mult=2.0,
                                                      classes=100)),
    "cifar100-lru14-2x-ckpt-06884.t7": ("LruNet", dict(layer_reuse=14, width_mult=2.0,
                                                       classes=100)),
    "cifar100-mobilenet-0.4x-ckpt-06054.t7": ("MobileNet", dict(width_mult=0.4, classes=100)),
    "cifar100-mobilenetv2-0.4x-ckpt-06995.t7": ("MobileNetV2", dict(width_mult=0.4,
                                                                    classes=100)),
    "cifar100-shufflenet-075x-ckpt-06997.t7": ("ShuffleNet", dict(width_mult=0.75, groups=3,
                                                                  classes=100)),
    "cifar100-shufflenetv2-075x-ckpt-06915.t7": ("ShuffleNetV2", dict(width_mult=0.75,
                                                                      classes=100)),
    "fashionmnist-lru1-ckpt-09117.t7": ("LruNet", dict(layer_reuse=1, width_mult=1.0,
                                                       classes=10)),
    "fashionmnist-lru10-ckpt-09346.t7": ("LruNet", dict(layer_reuse=10, width_mult=1.0,
                                                        classes=10)),
    "fmnist-mobilenet-025x-ckpt-09063.t7": ("MobileNet", dict(width_mult=0.25, classes=10)),
    "fmnist-mobilenetv2-025x-ckpt-09343.t7": ("MobileNetV2", dict(width_mult=0.25, classes=10)),
    "fmnist-shufflenet-05x-ckpt-09411.t7": ("ShuffleNet", dict(width_mult=0.5, groups=3,
                                                               classes=10)),
    "fmnist-shufflenetv2-025x-ckpt-09342.t7": ("ShuffleNetV2", dict(width_mult=0.25,
                                                                    classes=10)),
}
#: Top-1 on the 10,000 JPEG CIFAR-10 test images, measured with the original code (spec §3).
REFERENCE_TOP1 = {
    "cifar10-lru14-ckpt-08934.t7": 84.35,
    "cifar10-lru1-ckpt-08391.t7": 80.17,
    "cifar10-mobilenet-025x-ckpt-08472.t7": 82.12,
    "cifar10-mobilenetv2-025x-ckpt-08957.t7": 83.86,
    "cifar10-shufflenet-05x-ckpt-090320.t7": 84.40,
    "cifar10-shufflenetv2-025x-ckpt-089310.t7": 83.19,
}


# ---------------------------------------------------------------- reader
@needs_ckpts
def test_reader_returns_numpy_state_dict():
    ck = checkpoints.read_torch_checkpoint(os.path.join(CKPT_DIR, "cifar10-lru1-ckpt-08391.t7"))
    assert ck["acc"] == 83.91 and ck["epoch"] == 231
    assert len(ck["net"]) == 52
    w = ck["net"]["module.features.0.weight"]
    assert isinstance(w, np.ndarray) and w.dtype == np.float32 and w.shape == (64, 3, 3, 3)
    assert np.isfinite(w).all() and w.std() > 0


# ---------------------------------------------------------------- all 18 load
@needs_ckpts
@pytest.mark.parametrize("fname", sorted(EXPECTED))
def test_every_tensor_lands(fname):
    """Right configuration inferred; every variable is set from the checkpoint."""
    path = os.path.join(CKPT_DIR, fname)
    cls_name, kwargs = EXPECTED[fname]
    sd = checkpoints.state_dict_from(checkpoints.read_torch_checkpoint(path))
    got_cls, got_kwargs = checkpoints.infer_architecture(sd)
    assert got_cls == cls_name
    for k, v in kwargs.items():
        assert got_kwargs[k] == v, (k, got_kwargs)
    model = getattr(models, cls_name)(**got_kwargs)
    before = dict(zip([id(v) for v in model.weights], model.get_weights()))
    assigned = checkpoints.load_checkpoint_into(model, sd)
    real = [v for v in model.weights if "seed_generator" not in v.path]
    assert {id(v) for v in assigned} == {id(v) for v in real}
    n_tensors = sum(1 for k in sd if not k.endswith("num_batches_tracked"))
    assert len(assigned) == n_tensors
    for v, now in zip(model.weights, model.get_weights()):
        if "seed_generator" not in v.path:
            assert not np.array_equal(now, before[id(v)]), f"{v.path} kept its initial value"
    assert sum(int(np.prod(v.shape)) for v in real) == sum(
        a.size for k, a in sd.items() if not k.endswith("num_batches_tracked"))
    if fname in REFERENCE_TOP1:
        _check_logits(model, sd, cls_name)


# ---------------------------------------------------------------- numpy reference forward
def _conv(x, w, stride=1, pad=0, groups=1, bias=None):
    """PyTorch conv2d semantics in numpy: x NCHW, w OIHW."""
    x = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    n, c, h, wd = x.shape
    o, cig, kh, kw = w.shape
    ho, wo = (h - kh) // stride + 1, (wd - kw) // stride + 1
    og = o // groups
    xg = x.reshape(n, groups, cig, h, wd)
    wg = w.reshape(groups, og, cig, kh, kw)
    out = np.zeros((n, groups, og, ho, wo))
    for i in range(kh):
        for j in range(kw):
            tap = xg[..., i:i + stride * (ho - 1) + 1:stride, j:j + stride * (wo - 1) + 1:stride]
            out += np.einsum("ngchw,goc->ngohw", tap, wg[..., i, j])
    out = out.reshape(n, o, ho, wo)
    if bias is not None:
        out += bias[None, :, None, None]
    return out


def _bn(x, sd, p):
    s = sd[p + ".weight"] / np.sqrt(sd[p + ".running_var"] + 1e-5)
    return (x - sd[p + ".running_mean"][None, :, None, None]) * s[None, :, None, None] + \
        sd[p + ".bias"][None, :, None, None]


def _relu(x):
    return np.maximum(x, 0)


def _pool(x, k, s, p, op, pad_value=0.0):
    x = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)), constant_values=pad_value)
    h, w = x.shape[2:]
    ho, wo = (h - k) // s + 1, (w - k) // s + 1
    taps = [x[:, :, i:i + s * (ho - 1) + 1:s, j:j + s * (wo - 1) + 1:s]
            for i in range(k) for j in range(k)]
    return np.max(taps, 0) if op == "max" else np.mean(taps, 0)


def _shuffle(x, g):
    n, c, h, w = x.shape
    return x.reshape(n, g, c // g, h, w).transpose(0, 2, 1, 3, 4).reshape(n, c, h, w)


def ref_lrunet(sd, x):
    x = _relu(_bn(_conv(x, sd["features.0.weight"], 2, 1), sd, "features.1"))
    n = sum(1 for k in sd if k.startswith("stage1.dw_bn_list.") and k.endswith(".weight"))
    if sd["stage1.dw.weight"].shape[0] // 2 == 2 * x.shape[1]:
        x = np.concatenate([x, x], 1)

    def block(x, st):
        planes = x.shape[1]
        for i in range(n):
            out = _bn(_conv(x, sd[f"{st}.dw.weight"], 1, 1, groups=planes), sd,
                      f"{st}.dw_bn_list.{i}")
            out = _bn(_conv(out, sd[f"{st}.pw.weight"], groups=8), sd, f"{st}.pw_bn_list.{i}")
            x = _relu(out + x)
            if i < n - 1:
                c = x.shape[1]
                x = _shuffle(np.concatenate([x[:, c // 2:], x[:, :c // 2]], 1), 2)
        return x

    x = block(x, "stage1")
    x = _pool(x, 3, 2, 1, "max", -np.inf)
    x = np.concatenate([x, x], 1)
    x = block(x, "stage2")
    x = _pool(x, 3, 2, 1, "max", -np.inf)
    x = np.concatenate([x, x], 1)
    x = block(x, "stage3")
    x = np.concatenate([x, x], 1)
    x = block(x, "stage4")
    x = _pool(x, 3, 2, 1, "max", -np.inf)
    x = _relu(_bn(_conv(x, sd["classifier.0.weight"], groups=8), sd, "classifier.1"))
    x = _relu(_conv(x, sd["classifier.4.weight"], bias=sd["classifier.4.bias"]))
    return _pool(x, 2, 1, 0, "avg").reshape(x.shape[0], -1)


def ref_mobilenet(sd, x):
    x = _relu(_bn(_conv(x, sd["features.0.0.weight"], 1, 1), sd, "features.0.1"))
    strides = [2, 2, 1, 1, 1, 2, 1, 1, 1, 1, 1, 1, 1]  # (64,1,2) (128,2,2) (256,2,1) ...
    for i, s in enumerate(strides, start=1):
        p = f"features.{i}"
        x = _relu(_bn(_conv(x, sd[p + ".conv1.weight"], s, 1, groups=x.shape[1]), sd, p + ".bn1"))
        x = _relu(_bn(_conv(x, sd[p + ".conv2.weight"]), sd, p + ".bn2"))
    x = x.mean((2, 3))
    return x @ sd["classifier.1.weight"].T + sd["classifier.1.bias"]


def ref_mobilenetv2(sd, x):
    r6 = lambda t: np.clip(t, 0, 6)  # noqa: E731
    x = r6(_bn(_conv(x, sd["features.0.0.weight"], 1, 1), sd, "features.0.1"))
    strides = [1, 2, 1, 2, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 1, 1, 1]
    for i, s in enumerate(strides, start=1):
        p = f"features.{i}.conv"
        y = x
        if p + ".6.weight" in sd:
            y = r6(_bn(_conv(y, sd[p + ".0.weight"]), sd, p + ".1"))
            k = 3
        else:
            k = 0
        y = r6(_bn(_conv(y, sd[f"{p}.{k}.weight"], s, 1, groups=y.shape[1]), sd, f"{p}.{k + 1}"))
        y = _bn(_conv(y, sd[f"{p}.{k + 3}.weight"]), sd, f"{p}.{k + 4}")
        x = x + y if (s == 1 and x.shape[1] == y.shape[1]) else y
    x = r6(_bn(_conv(x, sd["features.18.0.weight"]), sd, "features.18.1"))
    x = x.mean((2, 3))
    return x @ sd["classifier.1.weight"].T + sd["classifier.1.bias"]


def ref_shufflenet(sd, x):
    x = _relu(_bn(_conv(x, sd["conv1.weight"], 1, 1), sd, "bn1"))
    for s, n in ((1, 4), (2, 8), (3, 4)):
        for b in range(n):
            p = f"layer{s}.{b}"
            w1 = sd[p + ".conv1.weight"]
            g = x.shape[1] // w1.shape[1]
            stride = 2 if b == 0 else 1
            y = _relu(_bn(_conv(x, w1, groups=g), sd, p + ".bn1"))
            y = _shuffle(y, g)
            y = _relu(_bn(_conv(y, sd[p + ".conv2.weight"], stride, 1, groups=y.shape[1]), sd,
                          p + ".bn2"))
            y = _bn(_conv(y, sd[p + ".conv3.weight"], groups=g), sd, p + ".bn3")
            if stride == 2:
                x = _relu(np.concatenate([y, _pool(x, 3, 2, 1, "avg")], 1))
            else:
                x = _relu(y + x)
    x = x.mean((2, 3))
    return x @ sd["linear.weight"].T + sd["linear.bias"]


def ref_shufflenetv2(sd, x):
    x = _relu(_bn(_conv(x, sd["conv1.weight"], 1, 1), sd, "bn1"))
    for s, n in ((1, 3), (2, 7), (3, 3)):
        p = f"layer{s}.0"
        left = _bn(_conv(x, sd[p + ".conv1.weight"], 2, 1, groups=x.shape[1]), sd, p + ".bn1")
        left = _relu(_bn(_conv(left, sd[p + ".conv2.weight"]), sd, p + ".bn2"))
        right = _relu(_bn(_conv(x, sd[p + ".conv3.weight"]), sd, p + ".bn3"))
        right = _bn(_conv(right, sd[p + ".conv4.weight"], 2, 1, groups=right.shape[1]), sd,
                    p + ".bn4")
        right = _relu(_bn(_conv(right, sd[p + ".conv5.weight"]), sd, p + ".bn5"))
        x = _shuffle(np.concatenate([left, right], 1), 2)
        for b in range(1, n + 1):
            p = f"layer{s}.{b}"
            c = x.shape[1] // 2
            x1, x2 = x[:, :c], x[:, c:]
            y = _relu(_bn(_conv(x2, sd[p + ".conv1.weight"]), sd, p + ".bn1"))
            y = _bn(_conv(y, sd[p + ".conv2.weight"], 1, 1, groups=c), sd, p + ".bn2")
            y = _relu(_bn(_conv(y, sd[p + ".conv3.weight"]), sd, p + ".bn3"))
            x = _shuffle(np.concatenate([x1, y], 1), 2)
    x = _relu(_bn(_conv(x, sd["conv2.weight"]), sd, "bn2"))
    x = _pool(x, 4, 4, 0, "avg").reshape(x.shape[0], -1)
    return x @ sd["linear.weight"].T + sd["linear.bias"]


REFERENCE_FORWARD = {"LruNet": ref_lrunet, "MobileNet": ref_mobilenet,
                     "MobileNetV2": ref_mobilenetv2, "ShuffleNet": ref_shufflenet,
                     "ShuffleNetV2": ref_shufflenetv2}


def _few_test_images(n=4):
    """The first `n` JPEG test images (uint8 NHWC) and labels, or random images."""
    path = os.path.join(DATA_DIR, "cifar10-test-0.tar.gz")
    if not os.path.exists(path):
        return np.random.default_rng(0).integers(0, 256, (n, 32, 32, 3)).astype("uint8"), None
    from PIL import Image
    xs = []
    with tarfile.open(path) as t:
        for m in t:
            if m.isfile() and m.name.endswith(".jpg"):
                xs.append(np.asarray(Image.open(io.BytesIO(t.extractfile(m).read()))
                                     .convert("RGB")))
                if len(xs) == n:
                    break
    return np.stack(xs), None


def _check_logits(model, sd, cls_name):
    """Keras logits == an independent numpy forward of the raw PyTorch tensors.

    Run by `test_every_tensor_lands` for the six CIFAR-10 checkpoints, on two
    real JPEG test images.
    """
    x, _ = _few_test_images(2)
    x = x.astype("float32") / 255.0
    got = to_numpy(model(x, training=False))
    want = REFERENCE_FORWARD[cls_name](
        {k: v.astype("float64") for k, v in sd.items()}, x.transpose(0, 3, 1, 2).astype("float64"))
    np.testing.assert_allclose(got, want, atol=2e-4, rtol=2e-4)


@needs_ckpts
def test_fashion_mnist_logits_match_numpy_reference():
    x = np.random.default_rng(0).uniform(0, 1, (2, 28, 28, 1)).astype("float32")
    path = os.path.join(CKPT_DIR, "fashionmnist-lru1-ckpt-09117.t7")
    sd = checkpoints.state_dict_from(checkpoints.read_torch_checkpoint(path))
    model = models.load_reference_checkpoint(path)
    want = ref_lrunet({k: v.astype("float64") for k, v in sd.items()},
                      x.transpose(0, 3, 1, 2).astype("float64"))
    np.testing.assert_allclose(to_numpy(model(x, training=False)), want, atol=2e-4, rtol=2e-4)
    # The 32x32 training crops work with the same weights.
    model32 = models.load_reference_checkpoint(path, input_shape=(32, 32, 1))
    assert model32.output_shape == (None, 10)


@needs_ckpts
def test_builder_weights_argument():
    path = os.path.join(CKPT_DIR, "cifar10-shufflenetv2-025x-ckpt-089310.t7")
    a = models.ShuffleNetV2(width_mult=0.25, weights=path)
    b = models.load_reference_checkpoint(path)
    x = np.random.default_rng(0).uniform(0, 1, (2, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(to_numpy(a(x)), to_numpy(b(x)), atol=1e-6)
    assert b.checkpoint_info["acc"] == 89.31


# ---------------------------------------------------------------- bad input
def _legacy_file(tmp_path, main_pickle_bytes, name="evil.t7"):
    head = pickle.dumps(checkpoints.MAGIC_NUMBER, protocol=2)
    head += pickle.dumps(checkpoints.PROTOCOL_VERSION, protocol=2)
    head += pickle.dumps({"protocol_version": 1001, "little_endian": True}, protocol=2)
    p = tmp_path / name
    p.write_bytes(head + main_pickle_bytes + pickle.dumps([], protocol=2))
    return str(p)


def test_forbidden_global_is_refused_and_nothing_runs(tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    path = _legacy_file(tmp_path, pickle.dumps({"net": Evil()}, protocol=2))
    with pytest.raises(ValueError, match="forbidden global"):
        models.load_reference_checkpoint(path)
    assert not marker.exists()


def test_forbidden_torch_class_is_refused(tmp_path):
    # A pickle naming a torch module class (not on the allow-list).
    body = b"\x80\x02ctorch.nn.modules.conv\nConv2d\nq\x00)\x81q\x01."
    path = _legacy_file(tmp_path, body)
    with pytest.raises(ValueError, match="torch.nn.modules.conv.Conv2d"):
        checkpoints.read_torch_checkpoint(path)


def test_builtins_eval_refused(tmp_path):
    body = b"\x80\x02cbuiltins\neval\nq\x00X\x08\x00\x00\x001+1==2  q\x01\x85q\x02Rq\x03."
    path = _legacy_file(tmp_path, body)
    with pytest.raises(ValueError, match="builtins.eval"):
        checkpoints.read_torch_checkpoint(path)


def test_not_a_checkpoint(tmp_path):
    p = tmp_path / "x.t7"
    p.write_bytes(b"hello world, not a pickle at all" * 10)
    with pytest.raises(ValueError, match="not a legacy torch.save"):
        models.load_reference_checkpoint(str(p))
    p2 = tmp_path / "z.t7"
    p2.write_bytes(b"PK\x03\x04" + b"\x00" * 100)
    with pytest.raises(ValueError, match="zip-format"):
        checkpoints.read_torch_checkpoint(str(p2))


@needs_ckpts
@pytest.mark.parametrize("cut", [200, 5000, -100])
def test_truncated_file(tmp_path, cut):
    raw = open(os.path.join(CKPT_DIR, "cifar10-lru1-ckpt-08391.t7"), "rb").read()
    p = tmp_path / "cut.t7"
    p.write_bytes(raw[:cut])
    with pytest.raises(ValueError, match="truncated|corrupt|malformed|Malformed"):
        checkpoints.read_torch_checkpoint(str(p))


@needs_ckpts
def test_wrong_architecture(tmp_path):
    mobilenet = os.path.join(CKPT_DIR, "cifar10-mobilenet-025x-ckpt-08472.t7")
    with pytest.raises(ValueError, match="MobileNet checkpoint"):
        models.LruNet(layer_reuse=1, weights=mobilenet)
    lru1 = os.path.join(CKPT_DIR, "cifar10-lru1-ckpt-08391.t7")
    with pytest.raises(ValueError, match="does not match"):
        models.LruNet(layer_reuse=2, weights=lru1)
    with pytest.raises(ValueError, match="does not match"):
        models.LruNet(layer_reuse=1, classes=100, weights=lru1)


# ---------------------------------------------------------------- full test set (slow)
def load_cifar10_test():
    from PIL import Image
    classes = open(os.path.join(DATA_DIR, "classes.txt")).read().split()
    xs, ys = [], []
    with tarfile.open(os.path.join(DATA_DIR, "cifar10-test-0.tar.gz")) as t:
        for m in t:
            if m.isfile() and m.name.endswith(".jpg"):
                _, cls, _ = m.name.split("/")
                xs.append(np.asarray(Image.open(io.BytesIO(t.extractfile(m).read()))
                                     .convert("RGB")))
                ys.append(classes.index(cls))
    return np.stack(xs), np.array(ys)


@pytest.fixture(scope="module")
def cifar10_test():
    if not os.path.exists(os.path.join(DATA_DIR, "cifar10-test-0.tar.gz")):
        pytest.skip("CIFAR-10 JPEG test set not present")
    x, y = load_cifar10_test()
    assert x.shape == (10000, 32, 32, 3)
    return x, y


@pytest.mark.slow
@needs_ckpts
@pytest.mark.parametrize("fname", sorted(REFERENCE_TOP1))
def test_cifar10_accuracy_matches_original_code(fname, cifar10_test):
    x, y = cifar10_test
    model = models.load_reference_checkpoint(os.path.join(CKPT_DIR, fname))
    preds = []
    for i in range(0, len(x), 500):
        logits = to_numpy(model.predict_on_batch((x[i:i + 500] / 255.0).astype("float32")))
        preds.append(np.argmax(logits, -1))
    acc = 100.0 * np.mean(np.concatenate(preds) == y)
    assert abs(acc - REFERENCE_TOP1[fname]) <= 0.05, (fname, acc)
