"""The registry as a Markdown table (embedded in the README; a test keeps them in step).

`python -m keras_lrn.models` prints the registry's metadata; `python -m keras_lrn.profile
--all --include-slow --markdown` builds every model and prints the measured table that
`python tools/update_readme.py` writes into the README.

The measured numbers are `keras_lrn.profile`'s: trainable and non-trainable parameters
(a shared kernel once) and multiply-accumulates at batch 1 (a reused kernel at every call).
The "spec" column says which of them the registry also records from the reference code
(the acceptance bar, asserted equal to the built model by the tests).
"""

from __future__ import annotations

from keras_lrn.models.registry import get_entry, list_models

BEGIN = "<!-- model-table:begin -->"
END = "<!-- model-table:end -->"
HEADER = ("| model | family | trainable params | non-trainable | MACs | spec | dataset | paper |",
          "|---|---|---:|---:|---:|---|---|---|")


def _fmt(n):
    return "—" if n is None else f"{n:,}"


def _params_text(entry, trainable):
    text = _fmt(trainable)
    if entry.extra_params:
        text += " (+" + ", ".join(f"{v:,} {k.replace('_', ' ')}"
                                  for k, v in entry.extra_params.items()) + ")"
    return text


def _spec_text(entry):
    have = [what for what, value in (("params", entry.params), ("MACs", entry.macs))
            if value is not None]
    return " + ".join(have) if have else "—"


def markdown_table(pattern="*", measured=None, names=None):
    """The table of `names` (default: the registry names matching `pattern`).

    `measured` maps names to `(trainable, non_trainable, macs)`.

    Without `measured`, the registry's recorded numbers are shown (MACs "—"
    where the spec has none).
    """
    rows = list(HEADER)
    for name in list_models(pattern) if names is None else names:
        e = get_entry(name)
        trainable, non_trainable, macs = (measured or {}).get(
            name, (e.params, e.non_trainable, e.macs))
        dataset = e.recipe.dataset if e.recipe else ""
        paper = e.paper.split(",")[0] if e.paper else ""
        rows.append(f"| `{name}` | {e.family} | {_params_text(e, trainable)} | "
                    f"{_fmt(non_trainable)} | {_fmt(macs)} | {_spec_text(e)} | {dataset} "
                    f"| {paper} |")
    return "\n".join(rows)


def measure(name):
    """`(trainable, non_trainable, macs)` of the registered model `name`, as built."""
    import keras

    from keras_lrn import profile
    from keras_lrn.export import inference_network

    p = profile.profile(inference_network(get_entry(name).build()))
    keras.backend.clear_session()
    return p.trainable, p.non_trainable, p.macs


def measure_all(pattern="*", progress=None):
    out = {}
    for name in list_models(pattern):
        out[name] = measure(name)
        if progress:
            progress(name, out[name])
    return out


def readme_block(measured=None):
    return f"{BEGIN}\n{markdown_table(measured=measured)}\n{END}"


def parse_block(text):
    """`{name: (trainable, non_trainable, macs)}` from a README holding the block."""
    block = text[text.index(BEGIN) + len(BEGIN): text.index(END)]
    out = {}
    for line in block.strip().splitlines()[len(HEADER):]:
        cells = [c.strip() for c in line.strip().strip("|").split("|")]

        def num(cell):
            cell = cell.split(" (+")[0]
            return None if cell == "—" else int(cell.replace(",", ""))

        out[cells[0].strip("`")] = (num(cells[2]), num(cells[3]), num(cells[4]))
    return out
