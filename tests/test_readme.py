import pathlib

from keras_lrn.models import table

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


def test_readme_model_table_matches_registry():
    text = README.read_text()
    assert table.BEGIN in text and table.END in text
    block = text[text.index(table.BEGIN): text.index(table.END) + len(table.END)]
    assert block == table.readme_block(), (
        "README model table is stale: run `python tools/update_readme.py`")


def test_readme_has_the_two_commands():
    text = README.read_text()
    assert "pip install -e '.[tensorflow,jax,data,dev]'" in text
    assert "KERAS_BACKEND=tensorflow .venv/bin/python -m pytest -q" in text
    assert "train/cifar10.py" in text
