"""A BERT/RoBERTa encoder + sentence classifier in Keras 3, loadable from Hugging Face checkpoints.

Layout, top-down:

    build_classifier(config)            keras.Model: {"input_ids", "attention_mask"} -> logits
      Encoder                           embeddings + a stack of TransformerLayer
        Embeddings                      word + position + token-type, LayerNorm, dropout
        TransformerLayer                SelfAttention then FeedForward, both post-LayerNorm
      Pooler                            Dense + tanh on the first token
      Dropout, Dense "classifier"

Per-layer widths live in `EncoderConfig` (`num_heads`, `intermediate_sizes`), so a model whose
heads / FFN neurons were physically removed is described by its config alone and can be rebuilt
from it (`utils.saved.save` / `load_model`). A width of 0 means the sublayer's weight matrices are gone;
what remains is exactly what Hugging Face computes in that case: LayerNorm(x + output_bias).

Every weight matrix is a plain `keras.layers.Dense` kernel of shape (in, out); `prunable_kernels`
lists them by readable name for the pruning code.

All maths goes through `keras.ops`, so other Keras backends work; `utils/__init__` picks TensorFlow.
"""
from __future__ import annotations

import dataclasses
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
from keras import ops

from utils.common.io import atomic_path

log = logging.getLogger(__name__)

MODEL_TYPES = ("bert", "roberta")


# ----------------------------------------------------------------------------------------------
# Config

@dataclass
class EncoderConfig:
    vocab_size: int
    hidden_size: int
    num_heads: list[int]            # per layer; 0 = attention removed
    intermediate_sizes: list[int]   # per layer FFN width; 0 = FFN removed
    head_size: int = 64
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    hidden_dropout: float = 0.1
    attention_dropout: float = 0.1
    model_type: str = "bert"        # "bert" or "roberta": only position ids differ
    pad_token_id: int = 0
    num_labels: int = 3

    def __post_init__(self):
        # Normalise sequences (tuples, numpy arrays, numpy ints) to list[int] so that configs
        # compare equal and serialise to JSON regardless of how they were built.
        for name in ("num_heads", "intermediate_sizes"):
            value = getattr(self, name)
            if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
                raise ValueError(f"EncoderConfig.{name} must be a list of ints (one per layer), "
                                 f"got {value!r}")
            setattr(self, name, [_as_int(f"{name}[{i}]", v) for i, v in enumerate(value)])
            bad = [(i, v) for i, v in enumerate(getattr(self, name)) if v < 0]
            if bad:
                i, v = bad[0]
                raise ValueError(f"EncoderConfig.{name}[{i}] = {v}: widths must be >= 0 "
                                 f"(0 means the sublayer was removed)")
        if len(self.num_heads) != len(self.intermediate_sizes):
            raise ValueError(
                f"EncoderConfig.num_heads has {len(self.num_heads)} entries but "
                f"intermediate_sizes has {len(self.intermediate_sizes)}: both need one per layer")
        if not self.num_heads:
            raise ValueError("EncoderConfig.num_heads is empty: the encoder needs at least one layer")

        for name in ("vocab_size", "hidden_size", "head_size", "max_position_embeddings",
                     "type_vocab_size", "num_labels"):
            value = _as_int(name, getattr(self, name))
            if value <= 0:
                raise ValueError(f"EncoderConfig.{name} = {value}: must be a positive int")
            setattr(self, name, value)
        self.pad_token_id = _as_int("pad_token_id", self.pad_token_id)
        if not 0 <= self.pad_token_id < self.vocab_size:
            raise ValueError(f"EncoderConfig.pad_token_id = {self.pad_token_id}: must be in "
                             f"[0, vocab_size={self.vocab_size})")
        for name in ("hidden_dropout", "attention_dropout"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
                raise ValueError(f"EncoderConfig.{name} = {value!r}: must be a float in [0, 1)")
            setattr(self, name, float(value))
        if isinstance(self.layer_norm_eps, bool) or not isinstance(self.layer_norm_eps, (int, float)) \
                or not self.layer_norm_eps > 0:
            raise ValueError(f"EncoderConfig.layer_norm_eps = {self.layer_norm_eps!r}: "
                             f"must be a positive float")
        self.layer_norm_eps = float(self.layer_norm_eps)
        if self.model_type not in MODEL_TYPES:
            raise ValueError(f"EncoderConfig.model_type = {self.model_type!r}: "
                             f"must be one of {', '.join(map(repr, MODEL_TYPES))}")

    @property
    def num_layers(self):
        return len(self.num_heads)

    def to_dict(self):
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values):
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown EncoderConfig fields {unknown}; valid fields: {sorted(known)}")
        return cls(**values)


def _as_int(name, value):
    # bool is an int subclass; True as a width is almost certainly a bug.
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"EncoderConfig.{name} = {value!r}: must be an int")
    return int(value)


def tiny_config(vocab_size, num_labels=3, model_type="bert"):
    """A small random encoder for SMOKE runs: hidden 32, 2 layers of 2 heads x 16, FFN 64."""
    roberta = model_type == "roberta"
    return EncoderConfig(
        vocab_size=vocab_size, hidden_size=32, num_heads=[2, 2], intermediate_sizes=[64, 64],
        head_size=16, num_labels=num_labels, model_type=model_type,
        # RoBERTa conventions: one token type, pad id 1, positions offset by pad_token_id + 1
        max_position_embeddings=514 if roberta else 512,
        type_vocab_size=1 if roberta else 2,
        layer_norm_eps=1e-5 if roberta else 1e-12,
        pad_token_id=1 if roberta else 0,
    )


# ----------------------------------------------------------------------------------------------
# Model

def build_classifier(config: EncoderConfig) -> keras.Model:
    """Encoder -> Pooler(first token) -> Dropout -> Dense(num_labels); returns float32 logits."""
    input_ids = keras.Input(shape=(None,), dtype="int32", name="input_ids")
    attention_mask = keras.Input(shape=(None,), dtype="int32", name="attention_mask")
    hidden = Encoder(config, name="encoder")(input_ids, attention_mask)
    pooled = Pooler(config.hidden_size, name="pooler")(hidden)
    pooled = keras.layers.Dropout(config.hidden_dropout, name="classifier_dropout")(pooled)
    # float32 even under a mixed-precision policy: the loss wants full-precision logits.
    logits = keras.layers.Dense(config.num_labels, dtype="float32", name="classifier")(pooled)
    model = keras.Model({"input_ids": input_ids, "attention_mask": attention_mask}, logits,
                        name=f"{config.model_type}_classifier")
    model.encoder_config = config
    return model


def encode(model, inputs, output_hidden_states=True, training=False):
    """Run only the encoder of a `build_classifier` model.

    Returns [embeddings output, layer 1 output, ..., layer N output] (as Hugging Face's
    `hidden_states`) when `output_hidden_states`, else the last hidden state; backend tensors.
    """
    input_ids = ops.convert_to_tensor(inputs["input_ids"], dtype="int32")
    attention_mask = ops.convert_to_tensor(inputs["attention_mask"], dtype="int32")
    return model.get_layer("encoder")(input_ids, attention_mask, training=training,
                                      output_hidden_states=output_hidden_states)


KERAS_PACKAGE = "bert_memory_efficiency"   # registered names: "bert_memory_efficiency>Encoder"


@keras.saving.register_keras_serializable(package=KERAS_PACKAGE)
class Encoder(keras.layers.Layer):
    """Embeddings followed by `config.num_layers` TransformerLayers (Hugging Face's BertModel
    minus the pooler). Its Keras config is the EncoderConfig, from which every sublayer is
    rebuilt, so Keras' own `.keras` format saves any width (see `save_keras`)."""

    def __init__(self, config: EncoderConfig, **kwargs):
        super().__init__(**kwargs)
        if isinstance(config, dict):
            config = EncoderConfig.from_dict(config)
        self.config = config
        self.embeddings = Embeddings(config, name="embeddings")
        self.transformer_layers = [
            TransformerLayer(config, heads, width, name=f"layer_{i}")
            for i, (heads, width) in enumerate(zip(config.num_heads, config.intermediate_sizes))
        ]

    def build(self, input_ids_shape, attention_mask_shape=None):
        self.embeddings.build(input_ids_shape)
        for layer in self.transformer_layers:
            layer.build((*input_ids_shape, self.config.hidden_size))

    def get_config(self):
        return {**super().get_config(), "config": self.config.to_dict()}

    def compute_output_spec(self, input_ids, attention_mask, training=None,
                            output_hidden_states=False):
        # The shapes, stated rather than traced: on JAX, tracing `call` on a symbolic length T
        # fails, as JAX cannot prove that BERT's position rows [:T] of the table are T rows.
        spec = keras.KerasTensor((*input_ids.shape, self.config.hidden_size),
                                 dtype=self.compute_dtype)
        return [spec] * (self.config.num_layers + 1) if output_hidden_states else spec

    def call(self, input_ids, attention_mask, training=None, output_hidden_states=False):
        hidden = self.embeddings(input_ids, training=training)
        hidden_states = [hidden]
        for layer in self.transformer_layers:
            hidden = layer(hidden, attention_mask, training=training)
            hidden_states.append(hidden)
        return hidden_states if output_hidden_states else hidden


class Embeddings(keras.layers.Layer):
    """word + position + token-type embeddings, then LayerNorm and dropout."""

    def __init__(self, config: EncoderConfig, **kwargs):
        super().__init__(**kwargs)
        self.config = config
        self.word_embeddings = keras.layers.Embedding(
            config.vocab_size, config.hidden_size, name="word_embeddings")
        self.position_embeddings = keras.layers.Embedding(
            config.max_position_embeddings, config.hidden_size, name="position_embeddings")
        self.token_type_embeddings = keras.layers.Embedding(
            config.type_vocab_size, config.hidden_size, name="token_type_embeddings")
        self.layer_norm = keras.layers.LayerNormalization(
            epsilon=config.layer_norm_eps, name="layer_norm")
        self.dropout = keras.layers.Dropout(config.hidden_dropout)

    def build(self, input_ids_shape):
        self.word_embeddings.build(input_ids_shape)
        self.position_embeddings.build(input_ids_shape)
        self.token_type_embeddings.build(input_ids_shape)
        self.layer_norm.build((*input_ids_shape, self.config.hidden_size))

    def call(self, input_ids, training=None):
        # Single-sentence classification: every token has token type 0.
        token_type_ids = ops.zeros_like(input_ids)
        if self.config.model_type == "roberta" or self.position_embeddings.quantization_mode:
            # RoBERTa's positions depend on the padding; an int8-quantized table is read
            # through its layer, which dequantizes
            positions = self.position_embeddings(self.position_ids(input_ids))
        else:
            # BERT's positions are 0..T-1 for every tweet: a slice of the table, as Google's
            # BERT does. Its gradient is dense, so replicas' gradients sum to one device's
            # (a lookup's sparse gradients, concatenated across replicas, do not reach Adam
            # the same way).
            positions = self.position_embeddings.embeddings[None, :ops.shape(input_ids)[1]]
        words = self.word_embeddings(input_ids)
        hidden = (words + ops.cast(positions, words.dtype)
                  + self.token_type_embeddings(token_type_ids))
        return self.dropout(self.layer_norm(hidden), training=training)

    def position_ids(self, input_ids):
        if self.config.model_type == "roberta":
            # As HF's create_position_ids_from_input_ids: real tokens count up from
            # pad_token_id + 1, padding tokens get pad_token_id (RoBERTa's position table is
            # offset by it, hence max_position_embeddings = 514 for 512 tokens).
            not_pad = ops.cast(ops.not_equal(input_ids, self.config.pad_token_id), "int32")
            return ops.cumsum(not_pad, axis=1) * not_pad + self.config.pad_token_id
        length = ops.shape(input_ids)[1]
        return ops.expand_dims(ops.arange(length, dtype="int32"), 0)


class TransformerLayer(keras.layers.Layer):
    def __init__(self, config: EncoderConfig, num_heads, intermediate_size, **kwargs):
        super().__init__(**kwargs)
        self.attention = SelfAttention(config, num_heads, name="attention")
        self.ffn = FeedForward(config, intermediate_size, name="ffn")

    def build(self, hidden_shape, attention_mask_shape=None):
        self.attention.build(hidden_shape)
        self.ffn.build(hidden_shape)

    def call(self, hidden, attention_mask, training=None):
        hidden = self.attention(hidden, attention_mask, training=training)
        return self.ffn(hidden, training=training)


class SelfAttention(keras.layers.Layer):
    """Multi-head self-attention, dropout, residual, post-LayerNorm (HF BertAttention).

    With num_heads == 0 the query/key/value/output matrices are gone; the sublayer's output is
    then just the output bias, so the block computes LayerNorm(x + output_bias) exactly as a
    Hugging Face model with every head pruned does.
    """

    def __init__(self, config: EncoderConfig, num_heads, **kwargs):
        super().__init__(**kwargs)
        self.num_heads = num_heads
        self.head_size = config.head_size
        hidden_size, width = config.hidden_size, num_heads * config.head_size
        if num_heads > 0:
            self.query = keras.layers.Dense(width, name="query")
            self.key = keras.layers.Dense(width, name="key")
            self.value = keras.layers.Dense(width, name="value")
            self.output_dense = keras.layers.Dense(hidden_size, name="output")
        self.attention_dropout = keras.layers.Dropout(config.attention_dropout)
        self.dropout = keras.layers.Dropout(config.hidden_dropout)
        self.layer_norm = keras.layers.LayerNormalization(
            epsilon=config.layer_norm_eps, name="layer_norm")
        self.hidden_size = hidden_size

    def build(self, hidden_shape, attention_mask_shape=None):
        if self.num_heads > 0:
            self.query.build(hidden_shape)
            self.key.build(hidden_shape)
            self.value.build(hidden_shape)
            self.output_dense.build((*hidden_shape[:-1], self.num_heads * self.head_size))
        else:
            self.output_bias = self.add_weight(
                shape=(self.hidden_size,), initializer="zeros", name="output_bias")
        self.layer_norm.build(hidden_shape)

    def call(self, hidden, attention_mask, training=None):
        if self.num_heads == 0:
            return self.layer_norm(hidden + self.output_bias)
        context = self.context(hidden, attention_mask, training=training)
        attended = self.dropout(self.output_dense(context), training=training)
        return self.layer_norm(hidden + attended)

    def context(self, hidden, attention_mask, training=None):
        """The heads' outputs before the output projection, [B, T, heads * head_size] (head h
        in columns h * head_size ...): what least-squares mask tuning weighs per head."""
        def split_heads(x):  # [B, T, heads * size] -> [B, heads, T, size]
            x = ops.reshape(x, (ops.shape(x)[0], ops.shape(x)[1], self.num_heads, self.head_size))
            return ops.transpose(x, (0, 2, 1, 3))

        query = split_heads(self.query(hidden))
        key = split_heads(self.key(hidden))
        value = split_heads(self.value(hidden))

        scores = ops.matmul(query, ops.transpose(key, (0, 1, 3, 2)))
        # Softmax in float32 so the mask's large negative is safe under float16.
        scores = ops.cast(scores, "float32") / math.sqrt(self.head_size)
        # Padding keys get -1e9 added: their probability underflows to exactly 0.
        # [B, T] -> [B, 1, 1, T] with ExpandDims (a None-index lowers to a StridedSlice that
        # TFLite cannot run with both dims dynamic)
        key_is_pad = 1.0 - ops.expand_dims(ops.cast(attention_mask, "float32"), (1, 2))
        probs = ops.softmax(scores + key_is_pad * -1e9, axis=-1)
        probs = self.attention_dropout(ops.cast(probs, self.compute_dtype), training=training)

        context = ops.transpose(ops.matmul(probs, value), (0, 2, 1, 3))  # [B, T, heads, size]
        return ops.reshape(context, (ops.shape(context)[0], ops.shape(context)[1],
                                     self.num_heads * self.head_size))


class FeedForward(keras.layers.Layer):
    """Dense -> exact (erf) GELU -> Dense, dropout, residual, post-LayerNorm (HF BertIntermediate
    + BertOutput). Width 0 leaves LayerNorm(x + output_bias), as for SelfAttention."""

    def __init__(self, config: EncoderConfig, intermediate_size, **kwargs):
        super().__init__(**kwargs)
        self.intermediate_size = intermediate_size
        self.hidden_size = config.hidden_size
        if intermediate_size > 0:
            self.input_dense = keras.layers.Dense(intermediate_size, name="input")
            self.output_dense = keras.layers.Dense(config.hidden_size, name="output")
        self.dropout = keras.layers.Dropout(config.hidden_dropout)
        self.layer_norm = keras.layers.LayerNormalization(
            epsilon=config.layer_norm_eps, name="layer_norm")

    def build(self, hidden_shape):
        if self.intermediate_size > 0:
            self.input_dense.build(hidden_shape)
            self.output_dense.build((*hidden_shape[:-1], self.intermediate_size))
        else:
            self.output_bias = self.add_weight(
                shape=(self.hidden_size,), initializer="zeros", name="output_bias")
        self.layer_norm.build(hidden_shape)

    def call(self, hidden, training=None):
        if self.intermediate_size == 0:
            return self.layer_norm(hidden + self.output_bias)
        out = self.dropout(self.output_dense(self.inner(hidden)), training=training)
        return self.layer_norm(hidden + out)

    def inner(self, hidden):
        """The neurons' activations, [B, T, intermediate_size]."""
        return ops.gelu(self.input_dense(hidden), approximate=False)


@keras.saving.register_keras_serializable(package=KERAS_PACKAGE)
class Pooler(keras.layers.Layer):
    """Dense + tanh on the first token ([CLS] / <s>), as HF's BertPooler."""

    def __init__(self, hidden_size, **kwargs):
        super().__init__(**kwargs)
        self.hidden_size = hidden_size
        self.dense = keras.layers.Dense(hidden_size, activation="tanh", name="dense")

    def get_config(self):
        return {**super().get_config(), "hidden_size": self.hidden_size}

    def build(self, hidden_shape):
        self.dense.build((hidden_shape[0], hidden_shape[-1]))

    def call(self, hidden):
        return self.dense(hidden[:, 0, :])


# ----------------------------------------------------------------------------------------------
# Introspection

def transformer_layers(model):
    return model.get_layer("encoder").transformer_layers


def prunable_kernels(model, include_pooler=True, as_numpy=False) -> dict:
    """Every prunable weight matrix, as {"layer_0/attention/query": kernel (in, out), ...}: the
    one list of the weights pruning acts on (block pruning and its peers leave the pooler out:
    include_pooler=False). as_numpy: copies as numpy arrays instead of the Keras variables.

    Attention: query/key/value (hidden, heads*head_size) - columns grouped by head;
    output (heads*head_size, hidden) - rows grouped by head. FFN: input (hidden, width),
    output (width, hidden). Then "pooler/dense". Removed sublayers (width 0) are absent.
    """
    kernels = {}
    for i, layer in enumerate(transformer_layers(model)):
        attention, ffn = layer.attention, layer.ffn
        if attention.num_heads > 0:
            kernels[f"layer_{i}/attention/query"] = attention.query.kernel
            kernels[f"layer_{i}/attention/key"] = attention.key.kernel
            kernels[f"layer_{i}/attention/value"] = attention.value.kernel
            kernels[f"layer_{i}/attention/output"] = attention.output_dense.kernel
        if ffn.intermediate_size > 0:
            kernels[f"layer_{i}/ffn/input"] = ffn.input_dense.kernel
            kernels[f"layer_{i}/ffn/output"] = ffn.output_dense.kernel
    if include_pooler:
        kernels["pooler/dense"] = model.get_layer("pooler").dense.kernel
    if as_numpy:
        return {name: np.asarray(kernel) for name, kernel in kernels.items()}
    return kernels


def encoder_linear_weights(model):
    """How many weights the encoder's prunable kernels hold (the pooler not counted): the
    denominator of encoder-linear sparsity."""
    return sum(int(np.prod(k.shape)) for k in prunable_kernels(model, False).values())


def count_parameters(model, trainable_only=False):
    weights = model.trainable_weights if trainable_only else model.weights
    return int(sum(np.prod(w.shape) for w in weights))


# ----------------------------------------------------------------------------------------------
# Keras' own format (utils.saved writes the project's model directories)

def save_keras(model, path):
    """The classifier in Keras' own `.keras` format (any widths, any vocabulary size), written
    atomically; `keras.saving.load_model(path)` reads it back once `utils.encoder.model` is imported
    (the layers are registered), `load_keras` also restores `model.encoder_config`."""
    path = Path(path)
    if path.suffix != ".keras":
        raise ValueError(f"{path}: a Keras model file must end in .keras")
    with atomic_path(path) as tmp:
        model.save(str(tmp), include_optimizer=False)


def load_keras(path):
    model = keras.saving.load_model(str(path), compile=False)
    model.encoder_config = model.get_layer("encoder").config
    return model
