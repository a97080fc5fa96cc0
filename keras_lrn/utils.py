"""Small helpers shared across keras_lrn."""

from __future__ import annotations

import importlib.util
import sys


def module_available(name):
    """True if `name` can be imported (without importing it); False if blocked or absent."""
    if name in sys.modules:
        return sys.modules[name] is not None
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def tensorflow_available():
    return module_available("tensorflow")
