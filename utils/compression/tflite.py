"""TensorFlow Lite export of a `build_classifier` model: float32 or dynamic-range int8.

Why: Keras 3's `model.quantize("int8")` (utils.compression.quantize) makes the weights 4x smaller but runs
2-4x *slower* than float on CPU (activations are quantized on the fly by ordinary TF ops and
TF's int8 matmul is slow). TFLite's dynamic-range quantization stores the same kind of weights
and runs them with its own hybrid kernels.

`export_tflite(model, path, quantize)` converts through Keras' public `model.export(format=
"litert")` for inputs of shape [batch, length] (both dynamic), with builtin TFLite ops only (the
exact-erf GELU maps to TFLite's GELU builtin). quantize="dynamic_range" sets
`optimizations = [tf.lite.Optimize.DEFAULT]` with no representative dataset: fully connected
kernels become int8 with one scale per output unit, the word and position embedding tables
int8 with one scale per table (GATHER reads int8 rows, DEQUANTIZE converts only those rows);
activations, LayerNorms and biases stay float32. MiniLM: 91.0 MB -> 23.2 MB.

`TFLiteClassifier(path, num_threads)` runs the flatbuffer with the LiteRT interpreter (`ai_edge_litert`), resizing
its inputs when a batch's shape changes, and offers `predict_on_batch({"input_ids",
"attention_mask"}) -> logits` so utils.training.train's `evaluate` / `predict_logits` accept it.

On disk a TFLite model is a bundle (utils.saved.export): model.tflite with its tokenizer, labels and
normalisation, loadable without this repository.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from utils.common.io import atomic_path
from utils.data import batching

TFLITE_FILE = "model.tflite"
QUANTIZE_MODES = (None, "dynamic_range")
INPUT_NAMES = ("input_ids", "attention_mask")
# Measured on tiny random models (tests/test_tflite.py) and MiniLM: float TFLite matches Keras
# to ~1e-6; dynamic-range int8 moves logits by a few percent of their largest magnitude.
FLOAT_TOLERANCE = 1e-4
DYNAMIC_RANGE_RELATIVE_TOLERANCE = 0.1


# ------------------------------------------------------------------------------ export

def convert(model, quantize="dynamic_range"):
    """The TFLite flatbuffer (bytes) of a float `build_classifier` model, through Keras' public
    `model.export(format="litert")` with inputs input_ids / attention_mask int32 [None, None];
    builtin TFLite ops only (the converter's default)."""
    import tempfile

    import tensorflow as tf
    if quantize not in QUANTIZE_MODES:
        raise ValueError(f"quantize={quantize!r}: supported modes are {QUANTIZE_MODES}")
    if any(str(w.dtype) == "int8" for w in model.weights):
        raise ValueError("export the float model: TFLite quantizes it itself (Keras int8 "
                         "layers' int8 x int8 matmuls have no TFLite builtin)")
    signature = [{name: tf.TensorSpec([None, None], tf.int32, name=name)
                  for name in INPUT_NAMES}]
    options = {"optimizations": [tf.lite.Optimize.DEFAULT]} if quantize else {}
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / TFLITE_FILE
        model.export(str(path), format="litert", input_signature=signature, verbose=False,
                     **options)   # dynamic range: no representative dataset
        return path.read_bytes()


def export_tflite(model, path, quantize="dynamic_range"):
    """Write `model` as a .tflite file at `path` (atomically); returns the path."""
    flatbuffer = convert(model, quantize)
    with atomic_path(path) as tmp:
        tmp.write_bytes(flatbuffer)
    return Path(path)


# ------------------------------------------------------------------------------ inference

class TFLiteClassifier:
    """A .tflite classifier with the Keras-model methods the project's evaluation uses.

    `predict_on_batch(inputs)` (inputs: dict with int input_ids / attention_mask of shape
    [batch, length]) -> float32 logits [batch, num_labels]; calling the object does the same.
    Input tensors are resized (and the interpreter's buffers re-allocated) only when the
    batch shape changes.
    """

    def __init__(self, path, num_threads=None):
        from ai_edge_litert.interpreter import (
            Interpreter,  # tf.lite.Interpreter's successor
        )
        self.path = Path(path)
        if not self.path.exists():
            raise FileNotFoundError(f"{self.path} does not exist")
        self.num_threads = num_threads
        self.interpreter = Interpreter(model_path=str(self.path), num_threads=num_threads)
        details = self.interpreter.get_input_details()
        self._inputs = {}
        for name in INPUT_NAMES:
            matches = [d["index"] for d in details if name in d["name"]]
            if len(matches) != 1:
                raise ValueError(f"{self.path}: expected one input named like {name!r}, "
                                 f"found {[d['name'] for d in details]}")
            self._inputs[name] = matches[0]
        outputs = self.interpreter.get_output_details()
        if len(outputs) != 1:
            raise ValueError(f"{self.path}: expected one output (logits), found {len(outputs)}")
        self._output = outputs[0]["index"]
        self._shape = None

    def predict_on_batch(self, inputs):
        arrays = batching.int32_inputs(inputs, INPUT_NAMES)
        shape = arrays["input_ids"].shape
        if shape != self._shape:
            for name in INPUT_NAMES:
                self.interpreter.resize_tensor_input(self._inputs[name], shape, strict=True)
            self.interpreter.allocate_tensors()
            self._shape = shape
        for name in INPUT_NAMES:
            self.interpreter.set_tensor(self._inputs[name], arrays[name])
        self.interpreter.invoke()
        return self.interpreter.get_tensor(self._output).copy()

    __call__ = predict_on_batch

    @property
    def file_bytes(self):
        return self.path.stat().st_size

    def __repr__(self):
        return f"TFLiteClassifier({str(self.path)!r}, num_threads={self.num_threads})"
