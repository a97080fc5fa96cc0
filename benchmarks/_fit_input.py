"""In-memory synthetic batches for `model.fit` in the benchmarks, without the tf.data tuner.

On TensorFlow, `fit` on numpy arrays builds a tf.data pipeline with the autotuner
on, and dropping its iterator when `fit` returns can block for up to ~10 s while
the tuner finishes its wait -- a pause in no training step that would be timed as
one. `keras_lrn.data.make_dataset` turns the tuner off for the same reason; the
benchmarks feed their arrays the same way. Other backends get the arrays.
"""

from __future__ import annotations


def fit_input(x, y, batch_size):
    """Keyword arguments for `model.fit`: the arrays, or on TF an untuned tf.data dataset."""
    import keras

    if keras.backend.backend() != "tensorflow":
        return {"x": x, "y": y, "batch_size": batch_size}
    import tensorflow as tf

    options = tf.data.Options()
    options.autotune.enabled = False
    return {"x": tf.data.Dataset.from_tensor_slices((x, y)).batch(batch_size)
            .with_options(options)}
