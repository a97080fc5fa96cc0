"""Regenerate the README's model table: builds and profiles every registered model.

    python tools/update_readme.py            # all models (a few minutes on a CPU)
"""

import pathlib
import sys

from keras_lrn.models import table


def main():
    readme = pathlib.Path(__file__).resolve().parents[1] / "README.md"
    measured = table.measure_all(
        progress=lambda name, row: print(f"{name}: {row}", file=sys.stderr, flush=True))
    text = readme.read_text()
    start, end = text.index(table.BEGIN), text.index(table.END) + len(table.END)
    readme.write_text(text[:start] + table.readme_block(measured) + text[end:])
    print("README model table updated")


if __name__ == "__main__":
    main()
