"""Net_RL2's orthogonality regulariser for shared filter bases.

For the filters of one group stacked as the rows of `B` (each filter flattened
to `in * kh * kw`; `(in / groups) * kh * kw` for grouped convs), the reference
forms `D = (B B^T - I)**2` elementwise -- the diagonal is *kept*, so every
filter is also pushed to unit norm -- and averages a selection of the entries
of `D` over all groups of a *term*:

    penalty = sum_terms  (sum_groups sum_selected D) / (sum_groups #selected)

and the training loss is `CE + lambda_r * penalty`, computed from the weights at
every training step. A group is `(shared, unique)`:

* `shared`: the group's shared bases, stacked first (`[shared_1; shared_2]` for
  Double models, so their cross terms count);
* `unique`: the unique bases of the group's layers, in block order (conv1, conv2
  of block 1, then block 2, ...). When given, the selection is every entry of
  the shared rows against all columns (shared-shared and shared-unique, once)
  plus each unique basis's own `u x u` diagonal block (reference
  `train_basis_double` / `train_basis_single` with `include_unique_basis=True`).
  When empty, only the shared-shared block counts (`train_basis_sharedonly`,
  CIFAR-100/ILSVRC `train_basis`).

The `double_separate` variant of the reference is two terms (the `_1` bases
and the `_2` bases, each averaged over its groups) whose averages add up.
`reference_terms(selection, stages)` builds the terms of the shared-only
selections by the reference's names (`train_basis`, `train_basis_single`,
`train_basis_double`, `train_basis_double_separate`).

`BasisOrthogonality` is a pass-through layer that adds `lambda_r * penalty` to
the model's losses (`add_loss`) when called with `training=True`, so
`model.fit` minimises it on every backend with nothing special.

Reference:
- Kang et al., "Learning Deeply Shared Filter Bases for Efficient ConvNets",
  github.com/ssregibility/Net_RL2 (`train_cifar10.py`, `train_cifar100.py`,
  `train_ilsvrc.py`).
"""

from __future__ import annotations

import keras
from keras import ops


def basis_rows(kernel):
    """A conv kernel `(kh, kw, in, out)` as the `(out, kh*kw*in)` matrix of its filters.

    (The column order differs from PyTorch's `(in, kh, kw)` flattening by a
    fixed permutation, which leaves `B B^T` unchanged.)
    """
    k = ops.cast(kernel, "float32")
    if len(k.shape) == 2:  # a dense kernel (in, out)
        return ops.transpose(k)
    k = ops.transpose(k, (len(k.shape) - 1,) + tuple(range(len(k.shape) - 1)))
    return ops.reshape(k, (k.shape[0], -1))


def _gram_error(a, b, offset_eye):
    """sum((a b^T - [I 0])**2), where I sits on the first rows(a) columns."""
    g = ops.matmul(a, ops.transpose(b))
    if offset_eye:
        g = g - ops.eye(a.shape[0], b.shape[0], dtype="float32")
    return ops.sum(ops.square(g))


def group_orthogonality(shared, unique=()):
    """`(sum of the selected entries of D, their number)` for one group of kernels."""
    shared = [basis_rows(k) for k in shared]
    unique = [basis_rows(k) for k in unique]
    if not shared:
        raise ValueError("A group needs at least one shared basis.")
    s = shared[0] if len(shared) == 1 else ops.concatenate(shared, axis=0)
    ns = s.shape[0]
    if not unique:
        return _gram_error(s, s, True), ns * ns
    b = ops.concatenate([s] + unique, axis=0)
    total = _gram_error(s, b, True)
    count = ns * b.shape[0]
    for u in unique:
        total = total + _gram_error(u, u, True)
        count += u.shape[0] ** 2
    return total, count


def orthogonality_penalty(terms):
    """The reference's penalty (without lambda) for `terms` of groups of kernels.

    Args:
        terms: list of terms; a term is a list of groups `(shared, unique)`,
            each a list of conv kernels (variables or tensors, Keras layout).
            One term for every reference variant but `double_separate` (two).

    Returns:
        A float32 scalar.
    """
    penalty = None
    for term in terms:
        total, count = None, 0
        for shared, unique in term:
            s, c = group_orthogonality(shared, unique)
            total = s if total is None else total + s
            count += c
        if total is None:
            continue
        avg = total / float(count)
        penalty = avg if penalty is None else penalty + avg
    return ops.convert_to_tensor(0.0, "float32") if penalty is None else penalty


#: The shared-only selections of the reference training scripts (no unique rows).
REFERENCE_SELECTIONS = ("train_basis", "train_basis_single", "train_basis_double",
                        "train_basis_double_separate")


def reference_terms(selection, stages):
    """The `terms` (see `orthogonality_penalty`) of a shared-only reference selection.

    Args:
        selection: str. The reference training function:

            * ``"train_basis"`` (CIFAR-100 `train_cifar100.py`) and
              ``"train_basis_single"`` (ILSVRC): one term; per stage one group
              with the stage's basis, `sum_g ||W_g W_g^T - I||_F^2 / sum_g s_g^2`.
              Grouped convs: each output filter is its `(in / groups) * kh * kw`
              weights, as `weight.view(out, -1)` flattens them;
            * ``"train_basis_double"`` (ILSVRC ResNet34 Double): one term; per
              stage `[basis_1; basis_2]` stacked, so the cross terms count;
            * ``"train_basis_double_separate"`` (ResNet50 Shared++, MobileNetV2
              Shared++): two terms, the `_1` bases and the `_2` bases, each
              averaged over its stages: `avg_1 + avg_2`.
        stages: list, one entry per stage: the stage's basis layers or kernels,
            `[basis]` (or a bare `basis`) for the single selections, `[basis_1,
            basis_2]` for the double ones.

    Returns:
        A list of terms for `orthogonality_penalty` / `BasisOrthogonality.set_groups`.
    """
    if selection not in REFERENCE_SELECTIONS:
        raise ValueError(f"`selection` must be one of {', '.join(map(repr, REFERENCE_SELECTIONS))}. "
                         f"Received: selection={selection!r}")
    stages = [list(s) if isinstance(s, (list, tuple)) else [s] for s in stages]
    want = 2 if selection.startswith("train_basis_double") else 1
    for s in stages:
        if len(s) != want:
            raise ValueError(f"`stages` entries must hold {want} basis/bases for selection="
                             f"{selection!r}. Received: {len(s)}")
    if selection == "train_basis_double_separate":
        return [[([s[0]], []) for s in stages], [([s[1]], []) for s in stages]]
    return [[(s, []) for s in stages]]


class _LayerGroups:
    """Plain holder (not tracked by Keras) of the basis layers a penalty reads."""

    def __init__(self, terms):
        self.terms = [[(list(shared), list(unique)) for shared, unique in term]
                      for term in terms]

    def kernels(self):
        return [[([layer.kernel for layer in shared], [layer.kernel for layer in unique])
                 for shared, unique in term] for term in self.terms]


@keras.saving.register_keras_serializable(package="keras_lrn")
class BasisOrthogonality(keras.layers.Layer):
    """Pass-through layer adding `lambda_r * penalty` of shared bases to the losses.

    Call it on any tensor of the model (e.g. the logits); it returns its input
    unchanged. The bases it regularises are set with `set_groups` by the model
    that owns them (they are not part of this layer's config or weights, so the
    sharing stays in the functional graph; the model rebuilds the wiring when
    it is re-created from its config).

    Args:
        lambda_r: float. Weight of the penalty (the reference's `--lambdaR`).
            Defaults to 10.

    Example:
    ```python
    x = keras.Input((8, 8, 16))
    basis = keras_lrn.layers.shared_basis(4, "basis")
    y = keras.layers.Concatenate()([basis(x), basis(x)])
    reg = BasisOrthogonality(10.0)
    reg.set_groups([[([basis], [])]])
    model = keras.Model(x, reg(y))
    ```
    """

    def __init__(self, lambda_r=10.0, **kwargs):
        super().__init__(**kwargs)
        if isinstance(lambda_r, bool) or not isinstance(lambda_r, (int, float)) or not (
                lambda_r >= 0):
            raise ValueError(f"`lambda_r` must be a number >= 0. Received: lambda_r={lambda_r!r}")
        self.lambda_r = float(lambda_r)
        self._groups = _LayerGroups([])

    def set_groups(self, terms):
        """`terms`: list of terms, each a list of `(shared_layers, unique_layers)` groups."""
        self._groups = _LayerGroups(terms)

    @property
    def has_groups(self):
        return any(term for term in self._groups.terms)

    def penalty(self):
        """The current penalty (without `lambda_r`), a float32 scalar."""
        return orthogonality_penalty(self._groups.kernels())

    def call(self, inputs, training=None):
        if training and self.lambda_r > 0 and self.has_groups:
            self.add_loss(self.lambda_r * self.penalty())
        return inputs

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config["lambda_r"] = self.lambda_r
        return config
