"""utils.compression.tflite: float TFLite export matches Keras across batch shapes (input resizing), the
dynamic-range int8 export stays within a stated tolerance and is ~4x smaller, RoBERTa's
cumsum position ids convert too, utils.training.train.evaluate accepts the classifier, and a
vocabulary-pruned model saves/loads with its id map."""
import numpy as np
import pytest

import utils  # noqa: F401
from utils.data import batching
from utils.training import train
from utils.encoder import model as M
from utils.compression import quantize as Q
from utils.compression import tflite as T
from utils.compression import vocab as V

from helpers import TWEETS, random_model


def batches_of(tokenizer, texts, batch_size):
    """Padded batches of `texts`, in order (shapes differ with batch size and length)."""
    encoded, _ = batching.encode_texts(tokenizer, texts, 64)
    return [batching.pad_batch(encoded[i:i + batch_size], tokenizer.pad_token_id)
            for i in range(0, len(encoded), batch_size)]


@pytest.fixture(scope="module", params=["bert", "roberta"])
def exported(request, tokenizer, tmp_path_factory):
    """(Keras model, float .tflite path, dynamic-range .tflite path) for one tiny config."""
    model = random_model(M.tiny_config(len(tokenizer), model_type=request.param), seed=3)
    directory = tmp_path_factory.mktemp(request.param)
    return (model, T.export_tflite(model, directory / "float.tflite", quantize=None),
            T.export_tflite(model, directory / "int8.tflite", quantize="dynamic_range"))


def test_float_export_matches_keras_across_batch_shapes(tokenizer, exported):
    model, float_path, _ = exported
    classifier = T.TFLiteClassifier(float_path, num_threads=1)
    batches = batches_of(tokenizer, TWEETS, 3) + batches_of(tokenizer, TWEETS[:2], 5)
    assert len({b["input_ids"].shape for b in batches}) >= 3        # resized several times
    for batch in batches:
        np.testing.assert_allclose(classifier.predict_on_batch(batch), np.asarray(model(batch)),
                                   atol=T.FLOAT_TOLERANCE, rtol=0)
    # padding must not leak: a tweet alone and padded inside a longer batch agree
    alone = classifier(batches_of(tokenizer, TWEETS[3:4], 1)[0])
    padded = classifier(batches_of(tokenizer, TWEETS[2:4], 2)[0])[1:]
    np.testing.assert_allclose(alone, padded, atol=T.FLOAT_TOLERANCE, rtol=0)


def test_dynamic_range_within_tolerance_and_smaller(tokenizer, exported):
    model, float_path, int8_path = exported
    classifier = T.TFLiteClassifier(int8_path)
    texts = [f"{t} {i}" for i, t in enumerate(TWEETS * 4)]
    batches = batches_of(tokenizer, texts, 8)
    reference = np.concatenate([np.asarray(model(b)) for b in batches])
    logits = np.concatenate([classifier.predict_on_batch(b) for b in batches])
    error = Q.logit_error(reference, logits)
    assert error["max_relative"] < T.DYNAMIC_RANGE_RELATIVE_TOLERANCE, error
    assert error["prediction_agreement"] >= 0.9, error
    # int8 weights (dense kernels and the embedding tables): ~4x smaller than float32
    assert int8_path.stat().st_size < 0.3 * float_path.stat().st_size


def test_evaluate_accepts_the_classifier(tokenizer, exported):
    model, float_path, _ = exported
    split = {"text": TWEETS * 2, "label": [0, 1, 2, 0, 1, 2, 0, 1] * 2}
    metrics = train.evaluate(T.TFLiteClassifier(float_path), tokenizer, split, batch_size=4)
    np.testing.assert_allclose(
        train.predict_texts(T.TFLiteClassifier(float_path), tokenizer, split["text"]),
        train.predict_texts(model, tokenizer, split["text"]), atol=T.FLOAT_TOLERANCE, rtol=0)
    assert metrics["examples"] == len(split["text"])
    assert metrics["accuracy"] == train.evaluate(model, tokenizer, split)["accuracy"]


def test_pruned_vocabulary_bundle_round_trip(tokenizer, tmp_path):
    from utils.saved import export
    from utils import saved
    model = random_model(M.tiny_config(len(tokenizer)), seed=5)
    small, remapped = V.prune_vocabulary(model, tokenizer, TWEETS)
    export.export_bundle(small, tmp_path / "tfl", tokenizer, remapped.kept_ids, quantize=None)
    loaded = saved.load(tmp_path / "tfl")
    assert loaded.kind == "tflite" and loaded.quantization is None
    assert loaded.encoder_config == small.encoder_config
    assert loaded.parameters == M.count_parameters(small)
    # the bundle's own tokenizer gives the remapped ids
    assert loaded.tokenizer(TWEETS)["input_ids"] == remapped(TWEETS)["input_ids"]
    # the pruned TFLite model on the remapped ids == the full Keras model on the base ids
    np.testing.assert_allclose(loaded.predict_logits(TWEETS),
                               train.predict_texts(model, tokenizer, TWEETS),
                               atol=T.FLOAT_TOLERANCE, rtol=0)
    # a plain (unpruned) export keeps every base id
    export.export_bundle(model, tmp_path / "plain", tokenizer)
    plain = saved.load(tmp_path / "plain")
    assert plain.quantization == "dynamic_range"
    assert plain.tokenizer(TWEETS)["input_ids"] == tokenizer(TWEETS)["input_ids"]


def test_rejects_unknown_mode():
    with pytest.raises(ValueError, match="supported"):
        T.convert(random_model(M.tiny_config(40)), quantize="int4")
