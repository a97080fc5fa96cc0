"""The registry as a Markdown table (embedded in the README; a test keeps them in step).

`python -m keras_lrn.models` prints it.
"""

from __future__ import annotations

from keras_lrn.models.registry import get_entry, list_models

BEGIN = "<!-- model-table:begin -->"
END = "<!-- model-table:end -->"


def _fmt(n):
    return "—" if n is None else f"{n:,}"


def markdown_table(pattern="*"):
    rows = ["| model | family | trainable params | non-trainable | dataset | paper |",
            "|---|---|---:|---:|---|---|"]
    for name in list_models(pattern):
        e = get_entry(name)
        params = _fmt(e.params)
        if e.extra_params:
            params += " (+" + ", ".join(f"{v:,} {k.replace('_', ' ')}"
                                         for k, v in e.extra_params.items()) + ")"
        dataset = e.recipe.dataset if e.recipe else ""
        paper = e.paper.split(",")[0] if e.paper else ""
        rows.append(f"| `{name}` | {e.family} | {params} | {_fmt(e.non_trainable)} | {dataset} "
                    f"| {paper} |")
    return "\n".join(rows)


def readme_block():
    return f"{BEGIN}\n{markdown_table()}\n{END}"
