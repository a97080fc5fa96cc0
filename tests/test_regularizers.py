"""The orthogonality penalty equals the Net_RL2 reference computation (numpy)."""

import keras
import numpy as np
import pytest

from keras_lrn.layers import basis_conv, make_shared_bases
from keras_lrn.models import BasisResNet
from keras_lrn.models.basis_resnet import BasisModel, add_orthogonality
from keras_lrn.regularizers import BasisOrthogonality, orthogonality_penalty
from keras_lrn.testing import to_numpy


def oihw(layer):
    """A Keras (kh, kw, in, out) kernel in PyTorch's (out, in, kh, kw) layout, float64."""
    return np.transpose(to_numpy(layer.kernel), (3, 2, 0, 1)).astype("float64")


def reference_penalty(groups, include_unique):
    """Literal numpy port of Net_RL2 `train_basis_{single,double}` / `_sharedonly`.

    `groups`: per group `(shared, uniques)`, `shared` the OIHW bases stacked
    first, `uniques` one `(conv1, conv2)` pair of OIHW unique bases per shared block.
    """
    sim, cnt = 0.0, 0
    for shared, uniques in groups:
        num_shared = sum(w.shape[0] for w in shared)
        num_all = num_shared
        all_basis = list(shared)
        if include_unique:
            num_unique = uniques[0][0].shape[0]
            num_all += num_unique * 2 * len(uniques)
            for u1, u2 in uniques:
                all_basis += [u1, u2]
        b = np.concatenate(all_basis).reshape(num_all, -1)
        d = (b @ b.T - np.eye(num_all)) ** 2
        if include_unique:
            sim += d[0:num_shared, :].sum()
            cnt += num_shared * num_all
            for i in range(1, len(uniques) + 1):
                for j in range(2):
                    idx = num_shared + (i - 1) * num_unique * 2 + num_unique * j
                    sim += d[idx:idx + num_unique, idx:idx + num_unique].sum()
                    cnt += num_unique ** 2
        else:
            sim += d[0:num_shared, 0:num_shared].sum()
            cnt += num_shared ** 2
    return sim / cnt


def model_groups(model, n, double):
    groups = []
    for g in range(1, 4):
        names = ([f"stage{g}_shared_basis_1", f"stage{g}_shared_basis_2"] if double
                 else [f"stage{g}_shared_basis"])
        shared = [oihw(model.get_layer(nm)) for nm in names]
        uniques = []
        if model.unique_rank:
            uniques = [tuple(oihw(model.get_layer(f"stage{g}_block{b}_conv{c}_unique"))
                             for c in (1, 2)) for b in range(2, n + 1)]
        groups.append((shared, uniques))
    return groups


def perturb(model, seed=0):
    """Move the bases off their init so that all blocks of D are non-trivial."""
    rng = np.random.default_rng(seed)
    for v in model.trainable_variables:
        if "basis" in v.path or "unique" in v.path:
            v.assign(to_numpy(v) + 0.05 * rng.standard_normal(v.shape).astype("float32"))


@pytest.mark.parametrize("variant,double,include_unique", [
    ("single", False, True), ("double", True, True), ("shared_only", True, False)])
def test_penalty_equals_reference(variant, double, include_unique):
    model = BasisResNet(20, variant, 2, 0 if variant == "shared_only" else 1,
                        input_shape=(8, 8, 3))
    perturb(model)
    expected = reference_penalty(model_groups(model, 3, double), include_unique)
    got = float(to_numpy(model.orthogonality_penalty()))
    np.testing.assert_allclose(got, expected, rtol=2e-5)


@keras.saving.register_keras_serializable(package="keras_lrn_tests")
class TinyBasisNet(BasisModel):
    """Two Double-style basis convs + head: the BasisResNet mechanism, cheap to train."""

    def __init__(self, lambda_r=10.0, name=None, **kwargs):
        inp = keras.Input((6, 6, 4))
        b1, b2 = make_shared_bases("double", 3, "basis", seed=3)
        y, l1 = basis_conv(inp, 4, "conv1", shared=b1, unique_rank=1, return_layers=True)
        y = keras.layers.ReLU()(y)
        y, l2 = basis_conv(y, 4, "conv2", shared=b2, unique_rank=1, return_layers=True)
        y = keras.layers.Dense(3)(keras.layers.GlobalAveragePooling2D()(y))
        y = add_orthogonality(y, [[([b1, b2], [l1["unique"], l2["unique"]])]], lambda_r)
        super().__init__(inp, y, name=name, **kwargs)
        self._init_orthogonality()
        self._store_config(lambda_r=lambda_r)


def test_penalty_is_the_added_loss_in_training_only():
    model = TinyBasisNet()
    x = np.zeros((2, 6, 6, 4), "float32")
    penalty = float(to_numpy(model.orthogonality_penalty()))
    assert penalty > 0
    model(x, training=True)
    assert len(model.losses) == 1
    np.testing.assert_allclose(float(to_numpy(model.losses[0])), 10 * penalty, rtol=1e-6)
    model(x)
    assert model.losses == []
    model = TinyBasisNet(lambda_r=0)
    model(x, training=True)
    assert model.losses == []


def test_double_separate_is_the_sum_of_two_averages():
    rng = np.random.default_rng(1)
    k1 = [rng.standard_normal((1, 1, 4, 6)).astype("float32") for _ in range(3)]
    k2 = [rng.standard_normal((1, 1, 6, 4)).astype("float32") for _ in range(3)]

    def avg(ks):
        sim = sum((((np.transpose(k, (3, 2, 0, 1)).reshape(k.shape[-1], -1) @
                     np.transpose(k, (3, 2, 0, 1)).reshape(k.shape[-1], -1).T)
                    - np.eye(k.shape[-1])) ** 2).sum() for k in ks)
        return sim / sum(k.shape[-1] ** 2 for k in ks)

    terms = [[([k], []) for k in k1], [([k], []) for k in k2]]
    got = float(to_numpy(orthogonality_penalty(terms)))
    np.testing.assert_allclose(got, avg(k1) + avg(k2), rtol=1e-5)


@pytest.mark.parametrize("variant", ["single", "double", "shared_only"])
def test_orthonormal_shared_bases_at_init(variant):
    model = BasisResNet(20, variant, 2, 0 if variant == "shared_only" else 1,
                        input_shape=(8, 8, 3))
    groups = model_groups(model, 3, variant != "single")
    # shared-shared block only: ~0 (Double: _1 and _2 are mutually orthogonal too).
    assert reference_penalty(groups, include_unique=False) < 1e-10
    if variant == "shared_only":
        assert float(to_numpy(model.orthogonality_penalty())) < 1e-10


def test_training_lowers_the_penalty_and_logs_it():
    model = TinyBasisNet()
    x = np.random.default_rng(0).uniform(size=(16, 6, 6, 4)).astype("float32")
    y = np.arange(16) % 3
    before = float(to_numpy(model.orthogonality_penalty()))
    model.compile(keras.optimizers.SGD(0.02, momentum=0.9),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    history = model.fit(x, y, batch_size=4, epochs=2, verbose=0, validation_data=(x, y))
    after = float(to_numpy(model.orthogonality_penalty()))
    assert after < 0.5 * before
    logged = history.history["orthogonality"]
    assert logged[1] < logged[0] <= before + 1e-4
    np.testing.assert_allclose(history.history["val_orthogonality"][-1], after, rtol=1e-4)
    assert history.history["loss"][0] > 10 * logged[0]  # lambda_r * penalty is in the loss


def test_no_regulariser_without_shared_bases():
    model = BasisResNet(20, "non_shared", 0, 1, input_shape=(8, 8, 3))
    assert model.orthogonality_layer is None
    assert float(to_numpy(model.orthogonality_penalty())) == 0.0


def test_bad_lambda():
    with pytest.raises(ValueError, match="lambda_r"):
        BasisOrthogonality(-1.0)
    with pytest.raises(ValueError, match="lambda_r"):
        BasisResNet(20, lambda_r=-0.5)


def test_layer_config_round_trip():
    layer = BasisOrthogonality(3.0, name="reg")
    clone = BasisOrthogonality.from_config(layer.get_config())
    assert clone.lambda_r == 3.0 and not clone.has_groups
