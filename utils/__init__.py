"""The project's package: `import utils` is the one entry point (notebooks, tests, scripts).

Sub-packages by job, lowest layer first; each imports only from the layers below it (the
`import-linter` contracts in pyproject.toml, checked by `make test`):

    common        file writing, run provenance, logging, fresh processes
    data          the tweets: load, repair, clean, split; tokenised, bucketed batches
    encoder       our Keras 3 BERT/RoBERTa encoder and classifier; Hugging Face checkpoints
    training      the fit loop: optimizer, schedule, losses, checkpoints; metrics
    compression   what shrinks a trained model: compaction, vocabulary, int8, TFLite, binary
    saved         the one saved-model format, bundles and their export
    measurement   timing on this CPU, the latency table, dominance and Pareto fronts
    pruning       block pruning (the method), its units, its peers, its sweeps
    face          what a user runs and reads: pipeline, benchmark, report, demo, plots

Modules import each other at module top. The one exception is Keras (TensorFlow), the heavy
dependency: a module that must load without it (the saved-model reader, the benchmark and the
report, the command lines' `--help`) imports a Keras-backed module inside the function that
needs it, with a comment saying so.

`import utils` is cheap; a sub-package is imported on first attribute access
(``utils.encoder``...), and progress goes through `logging` (`utils.common.logs`).
"""
import importlib
import os

from utils.common import logs

# Keras 3 reads this once, at its first import.
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# transformers serves tokenizers and configs only: its notice that no PyTorch is installed is
# noise here
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
logs.setup()

SUBPACKAGES = ("common", "data", "encoder", "training", "compression", "saved", "measurement",
               "pruning", "face")


def __getattr__(name):
    if name in SUBPACKAGES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module 'utils' has no attribute {name!r}")
