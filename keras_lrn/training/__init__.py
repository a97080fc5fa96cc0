"""Training core: recipes applied through `model.fit`, the CLI behind `train/*.py`."""

from keras_lrn.training.cli import main, resolve
from keras_lrn.training.schedules import parse_schedule, piecewise
from keras_lrn.training.weight_decay import CoupledL2, apply_weight_decay, decayed_variables

__all__ = [
    "CoupledL2",
    "apply_weight_decay",
    "decayed_variables",
    "main",
    "parse_schedule",
    "piecewise",
    "resolve",
]
