"""Run one function in a fresh (spawned) Python process and bring its result back.

Why: TensorFlow keeps the memory of every model and fine-tune a process has run (~280 MB per
recovery fine-tune, results/exploratory/recovery_memory.json), so a notebook that trains many
models in one kernel grows until it ends. A step run in its own process returns that memory
when it ends. The function must be importable (defined at module level) and its arguments and
result picklable: pass model directories, not Keras models.
"""
from __future__ import annotations

import pickle
import tempfile
from pathlib import Path


def run_in_fresh_process(function, kwargs, name=None):
    """function(**kwargs) in a spawned process; returns its result. Raises RuntimeError when
    the process fails (its traceback went to the process's stderr)."""
    import multiprocessing
    name = name or getattr(function, "__name__", "function")
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch) / "result.pkl"
        child = multiprocessing.get_context("spawn").Process(
            target=_child, args=(function, kwargs, str(out)), name=name)
        child.start()
        child.join()
        if child.exitcode != 0 or not out.exists():
            raise RuntimeError(f"{name}: its process exited with code {child.exitcode} (its "
                               "error is in the process's stderr, e.g. the Jupyter server's "
                               "log)")
        with open(out, "rb") as f:
            return pickle.load(f)


def _child(function, kwargs, out):
    result = function(**kwargs)
    with open(out, "wb") as f:
        pickle.dump(result, f)
