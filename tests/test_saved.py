"""The one saved-model format (utils/saved/models.py): every kind round-trips through `save` and
`load`, answers through one interface, and a damaged directory gets a clear error."""
import numpy as np
import pytest

import utils  # noqa: F401
from utils.compression import binarize
from utils.compression import compact
from utils.saved import export
from utils.compression import quantize
from utils import saved
from utils.compression import vocab
from utils.encoder import model as M

from helpers import TWEETS, random_model

TEXTS = [t.lower() for t in TWEETS]


@pytest.fixture(scope="module")
def float_model(tokenizer):
    return random_model(M.tiny_config(len(tokenizer)), seed=11)


def kinds(model, tokenizer, root):
    """{kind: (directory, the in-memory model's logits on TEXTS through its tokenizer)}."""
    from utils.training.train import predict_texts
    out = {}
    saved.save(model, root / "float")
    out["keras"] = (root / "float", predict_texts(model, tokenizer, TEXTS))
    int8 = quantize.quantized_copy(model)
    saved.save(int8, root / "int8")
    out["keras-int8"] = (root / "int8", predict_texts(int8, tokenizer, TEXTS))
    small, remapped = vocab.prune_vocabulary(model, tokenizer, TEXTS[:3])
    saved.save(small, root / "vocab", remapped)
    out["vocab"] = (root / "vocab", predict_texts(small, remapped, TEXTS))
    binarized = binarize.BinarizedClassifier(model)
    saved.save(binarized, root / "binarized")
    out["binarized"] = (root / "binarized",
                        predict_texts(binarized.to_float(), tokenizer, TEXTS))
    return out


def test_every_kind_round_trips_and_answers_alike(float_model, tokenizer, tmp_path):
    for kind, (directory, expected) in kinds(float_model, tokenizer, tmp_path).items():
        assert not (directory / "config.json").exists()       # no file HF tools would misread
        loaded = saved.load(directory, tokenizer)
        assert loaded.kind == ("keras" if kind == "vocab" else kind), kind
        logits = loaded.predict_logits(TEXTS)
        if kind == "keras-int8":   # int8: same labels as before saving (and here the same logits)
            assert (logits.argmax(-1) == expected.argmax(-1)).all()
        np.testing.assert_allclose(logits, expected, atol=1e-5, err_msg=kind)
        probabilities = loaded.predict_texts(TEXTS)
        assert probabilities.shape == (len(TEXTS), 3)
        np.testing.assert_allclose(probabilities.sum(1), 1, atol=1e-9)
        assert loaded.disk_bytes == sum(f.stat().st_size for f in directory.iterdir())
        assert loaded.parameters >= loaded.nonzero_parameters > 0
        with pytest.raises(ValueError, match="empty"):
            loaded.predict_texts(["  "])


def test_spec_records_what_rebuilds_the_model(float_model, tokenizer, tmp_path):
    masked = random_model(M.tiny_config(len(tokenizer)), seed=12)
    M.prunable_kernels(masked)["layer_0/attention/value"].assign(
        np.zeros(M.prunable_kernels(masked)["layer_0/attention/value"].shape, np.float32))
    small = compact.compact_model(masked)
    spec = saved.save(small, tmp_path / "compact")
    assert spec["encoder"]["num_heads"] == small.encoder_config.num_heads != \
        float_model.encoder_config.num_heads
    assert spec["quantization"] is None and spec["vocabulary"] is None
    assert spec["parameters"] == M.count_parameters(small)
    reloaded = saved.load_model(tmp_path / "compact")
    assert reloaded.encoder_config == small.encoder_config
    for a, b in zip(small.get_weights(), reloaded.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_in_memory_models_answer_like_saved_ones(float_model, tokenizer, tmp_path):
    saved.save(float_model, tmp_path / "m")
    np.testing.assert_allclose(saved.in_memory(float_model, tokenizer).predict_texts(TEXTS),
                               saved.load(tmp_path / "m", tokenizer).predict_texts(TEXTS),
                               atol=1e-6)
    assert saved.in_memory(float_model, tokenizer).disk_bytes == 0


def test_bundles_load_through_the_same_call(float_model, tokenizer, tmp_path):
    export.export_bundle(float_model, tmp_path / "bundle", tokenizer, quantize=None)
    loaded = saved.load(tmp_path / "bundle")
    assert loaded.kind == "tflite" and loaded.encoder_config == float_model.encoder_config
    saved.save(float_model, tmp_path / "keras")
    np.testing.assert_allclose(loaded.predict_texts(TEXTS),
                               saved.load(tmp_path / "keras", tokenizer).predict_texts(TEXTS),
                               atol=1e-5)
    with pytest.raises(ValueError, match="first_token"):
        saved.load(tmp_path / "bundle", first_token=True)


@pytest.mark.parametrize("damage, message", [
    ("no spec", "is not a saved model"), ("spec not json", "unreadable"),
    ("other format", "is not a utils.saved spec"), ("newer version", "this code reads version"),
    ("no weights", "lacks model.weights.h5"), ("truncated weights", "weights do not load")])
def test_damaged_directories_get_a_clear_error(float_model, tmp_path, damage, message):
    directory = tmp_path / "m"
    saved.save(float_model, directory)
    spec_file, weights = directory / saved.SPEC_FILE, directory / saved.WEIGHTS_FILE
    if damage == "no spec":
        spec_file.unlink()
    elif damage == "spec not json":
        spec_file.write_text("{not json")
    elif damage == "other format":
        spec_file.write_text('{"model_type": "bert"}')
    elif damage == "newer version":
        spec_file.write_text(spec_file.read_text().replace('"version": 1', '"version": 99'))
    elif damage == "no weights":
        weights.unlink()
    else:
        weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(saved.SavedModelError, match=message) as error:
        saved.load_model(directory)
    assert str(directory) in str(error.value)


def test_save_refuses_what_is_not_a_project_classifier(tmp_path):
    import keras
    plain = keras.Sequential([keras.layers.Dense(2)])
    with pytest.raises(TypeError, match="encoder_config"):
        saved.save(plain, tmp_path / "x")
    assert not (tmp_path / "x").exists()


def test_predict_texts_reads_undecodable_text_and_refuses_invisible_text(float_model, tokenizer,
                                                                        tmp_path):
    """Lone surrogates (undecodable bytes, broken UTF-16) used to crash the tokenizer with a
    TypeError, and zero-width or control-only text passed the empty-text check."""
    saved.save(float_model, tmp_path / "m")
    loaded = saved.load(tmp_path / "m", tokenizer)
    texts = ["great \ud800 crew", "caf\udce9 au lait", "x" * 100_000]
    probabilities = loaded.predict_texts(texts)
    assert probabilities.shape == (3, 3) and np.isfinite(probabilities).all()
    np.testing.assert_allclose(probabilities[0], loaded.predict_texts(["great \ufffd crew"])[0])
    for text in ("\u200b\u2060", "\x01\x1f", "\ud800", "\u0301"):
        with pytest.raises(ValueError, match="nothing to classify"):
            loaded.predict_texts([text])
