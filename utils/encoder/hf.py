"""Hugging Face checkpoints <-> our encoder: the weight map both ways (`load_hf_weights`,
`hf_tensors`), the config both ways (`config_from_hf`, `hf_config`), and `from_pretrained`.
BERT and RoBERTa layouts, with a `bert.` / `roberta.` prefix or none (sentence-transformers).
torch.nn.Linear stores weight as (out, in); a Keras Dense kernel is (in, out)."""
from __future__ import annotations

import keras
import numpy as np

from utils.common.io import read_json
from utils.encoder.hub import (
    CONFIG_FILE,
    DEFAULT_MODEL,
    read_safetensors,
    resolve_checkpoint,
)
from utils.encoder.model import MODEL_TYPES, EncoderConfig, build_classifier, log


def config_from_hf(hf_config: dict, num_labels=3, dropout=None) -> EncoderConfig:
    """EncoderConfig equivalent to a Hugging Face BERT/RoBERTa `config.json`.

    `dropout`, if given, replaces both the hidden and the attention dropout rates.
    """
    model_type = hf_config.get("model_type")
    if model_type not in MODEL_TYPES:
        raise ValueError(f"unsupported model_type {model_type!r} in config.json; "
                         f"supported: {', '.join(MODEL_TYPES)}")
    if hf_config.get("hidden_act", "gelu") != "gelu":
        raise ValueError(f"unsupported hidden_act {hf_config['hidden_act']!r}: only exact 'gelu'")
    if hf_config.get("position_embedding_type", "absolute") != "absolute":
        raise ValueError(f"unsupported position_embedding_type "
                         f"{hf_config['position_embedding_type']!r}: only 'absolute'")
    hidden, heads, layers = (hf_config["hidden_size"], hf_config["num_attention_heads"],
                             hf_config["num_hidden_layers"])
    if hidden % heads:
        raise ValueError(f"hidden_size {hidden} is not divisible by num_attention_heads {heads}")
    return EncoderConfig(
        vocab_size=hf_config["vocab_size"],
        hidden_size=hidden,
        num_heads=[heads] * layers,
        intermediate_sizes=[hf_config["intermediate_size"]] * layers,
        head_size=hidden // heads,
        max_position_embeddings=hf_config["max_position_embeddings"],
        type_vocab_size=hf_config["type_vocab_size"],
        layer_norm_eps=hf_config["layer_norm_eps"],
        hidden_dropout=hf_config["hidden_dropout_prob"] if dropout is None else dropout,
        attention_dropout=hf_config["attention_probs_dropout_prob"] if dropout is None else dropout,
        model_type=model_type,
        pad_token_id=hf_config.get("pad_token_id") or 0,
        num_labels=num_labels,
    )


def from_pretrained(name_or_path=DEFAULT_MODEL, num_labels=3, dropout=None) -> keras.Model:
    """A `build_classifier` model with encoder (and pooler) weights from a Hugging Face
    BERT/RoBERTa checkpoint; the classifier layer is freshly initialised."""
    directory = resolve_checkpoint(name_or_path)
    if not (directory / CONFIG_FILE).exists():
        raise FileNotFoundError(f"{directory} has no {CONFIG_FILE}")
    config = config_from_hf(read_json(directory / CONFIG_FILE), num_labels, dropout)
    model = build_classifier(config)
    report = load_hf_weights(model, read_safetensors(directory))
    if report["unexpected"]:
        log.warning("%s: unused checkpoint tensors: %s", directory, report["unexpected"])
    if report["ignored"]:
        log.info("%s: ignored task-head tensors: %s", directory, report["ignored"])
    if report["randomly_initialised"]:
        log.warning("%s: not in the checkpoint, randomly initialised: %s",
                    directory, report["randomly_initialised"])
    return model


# Checkpoint tensors that are deliberately not loaded: buffers and pretraining/task heads.
_IGNORED_SUFFIXES = ("position_ids", "token_type_ids")


_IGNORED_HEADS = ("cls.", "lm_head.", "classifier.", "qa_outputs.")


def load_hf_weights(model, tensors: dict, classifier=False) -> dict:
    """Copy Hugging Face BERT/RoBERTa tensors into `model`, transposing Linear weights.

    Accepts keys with a `bert.` / `roberta.` prefix or none (sentence-transformers). A missing
    encoder tensor is an error; a missing pooler is randomly initialised (RoBERTa MLM checkpoints
    have none). The task head `classifier.*` is ignored (fine-tuning starts a fresh one) unless
    `classifier`: then BertForSequenceClassification's head is loaded too (reading back a
    model `hf_tensors` exported). Returns {"unexpected", "ignored", "randomly_initialised"}.
    """
    config = model.encoder_config
    prefix = _detect_prefix(tensors)
    encoder = model.get_layer("encoder")
    used = set()

    def take(key):
        full_key = prefix + key
        if full_key not in tensors:
            raise KeyError(f"checkpoint tensor {full_key!r} is missing (model_type "
                           f"{config.model_type!r}, key prefix {prefix!r})")
        used.add(full_key)
        return tensors[full_key]

    def assign(variable, array, key):
        if tuple(variable.shape) != tuple(array.shape):
            raise ValueError(f"checkpoint tensor {prefix + key!r} has shape {tuple(array.shape)} "
                             f"but {variable.path} has shape {tuple(variable.shape)}")
        variable.assign(array.astype(variable.dtype))

    def load_dense(dense, key):
        # torch.nn.Linear stores weight as (out, in); a Keras Dense kernel is (in, out).
        assign(dense.kernel, take(key + ".weight").T, key + ".weight")
        assign(dense.bias, take(key + ".bias"), key + ".bias")

    def load_layer_norm(layer_norm, key):
        assign(layer_norm.gamma, take(key + ".weight"), key + ".weight")
        assign(layer_norm.beta, take(key + ".bias"), key + ".bias")

    emb = encoder.embeddings
    for name in ("word_embeddings", "position_embeddings", "token_type_embeddings"):
        key = f"embeddings.{name}.weight"
        assign(getattr(emb, name).embeddings, take(key), key)
    load_layer_norm(emb.layer_norm, "embeddings.LayerNorm")

    for i, layer in enumerate(encoder.transformer_layers):
        hf = f"encoder.layer.{i}"
        attention, ffn = layer.attention, layer.ffn
        if attention.num_heads == 0:
            assign(attention.output_bias, take(f"{hf}.attention.output.dense.bias"),
                   f"{hf}.attention.output.dense.bias")
        else:
            load_dense(attention.query, f"{hf}.attention.self.query")
            load_dense(attention.key, f"{hf}.attention.self.key")
            load_dense(attention.value, f"{hf}.attention.self.value")
            load_dense(attention.output_dense, f"{hf}.attention.output.dense")
        load_layer_norm(attention.layer_norm, f"{hf}.attention.output.LayerNorm")
        if ffn.intermediate_size == 0:
            assign(ffn.output_bias, take(f"{hf}.output.dense.bias"), f"{hf}.output.dense.bias")
        else:
            load_dense(ffn.input_dense, f"{hf}.intermediate.dense")
            load_dense(ffn.output_dense, f"{hf}.output.dense")
        load_layer_norm(ffn.layer_norm, f"{hf}.output.LayerNorm")

    randomly_initialised = []
    if prefix + "pooler.dense.weight" in tensors:
        load_dense(model.get_layer("pooler").dense, "pooler.dense")
    else:
        randomly_initialised.append(prefix + "pooler.dense")
    if classifier:
        head = model.get_layer("classifier")
        for name, variable in (("weight", head.kernel), ("bias", head.bias)):
            key = f"classifier.{name}"
            if key not in tensors:
                raise KeyError(f"checkpoint tensor {key!r} is missing: not a "
                               "BertForSequenceClassification checkpoint?")
            assign(variable, tensors[key].T if name == "weight" else tensors[key], key)
            used.add(key)
    else:
        randomly_initialised.append("classifier")

    rest = sorted(set(tensors) - used)
    ignored = [k for k in rest if k.endswith(_IGNORED_SUFFIXES) or k.startswith(_IGNORED_HEADS)]
    unexpected = [k for k in rest if k not in ignored]
    return {"unexpected": unexpected, "ignored": ignored,
            "randomly_initialised": randomly_initialised}


def hf_tensors(model) -> dict:
    """The inverse of `load_hf_weights`: `model`'s weights as the tensors of a Hugging Face
    BertForSequenceClassification checkpoint (`bert.` prefix, Linear weights (out, in)).
    Only a BERT-layout model with the same widths in every layer fits that class."""
    config = model.encoder_config
    if config.model_type != "bert":
        raise ValueError(f"only BERT-layout models export to a Hugging Face checkpoint; this one "
                         f"is {config.model_type!r}")
    if len(set(config.num_heads)) != 1 or len(set(config.intermediate_sizes)) != 1 \
            or 0 in config.num_heads or 0 in config.intermediate_sizes:
        raise ValueError(f"layers of different widths (heads {config.num_heads}, FFN "
                         f"{config.intermediate_sizes}) have no Hugging Face BERT equivalent: "
                         "export the model as TFLite or Keras instead")
    if config.hidden_size != config.num_heads[0] * config.head_size:
        raise ValueError(f"{config.num_heads[0]} heads of {config.head_size} do not make "
                         f"hidden_size {config.hidden_size}, as Hugging Face BERT requires")
    encoder = model.get_layer("encoder")
    tensors = {}

    def put(key, variable):
        tensors[key] = np.ascontiguousarray(np.asarray(variable, dtype=np.float32))

    def dense(layer, key):
        put(f"{key}.weight", np.asarray(layer.kernel).T)
        put(f"{key}.bias", layer.bias)

    def layer_norm(layer, key):
        put(f"{key}.weight", layer.gamma)
        put(f"{key}.bias", layer.beta)

    emb = encoder.embeddings
    for name in ("word_embeddings", "position_embeddings", "token_type_embeddings"):
        put(f"bert.embeddings.{name}.weight", getattr(emb, name).embeddings)
    layer_norm(emb.layer_norm, "bert.embeddings.LayerNorm")
    for i, layer in enumerate(encoder.transformer_layers):
        hf = f"bert.encoder.layer.{i}"
        for name in ("query", "key", "value"):
            dense(getattr(layer.attention, name), f"{hf}.attention.self.{name}")
        dense(layer.attention.output_dense, f"{hf}.attention.output.dense")
        layer_norm(layer.attention.layer_norm, f"{hf}.attention.output.LayerNorm")
        dense(layer.ffn.input_dense, f"{hf}.intermediate.dense")
        dense(layer.ffn.output_dense, f"{hf}.output.dense")
        layer_norm(layer.ffn.layer_norm, f"{hf}.output.LayerNorm")
    dense(model.get_layer("pooler").dense, "bert.pooler.dense")
    dense(model.get_layer("classifier"), "classifier")
    return tensors


def hf_config(config: EncoderConfig, labels=None) -> dict:
    """The Hugging Face `config.json` of a BertForSequenceClassification with `config`'s
    shapes (the inverse of `config_from_hf`)."""
    labels = list(labels) if labels is not None else [f"LABEL_{i}" for i in
                                                     range(config.num_labels)]
    return {"architectures": ["BertForSequenceClassification"], "model_type": "bert",
            "vocab_size": config.vocab_size, "hidden_size": config.hidden_size,
            "num_hidden_layers": config.num_layers,
            "num_attention_heads": config.num_heads[0],
            "intermediate_size": config.intermediate_sizes[0], "hidden_act": "gelu",
            "hidden_dropout_prob": config.hidden_dropout,
            "attention_probs_dropout_prob": config.attention_dropout,
            "max_position_embeddings": config.max_position_embeddings,
            "type_vocab_size": config.type_vocab_size, "layer_norm_eps": config.layer_norm_eps,
            "pad_token_id": config.pad_token_id, "position_embedding_type": "absolute",
            "id2label": {str(i): label for i, label in enumerate(labels)},
            "label2id": {label: i for i, label in enumerate(labels)}}


def _detect_prefix(tensors):
    for prefix in ("bert.", "roberta.", ""):
        if prefix + "embeddings.word_embeddings.weight" in tensors:
            return prefix
    raise KeyError("checkpoint has no 'embeddings.word_embeddings.weight' (with prefix 'bert.', "
                   "'roberta.' or none): not a BERT/RoBERTa checkpoint?")
