"""utils.tflite: float TFLite export matches Keras across batch shapes (input resizing), the
dynamic-range int8 export stays within a stated tolerance and is ~4x smaller, RoBERTa's
cumsum position ids convert too, utils.train.evaluate accepts the classifier, and a
vocabulary-pruned model saves/loads with its id map."""
import numpy as np
import pytest

import utils  # noqa: F401
from utils import batching, train
from utils import model as M
from utils import quantize as Q
from utils import tflite as T
from utils import vocab as V

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


def test_pruned_vocabulary_directory_round_trip(tokenizer, tmp_path):
    model = random_model(M.tiny_config(len(tokenizer)), seed=5)
    small, remapped = V.prune_vocabulary(model, tokenizer, TWEETS)
    T.save_tflite(small, tmp_path / "tfl", remapped, quantize=None)
    assert {p.name for p in (tmp_path / "tfl").iterdir()} == {
        T.TFLITE_FILE, T.METADATA_FILE, M.CONFIG_FILE, V.VOCAB_MAP_FILE}
    classifier, loaded = T.load_tflite(tmp_path / "tfl", tokenizer, num_threads=1)
    assert isinstance(loaded, V.RemappedTokenizer)
    np.testing.assert_array_equal(loaded.kept_ids, remapped.kept_ids)
    assert classifier.encoder_config == small.encoder_config
    assert classifier.metadata["parameters"] == M.count_parameters(small)
    # the pruned TFLite model on the remapped ids == the full Keras model on the base ids
    np.testing.assert_allclose(train.predict_texts(classifier, loaded, TWEETS),
                               train.predict_texts(model, tokenizer, TWEETS),
                               atol=T.FLOAT_TOLERANCE, rtol=0)
    with pytest.raises(ValueError, match="base tokenizer"):
        T.load_tflite(tmp_path / "tfl")
    # a plain (unpruned) export loads with the base tokenizer
    T.save_tflite(model, tmp_path / "plain", tokenizer, quantize="dynamic_range")
    assert T.load_tflite(tmp_path / "plain", tokenizer)[1] is tokenizer


def test_rejects_unknown_mode():
    with pytest.raises(ValueError, match="supported"):
        T.convert(random_model(M.tiny_config(40)), quantize="int4")
