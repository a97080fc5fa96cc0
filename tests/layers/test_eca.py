import keras
import numpy as np
import pytest

from keras_lrn.layers import ECA


def _reference_eca(x, w):
    """numpy: GAP over H, W; Conv1d(1, 1, k, padding=(k-1)//2, bias=False); sigmoid; scale."""
    pooled = x.mean(axis=(1, 2))
    k = w.shape[0]
    pad = (k - 1) // 2
    padded = np.pad(pooled, ((0, 0), (pad, pad)))
    conv = np.stack([(padded[:, c:c + k] * w).sum(-1) for c in range(pooled.shape[1])], -1)
    return x * (1 / (1 + np.exp(-conv)))[:, None, None, :]


@pytest.mark.parametrize("k", [1, 3, 5])
def test_eca_matches_numpy(k):
    rng = np.random.default_rng(k)
    x = rng.normal(size=(2, 4, 5, 12)).astype("float32")
    layer = ECA(k)
    y = keras.ops.convert_to_numpy(layer(x))
    assert len(layer.weights) == 1 and layer.count_params() == k
    np.testing.assert_allclose(y, _reference_eca(x, keras.ops.convert_to_numpy(layer.kernel)),
                               rtol=1e-5, atol=1e-6)


def test_eca_config_round_trip():
    layer = ECA(5, name="eca")
    clone = ECA.from_config(layer.get_config())
    assert clone.k_size == 5 and clone.name == "eca"


@pytest.mark.parametrize("k", [0, 2, -1, 2.0, True])
def test_eca_bad_k_size(k):
    with pytest.raises(ValueError, match="k_size"):
        ECA(k)
