"""One registry of every model configuration keras_lrn ships.

Each entry is a small config (builder + keyword arguments) plus metadata: the
paper, the exact parameter counts the reference code has, MACs, the training
recipe and the command that trains it. Tests are parametrised over
`list_models()`, so a registered variant is tested automatically.

Example:

```python
import keras_lrn
model = keras_lrn.models.get_model("resnet56")
keras_lrn.models.list_models("resnet*")
```
"""

from __future__ import annotations

import dataclasses
import difflib
import fnmatch
import re
from collections.abc import Callable
from typing import Any

from keras_lrn.recipes import Recipe


@dataclasses.dataclass(frozen=True)
class ModelEntry:
    """A registered configuration.

    Attributes:
        name: registry name.
        builder: callable returning a `keras.Model`.
        config: keyword arguments for `builder`.
        family: model family ("resnet", "epsilon_resnet", ...).
        paper: citation of the paper the configuration comes from.
        params: exact trainable parameter count of the reference code (the
            acceptance bar; `None` if the spec has no number).
        non_trainable: exact non-trainable count (BN statistics), if known.
        macs: multiply-accumulates at batch 1 (conv + dense), if known.
        recipe: the training `Recipe`.
        dataset_recipes: optional `{dataset: Recipe}` for other data sets.
        notes: differences from the reference, caveats.
        slow: True for configurations too big to build in the default tests.
    """

    name: str
    builder: Callable[..., Any]
    config: dict
    family: str
    paper: str = ""
    params: int | None = None
    non_trainable: int | None = None
    macs: int | None = None
    recipe: Recipe | None = None
    notes: str = ""
    slow: bool = False
    extra_params: dict | None = None
    dataset_recipes: dict | None = None

    def recipe_for(self, dataset):
        """The recipe for training on `dataset`: a dataset-specific one if the
        entry has it (e.g. epsilon-ResNet's SVHN schedule), else `recipe` on `dataset`."""
        if self.dataset_recipes and dataset in self.dataset_recipes:
            return self.dataset_recipes[dataset]
        if self.recipe is None:
            raise ValueError(f"Model {self.name!r} has no training recipe.")
        return self.recipe.replace(dataset=dataset)

    @property
    def command(self) -> str:
        dataset = self.recipe.dataset if self.recipe else "cifar10"
        script = {
            "cifar10": "cifar10",
            "cifar100": "cifar100",
            "fashion_mnist": "fashion_mnist",
            "svhn": "svhn",
            "imagenet": "imagenet",
        }.get(dataset, "cifar10")
        return f"python train/{script}.py --model {self.name}"

    def build(self, **overrides):
        config = dict(self.config)
        config.update({k: v for k, v in overrides.items() if v is not None})
        return self.builder(**config)


_REGISTRY: dict[str, ModelEntry] = {}


def register_model(name, builder, config=None, *, family, overwrite=False, **metadata):
    """Register a model configuration under `name` and return its entry."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"`name` must be a non-empty string. Received: name={name!r}")
    if name in _REGISTRY and not overwrite:
        raise ValueError(f"A model named {name!r} is already registered.")
    entry = ModelEntry(name=name, builder=builder, config=dict(config or {}), family=family,
                       **metadata)
    _REGISTRY[name] = entry
    return entry


def _ensure_loaded():
    # Importing the families registers their entries.
    from keras_lrn.models import _families  # noqa: F401


def get_entry(name) -> ModelEntry:
    """The `ModelEntry` registered as `name`; `ValueError` (with close matches) otherwise."""
    _ensure_loaded()
    if name not in _REGISTRY:
        close = difflib.get_close_matches(str(name), list(_REGISTRY), n=5, cutoff=0.5)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise ValueError(
            f"Unknown model name {name!r}.{hint} Allowed values: the names in "
            f"keras_lrn.models.list_models() ({len(_REGISTRY)} registered). Received: model={name!r}"
        )
    return _REGISTRY[name]


def get_model(name, **overrides):
    """Build the registered model `name`; keyword overrides that are `None` are ignored."""
    return get_entry(name).build(**overrides)


def list_models(pattern="*", family=None):
    """Sorted registry names matching the shell-style `pattern` (and `family`, if given)."""
    _ensure_loaded()
    return sorted(
        (n for n, e in _REGISTRY.items()
         if fnmatch.fnmatch(n, pattern) and (family is None or e.family == family)),
        key=_natural_key,
    )


def _natural_key(name):
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]
