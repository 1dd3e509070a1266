"""ONNX export of a `build_classifier` model, float32 or dynamic int8, and its ONNX Runtime runner.

Why a graph of our own: Keras 3's `model.export(format="onnx")` goes through tf2onnx on the
TensorFlow backend, which cannot convert the exact GELU (TensorFlow lowers it to `Erfc`, an op
ONNX does not have: "Unsupported ops: Counter({'Erfc': ...})"). The encoder is small and its
weights are named (`utils.encoder.model`), so `onnx_weights` reads them into an explicit map and
`build_graph` writes the same computation with standard ONNX ops (opset 20: LayerNormalization,
exact Gelu); removed heads and neurons are simply absent, as in the Keras model. The Keras model
is the reference: tests/test_onnx_graph.py checks float parity across batch shapes, padding,
pruned layers and both position schemes (BERT, RoBERTa).

quantize="dynamic_range" (the word utils.compression.tflite uses for the same idea: int8
weights, activations quantized on the fly) calls `quantize_int8`, the route a user of
Sentence-Transformers / Optimum takes for this encoder: `onnxruntime.quantization.quantize_dynamic` - MatMul weights int8 with one scale per output
column (per_channel), activations quantized on the fly; the embedding tables int8 (Gather).
`OnnxClassifier(path, num_threads)` runs a file with ONNX Runtime's CPU provider and offers the
`predict_on_batch({"input_ids", "attention_mask"}) -> logits` of utils.compression.tflite's
TFLiteClassifier, so evaluation and timing accept either.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from utils.common.io import atomic_path
from utils.data import batching

ONNX_FILE = "model.onnx"
OPSET = 20                      # Gelu (exact) is a standard op from opset 20
INPUT_NAMES = ("input_ids", "attention_mask")
OUTPUT_NAME = "logits"
QUANTIZE_MODES = (None, "dynamic_range")
# Measured on tiny random models and MiniLM (tests/test_onnx_graph.py): float ONNX matches Keras
# to ~1e-6; dynamic int8 moves logits by a few percent of their largest magnitude.
FLOAT_TOLERANCE = 1e-4
DYNAMIC_RANGE_RELATIVE_TOLERANCE = 0.1


# ------------------------------------------------------------------------------ weights

def onnx_weights(model) -> dict:
    """The classifier's weights as numpy arrays under explicit names (the graph's initializers):
    embeddings/{word,position,token_type}, embeddings/ln_{scale,bias}; per layer i
    layer_i/attention/{query,key,value,output}/{kernel,bias} or layer_i/attention/output_bias
    when its heads are all removed, layer_i/attention/ln_{scale,bias}; likewise layer_i/ffn/
    {input,output}/{kernel,bias} or layer_i/ffn/output_bias; pooler/{kernel,bias},
    classifier/{kernel,bias}."""
    if any(str(w.dtype) == "int8" for w in model.weights):
        raise ValueError("export the float model: ONNX Runtime quantizes it itself "
                         "(quantize='dynamic_range')")
    array = lambda v: np.asarray(v, dtype=np.float32)  # noqa: E731
    encoder = model.get_layer("encoder")
    emb = encoder.embeddings
    weights = {"embeddings/word": array(emb.word_embeddings.embeddings),
               "embeddings/position": array(emb.position_embeddings.embeddings),
               "embeddings/token_type": array(emb.token_type_embeddings.embeddings),
               "embeddings/ln_scale": array(emb.layer_norm.gamma),
               "embeddings/ln_bias": array(emb.layer_norm.beta)}

    def dense(prefix, layer):
        weights[f"{prefix}/kernel"] = array(layer.kernel)
        weights[f"{prefix}/bias"] = array(layer.bias)

    for i, layer in enumerate(encoder.transformer_layers):
        attention, ffn = layer.attention, layer.ffn
        if attention.num_heads:
            for name, sub in (("query", attention.query), ("key", attention.key),
                              ("value", attention.value), ("output", attention.output_dense)):
                dense(f"layer_{i}/attention/{name}", sub)
        else:
            weights[f"layer_{i}/attention/output_bias"] = array(attention.output_bias)
        if ffn.intermediate_size:
            dense(f"layer_{i}/ffn/input", ffn.input_dense)
            dense(f"layer_{i}/ffn/output", ffn.output_dense)
        else:
            weights[f"layer_{i}/ffn/output_bias"] = array(ffn.output_bias)
        for sub, name in ((attention, "attention"), (ffn, "ffn")):
            weights[f"layer_{i}/{name}/ln_scale"] = array(sub.layer_norm.gamma)
            weights[f"layer_{i}/{name}/ln_bias"] = array(sub.layer_norm.beta)
    dense("pooler", model.get_layer("pooler").dense)
    dense("classifier", model.get_layer("classifier"))
    return weights


# ------------------------------------------------------------------------------ graph

class _Graph:
    """Accumulates nodes and initializers; `op` returns the name of the node's one output."""

    def __init__(self, weights):
        from onnx import helper, numpy_helper
        self.helper, self.numpy_helper = helper, numpy_helper
        self.weights = weights
        self.nodes, self.initializers, self._count = [], {}, 0

    def weight(self, name):
        if name not in self.initializers:
            self.initializers[name] = self.numpy_helper.from_array(self.weights[name], name)
        return name

    def const(self, name, value, dtype):
        if name not in self.initializers:
            self.initializers[name] = self.numpy_helper.from_array(np.asarray(value, dtype), name)
        return name

    def op(self, op_type, *inputs, name=None, **attributes):
        self._count += 1
        output = name or f"{op_type.lower()}_{self._count}"
        self.nodes.append(self.helper.make_node(op_type, list(inputs), [output],
                                                name=f"n{self._count}_{op_type}", **attributes))
        return output

    def linear(self, x, prefix):
        return self.op("Add", self.op("MatMul", x, self.weight(f"{prefix}/kernel")),
                       self.weight(f"{prefix}/bias"))

    def layer_norm(self, x, prefix, eps):
        return self.op("LayerNormalization", x, self.weight(f"{prefix}/ln_scale"),
                       self.weight(f"{prefix}/ln_bias"), axis=-1, epsilon=eps)


def build_graph(config, weights):
    """The ONNX ModelProto of the classifier `config` with `weights` (from `onnx_weights`):
    inputs input_ids / attention_mask int32 [batch, length], output logits float32
    [batch, num_labels]; the computation of utils.encoder.model in inference mode."""
    from onnx import TensorProto, checker, helper
    g = _Graph(weights)
    eps = float(config.layer_norm_eps)
    ids, mask = INPUT_NAMES

    # embeddings: words + positions + token type 0 (single-sentence input)
    words = g.op("Gather", g.weight("embeddings/word"), ids, axis=0)
    if config.model_type == "roberta":
        pad = g.const("pad_id", config.pad_token_id, np.int32)
        not_pad = g.op("Cast", g.op("Not", g.op("Equal", ids, pad)), to=TensorProto.INT32)
        counts = g.op("CumSum", not_pad, g.const("axis_1", 1, np.int32))
        positions = g.op("Add", g.op("Mul", counts, not_pad), pad)
        position_rows = g.op("Gather", g.weight("embeddings/position"), positions, axis=0)
    else:   # BERT: rows 0..T-1 of the table for every tweet
        length = g.op("Shape", ids, start=1, end=2)
        position_rows = g.op("Slice", g.weight("embeddings/position"),
                             g.const("zero_1d", [0], np.int64), length,
                             g.const("axes_0", [0], np.int64))
    token_type = g.const("embeddings/token_type_0", weights["embeddings/token_type"][0],
                         np.float32)
    hidden = g.op("Add", g.op("Add", words, position_rows), token_type)
    hidden = g.layer_norm(hidden, "embeddings", eps)

    # padding keys get -1e9 added to their scores: [B, T] -> [B, 1, 1, T]
    key_is_pad = g.op("Sub", g.const("one", 1.0, np.float32),
                      g.op("Cast", mask, to=TensorProto.FLOAT))
    mask_bias = g.op("Unsqueeze", g.op("Mul", key_is_pad, g.const("minus_1e9", -1e9, np.float32)),
                     g.const("axes_1_2", [1, 2], np.int64))
    scale = g.const("sqrt_head_size", math.sqrt(config.head_size), np.float32)

    for i, (heads, width) in enumerate(zip(config.num_heads, config.intermediate_sizes)):
        prefix = f"layer_{i}/attention"
        if heads:
            split = g.const(f"{prefix}/split_shape", [0, 0, heads, config.head_size], np.int64)
            q, k, v = (g.op("Reshape", g.linear(hidden, f"{prefix}/{n}"), split)
                       for n in ("query", "key", "value"))
            q = g.op("Transpose", q, perm=[0, 2, 1, 3])     # [B, H, T, D]
            k = g.op("Transpose", k, perm=[0, 2, 3, 1])     # [B, H, D, T]
            v = g.op("Transpose", v, perm=[0, 2, 1, 3])
            scores = g.op("Add", g.op("Div", g.op("MatMul", q, k), scale), mask_bias)
            context = g.op("MatMul", g.op("Softmax", scores, axis=-1), v)
            context = g.op("Reshape", g.op("Transpose", context, perm=[0, 2, 1, 3]),
                           g.const(f"{prefix}/merge_shape", [0, 0, heads * config.head_size],
                                   np.int64))
            sublayer = g.linear(context, f"{prefix}/output")
        else:
            sublayer = g.weight(f"{prefix}/output_bias")
        hidden = g.layer_norm(g.op("Add", hidden, sublayer), prefix, eps)

        prefix = f"layer_{i}/ffn"
        if width:
            inner = g.op("Gelu", g.linear(hidden, f"{prefix}/input"), approximate="none")
            sublayer = g.linear(inner, f"{prefix}/output")
        else:
            sublayer = g.weight(f"{prefix}/output_bias")
        hidden = g.layer_norm(g.op("Add", hidden, sublayer), prefix, eps)

    first = g.op("Gather", hidden, g.const("index_0", 0, np.int64), axis=1)    # [B, hidden]
    pooled = g.op("Tanh", g.linear(first, "pooler"))
    g.linear(pooled, "classifier")
    g.nodes[-1].output[0] = OUTPUT_NAME

    graph = helper.make_graph(
        g.nodes, f"{config.model_type}_classifier",
        [helper.make_tensor_value_info(name, TensorProto.INT32, ["batch", "length"])
         for name in INPUT_NAMES],
        [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT,
                                       ["batch", config.num_labels])],
        initializer=list(g.initializers.values()))
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="utils.compression.onnx_graph")
    checker.check_model(proto)
    return proto


# ------------------------------------------------------------------------------ export

def export_onnx(model, path, quantize="dynamic_range"):
    """Write `model` (float Keras classifier) as an ONNX file at `path`, atomically: float32
    (quantize=None) or dynamic int8 (ONNX Runtime's `quantize_dynamic`, per-channel int8
    weights); returns the path."""
    import tempfile

    import onnx
    if quantize not in QUANTIZE_MODES:
        raise ValueError(f"quantize={quantize!r}: supported modes are {QUANTIZE_MODES}")
    proto = build_graph(model.encoder_config, onnx_weights(model))
    with atomic_path(path) as tmp:
        if quantize is None:
            onnx.save(proto, str(tmp))
        else:
            with tempfile.TemporaryDirectory() as scratch:
                float_path = Path(scratch) / ONNX_FILE
                onnx.save(proto, str(float_path))
                quantize_int8(float_path, tmp)
    return Path(path)


def quantize_int8(float_path, out_path):
    """ONNX Runtime's dynamic quantization of a float ONNX file: int8 MatMul weights (one scale
    per output column) and embedding tables; activations stay float between the int8 matmuls."""
    from onnxruntime.quantization import QuantType, quantize_dynamic
    quantize_dynamic(str(float_path), str(out_path), weight_type=QuantType.QInt8,
                     per_channel=True, op_types_to_quantize=["MatMul", "Gather"])


# ------------------------------------------------------------------------------ inference

class OnnxClassifier:
    """An ONNX classifier run by ONNX Runtime (CPU), with the Keras-model methods the
    project's evaluation uses: `predict_on_batch(inputs) -> float32 logits [batch, labels]`."""

    def __init__(self, path, num_threads=None):
        import onnxruntime as ort
        self.path = Path(path)
        if not self.path.exists():
            raise FileNotFoundError(f"{self.path} does not exist")
        self.num_threads = num_threads
        options = ort.SessionOptions()
        if num_threads:
            options.intra_op_num_threads = num_threads
            options.inter_op_num_threads = 1
        options.log_severity_level = 3          # errors only: no start-up chatter
        self.session = ort.InferenceSession(str(self.path), options,
                                            providers=["CPUExecutionProvider"])
        names = [i.name for i in self.session.get_inputs()]
        if sorted(names) != sorted(INPUT_NAMES):
            raise ValueError(f"{self.path}: expected inputs {INPUT_NAMES}, found {names}")

    def predict_on_batch(self, inputs):
        arrays = batching.int32_inputs(inputs, INPUT_NAMES)
        return self.session.run([OUTPUT_NAME], arrays)[0]

    __call__ = predict_on_batch

    @property
    def file_bytes(self):
        return self.path.stat().st_size

    def __repr__(self):
        return f"OnnxClassifier({str(self.path)!r}, num_threads={self.num_threads})"
