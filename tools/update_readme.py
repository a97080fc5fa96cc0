"""Regenerate the README's model table from the registry."""

import pathlib

from keras_lrn.models import table

readme = pathlib.Path(__file__).resolve().parents[1] / "README.md"
text = readme.read_text()
start, end = text.index(table.BEGIN), text.index(table.END) + len(table.END)
readme.write_text(text[:start] + table.readme_block() + text[end:])
print("README model table updated")
