"""A loaded model, whatever its format, that predicts texts (`SavedModel`); the error every
missing or corrupt model directory raises (`SavedModelError`)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from utils.compression.tflite import TFLiteClassifier
from utils.data import batching
from utils.data.corpus import LABELS, clean_text

MAX_LENGTH = 64   # tokens, as in training (utils.training.train.TrainConfig.max_length)


class SavedModelError(ValueError):
    """A model directory that is missing, incomplete or corrupt."""


def parameter_counts(model):
    """{"parameters", "nonzero_parameters"} of a Keras classifier; int8 scales are storage
    overhead, not parameters."""
    weights = [np.asarray(w) for w in model.weights if not w.path.endswith("_scale")]
    return {"parameters": int(sum(w.size for w in weights)),
            "nonzero_parameters": int(sum(np.count_nonzero(w) for w in weights))}


class SavedModel:
    """A saved model loaded for prediction, whatever its format.

    Attributes: directory, kind ("keras", "keras-int8", "binarized", "tflite"), quantization
    (None, "int8" for Keras, "dynamic_range" for TFLite), model (the Keras classifier, or a
    utils.compression.tflite.TFLiteClassifier), tokenizer, labels, encoder_config, parameters, nonzero_parameters, disk_bytes (the model's files: spec + weights, or
    a bundle's model.tflite + manifest; tokenizer files are not counted for any format),
    weight_bytes (in memory; a bundle's flatbuffer size).

    `logits(input_ids, attention_mask)` runs one padded batch (one traced function for every
    shape); `predict_logits(texts)` runs prepared texts (normalised as the training data);
    `predict_texts(texts)` normalises raw tweets as in training and returns probabilities.
    TFLite dynamic-range int8 quantises activations per batch, so bundles predict texts one at
    a time, unpadded, as examples/standalone_predict.py does.
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
        return self.disk_bytes if self.kind == "tflite" else weight_bytes(self.model)

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
        logits = self.predict_logits([clean_text(t) for t in batching.check_texts(list(texts))])
        logits = logits.astype(np.float64)
        z = np.exp(logits - logits.max(axis=1, keepdims=True))
        return z / z.sum(axis=1, keepdims=True)

    def __repr__(self):
        return f"SavedModel({str(self.directory)!r}, kind={self.kind!r})"


def _serving_fn(model):
    """One compiled function for all batch shapes (`backend.serving_function`: on TensorFlow
    no retracing per padded length); a TFLite interpreter resizes its own inputs."""
    if isinstance(model, TFLiteClassifier):
        return lambda ids, mask: model.predict_on_batch({"input_ids": ids,
                                                         "attention_mask": mask})
    from utils.training import backend  # Keras: loaded only when a model runs
    return backend.serving_function(model)


def in_memory(model, tokenizer):
    """A SavedModel interface over a Keras classifier that is not on disk (for timing models
    built or compacted in this process): disk_bytes is 0."""
    counts = parameter_counts(model)
    return SavedModel(None, "keras", model, tokenizer, getattr(model, "encoder_config", None),
                      counts["parameters"], counts["nonzero_parameters"], [])
