"""Compress a trained epsilon-ResNet: drop the blocks its gates switched off."""

from __future__ import annotations

import dataclasses
import math

from keras_lrn.layers.epsilon_gate import EMA_DISCARD_THRESHOLD
from keras_lrn.models.epsilon_resnet import (
    CompressedEpsilonResNet,
    EpsilonResNet,
    EpsilonResNetImageNet,
)


@dataclasses.dataclass
class CompressionReport:
    """What `compress` did.

    Attributes:
        blocks_before: gated residual blocks of the source network.
        blocks_after: residual blocks of the compressed network (stand-ins
            for dropped first blocks are not counted as blocks).
        params_before: trainable parameters of the source *inference*
            network (without the side head).
        params_after: trainable parameters of the compressed network.
        dropped: names of the dropped blocks, in network order.
        stand_ins: dropped first blocks replaced by their shortcut path (a
            down-sampling stand-in), e.g. `["stage2_block1"]`.
        kept: per stage, the 1-based numbers of the kept blocks (the
            compressed model's `blocks`).
        params_removed: trainable parameters removed per dropped block
            (`params_before - params_after == sum(params_removed.values())`).
        rule: how the dropped blocks were chosen: `"explicit"`, `"last"`
            (gate 0 at the last training step) or `"ema>=<threshold>"`.
    """

    blocks_before: int
    blocks_after: int
    params_before: int
    params_after: int
    dropped: list
    stand_ins: list
    kept: tuple
    params_removed: dict
    rule: str

    @property
    def compression_ratio(self) -> float:
        """Fraction of the trainable parameters removed."""
        return 1.0 - self.params_after / self.params_before

    def to_dict(self) -> dict:
        out = dataclasses.asdict(self)
        out["kept"] = [list(stage) for stage in self.kept]
        out["compression_ratio"] = self.compression_ratio
        return out


def _trainable_count(layers):
    seen = {}
    for layer in layers:
        for w in layer.trainable_weights:
            seen[id(w)] = math.prod(int(d) for d in w.shape)
    return sum(seen.values())


def _resolve_discarded(model, discarded):
    names = model.block_names
    if isinstance(discarded, (str, int)):
        discarded = [discarded]
    try:
        items = list(discarded)
    except TypeError as e:
        raise ValueError(
            "`discarded` must be None or a list of block names / 0-based block indices. "
            f"Received: discarded={discarded!r}"
        ) from e
    out = set()
    for item in items:
        if isinstance(item, str) and item in names:
            out.add(item)
        elif not isinstance(item, bool) and isinstance(item, int) and 0 <= item < len(names):
            out.add(names[item])
        else:
            raise ValueError(
                "`discarded` entries must be block names of the model "
                f"({names[0]} ... {names[-1]}) or indices 0 <= i < {len(names)}. "
                f"Received: discarded={discarded!r}"
            )
    return [n for n in names if n in out]


def compress(model, discarded=None, *, ema=True, threshold=EMA_DISCARD_THRESHOLD, name=None):
    """A smaller, gate-free copy of an epsilon-ResNet without its discarded blocks.

    Builds a `CompressedEpsilonResNet` (no gates, no side head) with only the
    kept blocks and copies every remaining layer's weights (BN statistics
    included) by layer name. A dropped block's output was its shortcut, so
    where a stage's first (down-sampling) block is dropped its shortcut path
    stays as a stand-in: the parameter-free average pool + zero channels on
    CIFAR (stage 1: identity), the pre-activation BN-ReLU (stages 2-4) and 1x1
    projection with their weights on ImageNet (the reference loses the former
    and fails on the latter). The compressed network computes exactly what
    the gated one computes on any batch where the dropped blocks' gates are 0
    and the kept ones' are 1 (e.g. `max|diff| <= 1e-5` in inference mode).

    Args:
        model: an `EpsilonResNet` or `EpsilonResNetImageNet` (also one reloaded
            from a `.keras` file).
        discarded: None, or the blocks to drop as block names
            (`"stage2_block10"`) and/or 0-based indices into
            `model.block_names`. None reads the gates' state: with `ema=True`
            the blocks whose EMA of "gate == 0" is `>= threshold` (the
            reference's rule: the EMA prints as 1 with `{:.5g}`, roughly the
            last 240 training steps all gated off); with `ema=False` the
            blocks whose gate was 0 at the last training step.
        ema: bool. Rule for `discarded=None`. Defaults to True.
        threshold: float. EMA cut-off. Defaults to 0.999995.
        name: str. Name of the compressed model. Defaults to
            `"<model name>_compressed"`.

    Returns:
        `(compressed_model, report)`: the `CompressedEpsilonResNet` and a
        `CompressionReport` (blocks/params before and after, dropped names).

    Example:
    ```python
    compressed, report = keras_lrn.models.compress(model)
    print(report.dropped, report.params_before, "->", report.params_after)
    compressed.save("compressed.keras")
    ```
    """
    if not isinstance(model, (EpsilonResNet, EpsilonResNetImageNet)):
        raise ValueError(
            "`model` must be an EpsilonResNet or EpsilonResNetImageNet. "
            f"Received: model={type(model).__name__}"
        )
    if discarded is None:
        dropped = model.discarded_blocks(ema=ema, threshold=threshold)
        rule = f"ema>={threshold:g}" if ema else "last"
    else:
        dropped = _resolve_discarded(model, discarded)
        rule = "explicit"
    dropped_set = set(dropped)
    sizes = model.stage_sizes
    kept = tuple(
        tuple(b for b in range(1, k + 1) if f"stage{s + 1}_block{b}" not in dropped_set)
        for s, k in enumerate(sizes)
    )
    config = model.get_config()
    compressed = CompressedEpsilonResNet(
        variant=model.variant, blocks=kept, width=config["width"],
        include_top=config["include_top"], input_shape=config["input_shape"],
        pooling=config["pooling"], classes=config["classes"],
        classifier_activation=config["classifier_activation"],
        name=name or f"{model.name}_compressed", dtype=config["dtype"],
    )
    for layer in compressed.layers:
        if layer.weights:
            layer.set_weights(model.get_layer(layer.name).get_weights())

    source = model.inference_model()
    removed = {}
    for block in dropped:
        prefix = f"{block}_"
        before = _trainable_count(layer for layer in source.layers if layer.name.startswith(prefix))
        after = _trainable_count(
            layer for layer in compressed.layers if layer.name.startswith(prefix)
        )
        removed[block] = before - after
    stand_ins = [f"stage{s + 1}_block1" for s, stage in enumerate(kept)
                 if 1 not in stage and (s > 0 or model.variant == "imagenet")]
    report = CompressionReport(
        blocks_before=model.num_blocks,
        blocks_after=sum(len(stage) for stage in kept),
        params_before=_trainable_count(source.layers),
        params_after=_trainable_count(compressed.layers),
        dropped=list(dropped),
        stand_ins=stand_ins,
        kept=kept,
        params_removed=removed,
        rule=rule,
    )
    return compressed, report
