"""Helpers for the notebooks: one module per concern.

`import utils` is cheap; submodules that pull in TensorFlow/Keras are imported on
first attribute access (``utils.model``, ``utils.train``...).
"""
import importlib
import os

# Keras 3 reads this once, at its first import.
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

_SUBMODULES = ("data", "model", "batching", "train", "evaluation", "plots", "io", "pruning",
               "sweep", "compact", "vocab", "quantize", "tflite", "bench", "baselines",
               "comparison", "demo", "report", "binarize", "pipeline", "units", "hub", "mojibake",
               "latency", "saved", "export", "fisher_mask", "cofi", "isolation", "results",
               "timing")


def __getattr__(name):
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module 'utils' has no attribute {name!r}")
