"""Saved models: one directory format for every model this project writes, and one loader.

    saved.save(model, directory, tokenizer=None)   # a Keras classifier (float or int8) or a
                                                   # utils.compression.binarize.BinarizedClassifier
    saved.load_model(directory)                    # -> the Keras classifier, to train or prune
    saved.load(directory, base_tokenizer=None)     # -> SavedModel, whatever is inside:
                                                   #    predict_texts(texts) -> probabilities

A model directory holds two files:

- `model_spec.json`: {"format": "utils.saved", "version": 1, "kind": "keras" | "binarized",
  "quantization": null | "int8", "encoder": the EncoderConfig (per-layer head counts and FFN
  widths, so a compacted model is rebuilt from it alone), "vocabulary": null or, for a pruned
  vocabulary, {"kept_ids" (base id of every embedding row), "base_vocab_size",
  "base_name_or_path", "tokens_sha256"}, "binarization": null | its options,
  "parameters", "nonzero_parameters", "keras"}. The name is ours on purpose: Hugging Face tools
  read `config.json` and would misread our per-layer widths (`utils.saved.export --format hf` writes
  theirs).
- the weights: `model.weights.h5` (Keras' weights file; int8 kernels and their scales when
  quantized with `utils.compression.quantize`) or, for kind "binarized", `binary.npz` (one bit per binarized
  weight, `utils.compression.binarize.pack`).

TFLite models live in bundles (`utils.saved.export`: model.tflite, tokenizer.json, labels.json,
preprocessing.json, a model card, bundle.json), which run without this repository; `load` reads
them too. A missing, partial or corrupt directory raises `SavedModelError` naming the directory
and what makes it.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from utils.common.io import atomic_path, read_json, write_json
from utils.encoder import hub
from utils.saved import bundle
from utils.saved.predictor import SavedModel, SavedModelError, parameter_counts

# This module imports without Keras (the report, `--help` of the command lines): the
# Keras-backed modules (encoder, compression) are imported inside the functions that need them.

SPEC_FILE = "model_spec.json"
WEIGHTS_FILE = "model.weights.h5"
PACKED_FILE = "binary.npz"
FORMAT = "utils.saved"
VERSION = 1
KINDS = ("keras", "binarized")


# ------------------------------------------------------------------------------ writing

def save(model, directory, tokenizer=None):
    """Write `model` to `directory` (replaced all or nothing); returns the spec.

    model: a `utils.encoder.model.build_classifier` model (float, or int8 after utils.compression.quantize), or a
    `utils.compression.binarize.BinarizedClassifier`. tokenizer: for a pruned vocabulary, its
    `utils.compression.vocab.RemappedTokenizer` (recorded as the vocabulary map); any other is ignored.
    """
    import keras

    from utils.compression import binarize, quantize, vocab
    binarized = isinstance(model, binarize.BinarizedClassifier)
    classifier = model.classifier if binarized else model
    if getattr(classifier, "encoder_config", None) is None:
        raise TypeError(f"{type(model).__name__} is not a utils.encoder.model classifier (it has no "
                        "encoder_config); build it with utils.encoder.model.build_classifier")
    if not binarized and getattr(model, "optimizer", None) is not None:
        # Keras writes a compiled model's optimizer slots into .weights.h5 too (3x the size
        # with Adam); a saved model is the weights alone, so save an optimizer-free copy.
        from utils.encoder import model as model_lib
        mode = quantize.quantization_mode(model)
        clean = model_lib.build_classifier(model.encoder_config)
        if mode:
            quantize.quantize_model(clean, mode)
        clean.set_weights(model.get_weights())
        model = classifier = clean
    spec = {"format": FORMAT, "version": VERSION, "kind": "binarized" if binarized else "keras",
            "quantization": None if binarized else quantize.quantization_mode(model),
            "encoder": classifier.encoder_config.to_dict(),
            "vocabulary": (vocab.vocab_map(tokenizer)
                           if isinstance(tokenizer, vocab.RemappedTokenizer) else None),
            "binarization": None,
            **parameter_counts(classifier), "keras": keras.__version__}
    if spec["vocabulary"] and len(tokenizer) != classifier.encoder_config.vocab_size:
        raise ValueError(f"the tokenizer has {len(tokenizer)} ids but the model's vocabulary "
                         f"has {classifier.encoder_config.vocab_size} rows")
    with atomic_path(directory) as tmp:
        tmp.mkdir(parents=True)
        if binarized:
            arrays, spec["binarization"] = binarize.pack(model)
            np.savez(tmp / PACKED_FILE, **arrays)
            spec["binarization"]["npz_bytes"] = (tmp / PACKED_FILE).stat().st_size
            spec["binarization"]["bits_per_parameter"] = (
                8 * spec["binarization"]["npz_bytes"] / spec["parameters"])
        else:
            model.save_weights(str(tmp / WEIGHTS_FILE))
        write_json(tmp / SPEC_FILE, spec)
    return spec


# ------------------------------------------------------------------------------ reading

def is_model_dir(directory):
    return (Path(directory) / SPEC_FILE).exists()


def read_spec(directory):
    """The checked model_spec.json of `directory`."""
    directory = Path(directory)
    path = directory / SPEC_FILE
    if not path.exists():
        raise SavedModelError(f"{directory} is not a saved model (no {SPEC_FILE}); models are "
                              "written by utils.saved.save (`make run` writes the project's)")
    try:
        spec = read_json(path)
    except ValueError as error:
        raise SavedModelError(f"{path} is unreadable ({error}); save the model again") from None
    if not isinstance(spec, dict) or spec.get("format") != FORMAT:
        raise SavedModelError(f"{path} is not a {FORMAT} spec")
    if spec.get("version") != VERSION or spec.get("kind") not in KINDS:
        raise SavedModelError(f"{path}: version {spec.get('version')!r}, kind "
                              f"{spec.get('kind')!r}; this code reads version {VERSION}, kinds "
                              f"{KINDS}")
    weights = directory / (PACKED_FILE if spec["kind"] == "binarized" else WEIGHTS_FILE)
    if not weights.exists():
        raise SavedModelError(f"{directory} lacks {weights.name}: the saved model is incomplete")
    return spec


def load_model(directory):
    """The Keras classifier saved in `directory` (float, int8, or a binarized model's W_hat as
    a plain float classifier), with `encoder_config` set; shapes come from the spec alone."""
    from utils.compression import binarize, quantize
    from utils.encoder import model as model_lib
    directory = Path(directory)
    spec = read_spec(directory)
    model = model_lib.build_classifier(model_lib.EncoderConfig.from_dict(spec["encoder"]))
    try:
        if spec["kind"] == "binarized":
            with np.load(directory / PACKED_FILE) as arrays:
                binarize.unpack_into(model, arrays)
        else:
            if spec["quantization"]:
                quantize.quantize_model(model, spec["quantization"])
            model.load_weights(str(directory / WEIGHTS_FILE))
    except (OSError, ValueError, KeyError) as error:   # truncated or mismatched weights
        raise SavedModelError(f"{directory}: the weights do not load ({type(error).__name__}: "
                              f"{error}); save the model again") from None
    return model


def tokenizer_of(directory, base_tokenizer, spec=None):
    """The tokenizer whose ids are `directory`'s embedding rows: the base tokenizer, or for a
    pruned vocabulary its RemappedTokenizer (checked against the base tokenizer's tokens)."""
    from utils.compression import vocab
    spec = read_spec(directory) if spec is None else spec
    if not spec["vocabulary"]:
        return base_tokenizer
    return vocab.tokenizer_from_map(spec["vocabulary"], base_tokenizer,
                                    spec["encoder"]["vocab_size"], where=str(directory))


def load(directory, base_tokenizer=None, num_threads=None, first_token=False):
    """A SavedModel for a model directory (`save`) or a bundle (`utils.saved.export`).

    base_tokenizer: the tokenizer the model was trained with (default: the project's MiniLM);
    a bundle carries its own. first_token: the last layer computed at position 0 only
    (utils.compression.compact.first_token_classifier; Keras models only, for speed measurements).
    """
    directory = Path(directory)
    if bundle.looks_like_bundle(directory) and not (directory / SPEC_FILE).exists():
        if first_token:
            raise ValueError("first_token applies to Keras models, not to TFLite bundles")
        return bundle.load_bundle(directory, num_threads=num_threads)
    from utils.compression import compact
    spec = read_spec(directory)
    if base_tokenizer is None:
        base_tokenizer = hub.load_tokenizer(hub.DEFAULT_MODEL)
    tokenizer = tokenizer_of(directory, base_tokenizer, spec)
    model = load_model(directory)
    encoder_config = model.encoder_config
    kind = "keras-int8" if spec["quantization"] else spec["kind"]
    if first_token:
        model = compact.first_token_classifier(model)
    weights = PACKED_FILE if spec["kind"] == "binarized" else WEIGHTS_FILE
    return SavedModel(directory, kind, model, tokenizer, encoder_config, spec["parameters"],
                      spec["nonzero_parameters"], [directory / SPEC_FILE, directory / weights],
                      quantization=spec["quantization"])
