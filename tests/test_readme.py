import pathlib

import pytest

from keras_lrn import models
from keras_lrn.models import table

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"
STALE = "README model table is stale: run `python tools/update_readme.py`"


def _readme_rows():
    text = README.read_text()
    assert table.BEGIN in text and table.END in text
    return table.parse_block(text)


def test_readme_model_table_lists_the_registry():
    assert list(_readme_rows()) == models.list_models(), STALE


def test_readme_numbers_equal_the_recorded_spec_numbers():
    # The registry's spec numbers are asserted equal to the built models by
    # tests/models/test_registry.py and tests/test_profile.py.
    for name, (trainable, non_trainable, macs) in _readme_rows().items():
        entry = models.get_entry(name)
        for shown, spec in ((trainable, entry.params), (non_trainable, entry.non_trainable),
                            (macs, entry.macs)):
            if spec is not None:
                assert shown == spec, f"{name}: {STALE}"
        assert trainable is not None and non_trainable is not None and macs is not None, name


# Numbers that no spec records are measured: re-measure the first fast entry of each
# family that lacks spec MACs.
_UNRECORDED = {}
for _n in models.list_models():
    _e = models.get_entry(_n)
    if _e.macs is None and not _e.slow:
        _UNRECORDED.setdefault(_e.family, _n)


@pytest.mark.parametrize("name", sorted(_UNRECORDED.values()))
def test_readme_measured_numbers(name):
    assert _readme_rows()[name] == table.measure(name), STALE


def test_readme_has_the_two_commands():
    text = README.read_text()
    assert "pip install -e '.[tensorflow,jax,data,dev]'" in text
    assert "KERAS_BACKEND=tensorflow .venv/bin/python -m pytest -q" in text
    assert "train/cifar10.py" in text
