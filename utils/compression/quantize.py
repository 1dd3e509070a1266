"""Int8 weight quantization with Keras 3's `model.quantize("int8")`, and its save/load format.

`model.quantize("int8")` walks every nested layer, so it reaches the Dense layers inside our
SelfAttention / FeedForward / Pooler and the three Embedding tables inside Embeddings (all become
int8 with one float32 scale per output unit / per embedding row); LayerNorms and biases stay
float32. Dense layers also quantize their inputs on the fly (per token, abs-max), so the matmuls
run int8 x int8 -> int32.

On disk (utils.saved): the spec records {"quantization": "int8"} and model.weights.h5 holds the
int8 kernels and their scales; loading rebuilds the model from the spec, quantizes it the same
way and loads the weights.
"""
from __future__ import annotations

import contextlib
import warnings

import numpy as np

from utils.encoder import model as model_lib

MODES = ("int8",)
# Measured on random tiny models and (expected) on MiniLM: int8 weights + dynamic int8
# activations move logits by a few 1e-2 at most; tests use this bound relative to the logit scale.
DEFAULT_RELATIVE_TOLERANCE = 0.1


@contextlib.contextmanager
def _quiet():
    # Keras warns once per layer without a quantize method (LayerNorm, Dropout, InputLayer).
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*does not have a `quantize` method.*")
        yield


def quantization_mode(model):
    """"int8" if `model` holds int8 weights, else None."""
    mode = getattr(model, "weight_quantization", None)
    if mode:
        return mode
    return "int8" if any(str(w.dtype) == "int8" for w in model.weights) else None


def quantize_model(model, mode="int8"):
    """Quantize `model` in place (Keras `model.quantize`) and return it."""
    if mode not in MODES:
        raise ValueError(f"quantization mode {mode!r}: supported modes are {MODES}")
    if quantization_mode(model):
        raise ValueError("model is already quantized")
    with _quiet():
        model.quantize(mode)
    model.weight_quantization = mode
    return model


def quantized_copy(model, mode="int8"):
    """An int8 copy of the float `model` (the original stays float)."""
    copy = model_lib.build_classifier(model.encoder_config)
    copy.set_weights(model.get_weights())
    return quantize_model(copy, mode)


def logit_error(reference_logits, logits):
    """How far `logits` are from `reference_logits`: max/mean abs difference, the same
    relative to the reference's logit range, and the share of equal argmax predictions."""
    reference_logits, logits = np.asarray(reference_logits), np.asarray(logits)
    diff = np.abs(reference_logits - logits)
    scale = float(np.abs(reference_logits).max()) or 1.0
    return {"max_abs": float(diff.max()), "mean_abs": float(diff.mean()),
            "max_relative": float(diff.max() / scale),
            "prediction_agreement": float((reference_logits.argmax(-1)
                                           == logits.argmax(-1)).mean())}


def weight_bytes(model):
    """Bytes of every weight of `model` as stored in memory (int8 kernels count 1 byte)."""
    return int(sum(np.prod(w.shape) * np.dtype(str(w.dtype)).itemsize for w in model.weights))
