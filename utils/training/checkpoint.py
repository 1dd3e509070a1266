"""The one checkpoint-and-resume format of every training loop (fine-tune, binarized):

    DIR/model.weights.h5    the trained model's weights (Keras' weights file)
    DIR/optimizer.npz       the loop's other variables, in order: the optimizers' (Adam moments,
                            step counters) and a method's own (CoFi's gate log-alphas and
                            Lagrange multipliers)
    DIR/state.json          the loop's state: epoch or step, history, the run's config, and
                            `source`, the fingerprint of the weights the run started from

written all or nothing (`save`), read back into the same model and variables (`restore`).
What is not saved is the random generators' state (dropout masks, CoFi's gate samples): a
resumed run continues the same optimisation, not bit for bit the same draws.
A checkpoint of a run that started from other weights is not resumed (`resumes_from`)."""
from __future__ import annotations

import logging
from pathlib import Path

import keras
import numpy as np

from utils.common import fingerprint, io

WEIGHTS_FILE = "model.weights.h5"   # also the weights file of a saved model (utils.saved)
OPTIMIZER_FILE = "optimizer.npz"
STATE_FILE = "state.json"

log = logging.getLogger(__name__)


def weights_fingerprint(model):
    """sha256 of the model's trainable variables (paths, shapes, values): identifies the model a
    resume checkpoint started from, so that a checkpoint of another model is never loaded into
    it. (Not the dropout seeds' state, which differs between processes.)"""
    parts = []
    for variable in model.trainable_weights:
        value = np.asarray(keras.ops.convert_to_numpy(variable))
        parts += [f"{variable.path}{value.shape}{value.dtype}", value]
    return fingerprint.digest(parts)


def read_state(directory):
    """The state.json of the checkpoint in `directory`, or None when there is none."""
    path = Path(directory) / STATE_FILE
    return io.read_json(path) if path.exists() else None


def resumes_from(saved_state, source, directory):
    """Whether the checkpoint in `directory`, whose state.json holds `saved_state`, continues a
    run that started from the model fingerprinted `source` (`weights_fingerprint`). One of
    another start model -- an earlier snapshot, before an upstream step was re-run -- is not
    ours: it is ignored with a message, and the run starts over and replaces it."""
    if saved_state.get("source") == source:
        return True
    log.warning("ignoring the checkpoint in %s: it was trained from another model; training "
                "from the start (it is replaced after the first epoch)", directory)
    return False


def save(directory, model, state, variables=()):
    """Weights, `variables` (optimizer slots, ...) and loop state, written all or nothing."""
    with io.atomic_path(Path(directory)) as tmp:
        tmp.mkdir(parents=True)
        model.save_weights(str(tmp / WEIGHTS_FILE))
        np.savez(tmp / OPTIMIZER_FILE, *[np.asarray(v) for v in variables])
        io.write_json(tmp / STATE_FILE, state)


def save_weights(directory, model):
    """The weights alone (a run's best epoch), written all or nothing."""
    with io.atomic_path(Path(directory)) as tmp:
        tmp.mkdir(parents=True)
        model.save_weights(str(tmp / WEIGHTS_FILE))


def load_weights(directory, model):
    model.load_weights(str(Path(directory) / WEIGHTS_FILE))


def restore(directory, model, variables=()):
    """Load a `save`d checkpoint into `model` and `variables` (the same list, in the same
    order, as was saved); returns its state."""
    load_weights(directory, model)
    variables = list(variables)
    with np.load(Path(directory) / OPTIMIZER_FILE) as slots:
        values = [slots[f"arr_{i}"] for i in range(len(slots.files))]
    if len(values) != len(variables):
        raise ValueError(f"checkpoint {directory} has {len(values)} optimizer variables, the "
                         f"run has {len(variables)}: was it written by another model or "
                         "optimizer? Delete the directory to start over.")
    for variable, value in zip(variables, values):
        variable.assign(value)
    return io.read_json(Path(directory) / STATE_FILE)
