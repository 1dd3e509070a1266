"""A loaded model, whatever its format, that predicts texts (`SavedModel`); the error every
missing or corrupt model directory raises (`SavedModelError`)."""
from __future__ import annotations

import re
import unicodedata
from pathlib import Path

import numpy as np

from utils.compression.onnx_graph import OnnxClassifier
from utils.compression.tflite import TFLiteClassifier
from utils.data import batching
from utils.data.corpus import LABELS, clean_text

# kinds whose model is a file run by its own runtime (a bundle), not a Keras model
RUNTIME_KINDS = ("tflite", "onnx")
MAX_LENGTH = 64   # tokens, as in training (utils.training.train.TrainConfig.max_length)


class SavedModelError(ValueError):
    """A model directory that is missing, incomplete or corrupt."""


_SURROGATE = re.compile("[\ud800-\udfff]")
_REPLACEMENT = "\ufffd"


def readable_text(text, index=None):
    """`text` as valid Unicode for a tokenizer, or a ValueError naming it and the fix.

    Lone surrogates (a str cannot be UTF-8 with them: the tokenizers raise TypeError) become
    U+FFFD: they come from undecodable bytes (sys.argv and os.fsdecode escape each such byte as
    one surrogate) or from broken UTF-16. A text with nothing to classify -- empty, or only
    whitespace, control, format (zero-width), combining or undecodable characters -- is refused:
    the model would answer it with the prior of an empty tweet. The one check of every
    prediction path (SavedModel.predict_texts, the demo); examples/standalone_predict.py, which
    cannot import this repository, keeps a copy (tests/test_entry_points.py holds them equal)."""
    which = "text" if index is None else f"text #{index}"
    if not isinstance(text, str):
        raise ValueError(f"{which} is {type(text).__name__} ({text!r:.80}), expected str: "
                         "give the text of a tweet")
    text = _SURROGATE.sub(_REPLACEMENT, text)
    if not any(unicodedata.category(c)[0] in "LNPS" and c != _REPLACEMENT for c in text):
        raise ValueError(f"{which} {text!r:.80} has nothing to classify (empty, or only "
                         "whitespace, invisible, control or undecodable characters): give the "
                         "text of a tweet")
    return text


def parameter_counts(model):
    """{"parameters", "nonzero_parameters"} of a Keras classifier; int8 scales are storage
    overhead, not parameters."""
    weights = [np.asarray(w) for w in model.weights if not w.path.endswith("_scale")]
    return {"parameters": int(sum(w.size for w in weights)),
            "nonzero_parameters": int(sum(np.count_nonzero(w) for w in weights))}


class SavedModel:
    """A saved model loaded for prediction, whatever its format.

    Attributes: directory, kind ("keras", "keras-int8", "binarized", "tflite", "onnx"),
    quantization (None, "int8" for Keras, "dynamic_range" for a TFLite or ONNX bundle), model
    (the Keras classifier, or a TFLiteClassifier / OnnxClassifier from utils.compression),
    tokenizer, labels, encoder_config, parameters, nonzero_parameters, disk_bytes (the model's
    files: spec + weights, or a bundle's model file + manifest; tokenizer files are not counted
    for any format), weight_bytes (in memory; a bundle's model file size).

    `logits(input_ids, attention_mask)` runs one padded batch (one traced function for every
    shape); `predict_logits(texts)` runs prepared texts (normalised as the training data);
    `predict_texts(texts)` normalises raw tweets as in training and returns probabilities.
    Dynamic-range int8 (TFLite and ONNX Runtime) quantises activations per batch, so bundles
    predict texts one at a time, unpadded, as examples/standalone_predict.py does.
    """

    def __init__(self, directory, kind, model, tokenizer, encoder_config, parameters,
                 nonzero_parameters, files, text_batch_size=128, labels=None,
                 max_length=MAX_LENGTH, quantization=None):
        self.directory = None if directory is None else Path(directory)
        self.kind, self.model = kind, model
        self.tokenizer, self.encoder_config = tokenizer, encoder_config
        self.parameters, self.nonzero_parameters = int(parameters), int(nonzero_parameters)
        self.files, self.text_batch_size = list(files), text_batch_size
        self.labels, self.max_length = list(labels or LABELS), int(max_length)
        self.quantization = quantization
        self._fn = None

    @property
    def disk_bytes(self):
        return int(sum(f.stat().st_size for f in self.files))

    @property
    def weight_bytes(self):
        from utils.compression.quantize import (
            weight_bytes,  # Keras: loaded only when needed
        )
        return self.disk_bytes if self.kind in RUNTIME_KINDS else weight_bytes(self.model)

    def logits(self, input_ids, attention_mask):
        if self._fn is None:
            self._fn = _serving_fn(self.model)
        return np.asarray(self._fn(input_ids, attention_mask))

    def predict_logits(self, texts, batch_size=None):
        texts = list(texts)
        if not texts:
            return np.zeros((0, len(self.labels)), np.float32)
        batches, _ = batching.make_batches(self.tokenizer, texts, max_length=self.max_length,
                                           batch_size=batch_size or self.text_batch_size)
        logits = np.concatenate([self.logits(b["input_ids"], b["attention_mask"])
                                 for b in batches])
        if logits.shape[1] != len(self.labels):
            raise SavedModelError(f"{self.directory}: the model gives {logits.shape[1]} classes "
                                  f"but its labels are {self.labels}")
        out = np.empty_like(logits)
        out[batches.order()] = logits
        return out

    def predict_texts(self, texts):
        """Probabilities [len(texts), len(labels)] of raw tweets; a ValueError (readable_text's)
        for a text with nothing to classify."""
        if isinstance(texts, (str, bytes)):
            raise ValueError(f"texts is a single {type(texts).__name__} ({texts!r:.80}): give a "
                             "list of tweets, e.g. [text]")
        texts = [clean_text(readable_text(t, i)) for i, t in enumerate(texts)]
        logits = self.predict_logits(texts)
        logits = logits.astype(np.float64)
        z = np.exp(logits - logits.max(axis=1, keepdims=True))
        return z / z.sum(axis=1, keepdims=True)

    def __repr__(self):
        return f"SavedModel({str(self.directory)!r}, kind={self.kind!r})"


def _serving_fn(model):
    """One compiled function for all batch shapes (`backend.serving_function`: on TensorFlow
    no retracing per padded length); a TFLite interpreter or an ONNX Runtime session takes any
    shape itself."""
    if isinstance(model, (TFLiteClassifier, OnnxClassifier)):
        return lambda ids, mask: model.predict_on_batch({"input_ids": ids,
                                                         "attention_mask": mask})
    from utils.training import backend  # Keras: loaded only when a model runs
    return backend.serving_function(model)


# where a model is timed: Keras as it is, or exported to a runtime's int8 file
TIMING_RUNTIMES = ("keras", *RUNTIME_KINDS)


def in_memory(model, tokenizer, runtime="keras"):
    """A SavedModel interface over a Keras classifier that is not on disk (for timing models
    built or compacted in this process): disk_bytes is 0. runtime="tflite" or "onnx": the model
    exported with dynamic-range int8 weights to that runtime (a file in a temporary directory
    that lives as long as the returned object), as a bundle would run it: one text at a time."""
    counts = parameter_counts(model)
    config = getattr(model, "encoder_config", None)
    if runtime == "keras":
        return SavedModel(None, "keras", model, tokenizer, config, counts["parameters"],
                          counts["nonzero_parameters"], [])
    if runtime not in RUNTIME_KINDS:
        raise ValueError(f"runtime={runtime!r}: models are timed on {TIMING_RUNTIMES}")
    import tempfile

    from utils.compression import onnx_graph, tflite
    scratch = tempfile.TemporaryDirectory(prefix=f"{runtime}_")
    if runtime == "onnx":
        path = onnx_graph.export_onnx(model, Path(scratch.name) / onnx_graph.ONNX_FILE)
        runner = OnnxClassifier(path)
    else:
        path = tflite.export_tflite(model, Path(scratch.name) / tflite.TFLITE_FILE)
        runner = TFLiteClassifier(path)
    loaded = SavedModel(None, runtime, runner, tokenizer, config, counts["parameters"],
                        counts["nonzero_parameters"], [], text_batch_size=1,
                        quantization="dynamic_range")
    loaded.scratch = scratch      # removed with the object
    return loaded
