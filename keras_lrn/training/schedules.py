"""Learning-rate schedules as data: `(epoch, lr)` pairs, 0-based epochs."""

from __future__ import annotations


def parse_schedule(text):
    """Parse `"0:0.1,150:0.01,225:0.001"` into `((0, 0.1), (150, 0.01), (225, 0.001))`."""
    pairs = []
    try:
        for item in str(text).split(","):
            epoch, lr = item.split(":")
            pairs.append((int(epoch), float(lr)))
    except ValueError as e:
        raise ValueError(
            "`--schedule` must look like '0:0.1,150:0.01,225:0.001' (epoch:lr pairs, 0-based "
            f"epochs, increasing). Received: schedule={text!r}"
        ) from e
    return check_schedule(pairs)


def check_schedule(pairs):
    pairs = tuple((int(e), float(v)) for e, v in pairs)
    if not pairs or pairs[0][0] != 0:
        raise ValueError(f"`schedule` must start at epoch 0. Received: schedule={pairs!r}")
    epochs = [e for e, _ in pairs]
    if epochs != sorted(set(epochs)):
        raise ValueError(f"`schedule` epochs must increase. Received: schedule={pairs!r}")
    if any(v <= 0 for _, v in pairs):
        raise ValueError(f"`schedule` learning rates must be > 0. Received: schedule={pairs!r}")
    return pairs


def piecewise(schedule):
    """A function `epoch -> lr` for `keras.callbacks.LearningRateScheduler`."""
    schedule = check_schedule(schedule)

    def fn(epoch, lr=None):
        value = schedule[0][1]
        for e, v in schedule:
            if epoch >= e:
                value = v
        return value

    return fn


def scale_schedule(schedule, base_lr):
    """Rescale a schedule so that it starts at `base_lr` (keeps the ratios)."""
    schedule = check_schedule(schedule)
    factor = base_lr / schedule[0][1]
    return tuple((e, v * factor) for e, v in schedule)
