"""Soft parameter sharing for any functional Keras model (Savarese & Maire, ICLR 2019).

`soft_share(model, num_templates)` finds groups of same-shaped 3x3
convolutions and returns a new model in which every group draws on one
`TemplateBank` of `num_templates` templates: each convolution of a group
becomes a `SharedConv2D` whose kernel is its own mix of the group's templates.

Groups (`groups=`):

* `"stage"` (the default, what the paper shares): plain `Conv2D` layers with a
  3x3 kernel, `groups=1`, the same kernel shape, strides, padding, dilation and
  bias setting, that run at the same input resolution, i.e. within one stage
  of a ResNet. Only groups of at least 2 convolutions are shared. The paper's
  SWRN also leaves the *first* block of each stage unshared; in a generic model
  the first block's second conv already has the stage's shape and joins the
  group. Pass `exclude=r"_block1_"` (a regular expression on layer names) to
  leave the first blocks out, as the paper does.
* `"shape"`: the same, ignoring the resolution (share across stages).
* a list of lists of layer names: exactly these groups; every group's
  convolutions must have the same kernel shape, strides, padding and dilation.

Initialisation (`init=`):

* `"fresh"` (the default, the reference trains from scratch): templates
  `kaiming_normal_` per template (fan_in, gain sqrt 2), coefficients one
  orthogonal (L, T) matrix per group whose rows go to the group's layers in
  model order (`OrthogonalRows`: `C C^T = I` when L <= T, `C^T C = I` when
  L >= T).
* `"pretrained"`: the templates are computed from the group's existing kernels
  W (L x |W|). With T >= L, C = L rows of a random orthogonal T x T matrix and
  templates = C^T W, so every layer's kernel equals its original kernel
  exactly (the new model computes the same function). With T < L, the best
  rank-T least-squares fit: W = U S V^T, C = U[:, :T] (orthonormal columns),
  templates = S[:T] V[:T].

Every other layer (BN, dense, unshared convolutions, shared biases) is a clone
of the original with its weights copied; the original model is left untouched.

Parameters: each group of L convolutions with kernels of |W| scalars goes from
L |W| to T |W| + L T (templates + coefficients); `SharingReport.predicted`
holds the resulting count, checked against the built model.

Example:
```python
model = keras_lrn.models.CifarResNet(depth=56)
shared, report = keras_lrn.sharing.soft_share(model, 4, return_report=True)
print(report)  # 853,018 -> 40,x parameters, 3 banks
```

Reference:
- Savarese and Maire, "Learning Implicitly Recurrent CNNs Through Parameter
  Sharing", ICLR 2019.
"""

from __future__ import annotations

import dataclasses
import re

import keras
import numpy as np

from keras_lrn.layers.shared_conv2d import OrthogonalRows, SharedConv2D
from keras_lrn.layers.template_bank import TemplateBank

GROUPINGS = ("stage", "shape")
INITS = ("fresh", "pretrained")


@dataclasses.dataclass(frozen=True)
class SharingReport:
    """What `soft_share` did.

    Attributes:
        params_before: trainable parameters of the original model.
        params_after: trainable parameters of the shared model.
        predicted: params_before - sum_g L_g |W_g| + sum_g (T |W_g| + L_g T).
        groups: the layer names of each group, in model order.
        template_shapes: the template shape of each group's bank.
        num_templates: T.
    """

    params_before: int
    params_after: int
    predicted: int
    groups: tuple
    template_shapes: tuple
    num_templates: int

    def __str__(self):
        sizes = ", ".join(str(len(g)) for g in self.groups)
        return (f"soft_share: {self.params_before:,} -> {self.params_after:,} trainable "
                f"parameters ({len(self.groups)} banks of {self.num_templates} templates "
                f"for groups of {sizes} convolutions)")


def _count(weights):
    return sum(int(np.prod(w.shape)) for w in {id(w): w for w in weights}.values())


def _is_shareable_conv(layer):
    return (type(layer) is keras.layers.Conv2D and layer.groups == 1
            and layer.data_format == "channels_last" and layer.built
            and len(layer._inbound_nodes) == 1)


def _signature(layer):
    """What convolutions of one group must agree on."""
    return (tuple(layer.kernel.shape), tuple(layer.strides), layer.padding,
            tuple(layer.dilation_rate), layer.use_bias,
            keras.activations.serialize(layer.activation))


def _find_groups(model, groups, exclude):
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    if isinstance(groups, str):
        if groups not in GROUPINGS:
            raise ValueError(f"`groups` must be one of {GROUPINGS} or a list of lists of layer "
                             f"names. Received: groups={groups!r}")
        pattern = re.compile(exclude) if exclude else None
        found = {}
        for layer in convs:
            if not _is_shareable_conv(layer) or tuple(layer.kernel_size) != (3, 3):
                continue
            if pattern is not None and pattern.search(layer.name):
                continue
            key = _signature(layer)
            if groups == "stage":
                key += (tuple(layer.input.shape[1:3]),)
            found.setdefault(key, []).append(layer)
        result = [g for g in found.values() if len(g) >= 2]
        if not result:
            raise ValueError(
                "`groups`: found no group of 2 or more same-shaped 3x3 Conv2D layers to share "
                f"in model {model.name!r}. Received: groups={groups!r}")
        return result
    if not isinstance(groups, (list, tuple)) or not groups:
        raise ValueError(f"`groups` must be 'stage', 'shape' or a non-empty list of lists of "
                         f"layer names. Received: groups={groups!r}")
    by_name = {layer.name: layer for layer in model.layers}
    result, seen = [], set()
    for group in groups:
        if isinstance(group, str) or not isinstance(group, (list, tuple)) or not group:
            raise ValueError(f"`groups` must be a list of non-empty lists of layer names. "
                             f"Received: groups={groups!r}")
        layers = []
        for name in group:
            layer = by_name.get(name)
            if layer is None or not isinstance(layer, keras.layers.Conv2D):
                raise ValueError(f"`groups`: {name!r} is not a Conv2D layer of model "
                                 f"{model.name!r}. Received: groups={groups!r}")
            if not _is_shareable_conv(layer):
                raise ValueError(f"`groups`: {name!r} cannot be shared (it must be a plain, "
                                 "built, channels_last Conv2D with groups=1, called once). "
                                 f"Received: groups={groups!r}")
            if name in seen:
                raise ValueError(f"`groups`: {name!r} appears twice. Received: groups={groups!r}")
            seen.add(name)
            layers.append(layer)
        first = _signature(layers[0])
        for layer in layers[1:]:
            if _signature(layer) != first:
                raise ValueError(
                    "`groups`: the convolutions of a group must have the same kernel shape, "
                    f"strides, padding, dilation and bias; {layers[0].name!r} has "
                    f"{first[:4]} but {layer.name!r} has {_signature(layer)[:4]} "
                    "(kernel shape, strides, padding, dilation). "
                    f"Received: groups={groups!r}")
        result.append(layers)
    return result


def _pretrained_init(kernels, num_templates, seed):
    """(coefficients (L, T), templates (T, ...)) reproducing / fitting `kernels` (L, ...)."""
    num_layers = kernels.shape[0]
    flat = kernels.reshape(num_layers, -1).astype("float64")
    if num_templates >= num_layers:
        rng = np.random.default_rng(seed)
        q, r = np.linalg.qr(rng.standard_normal((num_templates, num_templates)))
        q *= np.sign(np.diag(r))
        coefficients = q[:num_layers]  # orthonormal rows: C C^T = I
        templates = coefficients.T @ flat  # C templates = C C^T W = W
    else:
        u, s, vt = np.linalg.svd(flat, full_matrices=False)
        coefficients = u[:, :num_templates]  # orthonormal columns: C^T C = I
        templates = s[:num_templates, None] * vt[:num_templates]
    return (coefficients.astype("float32"),
            templates.reshape((num_templates,) + kernels.shape[1:]).astype("float32"))


def soft_share(model, num_templates, groups="stage", init="fresh", exclude=None,
               return_report=False, verbose=False):
    """A copy of `model` in which each group of same-shaped 3x3 convolutions shares a bank.

    Args:
        model: a functional `keras.Model` (e.g. a `keras.applications` model or
            `keras_lrn.models.CifarResNet`), built.
        num_templates: int. Templates per bank (T), >= 1.
        groups: "stage" (default), "shape" or a list of lists of layer names;
            see the module docstring.
        init: "fresh" (default; the reference's from-scratch init) or
            "pretrained" (templates fitted to the existing kernels, exactly
            when T >= group size).
        exclude: str or None. Regular expression on layer names: matching
            convolutions are never grouped automatically (e.g. r"_block1_").
        return_report: bool. Also return a `SharingReport`. Defaults to False.
        verbose: bool. Print the report's one-line summary. Defaults to False.

    Returns:
        The new functional model (and the `SharingReport` if `return_report`).
    """
    if not isinstance(model, keras.Model) or not hasattr(model, "_nodes_by_depth"):
        raise ValueError(f"`model` must be a functional keras.Model. Received: model={model!r}")
    if isinstance(num_templates, bool) or not isinstance(num_templates, int) or num_templates < 1:
        raise ValueError(f"`num_templates` must be a positive integer. "
                         f"Received: num_templates={num_templates!r}")
    if init not in INITS:
        raise ValueError(f"`init` must be one of {INITS}. Received: init={init!r}")
    if exclude is not None:
        try:
            re.compile(exclude)
        except (re.error, TypeError) as e:
            raise ValueError(f"`exclude` must be a regular expression. Received: "
                             f"exclude={exclude!r}") from e
    found = _find_groups(model, groups, exclude)

    group_of, row_of, banks, seeds = {}, {}, [], []
    for g, layers in enumerate(found):
        seed = int(np.random.randint(0, 2**31 - 1))
        seeds.append(seed)
        for r, layer in enumerate(layers):
            group_of[id(layer)], row_of[id(layer)] = g, r
        kh, kw, cin, cout = layers[0].kernel.shape
        banks.append(TemplateBank(num_templates, cin, cout, (kh, kw),
                                  name=f"soft_share_bank{g + 1}", dtype=layers[0].dtype_policy))

    new_inputs = keras.tree.map_structure(
        lambda x: keras.Input(batch_shape=x.shape, dtype=x.dtype, name=x.name), model.input)
    anchor = keras.tree.flatten(new_inputs)[0]
    templates = [bank(anchor) for bank in banks]

    clones, shared = {}, {}

    def clone_function(layer):
        if id(layer) in group_of:
            g = group_of[id(layer)]
            new = SharedConv2D(
                layer.filters, layer.kernel_size, strides=layer.strides, padding=layer.padding,
                dilation_rate=layer.dilation_rate, use_bias=layer.use_bias,
                activation=layer.activation,
                coefficients_initializer=OrthogonalRows(len(found[g]), row_of[id(layer)],
                                                        seeds[g]),
                name=layer.name, dtype=layer.dtype_policy)
            shared[id(new)] = g
        else:
            new = layer.__class__.from_config(layer.get_config())
        clones[id(layer)] = (layer, new)
        return new

    def call_function(layer, *args, **kwargs):
        if id(layer) in shared:
            return layer([args[0], templates[shared[id(layer)]]], **kwargs)
        return layer(*args, **kwargs)

    new_model = keras.models.clone_model(model, input_tensors=new_inputs,
                                         clone_function=clone_function,
                                         call_function=call_function)

    for original, new in clones.values():
        if id(new) in shared:
            if new.use_bias:
                new.bias.assign(original.bias)
        elif original.weights:
            new.set_weights(original.get_weights())

    if init == "pretrained":
        for g, layers in enumerate(found):
            kernels = np.stack([keras.ops.convert_to_numpy(layer.kernel) for layer in layers])
            coefficients, tpl = _pretrained_init(kernels, num_templates, seeds[g])
            banks[g].templates.assign(tpl)
            for layer, c in zip(layers, coefficients):
                clones[id(layer)][1].coefficients.assign(c)

    before = _count(model.trainable_weights)
    after = _count(new_model.trainable_weights)
    predicted = before
    for layers in found:
        size = int(np.prod(layers[0].kernel.shape))
        predicted += -len(layers) * size + num_templates * size + len(layers) * num_templates
    report = SharingReport(
        params_before=before, params_after=after, predicted=predicted,
        groups=tuple(tuple(layer.name for layer in layers) for layers in found),
        template_shapes=tuple(bank.template_shape for bank in banks),
        num_templates=num_templates)
    if verbose:
        print(report)
    return (new_model, report) if return_report else new_model
